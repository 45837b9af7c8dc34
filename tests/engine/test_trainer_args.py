"""``trainer:`` takes every ``lightning.Trainer`` argument: the list of Lightning keys in
``visionkit/config/schema.py`` is compared with Lightning's own signature here (it cannot
drift), each key is type-checked, passed through by ``trainer_kwargs``, and an unknown key
is told both sets of valid keys."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.plugins import TorchSyncBatchNorm
from lightning.pytorch.profilers import SimpleProfiler
from lightning.pytorch.trainer.states import TrainerFn

from tests.helpers import run
from visionkit.build import trainer_kwargs
from visionkit.build.trainer import use_tf32_matmuls
from visionkit.config import TrainerConfig, load_config
from visionkit.config.schema import (
    LIGHTNING_TRAINER_KEYS,
    TRAINER_KEYS_SET_BY_VISIONKIT,
    VISIONKIT_TRAINER_KEYS,
)
from visionkit.engine.callbacks import ProgressBar, Tf32Matmuls, make_loggers
from visionkit.engine.runner import make_trainer, train
from visionkit.errors import ConfigError

LIGHTNING_SIGNATURE = inspect.signature(L.Trainer.__init__).parameters
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_the_lightning_keys_are_exactly_the_arguments_of_lightning_trainer():
    assert set(LIGHTNING_TRAINER_KEYS) == set(LIGHTNING_SIGNATURE) - {"self"}
    assert not set(VISIONKIT_TRAINER_KEYS) & set(LIGHTNING_SIGNATURE)
    assert set(TRAINER_KEYS_SET_BY_VISIONKIT) <= set(LIGHTNING_TRAINER_KEYS)


def test_lightnings_own_defaults_pass_the_type_checks():
    """A Lightning default refused by the field's type means the type has drifted."""
    for name in LIGHTNING_TRAINER_KEYS:
        default = LIGHTNING_SIGNATURE[name].default
        if name in TRAINER_KEYS_SET_BY_VISIONKIT or default is None:
            continue
        TrainerConfig(**{name: default})  # raises on a type that no longer fits


def test_every_lightning_key_set_reaches_the_trainer(tiny_config, tmp_path):
    tiny_config["trainer"].update(
        max_steps=7,
        check_val_every_n_epoch=None,
        val_check_interval=3,
        sync_batchnorm=True,
        profiler="simple",
        num_sanity_val_steps=0,
        gradient_clip_algorithm="value",
        deterministic="warn",
        precision="32-true",
    )
    cfg = load_config(tiny_config)
    kwargs = trainer_kwargs(cfg, tmp_path)
    assert kwargs["sync_batchnorm"] is True and kwargs["profiler"] == "simple"
    assert kwargs["check_val_every_n_epoch"] is None and kwargs["val_check_interval"] == 3
    assert not set(kwargs) & set(VISIONKIT_TRAINER_KEYS)
    assert "fast_dev_run" not in kwargs  # null: Lightning's default
    trainer = make_trainer(cfg, tmp_path, logger=False)  # with visionkit's checkpoint plugin
    assert trainer.max_steps == 7 and trainer.val_check_interval == 3
    assert isinstance(trainer.profiler, SimpleProfiler)
    assert trainer.num_sanity_val_steps == 0
    assert isinstance(trainer._accelerator_connector._layer_sync, TorchSyncBatchNorm)


def test_saved_configs_leave_unset_lightning_keys_out_and_reload_the_same(tiny_config):
    tiny_config["trainer"].update(fast_dev_run=2, check_val_every_n_epoch=None)
    cfg = load_config(tiny_config)
    saved = cfg.to_dict()["trainer"]
    assert saved["fast_dev_run"] == 2 and saved["check_val_every_n_epoch"] is None
    assert "sync_batchnorm" not in saved and "profiler" not in saved
    assert load_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))).trainer == cfg.trainer


def test_fast_dev_run_trains_one_batch(tiny_config):
    tiny_config["trainer"].update(fast_dev_run=1, max_epochs=1)
    run_dir, metrics = train(tiny_config)
    assert (run_dir / "config.yaml").is_file()
    assert metrics == {}  # Lightning writes no checkpoint in a fast_dev_run: nothing to re-validate


@pytest.mark.reliability
def test_an_unknown_trainer_key_gets_a_suggestion_and_both_sets_of_keys(tiny_config):
    tiny_config["trainer"]["max_step"] = 100
    with pytest.raises(ConfigError) as err:
        load_config(tiny_config)
    (problem,) = err.value.problems
    assert problem.startswith("trainer.max_step: unknown key; did you mean 'max_steps'? ")
    assert "trainer takes lightning.Trainer arguments (accelerator, " in problem
    assert "sync_batchnorm" in problem and "val_check_interval" in problem
    assert problem.endswith(
        "visionkit's own keys (channels_last, checkpoint_every_n_steps, compile, on_nonfinite_loss)"
    )


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("sync_batchnorm", "maybe", "trainer.sync_batchnorm: expected a valid boolean"),
        ("profiler", "simpel", "trainer.profiler: expected 'simple', 'advanced', 'pytorch' or"),
        ("gradient_clip_algorithm", "l2", "trainer.gradient_clip_algorithm: expected 'norm' or"),
        ("min_steps", -3, "trainer.min_steps: expected greater than or equal to 0, got -3"),
    ],
)
def test_a_lightning_key_of_the_wrong_type_is_named(tiny_config, key, value, expected):
    tiny_config["trainer"][key] = value
    with pytest.raises(ConfigError, match="^invalid configuration") as err:
        load_config(tiny_config)
    assert err.value.problems[0].startswith(expected), err.value.problems


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("key", "where"),
    [
        ("logger", "use the top-level `logger:` list"),
        ("callbacks", "pass train(..., callbacks=[...]) from Python"),
        ("default_root_dir", "it is the run folder: set `output_dir` and `name`"),
        ("enable_checkpointing", "visionkit always writes checkpoints/best.ckpt"),
    ],
)
def test_a_lightning_key_visionkit_sets_says_where_to_set_it(tiny_config, key, where):
    tiny_config["trainer"][key] = False
    with pytest.raises(ConfigError) as err:
        load_config(tiny_config)
    (problem,) = err.value.problems
    assert problem.startswith(f"trainer.{key}: set by visionkit: {where}")
    assert problem.endswith(", got False")


