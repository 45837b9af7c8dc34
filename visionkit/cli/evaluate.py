"""``visionkit eval --checkpoint CKPT [--split val|test] [KEY=VALUE ...]``: evaluate a checkpoint
on the validation (or test) data of its own config (see :func:`visionkit.engine.runner.evaluate`).

Before the metrics it prints a per-class table of each evaluated head: AP, AP50 and AP75 per
category for detection and instance heads (the tables training writes as
``per_class_ap_<head>.md``), IoU per class for semantic heads. The last line of stdout is
always the metrics as one JSON object.

The module is ``evaluate`` rather than ``eval``, which would hide the builtin."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any

from visionkit.build.data import EVAL_SPLITS
from visionkit.cli._shared import is_global_zero
from visionkit.engine.pictures import ap_table, ap_title, markdown_table
from visionkit.engine.runner import evaluate, metrics_json


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on its validation (or test) data",
        description="Evaluate a checkpoint on the validation data of its own config (or its "
        "data.test with --split test); prints a per-class table of each head (AP per category, "
        "IoU per class), then the metrics as one JSON object on the last line of stdout.",
        epilog="example: visionkit eval --checkpoint runs/quickstart/checkpoints/best.ckpt\n"
        "example: visionkit eval --checkpoint runs/quickstart/checkpoints/best.ckpt "
        "--split test data.test.images=data/shapes/test",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="path to a .ckpt written by train")
    p.add_argument(
        "--split",
        choices=EVAL_SPLITS,
        default="val",
        help="the data to evaluate on: data.val or data.test of the config (default val); "
        "a test set can be given here too, e.g. --split test data.test.images=DIR",
    )
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
    """What ``visionkit eval`` runs; prints the per-class tables and the metrics as one JSON
    line (rank 0)."""
    scored: dict[str, Any] = {}
    metrics = evaluate(
        args.checkpoint,
        args.overrides,
        save_predictions=args.save_predictions,
        split=args.split,
        scored=scored,
    )
    if is_global_zero():
        for line in per_class_tables(scored):
            print(line)
        print(metrics_json(metrics))
    return 0


def per_class_tables(evaluators: Mapping[str, Any]) -> list[str]:
    """The lines of a Markdown table per evaluator that has per-class numbers: COCO
    evaluators (:func:`~visionkit.engine.pictures.ap_table`) and semantic ones
    (:func:`iou_table`), each under a heading and followed by a blank line. Evaluator keys
    are ``<head>`` or ``<head>@<set>`` (shown as ``<head>/<set>``)."""
    lines: list[str] = []
    for key, evaluator in evaluators.items():
        name = key.replace("@", "/")
        if hasattr(evaluator, "per_class_ap") and getattr(evaluator, "details", None):
            columns, rows = ap_table(evaluator)
            title = ap_title(name)
        elif getattr(evaluator, "global_confusion", None) is not None:
            columns, rows = iou_table(evaluator)
            title = f"Per-class IoU of `{name}` (pixels at the original image size)"
        else:  # e.g. classification: top-1 / top-5 only
            continue
        lines += [title, "", *markdown_table(columns, rows), ""]
    return lines


def iou_table(evaluator: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of a semantic evaluator's last confusion matrix: per class ``class``
    (its label), ``name``, ``pixels`` (ground-truth pixels counted) and ``IoU`` (``nan`` for
    a class neither in the ground truth nor predicted); the last row is the mean IoU over the
    other classes (the ``mIoU`` metric) and the total pixels."""
    from visionkit.evaluation.semantic import iou_from_confusion

    confusion = evaluator.global_confusion  # [C, C], rows ground truth
    iou = iou_from_confusion(confusion).tolist()
    pixels = confusion.sum(1).tolist()
    names = evaluator.class_names or [str(i) for i in range(len(iou))]
    rows: list[dict[str, Any]] = [
        {"class": i, "name": names[i], "pixels": int(pixels[i]), "IoU": float(iou[i])}
        for i in range(len(iou))
    ]
    defined = [v for v in iou if not math.isnan(v)]
    rows.append(
        {
            "class": "",
            "name": "mean",
            "pixels": int(sum(pixels)),
            "IoU": sum(defined) / len(defined) if defined else math.nan,
        }
    )
    return ["class", "name", "pixels", "IoU"], rows
