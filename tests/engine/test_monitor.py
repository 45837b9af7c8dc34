"""``monitor`` and ``early_stopping.monitor``: a name validation never logs is a ConfigError
before training (a head without an evaluator, a misspelt ``val/`` name), and one under an
evaluated head that it did not log is one at the first validation, naming the logged ones
(both were Lightning's traceback after the whole run)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from visionkit.engine.runner import train
from visionkit.errors import ConfigError


def with_keys(config, **sections):
    config = copy.deepcopy(config)
    config["trainer"].update(max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    config.update(sections)
    return config


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"monitor": "clss/top1"},
            r"monitor: 'clss/top1' is never logged; did you mean 'cls/top1'\?",
        ),
        ({"monitor": "val/los"}, r"monitor: 'val/los' is never logged; did you mean 'val/loss'\?"),
        (
            {"early_stopping": {"patience": 2, "monitor": "seg/mIoU"}},
            r"early_stopping\.monitor: 'seg/mIoU' is never logged; validation logs val/loss, "
            r"cls/top1 and each evaluated head's metrics \(cls/\.\.\.\)",
        ),
        (  # a head's loss is logged per step and per epoch under their own names
            {"monitor": "train/cls/loss"},
            r"monitor: 'train/cls/loss' is logged as train/cls/loss_step \(each step\) and "
            r"train/cls/loss_epoch \(the mean over the epoch's images",
        ),
    ],
)
def test_a_name_no_validation_logs_is_refused_before_training(tiny_config, sections, message):
    config = with_keys(tiny_config, **sections)
    with pytest.raises(ConfigError, match=message):
        train(config)
    assert not list(Path(config["output_dir"]).rglob("*.ckpt"))  # refused before training


@pytest.mark.reliability
def test_a_metric_the_head_does_not_log_is_refused_at_the_first_validation(tiny_config):
    with pytest.raises(
        ConfigError,
        match=r"monitor: 'cls/TOP1' was not logged by the validation; did you mean 'cls/top1'\?; "
        r"it logged .*cls/top1.*val/loss",
    ):
        train(with_keys(tiny_config, monitor="cls/TOP1"))


def test_a_logged_metric_other_than_the_main_one_picks_best(tiny_config):
    run_dir, metrics = train(with_keys(tiny_config, monitor="val/loss"))
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and "val/loss" in metrics