@pytest.mark.reliability
def test_the_cli_prints_the_unknown_key_without_a_traceback(tiny_config, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    code, _, err = run(["train", "--config", path, "trainer.sync_batchnom=true"], capsys)
    assert code == 2
    assert "trainer.sync_batchnom: unknown key; did you mean 'sync_batchnorm'?" in err
    assert not (tmp_path / "runs").exists()


def test_tf32_matmuls_keep_a_precision_the_user_chose(matmul_precision):
    torch.set_float32_matmul_precision("highest")  # PyTorch's default
    use_tf32_matmuls()
    assert torch.get_float32_matmul_precision() == "high"
    torch.set_float32_matmul_precision("medium")
    use_tf32_matmuls()
    assert torch.get_float32_matmul_precision() == "medium"


@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("gpu", marks=NEEDS_CUDA)])
def test_only_a_gpu_trainer_turns_on_tf32(tiny_config, tmp_path, matmul_precision, accelerator):
    """On the CPU matmul precision does nothing and stays as it was; on a GPU Lightning's
    'Tensor Cores' advice is followed (without it, it is printed on every run)."""
    torch.set_float32_matmul_precision("highest")
    tiny_config["trainer"].update(accelerator=accelerator, devices=1)
    trainer = make_trainer(load_config(tiny_config), tmp_path, logger=False)
    expected = "high" if accelerator == "gpu" else "highest"
    assert torch.get_float32_matmul_precision() == expected  # before Lightning checks it
    torch.set_float32_matmul_precision("highest")  # a ddp_spawn worker: a new interpreter
    (tf32,) = [c for c in trainer.callbacks if isinstance(c, Tf32Matmuls)]
    tf32.setup(trainer, None, "fit")  # where each process sets up
    assert torch.get_float32_matmul_precision() == expected


def test_the_progress_bar_leaves_out_the_loggers_version(tiny_config, tmp_path):
    """Lightning's bar ends in ``v_num=logs`` (the step log's folder) on every run."""
    tiny_config["trainer"]["enable_progress_bar"] = True
    trainer = make_trainer(load_config(tiny_config), tmp_path, logger=make_loggers(tmp_path))
    assert TQDMProgressBar().get_metrics(trainer, None)["v_num"] == "logs"  # Lightning's own
    bar = trainer.progress_bar_callback
    assert isinstance(bar, ProgressBar)
    assert "v_num" not in bar.get_metrics(trainer, None)

    tiny_config["trainer"]["enable_progress_bar"] = False  # no bar at all: none is added
    assert make_trainer(load_config(tiny_config), tmp_path).progress_bar_callback is None


def test_the_bar_of_a_run_shows_its_step_of_the_whole_schedule(tiny_config, tmp_path):
    """The bar counts an epoch's batches; with a step budget (2,000 steps of 14-batch epochs:
    "Epoch 57: 3/14") the run's own progress is the leading ``step=130/2000``."""
    tiny_config["trainer"]["enable_progress_bar"] = True
    trainer = make_trainer(load_config(tiny_config), tmp_path, logger=make_loggers(tmp_path))
    bar = trainer.progress_bar_callback
    trainer.state.fn = TrainerFn.FITTING
    items = bar.get_metrics(trainer, SimpleNamespace(schedule_steps=2000))
    assert list(items)[0] == "step" and items["step"] == "0/2000"
    unknown = bar.get_metrics(trainer, SimpleNamespace(schedule_steps=10**9))  # max_time alone
    assert unknown["step"] == 0
    trainer.state.fn = TrainerFn.VALIDATING  # visionkit eval: no steps
    assert "step" not in bar.get_metrics(trainer, SimpleNamespace(schedule_steps=2000))


def test_a_progress_bar_given_is_kept(tiny_config, tmp_path):
    tiny_config["trainer"]["enable_progress_bar"] = True
    mine = TQDMProgressBar(refresh_rate=5)
    trainer = make_trainer(load_config(tiny_config), tmp_path, callbacks=[mine])
    assert trainer.progress_bar_callback is mine


def test_the_bar_is_rich_where_lightning_would_pick_rich(monkeypatch):
    """Lightning's default bar is rich's where ``rich`` is installed: visionkit's follows."""
    from visionkit.engine import callbacks

    monkeypatch.setattr(callbacks, "_RICH_AVAILABLE", False)
    assert type(callbacks.progress_bar()) is ProgressBar
    pytest.importorskip("rich")
    monkeypatch.setattr(callbacks, "_RICH_AVAILABLE", True)
    assert isinstance(callbacks.progress_bar(), callbacks.RichBar)
