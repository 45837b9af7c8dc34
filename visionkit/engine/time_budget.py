"""``trainer.max_time`` as a budget the learning-rate schedule follows, as Ultralytics'
``time=`` does: the steps a time budget allows are projected from the measured step rate, and
the schedule (warm-up, cosine decay, ...) is laid over them, so that a run stopped by the clock
ends its schedule when it stops, on a fast machine or a slow one."""

from __future__ import annotations

import logging
import math
import time

import lightning as L
from lightning.pytorch.callbacks import Timer

from visionkit.config.schema import TrainerConfig
from visionkit.engine.system import UNENDING

logger = logging.getLogger(__name__)


def planned_steps(step: int, seconds_per_step: float, seconds_left: float, cap: float) -> int:
    """The schedule's length: the steps done, plus those that fit in the time left at the
    measured rate, capped by the other budget (``max_steps`` or epochs; ``inf`` if none); at
    least one more than done (a schedule never ends before the run does).

    >>> planned_steps(100, 0.5, 60.0, math.inf)
    220
    >>> planned_steps(100, 0.5, 60.0, 150)
    150
    >>> planned_steps(100, 0.5, -3.0, math.inf)
    101
    """
    left = max(0.0, seconds_left) / seconds_per_step
    return max(step + 1, int(min(cap, step + left)))


class TimeBudgetSchedule(L.Callback):
    """Keeps :attr:`VisionSystem.schedule_steps` at the steps ``trainer.max_time`` allows.

    Every ``every`` optimiser steps, once ``skip`` steps of this process are done (start-up,
    worker spawning and first-call costs are left out of the rate), the rate is the wall time
    per step since then, validations included once they have run, and the schedule's length
    becomes :func:`planned_steps` of it and Lightning's :class:`~lightning.pytorch.callbacks.
    Timer`'s time left. Rank 0's projection is broadcast, so every DDP rank steps the same
    learning rate. Without ``max_time`` (no ``Timer``) it does nothing.

    The projection never exceeds the length the step or epoch budget gives the schedule
    (``max_steps`` with ``max_time``: whichever ends first). It is saved in checkpoints with the
    rate it was made at, so a resumed run starts on a projection of that rate, the time its
    restored ``Timer`` has left and the step budget it is given now (a finished run resumed with
    a larger ``max_steps`` lays its schedule over the new length), until it measures its own.

    Args:
        skip: steps of this process before the rate is measured.
        every: steps between projections.
    """

    def __init__(self, skip: int = 5, every: int = 10) -> None:
        self.skip, self.every = skip, every
        self.cap = math.inf
        self._seen = 0
        self._start: tuple[int, float] | None = None  # (global step, time) after `skip` steps
        self.planned: int | None = None  # the last projection
        self.rate: float | None = None  # the seconds a step it was made at
        self._timer: Timer | None = None  # Lightning's, which max_time adds
        self._logged: int | None = None  # the last one logged (logged again when 10 % off)

    def state_dict(self) -> dict[str, float | None]:
        return {"planned_steps": self.planned, "seconds_per_step": self.rate}

    def load_state_dict(self, state_dict: dict[str, float | None]) -> None:
        planned = state_dict.get("planned_steps")
        self.planned = None if planned is None else int(planned)
        self.rate = state_dict.get("seconds_per_step")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._seen, self._start = 0, None
        self._timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        budget = getattr(pl_module, "schedule_steps", UNENDING)  # from configure_optimizers
        self.cap = budget if budget < UNENDING else math.inf
        remaining = self._timer.time_remaining() if self._timer is not None else None
        if self.rate is not None and remaining is not None:  # resumed, with today's budgets
            planned = planned_steps(trainer.global_step, self.rate, remaining, self.cap)
            self.planned = int(trainer.strategy.broadcast(planned, src=0))  # one lr on all ranks
        if self.planned is not None:  # resumed: the projection the run had when it was saved
            pl_module.schedule_steps = int(min(self.cap, self.planned))

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        remaining = self._timer.time_remaining() if self._timer is not None else None
        if remaining is None:
            return
        self._seen += 1
        step = trainer.global_step
        if step >= self.cap:  # the other budget ends the run at this step: nothing to project
            return
        if self._seen == self.skip:
            self._start = (step, time.monotonic())
        if self._start is None or (self._seen - self.skip) % self.every or step <= self._start[0]:
            return
        rate = (time.monotonic() - self._start[1]) / (step - self._start[0])
        planned = planned_steps(step, rate, remaining, self.cap)
        planned = int(trainer.strategy.broadcast(planned, src=0))
        pl_module.schedule_steps = self.planned = planned
        self.rate = rate
        if self._logged is not None and abs(planned - self._logged) <= 0.1 * self._logged:
            return
        self._logged = planned
        if trainer.is_global_zero:
            logger.info(
                "trainer.max_time: about %d steps in all at %.2f s a step; the learning-rate "
                "schedule follows them",
                planned,
                rate,
            )


def mixed_budget_note(trainer: TrainerConfig) -> str | None:
    """What a run given ``trainer.max_epochs`` beside a step or time budget is told (a recipe's
    ``max_steps`` / ``max_time`` with ``max_epochs=50`` on the command line): the first that
    ends, ends the run; ``None`` when only one kind of budget is set."""
    others = [
        f"trainer.{key}={value}"
        for key, value in (("max_steps", trainer.max_steps), ("max_time", trainer.max_time))
        if value not in (None, -1)
    ]
    if trainer.max_epochs in (None, -1) or not others:
        return None
    return (
        f"trainer.max_epochs={trainer.max_epochs} and {' and '.join(others)}: the run ends at "
        "whichever comes first (trainer.max_steps=-1 trainer.max_time=null train by epochs)"
    )
