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
from lightning.pytorch.callbacks import WeightAveraging
from torch import Tensor, nn


def ema_avg_fn(decay: float, warmup_steps: int):
    """``avg_fn`` for :class:`torch.optim.swa_utils.AveragedModel`: an EMA whose decay ramps up
    as ``decay × (1 − exp(−n / warmup_steps))`` with the number of updates ``n`` (YOLOv5's
    ramp), so the average follows the weights closely while they change fast early on."""

    def avg_fn(averaged: Tensor, current: Tensor, num_averaged: Tensor) -> Tensor:
        n = float(num_averaged)
        d = decay * (1 - math.exp(-n / warmup_steps)) if warmup_steps else decay
        return averaged + (current - averaged) * (1 - d)

    return avg_fn


class EMACallback(WeightAveraging):
    """EMA of the model's weights and buffers, updated after every optimiser step.

    The evaluators of the :class:`~visionkit.engine.system.VisionSystem` are left out of the
    averaged copy (they hold datasets, not weights); they are registered after the model, so
    the parameter/buffer pairing that Lightning's swap relies on is unchanged.
    """

    def __init__(self, decay: float = 0.9998, warmup_steps: int = 2000) -> None:
        super().__init__(avg_fn=ema_avg_fn(decay, warmup_steps))
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
