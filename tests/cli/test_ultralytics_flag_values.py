"""The command suggested for Ultralytics' arguments leaves out the flags visionkit does not
offer together with their values (``--line-width 3``: not a stray ``3``), and puts a renamed
flag's value under its option here (``--vid-stride 2``: ``--every 2``)."""

from __future__ import annotations

import pytest

from tests.cli.test_predict_key_values import last_command
from visionkit.cli import build_parser, main


def error_of(command: str, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main([command, "--checkpoint", "x.ckpt", *argv])
    assert info.value.code == 2
    return capsys.readouterr().err


def test_a_flag_not_offered_is_left_out_with_its_value(capsys, tmp_path, monkeypatch):
    """``--line-width 3 source=photos`` was told ``... --line-width 3 --input photos``: the
    flag visionkit refuses, kept with its value."""
    monkeypatch.chdir(tmp_path)
    err = error_of("predict", ["--line-width", "3", "source=photos", "conf=0.5"], capsys)
    assert "left out --line-width 3 (not offered: boxes are drawn" in err
    hint = last_command(err, "predict")
    assert hint == ["--checkpoint", "x.ckpt", "--input", "photos", "--conf", "0.5"]
    assert build_parser().parse_args(["predict", *hint]).input == ["photos"]


def test_a_switch_takes_only_a_true_or_false_with_it(capsys, tmp_path, monkeypatch):
    """A switch (``--show``) leaves out a ``False`` after it, not an input; ``--x=3`` is one
    argument."""
    monkeypatch.chdir(tmp_path)
    argv = ["--show", "False", "--line-width=4", "--save-frames", "more", "source=photos"]
    err = error_of("predict", argv, capsys)
    assert last_command(err, "predict") == ["--checkpoint", "x.ckpt", "more", "--input", "photos"]
    assert "left out --show False (not offered" in err
    assert "left out --line-width=4 (not offered" in err


def test_a_renamed_flag_gives_its_value_to_the_option_here(capsys, tmp_path, monkeypatch):
    """``--vid-stride 2 source=v.mp4`` kept ``--vid-stride 2``, which visionkit refuses."""
    monkeypatch.chdir(tmp_path)
    for argv in (["--vid-stride", "2"], ["--vid-stride=2"]):
        err = error_of("predict", [*argv, "source=v.mp4"], capsys)
        hint = last_command(err, "predict")
        assert hint == ["--checkpoint", "x.ckpt", "--every", "2", "--input", "v.mp4"]
        assert build_parser().parse_args(["predict", *hint]).every == 2


def test_export_leaves_out_its_flags_values_too(capsys, tmp_path, monkeypatch):
    """``visionkit export --workspace 4 --dynamic True format=onnx`` kept both flags and
    their values in the suggested command."""
    monkeypatch.chdir(tmp_path)
    err = error_of("export", ["--workspace", "4", "--dynamic", "True", "format=onnx"], capsys)
    hint = last_command(err, "export")
    assert hint == ["--checkpoint", "x.ckpt", "--format", "onnx"]
