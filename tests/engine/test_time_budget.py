"""A time budget (``trainer.max_time``): the run stops on the clock and its learning-rate
schedule ends when it stops, whatever the machine's speed (Ultralytics' ``time=``)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

from visionkit.config import TrainerConfig, load_config
from visionkit.engine.runner import train
from visionkit.engine.time_budget import planned_steps
from visionkit.errors import ConfigError


def test_max_time_alone_leaves_the_epochs_unlimited():
    assert TrainerConfig(max_time="00:00:10:00").max_epochs == -1
    assert TrainerConfig(max_time={"minutes": 10}, max_steps=500).max_epochs == -1
    assert TrainerConfig(max_time="00:00:10:00", max_epochs=3).max_epochs == 3


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'10m'", r"expected DD:HH:MM:SS, e\.g\. '00:00:10:00' for ten minutes, got '10m'"),
        ("{mins: 3}", r"unknown unit\(s\) \['mins'\]; expected some of \['days', 'hours'"),
        ("'00:00:00:00'", r"must be a positive time, got '00:00:00:00'"),
    ],
)
def test_a_malformed_max_time_is_refused_with_the_format(tiny_config, value, message):
    with pytest.raises(ConfigError, match=rf"trainer\.max_time: .*{message}"):
        load_config(tiny_config, [f"trainer.max_time={value}"])


def test_the_planned_steps_are_the_steps_done_plus_those_the_time_left_allows():
    assert planned_steps(100, seconds_per_step=0.5, seconds_left=60.0, cap=math.inf) == 220
    assert planned_steps(100, 0.5, 60.0, cap=150) == 150  # max_steps ends first
    assert planned_steps(100, 0.5, -3.0, cap=math.inf) == 101  # the clock has run out
    assert planned_steps(100, 0.5, 60.0, cap=50) == 101  # never before the run ends


class StepClock:
    """A ``time.monotonic`` that moves ``tick`` seconds at each call: the run's clock then
    depends on the code's path only, not on how loaded the machine is."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 1000.0, tick

    def monotonic(self) -> float:
        self.now += self.tick
        return self.now


def test_the_schedule_ends_when_the_time_budget_does(tiny_config, monkeypatch):
    """A step budget far beyond what 6 s allow: the run stops on the clock, and the cosine
    schedule, laid over the steps the time allows, has decayed when it stops (following the
    step budget, it would still be at its peak). The clock of Lightning's ``Timer`` and of the
    schedule is a :class:`StepClock`, so the steps the 6 s allow are the same on any machine."""
    import lightning.pytorch.callbacks.timer as lightning_timer

    from visionkit.engine import time_budget

    clock = StepClock(tick=0.05)
    monkeypatch.setattr(lightning_timer, "time", clock)
    monkeypatch.setattr(time_budget, "time", clock)
    tiny_config["trainer"].pop("max_epochs")
    tiny_config["trainer"].update(max_steps=100_000, max_time="00:00:00:06", limit_val_batches=1)
    tiny_config["data"]["batch_size"] = 4  # 12 steps an epoch
    tiny_config["scheduler"] = {"name": "cosine", "warmup_steps": 5, "warmup_start_factor": 0.1}
    lr = tiny_config["optimizer"]["lr"]
    run_dir, metrics = train(tiny_config)
    with open(run_dir / "logs" / "metrics.csv") as f:
        rows = [(int(r["step"]), float(r["train/lr"])) for r in csv.DictReader(f) if r["train/lr"]]
    steps = [step for step, _ in rows]
    lrs = [value for _, value in rows]
    print(f"stopped at step {steps[-1]}, learning rate {lrs[-1]:.3g} of {lr:g}")
    assert 30 < steps[-1] < 100_000  # stopped by the clock, after the rate was measured
    assert max(lrs) > 0.9 * lr  # the warm-up reached the peak
    assert lrs[-1] < 0.1 * lr  # and the decay was over when the time ran out
    assert "cls/top1" in metrics


