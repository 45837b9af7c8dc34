"""The TorchScript-based ONNX exporter, on a failure (opset 9 cannot export the backbone's
``ceil_mode`` max-pool at a dynamic size), printed its whole IR graph to the terminal (95 kB
of ``Torch IR graph at exception: graph(%input.1 : Float(...`` from torch's C++ log, which a
Python redirect does not catch) and raised a 780-character message quoting the graph. Now the
error is one short sentence naming the exporter and the opset with what to try, and the full
output is kept in a file beside the output."""

from __future__ import annotations

import pytest

from tests.export.test_end_to_end import HEADS, LABELS, tiny_model
from visionkit.cli import main
from visionkit.errors import ExportError
from visionkit.export import export


@pytest.fixture(scope="module")
def model():
    return tiny_model({"det": HEADS["det"]}, {"instances": LABELS["instances"]})


def test_a_failure_is_one_short_message_and_the_dump_is_kept_in_a_file(model, tmp_path, capfd):
    output = tmp_path / "run" / "model.onnx"
    output.parent.mkdir()
    with pytest.raises(ExportError) as info:
        export(model, "onnx", output, opset=9, exporter="torchscript", check=False)
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err and len(out + err) < 2000, (len(out), len(err))
    message = str(info.value)
    assert len(message) < 600, message
    assert "graph(" not in message and "%" not in message
    assert "TorchScript-based exporter" in message and "opset 9" in message
    assert "--opset 18" in message and "--exporter dynamo" in message
    log = tmp_path / "run" / "model.onnx.export-error.txt"
    assert str(log) in message
    text = log.read_text()
    assert "Torch IR graph at exception" in text and "get_pool_ceil_padding" in text
    assert not output.exists()


def test_the_command_says_it_in_a_few_lines(model, tmp_path, capfd):
    """``visionkit export --exporter torchscript --opset 9`` printed the dump before its error."""
    ckpt = tmp_path / "best.safetensors"  # visionkit.load reads it as a checkpoint
    export(model, "safetensors", ckpt, check=False)
    argv = ["export", "--checkpoint", str(ckpt), "--format", "onnx", "--opset", "9"]
    assert main([*argv, "--exporter", "torchscript", "--no-check"]) == 1
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err and "Traceback" not in err
    assert len(err.splitlines()) <= 4, err
    assert "error: ONNX export with the TorchScript-based exporter at opset 9 failed" in err
