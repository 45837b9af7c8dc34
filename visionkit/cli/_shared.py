"""What several subcommands share."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from visionkit.inference.tta import TTA_MODES


def is_global_zero() -> bool:
    """Whether this process reports results: rank 0 of a distributed run (every rank runs the
    command, and Lightning sets the rank when the run starts, or torchrun / SLURM before), or
    the only process."""
    return getattr(rank_zero_only, "rank", 0) == 0


#: The option a value of this file type goes to, when a command is missing it.
OPTION_OF_SUFFIX = {".ckpt": "--checkpoint", ".yaml": "--config", ".yml": "--config"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser (subcommands get the same class), whose "the following arguments are
    required" error also says which argument given without its option was probably meant for
    it, and the command with the option in place (:func:`missing_option_hint`): in
    ``visionkit eval best.ckpt``, ``best.ckpt`` is read as a ``KEY=VALUE`` override."""

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        given = getattr(self, "_given", [])
        super().error(message + missing_option_hint(message, given, self))


def missing_option_hint(message: str, given: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """For argparse's "the following arguments are required: --opt, ..." error, what to add:
    the arguments given without an option (no leading ``-``, no ``=``, not the value of an
    option) paired with the missing options (a ``.ckpt`` with ``--checkpoint``, a ``.yaml`` with
    ``--config``, then in order), and the command with each option in place; ``""`` when there
    is nothing to pair."""
    found = re.match(r"the following arguments are required: (.*)", message)
    if not found:
        return ""
    missing = [name for name in found.group(1).split(", ") if name.startswith("--")]
    loose: list[int] = []  # positions of arguments given without an option
    values = 0  # how many of the next arguments are an option's values (-1: all up to an option)
    for i, arg in enumerate(given):
        if arg.startswith("-"):
            action = parser._option_string_actions.get(arg)
            nargs = None if action is None else action.nargs
            values = nargs if isinstance(nargs, int) else -1 if nargs in ("+", "*") else 1
            values = 0 if action is None or "=" in arg else values
        elif values > 0:
            values -= 1
        elif values == 0 and "=" not in arg:
            loose.append(i)
    pairs: dict[int, str] = {}
    for i in loose:  # by file type first
        option = OPTION_OF_SUFFIX.get(Path(given[i]).suffix.lower())
        if option in missing:
            pairs[i] = option
            missing.remove(option)
    for i in loose:  # then the rest, in order
        if i not in pairs and missing:
            pairs[i] = missing.pop(0)
    if not pairs:
        return ""
    named = ", ".join(repr(given[i]) for i in sorted(pairs))
    without = "was given without its option" if len(pairs) == 1 else "were given without options"
    fixed = (
        f"{pairs[i]} {shlex.quote(a)}" if i in pairs else shlex.quote(a)
        for i, a in enumerate(given)
    )
    return f"\n{named} {without}; did you mean:\n  {parser.prog} {' '.join(fixed)}"


def add_tta_argument(parser: argparse.ArgumentParser) -> None:
    """``--tta`` of ``predict`` and ``eval``: test-time augmentation
    (:mod:`visionkit.inference.tta`)."""
    parser.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="test-time augmentation: 'flip' also runs the mirrored image and merges both "
        "(averaged class probabilities and label maps; boxes merged by NMS)",
    )
