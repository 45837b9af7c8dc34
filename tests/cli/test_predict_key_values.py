"""``visionkit predict``'s values that look like Ultralytics' ``KEY=VALUE``: an input path
or glob holding ``=`` is read, a ``KEY=VALUE`` after ``--input`` / ``--classes`` is answered
with the command that works."""

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
