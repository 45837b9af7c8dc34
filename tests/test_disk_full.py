"""A full disk (``ENOSPC``) or quota (``EDQUOT``) while visionkit writes a file: a
:class:`DiskFullError` naming the file and the space needed, the previous file kept, no
temporary file left, and at the command line a message without a traceback."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest
import torch

from tests.helpers import detection_config, make_coco, run
from visionkit.checkpoint import load_checkpoint, save_atomic, write_atomic
from visionkit.errors import DiskFullError

pytestmark = pytest.mark.reliability

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
TAIL = "Free some space or write elsewhere, and run again"


def full_after(nbytes: int):
    """A writer that writes ``nbytes`` and then finds the disk full, as ``write`` does."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(b"x" * nbytes)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))

    return write


def test_a_full_disk_keeps_the_previous_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("previous")
    with pytest.raises(DiskFullError) as info:
        write_atomic(target, full_after(300_000))
    message = str(info.value)
    assert message.startswith(
        f"no space left on device while writing {target} (needed over 0.3 MB, "
    )
    assert message.endswith(f" MB free); nothing was replaced (the previous file is kept). {TAIL}")
    assert isinstance(info.value.__cause__, OSError)
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_checkpoint_on_a_full_disk_names_its_size_and_the_old_one_still_loads(
    tmp_path, monkeypatch
):
    target = tmp_path / "best.ckpt"
    save_atomic({"w": torch.ones(3)}, target)

    def torch_save(obj, f):  # torch.save raises a RuntimeError from the OSError of the write
        f.write(b"PK" * 1000)
        try:
            raise ENOSPC
        except OSError:
            raise RuntimeError(
                "[enforce fail at inline_container.cc:672] . unexpected pos"
            ) from None

    monkeypatch.setattr(torch, "save", torch_save)
    with pytest.raises(DiskFullError) as info:
        save_atomic({"w": torch.zeros(1_000_000)}, target)  # 4 MB of float32
    assert str(info.value).startswith(
        f"no space left on device while writing {target} (needed ~4.0 MB, "
    )
    assert (load_checkpoint(target)["w"] == 1).all()
    assert os.listdir(tmp_path) == ["best.ckpt"]


def test_a_quota_and_a_library_error_are_recognised_and_a_new_file_is_not_created(tmp_path):
    target = tmp_path / "sub" / "model.safetensors"

    def quota(tmp: Path) -> None:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    with pytest.raises(DiskFullError) as info:
        write_atomic(target, quota, size_hint=2_500_000)
    assert str(info.value).startswith(
        f"disk quota exceeded while writing {target} (needed ~2.5 MB, "
    )
    assert str(info.value).endswith(f"; nothing was replaced (no file was created). {TAIL}")

    def safetensors_like(tmp: Path) -> None:  # the text safetensors' own error carries
        raise RuntimeError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    with pytest.raises(DiskFullError, match="^no space left on device while writing"):
        write_atomic(target, safetensors_like)
    assert not target.exists() and os.listdir(target.parent) == []


def test_other_write_errors_pass_through_unchanged(tmp_path):
    def denied(tmp: Path) -> None:
        tmp.write_text("partial")
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        write_atomic(tmp_path / "x.json", denied)
    assert os.listdir(tmp_path) == []


