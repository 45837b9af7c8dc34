"""The last training step is always validated: a run that stops between the points its
schedule validates (``max_steps`` or ``max_time`` mid-epoch, ``check_val_every_n_epoch`` > 1,
a ``val_check_interval`` that does not divide the budget) still scores its final weights, and
they can become ``best.ckpt``."""

from __future__ import annotations

import lightning as L
import pytest
from lightning.pytorch.trainer.states import TrainerFn

from visionkit.engine.runner import train


class ValidatedSteps(L.Callback):
    """The global steps at which ``fit`` validated (not the sanity check, not the validation
    of ``best.ckpt`` after fitting)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.steps: list[int] = []
        self.stop_at = stop_at

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.steps.append(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.stop_at is not None and trainer.global_step >= self.stop_at:
            trainer.should_stop = True  # as Lightning's Timer (max_time) or EarlyStopping do


# 48 training images at batch 16: 3 batches (steps) an epoch.
@pytest.mark.parametrize(
    ("trainer", "stop_at", "validated"),
    [
        ({"max_steps": 5}, None, [3, 5]),  # mid-epoch stop: Lightning alone stops unscored
        ({"max_steps": 5, "check_val_every_n_epoch": 4}, None, [5]),  # else: no metrics
        ({"max_epochs": 3, "check_val_every_n_epoch": 2}, None, [6, 9]),  # last epoch odd
        ({"max_steps": 6, "check_val_every_n_epoch": None, "val_check_interval": 4}, None, [4, 6]),
        ({"max_steps": 9, "check_val_every_n_epoch": 4}, 2, [2]),  # a stop (e.g. max_time)
        ({"max_steps": 6}, None, [3, 6]),  # a stop at an epoch's end: validated once
    ],
)
def test_the_last_step_is_validated_whatever_stops_the_run(
    tiny_config, trainer, stop_at, validated
):
    tiny_config["trainer"].pop("max_epochs")
    tiny_config["trainer"].update(trainer)
    seen = ValidatedSteps(stop_at)
    run_dir, metrics = train(tiny_config, callbacks=[seen])
    assert seen.steps == validated
    assert "cls/top1" in metrics and (run_dir / "checkpoints" / "best.ckpt").is_file()
