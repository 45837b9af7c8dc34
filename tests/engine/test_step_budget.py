"""A step budget (``trainer.max_steps``, ``scheduler.warmup_steps``) trains as long on any
dataset size, and its schedule follows the steps, not the epochs."""

from __future__ import annotations

import pytest

from visionkit.build.optim import lr_factor_fn
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
