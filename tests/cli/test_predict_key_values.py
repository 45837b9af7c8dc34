"""``visionkit predict``'s values that look like Ultralytics' ``KEY=VALUE``: an input path
or glob holding ``=`` is read, a ``KEY=VALUE`` after ``--input`` / ``--classes`` is answered
with the command that works."""

import shlex

import pytest

from visionkit.cli import build_parser, main


def error_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(["predict", "--checkpoint", "x.ckpt", *argv])
    assert info.value.code == 2
    return capsys.readouterr().err


def test_a_glob_or_folder_named_key_value_is_an_input(tmp_path, monkeypatch):
    """``--input 'model=v2/*.png'`` was refused: "did you mean --input --checkpoint
    'v2/*.png'"."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model=v2").mkdir()
    (tmp_path / "model=v2" / "a.png").write_bytes(b"")
    (tmp_path / "model=[v2]").mkdir()  # glob would not match its own name
    args = ["--checkpoint", "x.ckpt", "--input", "model=v2/*.png", "model=[v2]", "conf=0.5/"]
    with pytest.raises(SystemExit):  # conf=0.5/ names nothing: a KEY=VALUE
        build_parser().parse_args(["predict", *args])
    args[-1] = "model=v2"
    parsed = build_parser().parse_args(["predict", *args])
    assert parsed.input == ["model=v2/*.png", "model=[v2]", "model=v2"]


def test_a_key_value_among_inputs_is_answered_with_one_input_option(tmp_path, capsys, monkeypatch):
    """``--input photos source=more`` was told ``--input photos --input more``, and argparse
    keeps only the last ``--input``: ``--input photos more``."""
    monkeypatch.chdir(tmp_path)
    err = error_of(["--input", "photos", "source=more", "conf=0.5", "source=x"], capsys)
    hint = err.rstrip().splitlines()[-1]
    assert hint == "  visionkit predict --checkpoint x.ckpt --input photos more x --conf 0.5"
    parsed = build_parser().parse_args(["predict", *hint.split()[2:]])
    assert parsed.input == ["photos", "more", "x"]
    err = error_of(["--input", "photos", "model=v2/*.png"], capsys)  # matches nothing
    assert "unrecognized arguments: model=v2/*.png" in err


def test_a_key_value_after_classes_is_answered(capsys, tmp_path, monkeypatch):
    """``--classes circle conf=0.5`` ended in "no such class 'conf=0.5'"."""
    monkeypatch.chdir(tmp_path)
    err = error_of(["--input", "photos", "--classes", "circle", "conf=0.5"], capsys)
    assert "unrecognized arguments: conf=0.5" in err
    assert err.rstrip().endswith(
        "  visionkit predict --checkpoint x.ckpt --input photos --classes circle --conf 0.5"
    )


def test_line_width_names_a_function_that_takes_a_width(capsys):
    """``--line-width`` pointed at ``draw_predictions``, which takes no width."""
    import inspect

    import torchvision.utils

    err = error_of(["--input", "photos", "--line-width", "3"], capsys)
    assert "torchvision.utils.draw_bounding_boxes(image, boxes, width=N)" in err
    assert "width" in inspect.signature(torchvision.utils.draw_bounding_boxes).parameters


def test_a_key_value_glob_matching_nothing_is_told_so_not_taken_for_the_checkpoint(
    capsys, tmp_path, monkeypatch
):
    """``--input photos model=v2/*.png`` (a folder model=v2 that does not exist) was told
    "did you mean --checkpoint x.ckpt --input photos --checkpoint 'v2/*.png'": a second
    checkpoint, which replaces the first, and a glob for it."""
    monkeypatch.chdir(tmp_path)
    err = error_of(["--input", "photos", "model=v2/*.png"], capsys)
    *_, command, left = err.rstrip().splitlines()
    assert command == "  visionkit predict --checkpoint x.ckpt --input photos"
    assert left == (
        "left out model=v2/*.png (--checkpoint is given already; as a file or glob pattern it "
        "matches nothing)"
    )
    with pytest.raises(SystemExit):  # no --checkpoint: a glob is no checkpoint either
        main(["predict", "--input", "photos", "model=v2/*.png"])
    *_, command, left = capsys.readouterr().err.rstrip().splitlines()
    assert command == "  visionkit predict --input photos --checkpoint CHECKPOINT"
    assert left.startswith("left out model=v2/*.png (a glob is no --checkpoint; ")
    err = error_of(["--input", "photos", "model=other.ckpt"], capsys)  # a second checkpoint
    assert err.rstrip().endswith("left out model=other.ckpt (--checkpoint is given already; "
                                 "as a file or glob pattern it matches nothing)")  # fmt: skip


def test_abbreviated_options_are_taken_by_every_subcommand_and_read_by_the_hints(
    capsys, tmp_path, monkeypatch
):
    """``--inp photos source=more`` was told ``--inp photos --input more`` (the second
    --input replaces the first): the hints did not know --inp is --input. Every subcommand
    takes unambiguous abbreviations, as argparse does by default."""
    import argparse

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert parser.allow_abbrev and all(p.allow_abbrev for p in commands.choices.values())
    monkeypatch.chdir(tmp_path)
    err = error_of(["--inp", "photos", "source=more"], capsys)
    assert err.rstrip().endswith("  visionkit predict --checkpoint x.ckpt --inp photos more")
    parsed = build_parser().parse_args(["predict", "--check", "x.ckpt", "--inp", "a", "b"])
    assert (parsed.checkpoint, parsed.input) == ("x.ckpt", ["a", "b"])
    with pytest.raises(SystemExit):  # --chec is --checkpoint: given already
        main(["predict", "--chec", "x.ckpt", "--input", "photos", "model=y.ckpt"])
    assert "left out model=y.ckpt (--checkpoint is given already" in capsys.readouterr().err


def last_command(err: str, command: str) -> list[str]:
    """The arguments of the suggested command (the line after "did you mean:")."""
    lines = err.rstrip().splitlines()
    line = lines[lines.index(next(li for li in lines if li.endswith("did you mean:"))) + 1]
    assert line.startswith(f"  visionkit {command} ")
    return shlex.split(line)[2:]


def test_an_option_written_with_equals_is_split_to_take_more_values(capsys, tmp_path, monkeypatch):
    """``--inp=photos source=more`` was told ``--inp=photos more``, which argparse refuses (an
    ``=`` form takes one value): ``--inp photos more``; ``--input=photos`` likewise."""
    monkeypatch.chdir(tmp_path)
    for written in ("--inp", "--input"):
        with pytest.raises(SystemExit):
            main(["predict", f"{written}=photos", "source=more", "--checkpoint", "x.ckpt"])
        hint = last_command(capsys.readouterr().err, "predict")
        assert hint == [written, "photos", "more", "--checkpoint", "x.ckpt"]
        parsed = build_parser().parse_args(["predict", *hint])
        assert parsed.input == ["photos", "more"]


def test_list_values_are_written_in_each_options_own_syntax(capsys, tmp_path, monkeypatch):
    """``imgsz=[320,320]`` (Ultralytics' list) was left out as "a glob is no --imgsz", and
    ``predict imgsz=[640,480]`` offered ``--imgsz '[640,480]'``, which predict refuses: export
    takes ``320x320``, predict ``640,480``; a one-value option given a list says so."""
    from visionkit.inference.options import parse_imgsz

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["export", "--checkpoint", "x.ckpt", "imgsz=[320,320]", "format=onnx"])
    hint = last_command(capsys.readouterr().err, "export")
    assert hint == ["--checkpoint", "x.ckpt", "--imgsz", "320x320", "--format", "onnx"]
    assert build_parser().parse_args(["export", *hint]).image_size == (320, 320)
    with pytest.raises(SystemExit):
        main(["export", "--checkpoint", "x.ckpt", "imgsz=320,320", "format=onnx"])
    assert last_command(capsys.readouterr().err, "export")[3] == "320x320"
    err = error_of(["--input", "p", "imgsz=[640,480]", "classes=[0,2]", "device=[0,1]"], capsys)
    hint = last_command(err, "predict")
    assert hint == ["--checkpoint", "x.ckpt", "--input", "p", "--imgsz", "640,480",
                    "--classes", "0", "2"]  # fmt: skip
    parsed = build_parser().parse_args(["predict", *hint])
    assert parse_imgsz(parsed.imgsz) == (640, 480) and parsed.classes == ["0", "2"]
    assert err.rstrip().endswith(
        "left out device=[0,1] (--device takes one value, not a list: e.g. --device 0)"
    )
    assert "glob" not in err


def test_flags_always_so_here_are_not_in_the_suggested_command(capsys, tmp_path, monkeypatch):
    """``--save source=more`` was told a command with ``--save``, which is ambiguous here
    (--save-txt, --save-conf, ...); its line says it is always so, and the command leaves it
    out."""
    monkeypatch.chdir(tmp_path)
    err = error_of(["--input", "photos", "--save", "source=more"], capsys)
    assert "left out --save (always so here" in err  # said once, with the command
    hint = last_command(err, "predict")
    assert hint == ["--checkpoint", "x.ckpt", "--input", "photos", "more"]
