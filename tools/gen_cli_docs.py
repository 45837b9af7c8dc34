#!/usr/bin/env python
"""Write docs/cli/, one page per ``visionkit`` subcommand, rendered from the argparse parser.

python tools/gen_cli_docs.py           # rewrite docs/cli/*.md (and remove pages of gone commands)
python tools/gen_cli_docs.py --check   # exit 1 when a page is missing, out of date or stale

The parser that ``visionkit`` runs (:func:`visionkit.cli.build_parser`) is the single source:
each page holds the subcommand's description, its usage line as ``--help`` prints it at
100 columns, a table of its arguments and options (flags, default, help) and its examples
(the ``example:`` lines of the description and epilog). ``docs/cli/index.md`` lists the
commands and the global options. ``tests/test_cli_docs.py`` fails when a page differs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "cli"
COMMAND = "python tools/gen_cli_docs.py"
WIDTH = 100  # the usage line is wrapped as --help wraps it in a terminal this wide
MARKER = (
    f"<!-- Generated from the argparse parser by {COMMAND}: do not edit by hand; "
    "run it again after changing an option. -->"
)
EXAMPLE = re.compile(r"^examples?:\s*", re.IGNORECASE)
LAYOUT = re.compile(r"^\S[^:]*:\s{2,}\S")  # "VOC:  SRC/..." aligned columns: keep as written
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def escape(text: str) -> str:
    """``text`` as literal Markdown: characters that would start markup, emphasis or a table
    cell are backslash-escaped (``_`` only where it could emphasise, i.e. not inside a word)."""
    text = re.sub(r"([\\`*\[\]<>|])", r"\\\1", text)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def code(text: str) -> str:
    """``text`` as an inline code span that is safe inside a table cell."""
    return f"`{text.replace('|', chr(92) + '|')}`"


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return parser.formatter_class(prog=parser.prog, width=WIDTH)


def usage(parser: argparse.ArgumentParser) -> str:
    """The usage line(s) of ``parser`` as ``--help`` prints them ``WIDTH`` columns wide."""
    formatter = _formatter(parser)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return ANSI.sub("", formatter.format_help()).strip()


def split_text(text: str | None, raw: bool) -> tuple[list[str], list[str]]:
    """(Markdown paragraphs in their order, example commands) of a description or epilog.

    ``example: CMD`` lines become examples. With a raw formatter (``RawDescriptionHelpFormatter``)
    a paragraph laid out in aligned columns is kept as written, in a text block; other
    paragraphs are prose with whitespace collapsed, as argparse does.
    """
    paragraphs: list[str] = []
    examples: list[str] = []
    for paragraph in re.split(r"\n\s*\n", (text or "").strip()):
        if not paragraph.strip():
            continue
        if not raw:
            flat = " ".join(paragraph.split())
            parts = re.split(r"\s*\bexamples?:\s*", flat, flags=re.IGNORECASE)
            if parts[0]:
                paragraphs.append(escape(parts[0]))
            examples.extend(part for part in parts[1:] if part)
            continue
        lines = [line.rstrip() for line in paragraph.strip("\n").splitlines()]
        examples.extend(EXAMPLE.sub("", line.strip()) for line in lines if EXAMPLE.match(line))
        rest = [line for line in lines if not EXAMPLE.match(line.strip())]
        if not rest:
            continue
        if any(LAYOUT.match(line) for line in rest):
            paragraphs.append("```text\n" + "\n".join(rest) + "\n```")
        else:
            paragraphs.append(escape(" ".join(" ".join(rest).split())))
    return paragraphs, examples


def invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """``--output-dir OUTPUT_DIR``, ``-h, --help``, ``--plots, --no-plots`` or ``KEY=VALUE``."""
    formatter = _formatter(parser)
    if not action.option_strings:
        return formatter._format_args(action, action.dest)
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    return f"{flags} {formatter._format_args(action, action.dest.upper())}"


def default_cell(action: argparse.Action) -> str:
    """What an option is when not given: ``required``, its default, or empty (none)."""
    if action.required and action.option_strings:
        return "required"
    value = action.default
    if isinstance(action, argparse.BooleanOptionalAction) and isinstance(value, bool):
        return code(action.option_strings[0 if value else -1])
    if action.nargs == 0 or value is None or value == argparse.SUPPRESS or value == []:
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(item) for item in value)
    return code(str(value))


def help_cell(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text with ``%(default)s`` and the like expanded, and the choices when the
    metavar hides them."""
    text = " ".join(_formatter(parser)._expand_help(action).split()) if action.help else ""
    text = escape(text)
    if action.choices and action.metavar is not None and not _is_subcommands(action):
        text += f" (choices: {', '.join(code(str(c)) for c in action.choices)})"
    return text


