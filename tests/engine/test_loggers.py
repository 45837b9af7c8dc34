"""Loggers and callbacks: the config's ``logger:`` list (``csv`` always on; ``tensorboard``,
``wandb``, ``mlflow`` when their package is installed, a ConfigError naming it when not), and
Lightning objects passed to ``train(callbacks=..., loggers=...)`` beside visionkit's own."""

from __future__ import annotations

import csv
from typing import Any

import lightning as L
import pytest
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from visionkit.config import load_config
from visionkit.config.schema import LoggerConfig
from visionkit.engine import callbacks as callbacks_module
from visionkit.engine.callbacks import StepLog, make_loggers
from visionkit.engine.runner import train
from visionkit.errors import ConfigError


class RecordingLogger(Logger):
    """A logger that keeps every ``log_metrics`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[dict[str, float], int | None]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.calls.append((dict(metrics), step))


class CountBatches(L.Callback):
    """Counts the training batches that ended."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.batches += 1


def _without(monkeypatch: pytest.MonkeyPatch, *packages: str) -> None:
    """Make ``packages`` look uninstalled to the logger checks."""
    real = callbacks_module.find_spec
    monkeypatch.setattr(
        callbacks_module, "find_spec", lambda name: None if name in packages else real(name)
    )


def test_python_loggers_and_callbacks_run_beside_the_csv_log(tiny_config):
    tiny_config["trainer"].update(max_epochs=2, limit_train_batches=2, limit_val_batches=1)
    tiny_config["logger"] = ["csv"]
    recorder, counter = RecordingLogger(), CountBatches()
    run_dir, metrics = train(tiny_config, loggers=[recorder], callbacks=[counter])

    assert counter.batches == 4  # 2 epochs × 2 batches
    logged = {key for values, _ in recorder.calls for key in values}
    assert {"val/loss", "cls/top1", "train/loss_step"} <= logged
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert any(row.get("val/loss") for row in rows) and any(row.get("cls/top1") for row in rows)
    assert (run_dir / "metrics.csv").is_file() and "cls/top1" in metrics
    assert max(int(row["epoch"]) for row in rows) == 1  # best.ckpt's re-scoring is no epoch 2
    assert not (run_dir / "tensorboard").exists()  # logger: [csv] lists no tensorboard


def test_logger_takes_a_name_a_mapping_or_a_list():
    base = {"model": {"heads": {"cls": {"name": "linear", "num_classes": 2}}}}
    cfg = load_config({**base, "logger": "csv"})
    assert [spec.name for spec in cfg.logger] == ["csv"]
    cfg = load_config({**base, "logger": ["csv", {"name": "wandb", "project": "shapes"}]})
    assert cfg.to_dict()["logger"] == [{"name": "csv"}, {"name": "wandb", "project": "shapes"}]
    assert load_config(base).logger is None


def test_make_loggers_builds_only_the_listed_loggers(tmp_path):
    loggers = make_loggers(tmp_path, specs=[LoggerConfig(name="csv")])
    assert [type(logger) for logger in loggers] == [StepLog]
    assert make_loggers(tmp_path, specs=[])[0].log_dir == str(tmp_path / "logs")


def test_tensorboard_logger_writes_into_the_run_folder(tmp_path):
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger

    specs = [LoggerConfig(name="tensorboard", default_hp_metric=False)]
    _, board = make_loggers(tmp_path, specs=specs)
    assert isinstance(board, TensorBoardLogger)
    assert board.log_dir == str(tmp_path / "tensorboard")
    board.log_metrics({"val/loss": 1.0}, step=1)
    board.finalize("success")
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.reliability
def test_tensorboard_without_its_package_is_a_config_error_before_any_data_is_read(
    tiny_config, tmp_path, monkeypatch
):
    _without(monkeypatch, "tensorboard", "tensorboardX")
    tiny_config["logger"] = ["csv", "tensorboard"]
    with pytest.raises(ConfigError) as err:
        train(tiny_config)
    assert err.value.problems == [
        "logger[1]: tensorboard needs the 'tensorboard' package, which is not installed: "
        "pip install tensorboard (or leave tensorboard out of logger:)"
    ]
    assert not (tmp_path / "runs").exists()


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_wandb_and_mlflow_without_their_package_name_it(tmp_path, monkeypatch, name):
    _without(monkeypatch, name)
    with pytest.raises(ConfigError, match=rf"logger\[0\]: {name} needs the '{name}' package.*"):
        make_loggers(tmp_path, specs=[LoggerConfig(name=name, project="x")])


@pytest.mark.reliability
def test_a_wrong_argument_of_mlflow_names_the_logger(tmp_path):
    pytest.importorskip("mlflow")
    with pytest.raises(ConfigError, match=r"logger\[0\] \(mlflow\): .*unexpected keyword.*projekt"):
        make_loggers(tmp_path, specs=[LoggerConfig(name="mlflow", projekt="x")])


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tensorbord", "logger[0].name: expected 'csv', 'tensorboard', 'wandb' or 'mlflow'"),
        ([{"name": "csv", "flush": 1}], "logger[0]: csv takes no arguments"),
        ([{"project": "x"}], "logger[0].name: required key is missing"),
    ],
)
def test_a_bad_logger_entry_is_named(value, expected):
    config = {"model": {"heads": {"cls": {"name": "linear", "num_classes": 2}}}, "logger": value}
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert err.value.problems[0].startswith(expected), err.value.problems


@pytest.mark.reliability
def test_train_refuses_objects_that_are_not_lightning_callbacks_or_loggers(tiny_config, tmp_path):
    with pytest.raises(ConfigError) as err:
        train(tiny_config, callbacks=["early_stopping"], loggers=[print])
    assert err.value.problems == [
        "train(callbacks=...)[0]: expected a lightning.pytorch.Callback instance, got str",
        "train(loggers=...)[0]: expected a lightning.pytorch.loggers.Logger instance, "
        "got builtin_function_or_method",
    ]
    assert not (tmp_path / "runs").exists()
