"""A step budget (``trainer.max_steps``, ``scheduler.warmup_steps``) trains as long on any
dataset size, and its schedule follows the steps, not the epochs."""

from __future__ import annotations

import pytest

from visionkit.build.optim import _shortened_warmup, lr_factor_fn
from visionkit.config import SchedulerConfig, TrainerConfig
from visionkit.engine.runner import train
from visionkit.errors import ConfigError


def test_max_steps_alone_leaves_the_epochs_unlimited_and_epochs_alone_default_to_ten():
    assert TrainerConfig().max_epochs == 10 and TrainerConfig().max_steps == -1
    assert TrainerConfig(max_steps=500).max_epochs == -1
    assert TrainerConfig(max_steps=500, max_epochs=3).max_epochs == 3
    with pytest.raises(ValueError, match="must be positive"):
        TrainerConfig(max_steps=0)


def test_warmup_in_steps_ignores_the_epoch_length():
    cfg = SchedulerConfig(name="cosine", warmup_steps=20, warmup_start_factor=0.1)
    for per_epoch in (3, 50):
        f = lr_factor_fn(cfg, total_steps=100, steps_per_epoch=per_epoch)
        assert f(0) == pytest.approx(0.1) and f(10) == pytest.approx(0.55)
        assert f(20) == pytest.approx(1.0) and f(100) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="warmup_epochs or warmup_steps, not both"):
        SchedulerConfig(warmup_steps=5, warmup_epochs=1)


def test_a_warmup_longer_than_half_the_schedule_is_shortened_so_that_the_rate_decays(caplog):
    """A 30-step trial of a recipe with 50 warm-up steps ended at the top of its warm-up."""
    _shortened_warmup.cache_clear()  # it says so once per schedule length and process
    cfg = SchedulerConfig(name="cosine", warmup_steps=50, warmup_start_factor=0.01)
    f = lr_factor_fn(cfg, total_steps=30, steps_per_epoch=10)
    rates = [f(step) for step in range(30)]
    assert rates.index(max(rates)) == 15 and rates[15] == pytest.approx(1.0)
    assert rates[-1] < 0.05  # decayed
    assert "a warm-up of 50 steps in a schedule of 30; it takes 15" in caplog.text
    long = lr_factor_fn(cfg, total_steps=1000, steps_per_epoch=10)
    assert long(49) < 1.0 and long(50) == pytest.approx(1.0)  # untouched when it fits


@pytest.mark.parametrize("limit", [3, 5])  # two dataset sizes: 3 and 5 batches per epoch
def test_a_step_budget_trains_the_same_steps_on_any_dataset_size(tiny_config, limit):
    tiny_config["trainer"].pop("max_epochs")
    tiny_config["trainer"].update(max_steps=8, limit_train_batches=limit, limit_val_batches=1)
    tiny_config["scheduler"] = {"name": "cosine", "warmup_steps": 2, "warmup_start_factor": 0.5}
    tiny_config["optimizer"]["lr"] = 0.01
    run_dir, metrics = train(tiny_config)
    from visionkit.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 8
    assert "cls/top1" in metrics


def test_a_config_error_names_the_trainer_key(tiny_config, tmp_path):
    from visionkit.config import load_config

    tiny_config["trainer"]["max_steps"] = "many"
    with pytest.raises(ConfigError, match=r"trainer\.max_steps"):
        load_config(tiny_config)