def test_a_resumed_run_continues_on_the_projection_it_saved():
    """Callback state travels in the checkpoint; on the resumed start, before the run has
    measured its own rate, the schedule is the saved projection (capped by the step budget)."""
    from types import SimpleNamespace

    from visionkit.engine.time_budget import TimeBudgetSchedule

    saved = TimeBudgetSchedule()
    saved.planned = 340
    resumed = TimeBudgetSchedule()
    resumed.load_state_dict(saved.state_dict())
    trainer = SimpleNamespace(callbacks=[])
    module = SimpleNamespace(schedule_steps=1200)  # as configure_optimizers sets it
    resumed.on_train_start(trainer=trainer, pl_module=module)
    assert module.schedule_steps == 340
    module = SimpleNamespace(schedule_steps=300)  # a step budget that ends first
    resumed.on_train_start(trainer=trainer, pl_module=module)
    assert module.schedule_steps == 300


def test_a_finished_run_resumed_with_a_larger_step_budget_lays_its_schedule_over_it():
    """A run that stopped on ``max_steps`` (40) with time left, resumed with
    ``trainer.max_steps=50``: the schedule is projected from the saved rate and the restored
    timer's time left, capped by the new budget (50), not the saved 40, at which the learning
    rate would be 0 for the 10 new steps."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from visionkit.engine.time_budget import TimeBudgetSchedule

    saved = TimeBudgetSchedule()
    saved.planned, saved.rate = 40, 0.5
    timer = Timer(duration="00:00:10:00")
    timer.load_state_dict({"time_elapsed": {"train": 25.0}})  # 575 s left: 1,150 steps
    strategy = SimpleNamespace(broadcast=lambda value, src: value)  # one process
    trainer = SimpleNamespace(callbacks=[timer], global_step=40, strategy=strategy)
    resumed = TimeBudgetSchedule()
    resumed.load_state_dict(saved.state_dict())
    module = SimpleNamespace(schedule_steps=50)  # the new max_steps
    resumed.on_train_start(trainer=trainer, pl_module=module)
    assert module.schedule_steps == 50
    timer.load_state_dict({"time_elapsed": {"train": 590.0}})  # 10 s left: 20 steps
    module = SimpleNamespace(schedule_steps=1000)
    resumed.on_train_start(trainer=trainer, pl_module=module)
    assert module.schedule_steps == 60


def test_epochs_given_beside_a_recipes_step_and_time_budget_are_told_which_ends():
    """``trainer.max_epochs=50`` on a recipe with 2,000 steps and 10 minutes stopped at the
    first without a word (Lightning's "Time limit reached" only)."""
    from visionkit.config import load_config
    from visionkit.engine.time_budget import mixed_budget_note

    recipe = Path(__file__).parents[2] / "configs" / "custom" / "detect_fcos_r18.yaml"
    note = mixed_budget_note(load_config(recipe, ["trainer.max_epochs=50"]).trainer)
    assert note == (
        "trainer.max_epochs=50 and trainer.max_steps=2000 and trainer.max_time=00:00:10:00: the "
        "run ends at whichever comes first (trainer.max_steps=-1 trainer.max_time=null train by "
        "epochs)"
    )
    assert mixed_budget_note(load_config(recipe).trainer) is None  # the recipe's own budget
    by_epochs = ["trainer.max_epochs=50", "trainer.max_steps=-1", "trainer.max_time=null"]
    assert mixed_budget_note(load_config(recipe, by_epochs).trainer) is None


def test_a_step_budget_that_ends_first_is_what_the_projection_says(tiny_config, caplog):
    """``max_steps=15`` with 10 minutes: the run's last step is the step budget's, so the
    projection logged and followed never says more steps than 15 (it said 16 at the last
    step, "at least one more than done", a step the run never takes)."""
    tiny_config["trainer"].pop("max_epochs")
    tiny_config["trainer"].update(max_steps=15, max_time="00:00:10:00", limit_val_batches=1)
    tiny_config["data"]["batch_size"] = 4
    with caplog.at_level("INFO", logger="visionkit.engine.time_budget"):
        train(tiny_config)
    planned = [int(m) for m in re.findall(r"about (\d+) steps in all", caplog.text)]
    assert all(steps <= 15 for steps in planned), caplog.text
