"""``visionkit eval --checkpoint CKPT [KEY=VALUE ...]``: evaluate a checkpoint on the validation
data of its own config (see :func:`visionkit.engine.runner.evaluate`).

The module is ``evaluate`` rather than ``eval``, which would hide the builtin."""

from __future__ import annotations

import argparse

from visionkit.cli._shared import is_global_zero
from visionkit.engine.runner import evaluate, metrics_json


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on its validation data",
        description="Evaluate a checkpoint on the validation data of its own config; "
        "prints the metrics as one JSON object on the last line of stdout.",
        epilog="example: visionkit eval --checkpoint runs/quickstart/checkpoints/best.ckpt",
    )
    p.add_argument("--checkpoint", required=True, help="path to a .ckpt written by train")
    p.add_argument(
        "--save-predictions",
        metavar="JSON",
        help="write the COCO results file that was evaluated (detection heads)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="overrides of the data.* and trainer.* sections, e.g. data.val.images=DIR",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """What ``visionkit eval`` runs; prints the metrics as one JSON line (rank 0)."""
    metrics = evaluate(args.checkpoint, args.overrides, save_predictions=args.save_predictions)
    if is_global_zero():
        print(metrics_json(metrics))
    return 0
