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


@pytest.mark.parametrize(
    "command, argv, kept, off",
    [
        ("predict", ["source=photos", "--half", "True"], ["--half"], None),
        ("predict", ["source=photos", "--save-txt", "True"], ["--save-txt"], None),
        ("predict", ["source=photos", "--save-txt=yes"], ["--save-txt"], None),
        ("predict", ["source=photos", "--half", "False"], [], "--half False"),
        ("export", ["format=onnx", "--half", "True"], ["--half"], None),
        ("export", ["format=onnx", "--half", "no", "--nms"], ["--nms"], "--half no"),
    ],
)
def test_a_switch_offered_here_loses_its_true_or_false(
    capsys, monkeypatch, tmp_path, command, argv, kept, off
):
    """``predict source=photos --half True`` was told ``... --half True``, which does not parse
    (a switch takes no value): a true value is left out and the switch kept, a false value
    takes the switch with it."""
    monkeypatch.chdir(tmp_path)
    err = error_of(command, argv, capsys)
    hint = last_command(err, command)
    given = ["--input", "photos"] if command == "predict" else ["--format", "onnx"]
    assert hint == ["--checkpoint", "x.ckpt", *given, *kept], err
    build_parser().parse_args([command, *hint])  # runs as suggested
    if off is not None:
        assert f"left out {off} (a switch: off unless given)" in err


def test_the_missing_option_hint_does_not_take_a_switchs_true_for_an_input(
    capsys, monkeypatch, tmp_path
):
    """``predict --half True photos`` was told ``--half --input True photos``-like commands:
    the ``True`` of a switch read as the missing ``--input``."""
    monkeypatch.chdir(tmp_path)
    for words, switch in ((["True"], ["--half"]), (["False"], [])):
        err = error_of("predict", ["--half", *words, "photos"], capsys)
        assert "'photos' was given without its option" in err, err
        assert last_command(err, "predict") == [
            "--checkpoint",
            "x.ckpt",
            *switch,
            "--input",
            "photos",
        ]
