"""The TorchScript-based ONNX exporter, on a failure (opset 9 cannot export the backbone's
``ceil_mode`` max-pool at a dynamic size), printed its whole IR graph to the terminal (95 kB
of ``Torch IR graph at exception: graph(%input.1 : Float(...`` from torch's C++ log, which a
Python redirect does not catch) and raised a 780-character message quoting the graph. Now the
error is one short sentence naming the exporter and the opset with what to try, and the full
output is kept in a file beside the output."""

from __future__ import annotations

from pathlib import Path

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


CLOSED_STDIO = """
import os, sys
from tests.export.test_end_to_end import HEADS, LABELS, tiny_model
import visionkit.export.onnx as onnx_export
from visionkit.export import export

def dynamo_fails(*args, **kwargs):
    raise RuntimeError("dynamo is not tried here")

model = tiny_model({"det": HEADS["det"]}, {"instances": LABELS["instances"]})
folder, closed = sys.argv[1], [int(fd) for fd in sys.argv[2].split(",")]
sys.stdout.flush(); sys.stderr.flush()
for fd in closed:  # as under pythonw, or a daemon without stdio
    os.close(fd)
sys.stdout = None if 1 in closed else sys.stdout
sys.stderr = None if 2 in closed else sys.stderr
onnx_export._onnx_dynamo = dynamo_fails  # --exporter auto: the fallback
lines = []
for exporter in ("torchscript", "auto"):
    try:
        report = export(model, "onnx", f"{folder}/{exporter}.onnx", exporter=exporter, check=False)
        lines.append(f"{exporter}: written by {report.exporter}")
    except BaseException as err:
        lines.append(f"{exporter}: {type(err).__name__}: {err}")
with open(f"{folder}/result.txt", "w") as out:
    out.write("\\n".join(lines))
"""


@pytest.mark.parametrize("closed", ["1,2", "2"])
def test_an_export_without_stdout_and_stderr_is_written(tmp_path, closed):
    """Under pythonw or a daemon without stdio (descriptors 1 and 2 closed), every export
    through the TorchScript-based exporter failed with ``OSError: [Errno 9] Bad file
    descriptor`` from capturing its output (and the ``auto`` fallback let it escape raw)."""
    import os
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])  # this checkout
    env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}
    script = [sys.executable, "-c", CLOSED_STDIO, str(tmp_path), closed]
    subprocess.run(script, env=env, check=True, timeout=300, stdin=subprocess.DEVNULL)
    result = (tmp_path / "result.txt").read_text().splitlines()
    assert result == ["torchscript: written by torchscript", "auto: written by torchscript"]


def test_a_capture_that_cannot_be_set_up_leaves_the_export_alone(model, tmp_path, monkeypatch):
    """Where a descriptor cannot be redirected (or no temporary file made), nothing is
    captured, the copies made are closed, and the export is written."""
    import os
    import tempfile

    from visionkit.export import exporter_output

    fds = "/proc/self/fd"
    count = (lambda: len(os.listdir(fds))) if os.path.isdir(fds) else (lambda: 0)
    before = count()
    real_dup2, calls = os.dup2, []

    def dup2_fails_on_stderr(fd, fd2, *args, **kwargs):  # stdout redirected, then stderr fails
        calls.append(fd2)
        if fd2 == 2 and len(calls) == 2:
            raise OSError(24, "Too many open files")
        return real_dup2(fd, fd2, *args, **kwargs)

    monkeypatch.setattr(exporter_output.os, "dup2", dup2_fails_on_stderr)
    report = export(model, "onnx", tmp_path / "a.onnx", exporter="torchscript", check=False)
    monkeypatch.setattr(exporter_output.os, "dup2", real_dup2)
    assert report.exporter == "torchscript" and (tmp_path / "a.onnx").is_file()
    assert calls[:3] == [1, 2, 1]  # stdout put back at once
    assert count() == before

    def no_temporary_file(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_temporary_file)
    report = export(model, "onnx", tmp_path / "b.onnx", exporter="torchscript", check=False)
    assert report.exporter == "torchscript" and (tmp_path / "b.onnx").is_file()
    assert count() == before


def test_a_later_success_removes_the_failures_log(model, tmp_path):
    """``model.onnx.export-error.txt`` of a failed export stayed beside the ``model.onnx`` a
    later export of the same output wrote, telling of a failure that no longer holds."""
    output = tmp_path / "model.onnx"
    with pytest.raises(ExportError):
        export(model, "onnx", output, opset=9, exporter="torchscript", check=False)
    log = tmp_path / "model.onnx.export-error.txt"
    assert log.is_file()
    export(model, "onnx", output, exporter="torchscript", check=False)
    assert output.is_file() and not log.exists()
