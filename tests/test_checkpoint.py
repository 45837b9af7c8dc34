"""visionkit/checkpoint.py: ``write_atomic``, the one atomic file writer, and ``save_atomic``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from visionkit.checkpoint import is_temporary_file_of, load_checkpoint, save_atomic, write_atomic


def test_write_atomic_writes_through_a_temporary_file_in_the_same_folder(tmp_path):
    target = tmp_path / "new" / "notes.txt"  # the folder is created
    seen = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.parent == target.parent and tmp != target
        assert is_temporary_file_of(tmp.name, target.name)
        assert not target.exists()  # nothing visible before the rename
        tmp.write_text("hello")

    assert write_atomic(target, write) == target
    assert target.read_text() == "hello" and len(seen) == 1
    assert os.listdir(target.parent) == ["notes.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_an_exception_inside_write_leaves_the_previous_file_intact_and_no_temp_file(tmp_path):
    target = tmp_path / "data.json"
    write_atomic(target, lambda tmp: tmp.write_text('{"version": 1}'))

    def fails_half_way(tmp: Path) -> None:
        tmp.write_text('{"vers')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, fails_half_way)
    assert target.read_text() == '{"version": 1}'
    assert os.listdir(tmp_path) == ["data.json"]

    def interrupted(tmp: Path) -> None:  # a BaseException, as Ctrl-C raises
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, interrupted)
    assert target.read_text() == '{"version": 1}'
    assert os.listdir(tmp_path) == ["data.json"]


def test_write_atomic_syncs_the_file_and_then_the_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc") else fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    target = tmp_path / "file.bin"
    write_atomic(target, lambda tmp: tmp.write_bytes(b"x"))
    if not os.path.exists("/proc"):
        pytest.skip("no /proc to name the synced file descriptors")
    assert len(synced) == 2
    assert is_temporary_file_of(Path(synced[0]).name, "file.bin")
    assert synced[1] == str(tmp_path)


def test_is_temporary_file_of_recognises_only_the_writers_names():
    assert is_temporary_file_of(".annotations.json.x1y2z3.tmp", "annotations.json")
    assert not is_temporary_file_of("annotations.json", "annotations.json")
    assert not is_temporary_file_of(".other.json.abc.tmp", "annotations.json")


def test_save_atomic_round_trips_through_load_checkpoint(tmp_path):
    path = tmp_path / "ckpt" / "last.ckpt"
    save_atomic({"step": torch.tensor(3), "name": "run"}, path)
    loaded = load_checkpoint(path)
    assert int(loaded["step"]) == 3 and loaded["name"] == "run"
    assert os.listdir(path.parent) == ["last.ckpt"]
