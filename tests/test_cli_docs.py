"""docs/cli/ is the ``visionkit`` parser rendered by tools/gen_cli_docs.py: one page per
subcommand with every option; a page that differs from the parser fails here with the command
that regenerates it."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

from visionkit.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
CLI_DOCS = ROOT / "docs" / "cli"


def _load_tool():
    spec = importlib.util.spec_from_file_location(
        "gen_cli_docs", ROOT / "tools" / "gen_cli_docs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_tool()
PAGES = gen.render_pages()


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_is_the_rendered_parser(name):
    path = CLI_DOCS / name
    assert path.is_file(), f"docs/cli/{name} is missing: run python tools/gen_cli_docs.py"
    assert path.read_text(encoding="utf-8") == PAGES[name], (
        f"docs/cli/{name} is out of date: run python tools/gen_cli_docs.py"
    )


def test_no_page_of_a_command_that_is_gone():
    stale = [p.name for p in gen.stale_pages(CLI_DOCS, PAGES)]
    assert not stale, f"docs/cli/ has pages of no command {stale}: run python tools/gen_cli_docs.py"


def _parsers(parser: argparse.ArgumentParser):
    """``parser`` and every (nested) subcommand parser, depth first."""
    yield parser
    for _, _, sub in gen.subcommands(parser):
        yield from _parsers(sub)


def test_every_subcommand_and_option_is_on_its_page():
    top = build_parser()
    commands = gen.subcommands(top)
    assert {f"{name}.md" for name, _, _ in commands} | {"index.md"} == set(PAGES)
    for name, _, sub in commands:
        assert f"]({name}.md)" in PAGES["index.md"], f"index.md does not link {name}.md"
        page = PAGES[f"{name}.md"]
        for parser in _parsers(sub):
            assert gen.usage(parser) in page, f"{name}.md lacks the usage of {parser.prog}"
            for action in parser._actions:
                if action.help == argparse.SUPPRESS or gen._is_subcommands(action):
                    continue
                for flag in action.option_strings:
                    assert f"`{flag}" in page or f", {flag}" in page, f"{name}.md lacks {flag}"
                if not action.option_strings:
                    assert f"`{gen.invocation(parser, action)}`" in page, (
                        f"{name}.md lacks the argument {action.dest}"
                    )


def _toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool", description="The tool.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run it",
        description="Run the thing on <name>_x files.\n\n"
        "MODE:  aligned\n       columns\n\nAfter that.\n\nexample: tool run --mode fast a.png",
        epilog="example: tool run --no-color b.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("files", nargs="+", metavar="FILE", help="images | folders")
    run.add_argument("--mode", required=True, metavar="M", choices=["fast", "slow"], help="how")
    run.add_argument("--size", type=int, default=640, help="side (default %(default)s)")
    run.add_argument("--color", action=argparse.BooleanOptionalAction, default=True, help="c")
    run.add_argument("--hidden", help=argparse.SUPPRESS)
    actions = run.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("now", help="at once", description="Right now.")
    return parser


def test_a_page_has_description_usage_table_examples_and_nested_commands():
    pages = gen.render_pages(_toy_parser())
    assert set(pages) == {"index.md", "run.md"}
    page = pages["run.md"]
    assert page.startswith(
        f"# `tool run`\n\n{gen.MARKER}\n\nRun the thing on \\<name\\>\\_x files."
    )
    # aligned columns kept as written, paragraphs in their order
    assert "```text\nMODE:  aligned\n       columns\n```\n\nAfter that.\n\n```text\nusage:" in page
    assert "usage: tool run [-h] [--mode M] " not in page  # required options have no brackets
    assert "usage: tool run [-h] --mode M [--size SIZE] [--color | --no-color]" in page
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert rows[:2] == [
        "| `FILE [FILE ...]` | | images \\| folders |",
        "| `now` | | at once: [`tool run now`](#tool-run-now) |",
    ]
    assert "| `--mode M` | required | how (choices: `fast`, `slow`) |" in rows
    assert "| `--size SIZE` | `640` | side (default 640) |" in rows
    assert "| `--color, --no-color` | `--color` | c |" in rows
    assert "--hidden" not in page
    assert (
        "## Examples" in page
        and "```bash\ntool run --mode fast a.png\ntool run --no-color b.png\n```" in page
    )
    assert (
        "## `tool run now`\n\nRight now." in page
    )  # not argparse's "tool run FILE [FILE ...] now"
    assert "| [`tool run`](run.md) | run it |" in pages["index.md"]


def test_check_reports_missing_changed_and_stale_pages_and_writing_fixes_them(tmp_path, capsys):
    assert gen.main(["--check", "--output", str(tmp_path)]) == 1
    assert "run python tools/gen_cli_docs.py" in capsys.readouterr().out
    stale = tmp_path / "gone.md"
    stale.write_text(f"# gone\n\n{gen.MARKER}\n", encoding="utf-8")
    hand_written = tmp_path / "notes.md"
    hand_written.write_text("# notes\n", encoding="utf-8")
    assert gen.main(["--output", str(tmp_path)]) == 0
    assert not stale.exists() and hand_written.exists()  # only generated pages are removed
    assert gen.main(["--check", "--output", str(tmp_path)]) == 0
    (tmp_path / "train.md").write_text("# old\n", encoding="utf-8")
    stale.write_text(f"# gone\n\n{gen.MARKER}\n", encoding="utf-8")
    capsys.readouterr()
    assert gen.main(["--check", "--output", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "train.md" in out and "gone.md" in out and "notes.md" not in out
