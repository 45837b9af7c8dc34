"""The ``visionkit`` command: one module per subcommand.

Each module of :data:`COMMANDS` has ``add_parser(subparsers) -> ArgumentParser``, which adds
its subcommand with its options, help text and examples, and ``run(args) -> int``, which
does the work and returns the exit status. This module only builds the top-level parser
(``--debug``, ``--version``), sets up logging and turns errors into exit codes: every
subcommand prints a :class:`~visionkit.errors.VisionkitError` as a plain message (no
traceback) and exits non-zero: 2 for a mistake in what the user wrote (the config, an
override, a backbone's arguments, an unknown name), 1 for other problems (:data:`EXIT_STATUS`).

A subcommand module imports torch and the modules built on it inside the functions that use
them, never at its top: the parser's choices and defaults come from :mod:`visionkit.choices`,
so ``visionkit --help``, ``--version``, every ``COMMAND --help`` and every argument error
answer in a fraction of a second (``tests/cli/test_cli_startup.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

import visionkit
from visionkit.cli import (
    check_data,
    convert,
    evaluate,
    export,
    make_shapes,
    predict,
    show_data,
    split,
    train,
    weights,
)
from visionkit.cli import list as list_command
from visionkit.cli._shared import ArgumentParser, process_rank
from visionkit.errors import ConfigError, VisionkitError
from visionkit.registry import UnknownNameError

#: The subcommand modules, in the order ``visionkit --help`` lists them. (Importing the
#: submodule ``list`` also binds the name ``list`` here: this module never calls the builtin.)
COMMANDS = (
    train,
    evaluate,
    predict,
    make_shapes,
    list_command,
    convert,
    split,
    check_data,
    show_data,
    export,
    weights,
)


#: What the exit status of every command means (the top-level help's last lines).
EXIT_STATUS = (
    "exit status: 0 done; 1 a problem with the data, a file or the run;\n"
    "2 a mistake in the command line or the config (an unknown key or name, a value or a\n"
    "backbone argument that cannot be used);\n"
    "130 stopped by Ctrl-C (train saves last.ckpt first, predict writes what it predicted);\n"
    "143 stopped by SIGTERM (train saves last.ckpt first)"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``visionkit`` parser with every subcommand of :data:`COMMANDS`; the parsed
    arguments carry the subcommand's ``run`` as ``args.run``."""
    parser = ArgumentParser(
        prog="visionkit",
        description="Multi-task computer vision: one backbone, interchangeable heads.",
        epilog="example: visionkit train --config configs/quickstart.yaml trainer.max_epochs=1\n"
        "run 'visionkit COMMAND --help' for the options of each command; any command takes\n"
        "an option abbreviated where no other option starts so (--inp for --input)\n\n"
        + EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the Python traceback as well as the message when a command fails",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"visionkit {visionkit.__version__}",
        help="print the version of visionkit and exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub).set_defaults(run=command.run)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each message (so a ``main()`` called
    in-process, e.g. under pytest's capture, never writes to a stream closed since), through
    ``tqdm.write``: a message logged while a progress bar is drawn gets a line of its own and
    the bar is drawn again below it, instead of the two sharing a line."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class sets it in __init__; ignored
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _rank_zero_or_error(record: logging.LogRecord) -> bool:
    """Every DDP process runs the whole command: its messages are printed by rank 0 only,
    except errors (one rank's own failure)."""
    return record.levelno >= logging.ERROR or process_rank() == 0


def _log_to_stderr() -> None:
    """INFO messages of visionkit's own loggers on stderr (Lightning has its own handler), from
    rank 0 only in a distributed run (:func:`_rank_zero_or_error`). Records still propagate,
    so handlers the caller installed (or pytest's) see them too."""
    logger = logging.getLogger("visionkit")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_rank_zero_or_error)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visionkit`` command (and of ``tools/*.py``). Output piped into a
    command that stops reading (``visionkit check-data ... | head``) ends it quietly, as
    other command-line tools end, not with a ``BrokenPipeError`` traceback."""
    try:
        return _run(argv)
    except BrokenPipeError:
        # what is still buffered for the closed pipe would fail again when Python exits
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        return args.run(args)
    except (VisionkitError, UnknownNameError) as err:
        if isinstance(err, ConfigError) and err.call:  # a function given the options
            err.options = True
            err.locate(err.source, err.locations)
        if args.debug:
            traceback.print_exc()
        if not getattr(err, "every_rank", False) or process_rank() == 0:
            print(f"{getattr(err, 'label', 'error')}: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
