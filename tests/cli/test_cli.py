"""The ``visionkit`` command: help texts of every subcommand, and ``visionkit list``."""

from __future__ import annotations

import argparse

import pytest

import visionkit
from visionkit.cli import build_parser, main


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser, including those added from ``visionkit/cli/``."""
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_the_known_subcommands_are_there():
    assert {"train", "eval", "predict", "make-shapes", "list"} <= set(subcommands())


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_subcommand_help_has_an_example_and_every_option_a_description(name):
    parser = subcommands()[name]
    text = parser.format_help()
    assert "example: visionkit " in text, f"visionkit {name} --help shows no example"
    undocumented = [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS
    ]
    assert not undocumented, f"visionkit {name}: options without help: {undocumented}"


def test_top_level_help_has_an_example_and_describes_its_options():
    parser = build_parser()
    assert "example: visionkit " in parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):  # one line per subcommand
            for choice in action._choices_actions:
                assert choice.help and choice.help.strip(), f"{choice.dest}: no one-line help"
        else:
            assert action.help and action.help.strip(), action.option_strings or action.dest


@pytest.mark.parametrize("kind", ["backbones", "heads", "necks", "datasets"])
def test_list_prints_the_registered_names_and_a_count(kind, capsys):
    assert main(["list", kind]) == 0
    out, err = capsys.readouterr()
    expected = {
        "backbones": visionkit.list_backbones,
        "heads": visionkit.list_heads,
        "necks": visionkit.list_necks,
        "datasets": lambda: visionkit.registry.DATASETS.names(),
    }[kind]()
    assert out.splitlines() == expected
    noun = kind if len(expected) != 1 else kind[:-1]  # "1 neck", "7 heads"
    assert err.strip().splitlines()[-1] == f"{len(expected)} {noun}"


def test_list_filters_with_an_fnmatch_pattern(capsys):
    assert main(["list", "heads", "fcos*"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["fcos", "fcos_mask"]
    assert "2 heads matching 'fcos*'" in err
    assert main(["list", "backbones", "torchvision/resnet1?"]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == ["torchvision/resnet18"]


def test_list_exits_1_when_a_pattern_matches_nothing(capsys):
    assert main(["list", "necks", "nothing*"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "0 necks matching 'nothing*'" in err


def test_list_rejects_an_unknown_kind(capsys):
    with pytest.raises(SystemExit) as info:
        main(["list", "optimizers"])
    assert info.value.code == 2
    assert "invalid choice: 'optimizers'" in capsys.readouterr().err


@pytest.mark.parametrize("tool", ["train", "eval", "predict", "export", "benchmark"])
def test_each_tools_wrapper_is_its_visionkit_subcommand(tool):
    """``python tools/<name>.py --help`` prints the help of ``visionkit <name>``."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, f"tools/{tool}.py", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: visionkit {tool} ")
