"""``ema``: an exponential moving average of the weights, through Lightning's weight averaging.

Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` keeps the average, swaps it
in for every validation, and writes it to a checkpoint's ``state_dict`` with the raw weights
under ``current_model_state``; so ``best.ckpt`` is picked by the EMA weights' metrics,
``visionkit.load`` returns them, and ``--resume`` restores both.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch import Tensor, nn


def ema_decay(decay: float, warmup_steps: int, updates: int) -> float:
    """The decay of update ``updates``: ``decay × (1 − exp(−n / warmup_steps))`` (YOLOv5's
    ramp), so the average follows the weights closely while they change fast early on.

    >>> round(ema_decay(0.999, 200, 200), 4), ema_decay(0.999, 0, 1)
    (0.6315, 0.999)
    """
    return decay * (1 - math.exp(-updates / warmup_steps)) if warmup_steps else decay


def ema_multi_avg_fn(decay: float, warmup_steps: int):
    """``multi_avg_fn`` for :class:`torch.optim.swa_utils.AveragedModel`: every averaged
    tensor of one device and dtype moved towards the model's in one ``torch._foreach_lerp_``
    (a loop over the tensors, three operations each, took 46 ms an update for a ResNet-18
    FCOS on 2 CPU cores, the foreach one 7 ms: docs/benchmarks.md). Integer buffers (a
    BatchNorm's ``num_batches_tracked``) are copied: an average of counts is no count. The
    model's tensors are cast to the average's dtype first: Lightning builds the average before
    ``trainer.precision: bf16-true`` (or ``16-true``, ``64-true``) converts the model.

    >>> import torch
    >>> avg, cur = [torch.zeros(2), torch.tensor(3)], [torch.ones(2), torch.tensor(5)]
    >>> ema_multi_avg_fn(0.9, 0)(avg[:1], cur[:1], torch.tensor(1))
    >>> ema_multi_avg_fn(0.9, 0)(avg[1:], cur[1:], torch.tensor(1))
    >>> [round(v, 6) for v in avg[0].tolist()], int(avg[1])
    ([0.1, 0.1], 5)
    """

    @torch.no_grad()
    def multi_avg_fn(averaged: list[Tensor], current: list[Tensor], updates: Tensor) -> None:
        dtype = averaged[0].dtype
        current = [c if c.dtype == dtype else c.to(dtype) for c in current]
        if averaged[0].is_floating_point() or averaged[0].is_complex():
            weight = 1 - ema_decay(decay, warmup_steps, int(updates))
            torch._foreach_lerp_(averaged, current, weight)
        else:  # AveragedModel groups tensors by dtype: all of them are integers
            torch._foreach_copy_(averaged, current)

    return multi_avg_fn


class EMACallback(WeightAveraging):
    """EMA of the model's weights and buffers, updated after every optimiser step.

    The evaluators of the :class:`~visionkit.engine.system.VisionSystem` are left out of the
    averaged copy (they hold datasets, not weights); they are registered after the model, so
    the parameter/buffer pairing that Lightning's swap relies on is unchanged.
    """

    def __init__(self, decay: float = 0.9998, warmup_steps: int = 2000) -> None:
        super().__init__(multi_avg_fn=ema_multi_avg_fn(decay, warmup_steps))
        self.decay = decay
        self.warmup_steps = warmup_steps

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        evaluators = getattr(pl_module, "evaluators", None)
        if evaluators is None:
            super().setup(trainer, pl_module, stage)
            return
        pl_module.evaluators = nn.ModuleDict()
        try:
            super().setup(trainer, pl_module, stage)
        finally:
            pl_module.evaluators = evaluators

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_epoch_start(trainer, pl_module)
        self.swapped = self._average_model is not None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_epoch_end(trainer, pl_module)
        self.swapped = False

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """A run stopped in a validation (SIGTERM after its current batch) holds the averaged
        weights in the model: they are swapped back before
        :class:`~visionkit.engine.interrupt.SigtermCheckpoint` (a later callback) saves
        ``last.ckpt``, which had the raw and the averaged weights the wrong way round."""
        if getattr(self, "swapped", False):
            self._swap_models(pl_module)
            self.swapped = False

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "decay": self.decay, "warmup_steps": self.warmup_steps}
