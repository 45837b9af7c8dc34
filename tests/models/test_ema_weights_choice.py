"""A checkpoint of a run with ``ema.enabled: true`` holds the averaged and the raw weights:
every reader took the averaged ones without a word. Now one log line says which were read,
and ``weights="raw"`` (``--weights raw`` of ``eval`` / ``predict``) takes the raw ones."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image

import visionkit
from visionkit.checkpoint import load_checkpoint
from visionkit.cli import build_parser, main
from visionkit.engine.runner import evaluate, train
from visionkit.errors import CheckpointError, ConfigError
from visionkit.export import export, read_safetensors_metadata
from visionkit.inference.predict import predict_files
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
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="visionkit"):
        load_matching(model, str(ema_run / "last.ckpt"))  # which holds the raw ones too
    assert "model.init_from takes the EMA ones" in caplog.text
    assert "--weights raw" not in caplog.text  # train has no such option


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_eval_predict_and_export_take_weights(command):
    args = ["--checkpoint", "x.ckpt", "--weights", "raw"]
    args += ["--input", "images"] if command == "predict" else []
    args += ["--format", "onnx"] if command == "export" else []
    assert build_parser().parse_args([command, *args]).weights == "raw"


def test_export_takes_the_raw_weights_and_records_which_it_holds(ema_run, tmp_path, caplog):
    """The EMA line of ``visionkit export`` offered ``--weights raw``, which export lacked."""
    saved = load_checkpoint(ema_run / "last.ckpt")
    raw_file, ema_file = tmp_path / "raw.safetensors", tmp_path / "ema.safetensors"
    export(ema_run / "last.ckpt", "safetensors", raw_file, weights="raw", check=False)
    with caplog.at_level(logging.INFO, logger="visionkit"):
        export(ema_run / "last.ckpt", "safetensors", ema_file, check=False)
    assert "the raw ones: --weights raw / weights='raw'" in caplog.text
    assert_weights(visionkit.load(raw_file), tensors(saved["current_model_state"]))
    assert_weights(visionkit.load(ema_file, weights="ema"), tensors(saved["state_dict"]))
    assert read_safetensors_metadata(raw_file)["meta"]["weights"] == "raw"
    assert read_safetensors_metadata(ema_file)["meta"]["weights"] == "ema"
    visionkit.load(raw_file, weights="raw")  # the set it holds


def test_weights_naming_no_set_is_an_error_of_the_call(ema_run):
    with pytest.raises(ConfigError, match=r"invalid argument of load\(\)[\s\S]*weights"):
        visionkit.load(ema_run / "last.ckpt", weights="bogus")  # was read as the EMA ones
    with pytest.raises(ConfigError, match=r"invalid argument of export\(\)[\s\S]*'bogus'"):
        export(ema_run / "last.ckpt", "safetensors", ema_run / "x.safetensors", weights="bogus")


def an_image(folder):
    folder.mkdir(exist_ok=True)
    Image.new("RGB", (32, 32)).save(folder / "a.png")
    return folder


def test_a_source_of_one_set_refuses_weights_naming_another(ema_run, tmp_path):
    """An export, or a model in memory, holds one set: ``weights='raw'`` was ignored."""
    exported = tmp_path / "m.safetensors"
    export(ema_run / "best.ckpt", "safetensors", exported, check=False)
    with pytest.raises(CheckpointError, match=r"an export holds one set of weights \(the EMA"):
        visionkit.load(exported, weights="raw")
    with pytest.raises(CheckpointError, match="an export holds one set"):
        predict_files(exported, an_image(tmp_path / "in"), tmp_path / "out", weights="raw")
    in_memory = visionkit.load(ema_run / "best.ckpt")
    for call, run in [
        ("evaluate", lambda: evaluate(in_memory, weights="raw")),
        (
            "predict_files",
            lambda: predict_files(in_memory, tmp_path / "in", tmp_path / "o", weights="raw"),
        ),
        (
            "export",
            lambda: export(in_memory, "safetensors", tmp_path / "e.safetensors", weights="raw"),
        ),
    ]:
        with pytest.raises(ConfigError, match=rf"{call}\(\)[\s\S]*a model in memory holds one"):
            run()


def test_predict_of_an_export_with_weights_raw_says_so(ema_run, tmp_path, capsys):
    exported = tmp_path / "m.safetensors"
    export(ema_run / "best.ckpt", "safetensors", exported, check=False)
    images = an_image(tmp_path / "images")
    args = ["--checkpoint", str(exported), "--input", str(images), "--weights", "raw"]
    assert main(["predict", *args, "--output-dir", str(tmp_path / "out")]) != 0
    assert "an export holds one set of weights" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_weights_given_a_file_says_where_the_file_goes(command, capsys):
    """Ultralytics' ``--weights best.pt``: export said "--weights is --checkpoint here" before
    it took ``--weights ema|raw``; now each command says it, with the command to run."""
    args = [command, "--weights", "best.pt"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(args)
    err = capsys.readouterr().err
    assert "the file goes to --checkpoint" in err
    assert f"visionkit {command} --checkpoint best.pt" in err
