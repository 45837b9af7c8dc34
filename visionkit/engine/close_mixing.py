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
ahead they read: a run with ``max_steps`` mixes the same samples every time.
"""

from __future__ import annotations

import logging
import math

import lightning as L

from visionkit.engine.sampling import EpochSampler
from visionkit.engine.system import UNENDING

logger = logging.getLogger(__name__)


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

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._update(trainer, pl_module)

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
        sampler.close_mixing_at(step, int(batches), int(trainer.accumulate_grad_batches))
        return step
