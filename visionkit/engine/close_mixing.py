"""``data.close_mixing``: the multi-image steps of the training pipeline (``Mosaic``, ``MixUp``,
``CopyPaste``, the identity steps) off for the last part of the training schedule, as
Ultralytics' ``close_mosaic`` turns its mosaic off for the last epochs: the model ends its
training on photos as they are, the ones it is evaluated on.

The point is a step of the schedule (:attr:`VisionSystem.schedule_steps`: ``max_steps``, the
epochs, or what ``trainer.max_time`` allows), so under a time budget it follows the
projection. The training sampler, which runs in the main process ahead of the loader
workers, marks each draw with whether the step it will be trained at comes before that point
(:meth:`~visionkit.engine.sampling.EpochSampler.close_mixing_at`); the workers read the mark.
So which samples are mixed depends on the draw's step alone, not on the workers or on how far
ahead they read: a run with ``max_steps`` mixes the same samples every time. (The loader's
iterator is made before ``on_train_start``, but, a generator, draws nothing before the first
batch is asked for; a loader reloaded at an epoch (``reload_dataloaders_every_n_epochs``) is
given the point at ``on_train_epoch_start``, before its first batch.) Once a draw at or past
the point has been marked, the point never moves later (a time budget's projection may grow),
so mixing, once off, stays off.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L

from visionkit.data.mixing import MULTI_IMAGE
from visionkit.engine.sampling import EpochSampler
from visionkit.engine.system import UNENDING

logger = logging.getLogger(__name__)


def has_mixing_steps(steps: Sequence[Any] | None) -> bool:
    """Whether the training pipeline ``steps`` has a multi-image step for ``data.close_mixing``
    to turn off; logs a warning when it has none (the setting then does nothing).

    >>> has_mixing_steps([{"name": "HorizontalFlip"}, {"name": "MixUp", "p": 0.5}])
    True
    """
    names = [s.get("name") for s in steps or () if isinstance(s, Mapping)]
    if any(name in MULTI_IMAGE for name in names):
        return True
    logger.warning(
        "data.close_mixing: data.transforms.train has no multi-image step (%s) to turn off for "
        "the end of training, so it does nothing",
        ", ".join(MULTI_IMAGE),
    )
    return False


def closing_step(schedule_steps: int, fraction: float) -> int:
    """The first step without multi-image steps: the last ``fraction`` of ``schedule_steps``.

    >>> closing_step(1400, 0.2), closing_step(10, 0.25), closing_step(10, 0.0)
    (1120, 8, 10)
    """
    return schedule_steps - math.floor(schedule_steps * fraction)


class CloseMixing(L.Callback):
    """Turns the training pipeline's multi-image steps off for the last ``fraction`` of the
    schedule (module docstring); says so in the log when it happens.

    Args:
        fraction: the part of the schedule's steps, at its end, trained without them, in
            ``(0, 1)``.
    """

    def __init__(self, fraction: float) -> None:
        self.fraction = float(fraction)
        self._said = False
        self._closed_at: int | None = None  # the point, once a draw past it was marked

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._update(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._update(trainer, pl_module)  # a reloaded loader's new sampler, before its first batch

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, batch_idx: int
    ) -> None:
        step = self._update(trainer, pl_module)
        if step is not None and trainer.global_step >= step and not self._said:
            self._said = True
            logger.info(
                "data.close_mixing %g: step %d of %d, the multi-image steps of "
                "data.transforms.train are off from here to the end",
                self.fraction,
                trainer.global_step,
                pl_module.schedule_steps,
            )

    def _update(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int | None:
        """Give the training sampler the closing step (``None``: no sampler of ours, e.g.
        Lightning's under ``overfit_batches``, or a schedule without an end)."""
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        steps = getattr(pl_module, "schedule_steps", UNENDING)
        batches = trainer.num_training_batches  # inf: an iterable without a length
        if not isinstance(sampler, EpochSampler) or steps >= UNENDING or math.isinf(batches):
            return None
        step = closing_step(int(steps), self.fraction)
        if self._closed_at is not None:  # a reloaded loader's sampler: mixing stays off
            step = min(step, self._closed_at)
        step = sampler.close_mixing_at(step, int(batches), int(trainer.accumulate_grad_batches))
        if sampler.closed:
            self._closed_at = step
        return step
