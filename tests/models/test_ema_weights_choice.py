"""A checkpoint of a run with ``ema.enabled: true`` holds the averaged and the raw weights:
every reader took the averaged ones without a word. Now one log line says which were read,
and ``weights="raw"`` (``--weights raw`` of ``eval`` / ``predict``) takes the raw ones."""

from __future__ import annotations

import logging

import pytest
import torch

import visionkit
from visionkit.checkpoint import load_checkpoint
from visionkit.cli import build_parser
from visionkit.engine.runner import train
from visionkit.errors import CheckpointError
from visionkit.models.transfer import load_matching


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory, shapes_root):
    from tests.conftest import tiny_config

    config = tiny_config.__wrapped__(shapes_root, tmp_path_factory.mktemp("ema"))
    config["ema"] = {"enabled": True, "decay": 0.5, "warmup_steps": 0}
    config["trainer"].update(max_epochs=None, max_steps=3)
    run_dir, _ = train(config)
    return run_dir / "checkpoints"


def tensors(state, prefix="model."):
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def assert_weights(model, expected):
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)


def test_load_says_it_took_the_ema_weights_and_takes_the_raw_ones_when_asked(ema_run, caplog):
    saved = load_checkpoint(ema_run / "last.ckpt")
    with caplog.at_level(logging.INFO, logger="visionkit"):
        ema = visionkit.load(ema_run / "last.ckpt")
    assert_weights(ema, tensors(saved["state_dict"]))
    assert "last.ckpt: read the EMA weights (ema.enabled: true)" in caplog.text
    assert "--weights raw" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="visionkit"):
        raw = visionkit.load(ema_run / "last.ckpt", weights="raw")
    assert_weights(raw, tensors(saved["current_model_state"]))
    assert "read the raw weights" in caplog.text
    differ = [k for k, v in ema.state_dict().items() if not torch.equal(v, raw.state_dict()[k])]
    assert differ  # two sets of weights, really


def test_raw_weights_of_a_best_ckpt_are_a_clear_error(ema_run):
    with pytest.raises(CheckpointError, match="EMA weights only .* last.ckpt holds both"):
        visionkit.load(ema_run / "best.ckpt", weights="raw")


def test_init_from_says_which_weights_it_took(ema_run, caplog):
    model = visionkit.load(ema_run / "last.ckpt")
    with caplog.at_level(logging.INFO, logger="visionkit"):
        load_matching(model, str(ema_run / "best.ckpt"))
    assert "best.ckpt: read the EMA weights (ema.enabled: true)" in caplog.text


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_eval_and_predict_take_weights(command):
    args = ["--checkpoint", "x.ckpt", "--weights", "raw"]
    args += ["--input", "images"] if command == "predict" else []
    assert build_parser().parse_args([command, *args]).weights == "raw"
