"""True / false words given to a switch, as Ultralytics' command line takes them (``--half
True``, ``--save-txt=True``, ``--half False``): argparse refuses them (a switch takes no
value), so a command suggested for such arguments leaves them out. A true word goes and the
switch stays; a false word takes the switch with it (a switch is off unless given)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

#: Values of a ``KEY=VALUE`` argument that switch an option on (Ultralytics' ``half=True``).
TRUE = ("true", "1", "yes", "on")
#: ... and off (``--show False``: a value the flag left out takes with it).
FALSE = ("false", "0", "no", "off")


def switch_words(
    parser: argparse.ArgumentParser, given: Sequence[str]
) -> tuple[dict[int, str | None], list[str]]:
    """How to write ``given`` for ``parser`` where a switch (an option of no value) is given a
    true / false word: position → the argument to write instead (``--save-txt=True``:
    ``--save-txt``), or ``None`` to leave it out (``True`` after ``--half``; ``--half`` and
    ``False`` both); and the arguments switched off, with why, for a "left out" line.

    >>> from visionkit.cli import build_parser
    >>> predict = build_parser()._subparsers._group_actions[0].choices["predict"]
    >>> switch_words(predict, ["--half", "True", "--save-txt=no", "photos"])
    ({1: None, 2: None}, ['--save-txt=no (a switch: off unless given)'])
    """
    from visionkit.cli._shared import full_option

    fixes: dict[int, str | None] = {}
    off: list[str] = []
    for i, arg in enumerate(given):
        flag, is_pair, value = arg.partition("=")
        if not arg.startswith("-") or i in fixes:  # a word, or one left out already
            continue
        action = parser._option_string_actions.get(full_option(parser, flag) or "")
        if action is None or action.nargs != 0:
            continue
        word = value if is_pair else given[i + 1] if i + 1 < len(given) else ""
        if word.lower() not in TRUE + FALSE:
            continue
        if not is_pair:  # the next argument is the word
            fixes[i + 1] = None
        if word.lower() in FALSE:
            fixes[i] = None
            off.append(f"{arg}{'' if is_pair else ' ' + word} (a switch: off unless given)")
        elif is_pair:
            fixes[i] = flag
    return fixes, off