def _fill_disk_on_write_text(monkeypatch):
    """Every ``Path.write_text`` (the json writers) writes half its text, then fails."""

    def write_text(self, data, encoding=None, errors=None, newline=None):
        with open(self, "w", encoding=encoding) as f:
            f.write(data[: len(data) // 2])
        raise ENOSPC

    monkeypatch.setattr(Path, "write_text", write_text)


def _fill_disk_on_stream_writes(monkeypatch):
    """Every write of the streamed json files (``JsonArrayStream``) writes half its bytes,
    then fails as a full disk does."""
    from visionkit.inference.outputs import JsonArrayStream

    opened = JsonArrayStream.__init__

    class FullDisk:
        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            raise ENOSPC

        def __getattr__(self, name):
            return getattr(self.file, name)

    def init(self, path):
        opened(self, path)
        self.file = FullDisk(self.file)

    monkeypatch.setattr(JsonArrayStream, "__init__", init)


def test_predictions_on_a_full_disk_keep_the_previous_json(tmp_path, monkeypatch):
    import visionkit
    from tests.helpers import write_image
    from visionkit.inference.predict import predict_files

    model = visionkit.create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
                "neck": {"name": "fpn", "out_channels": 8, "min_level": 3, "max_level": 5},
                "heads": {"det": {"name": "fcos", "num_convs": 1}},
            }
        },
        label_names={"instances": ["a", "b"]},
    )
    image = write_image(tmp_path / "in" / "1.png")
    out = tmp_path / "out"
    predict_files(model, [image], out, progress=False, draw=False)
    before = {name: (out / name).read_text() for name in ("images.json", "predictions.json")}
    _fill_disk_on_stream_writes(monkeypatch)
    with pytest.raises(DiskFullError) as info:
        predict_files(model, [image], out, progress=False, draw=False)
    assert re.match(
        rf"no space left on device while writing {re.escape(str(out))}/(images|predictions)\.json",
        str(info.value),
    )
    assert {name: (out / name).read_text() for name in before} == before
    assert sorted(os.listdir(out)) == ["images.json", "predictions.json"]  # no temporary file


def test_cli_convert_on_a_full_disk_prints_the_message_without_a_traceback(
    tmp_path, monkeypatch, capsys
):
    from tests.data.test_convert import small_yolo

    src = small_yolo(tmp_path / "yolo")
    out = tmp_path / "coco" / "train.json"
    assert run(["convert", "--from", "yolo", src, out], capsys)[0] == 0
    before = out.read_text()
    _fill_disk_on_write_text(monkeypatch)
    code, _, err = run(["convert", "--from", "yolo", "--overwrite", src, out], capsys)
    assert code == 1
    assert err.startswith(f"error: no space left on device while writing {out.resolve()} (needed")
    assert f"nothing was replaced (the previous file is kept). {TAIL}" in err
    assert out.read_text() == before and json.loads(before)["images"]
    assert os.listdir(out.parent) == ["train.json"]


def test_cli_export_on_a_full_disk_keeps_the_previous_export(trained, tmp_path, capsys):
    from safetensors import SafetensorError

    import visionkit.export.safetensors as export_safetensors

    out = tmp_path / "model.safetensors"
    argv = ["export", "--checkpoint", trained["ckpt"], "--format", "safetensors"]
    argv += ["--output", out, "--no-check", "--image-size", "64"]
    assert run(argv, capsys)[0] == 0
    before = out.read_bytes()

    def save_file(tensors, filename, metadata=None):  # what safetensors raises on ENOSPC
        Path(filename).write_bytes(b"\0" * 100)
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(export_safetensors, "save_file", save_file)
        code, _, err = run(argv, capsys)
    assert code == 1
    started, message = err.split("\n", 1)  # what export is doing, then the error
    assert started.startswith("export: exporting ")
    assert message.startswith(f"error: no space left on device while writing {out} (needed over ")
    assert out.read_bytes() == before and os.listdir(tmp_path) == ["model.safetensors"]


def test_cli_train_on_a_full_disk_names_the_checkpoint_without_a_traceback(
    tmp_path, monkeypatch, capsys
):
    data = make_coco(tmp_path / "data")
    config = detection_config(tmp_path / "config.yaml", data)

    def torch_save(obj, f):
        raise ENOSPC

    monkeypatch.setattr(torch, "save", torch_save)
    code, _, err = run(["train", "--config", config, "--output-dir", tmp_path / "run"], capsys)
    assert code == 1
    assert "error: no space left on device while writing " in err
    assert ".ckpt (needed ~" in err and "nothing was replaced (no file was created)" in err
    assert not list((tmp_path / "run").rglob("*.ckpt")) and not list(tmp_path.rglob(".*.tmp"))