def _is_subcommands(action: argparse.Action) -> bool:
    return isinstance(action, argparse._SubParsersAction)


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand of ``parser``, in its order."""
    found = []
    for action in parser._actions:
        if _is_subcommands(action):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # an alias maps to the same parser
                    seen.add(id(sub))
                    found.append((name, helps.get(name, ""), sub))
    return found


def option_tables(parser: argparse.ArgumentParser, level: str) -> list[str]:
    """One Markdown table per non-empty argument group of ``parser`` (its title a heading)."""
    out = []
    for group in parser._action_groups:
        rows = []
        for action in group._group_actions:
            if action.help == argparse.SUPPRESS:
                continue
            if _is_subcommands(action):
                for name, text, _ in subcommands(parser):
                    title = f"{parser.prog} {name}"
                    link = f"[{code(title)}](#{slug(title)})"
                    rows.append(f"| {code(name)} | | {escape(text)}: {link} |")
                continue
            cells = [code(invocation(parser, action)), default_cell(action)]
            rows.append(
                f"| {cells[0]} | {cells[1]} | {help_cell(parser, action)} |".replace("|  |", "| |")
            )
        if rows:
            title = (group.title or "options").capitalize()
            head = [f"{level} {title}", ""]
            if group.description:
                head += [escape(" ".join(group.description.split())), ""]
            kind = "option" if any(a.option_strings for a in group._group_actions) else "argument"
            table = [f"| {kind} | default | help |", "| --- | --- | --- |", *rows]
            out.append("\n".join([*head, *table]))
    return out


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def command_section(parser: argparse.ArgumentParser, level: int) -> str:
    """The description, usage, tables and examples of one (sub)command; nested subcommands
    follow as sections one level down."""
    raw = issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter)
    parts, examples = split_text(parser.description, raw)
    epilog, epilog_examples = split_text(parser.epilog, raw)
    parts.append(f"```text\n{usage(parser)}\n```")
    parts += option_tables(parser, "#" * (level + 1))
    parts += epilog
    if examples or epilog_examples:
        commands = "\n".join([*examples, *epilog_examples])
        parts.append(
            f"{'#' * (level + 1)} Examples\n\n"
            "<!-- test: skip (the parser's own examples; they name files of your own) -->\n"
            f"```bash\n{commands}\n```"
        )
    for name, _, sub in subcommands(parser):  # sub.prog also holds the positionals before it
        title = f"{parser.prog} {name}"
        parts.append(f"{'#' * (level + 1)} `{title}`\n\n{command_section(sub, level + 1)}")
    return "\n\n".join(parts)


def page_name(name: str) -> str:
    return f"{name}.md"


def render_index(parser: argparse.ArgumentParser) -> str:
    """docs/cli/index.md: the ``visionkit`` command, its global options and every command."""
    rows = [
        f"| [`{parser.prog} {name}`]({page_name(name)}) | {escape(text)} |"
        for name, text, _ in subcommands(parser)
    ]
    table = "\n".join(["| command | what it does |", "| --- | --- |", *rows])
    view = _without_subcommands(parser)
    view.description = None  # written above the table of commands instead
    return (
        f"# The `{parser.prog}` command\n\n{MARKER}\n\n{escape(parser.description or '')}\n\n"
        f"Every command has a page with all its options, generated from the parser "
        f"(`{parser.prog} COMMAND --help` prints the same):\n\n{table}\n\n"
        f"Options of `{parser.prog}` itself, given before the command:\n\n"
        f"{command_section(view, level=1)}\n"
    )


def _without_subcommands(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A shallow view of ``parser`` without its subcommands (they have their own pages)."""
    view = argparse.ArgumentParser(
        prog=parser.prog,
        description=parser.description,
        epilog=parser.epilog,
        formatter_class=parser.formatter_class,
        add_help=False,
    )
    for action in parser._actions:
        if not _is_subcommands(action):
            view._add_action(action)
    return view


def render_page(parser: argparse.ArgumentParser, index: str = "index.md") -> str:
    """The page of one subcommand."""
    return (
        f"# `{parser.prog}`\n\n{MARKER}\n\n{command_section(parser, level=1)}\n\n"
        f"[Every command]({index})\n"
    )


def render_pages(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    """File name in docs/cli → text, for the index and every subcommand of ``parser``
    (default: the ``visionkit`` parser)."""
    if parser is None:
        from visionkit.cli import build_parser

        parser = build_parser()
    pages = {"index.md": render_index(parser)}
    for name, _, sub in subcommands(parser):
        pages[page_name(name)] = render_page(sub)
    return pages


def stale_pages(folder: Path, pages: dict[str, str]) -> list[Path]:
    """Generated pages in ``folder`` (they carry the marker) of commands that no longer exist."""
    return [
        path
        for path in sorted(folder.glob("*.md"))
        if path.name not in pages and MARKER in path.read_text(encoding="utf-8")
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; write nothing")
    parser.add_argument("--output", type=Path, default=TARGET, help=f"default: {TARGET}")
    args = parser.parse_args(argv)
    pages = render_pages()
    folder: Path = args.output
    if args.check:
        wrong = [
            folder / name
            for name, text in pages.items()
            if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text
        ]
        wrong += stale_pages(folder, pages) if folder.is_dir() else []
        if wrong:
            names = ", ".join(str(path) for path in wrong)
            print(f"out of date, missing or stale: {names}: run {COMMAND}")
            return 1
        print(f"{folder}: {len(pages)} pages up to date")
        return 0
    folder.mkdir(parents=True, exist_ok=True)
    for path in stale_pages(folder, pages):
        path.unlink()
        print(f"removed {path} (no such command)")
    for name, text in pages.items():
        (folder / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(pages)} pages to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
