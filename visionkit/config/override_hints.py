"""The last lines of a config error caused by a command-line override: which overrides set
the keys at fault (the error names the config file, the mistake may be on the command line),
and how to change a dataset's ``format`` by override (the whole entry)."""

from __future__ import annotations

import re
from collections.abc import Sequence


def command_line_note(problems: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """A last line naming the overrides that set a key of ``problems`` (or one around it):
    the error names the config file, and the mistake may be on the command line
    (``trainer.max_step=30``)."""
    wheres = [p.partition(":")[0].strip().split(" ")[0] for p in problems]  # less "(Resize)"
    used = []
    for override in overrides:
        key = _bracketed(override.partition("=")[0].strip())
        if key and any(
            key == w or w.startswith((f"{key}.", f"{key}[")) or key.startswith((f"{w}.", f"{w}["))
            for w in wheres
        ):
            used.append(override)
    return [f"(set on the command line, not in the file: {', '.join(used)})"] if used else []


def _bracketed(key: str) -> str:
    """``"a.train.0.p"`` → ``"a.train[0].p"``: a list item as the problems name it."""
    return re.sub(r"\.(\d+)(?=[.\[]|$)", r"[\1]", key)


def format_override_hints(overrides: Sequence[str], problems: Sequence[str]) -> list[str]:
    """For an override that changes a dataset's ``format`` (``data.train.format=coco``) while
    the entry keeps the config's other keys (a VOC ``root``, ``split``), which the new format
    refuses as unknown: how to give the whole entry instead."""
    hints = []
    for override in overrides:
        key, _, value = override.partition("=")
        found = re.fullmatch(r"(data\.(?:train|val|test)(?:\.\w+)?)\.format", key.strip())
        if not found:
            continue
        where = found.group(1)
        if any(p.startswith(f"{where}.") and "unknown key" in p for p in problems):
            hints.append(
                f"{where}.format={value.strip()}: the override changes the format, and the "
                f"other keys of {where} are still the config's; give the whole entry instead, "
                f"e.g. {where}='{{format: {value.strip()}, ...}}' (every key of the new format: "
                "docs/datasets.md)"
            )
    return hints
