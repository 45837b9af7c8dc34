"""``visionkit eval --checkpoint CKPT [--split val|test] [--conf X] [--iou X] [--max-det N]
[--imgsz SIZE] [--matrix-conf X] [--device D] [--half|--bf16] [--json] [--no-plots] [KEY=VALUE ...]``: evaluate a checkpoint on the validation (or test) data of
its own config (see :func:`visionkit.engine.runner.evaluate`).

The report, per evaluated head: for detection and instance heads pycocotools' own 12-line
``COCOeval.summarize()`` output (captured from pycocotools, per ``bbox`` / ``segm``) and a
per-class table (AP, AP50 and AP75 per category, the tables training writes as
``per_class_ap_<head>.md``); IoU per class for semantic heads; top-1 recall and precision
per class for classification heads. Then where the plots went, and
the metrics as one JSON object on the last line of stdout. With ``--json`` stdout holds only one
JSON object (``metrics``, ``per_class``, ``summary``, ``confusion``, ``plots``); messages go to
stderr.

The plots (:mod:`visionkit.evaluation.plots`: precision-recall curves and detection confusion
matrices, the latter at score ``max(--conf, 0.25)`` or ``--matrix-conf``:
:func:`~visionkit.evaluation.plots.confusion_conf`; the pixel / image confusion matrix of a
semantic / classification head) go to a new ``eval`` / ``eval-N`` folder of the checkpoint's run
(:func:`~visionkit.evaluation.plots.eval_dir`), unless ``--no-plots``.

The module is ``evaluate`` rather than ``eval``, which would hide the builtin."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visionkit.choices import EVAL_SPLITS
from visionkit.cli._shared import (
    DEVICE_HELP,
    add_device_arguments,
    add_tta_argument,
    add_weights_argument,
    is_global_zero,
)
from visionkit.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on its validation (or test) data",
        description="Evaluate a checkpoint on the validation data of its own config (or its "
        "data.test with --split test). Prints, per detection / instance head, pycocotools' "
        "12-line COCO summary and a per-class AP table (IoU per class for semantic heads), "
        "then the metrics as one JSON object on the last line of stdout (--json: one JSON "
        "object only). Draws precision-recall curves and detection confusion matrices (the "
        "pixel / image confusion matrix of a semantic / classification head) into a new "
        "<run>/eval (eval-2, ...) folder.",
        epilog="example: visionkit eval --checkpoint runs/quickstart/checkpoints/best.ckpt\n"
        "example: visionkit eval --checkpoint runs/quickstart/checkpoints/best.ckpt "
        "--split test data.test.images=data/shapes/test\n"
        "example: visionkit eval --checkpoint runs/quickstart/checkpoints/best.ckpt --json "
        "--no-plots > results.json",
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
        "--conf",
        type=float,
        metavar="SCORE",
        help="minimum detection score kept by the detection heads (default: the head's own, "
        "e.g. 0.05 for FCOS / RetinaNet). Keep it low for mAP: COCO AP integrates the whole "
        "precision-recall curve, and a high threshold cuts its low-score end (lower AP). The "
        "confusion matrix counts detections scoring at least max(--conf, 0.25) (Ultralytics "
        "draws it at 0.25 when val runs at conf 0.001), unless --matrix-conf is given",
    )
    p.add_argument(
        "--matrix-conf",
        type=float,
        metavar="SCORE",
        help="score threshold of the detection confusion matrix, used as given (default: "
        "max(--conf, 0.25); e.g. --matrix-conf 0.1 to count lower-scoring detections)",
    )
    p.add_argument(
        "--iou",
        type=float,
        metavar="IOU",
        help="IoU threshold of the detection heads' NMS (default: the head's own, e.g. 0.6 "
        "for FCOS, 0.5 for RetinaNet)",
    )
    p.add_argument(
        "--max-det",
        type=int,
        metavar="N",
        help="detections kept per image (default: the head's own, 100, COCO's maxDets)",
    )
    p.add_argument(
        "--imgsz",
        metavar="SIZE",
        help="evaluate at this size: 640 or 480,640 (height,width, one argument: the "
        "KEY=VALUE overrides follow); the evaluation "
        "pipeline's sizing steps (Resize, LongestMaxSize, PadIfNeeded, ...) use it instead "
        "of the model's; metrics are still computed at the original resolution (default: "
        "the size the model was validated at in training, data.val_image_size, else "
        "data.image_size)",
    )
    add_tta_argument(p)
    add_device_arguments(p)
    add_weights_argument(p)
    for action in p._actions:  # eval's default is the config's trainer settings, not auto
        if "--device" in action.option_strings:
            action.default = None
            action.help = (
                DEVICE_HELP.replace("; default)", ")")
                + "; default: the config's trainer.accelerator / trainer.devices (auto: the "
                "GPU when there is one)"
            )
    p.add_argument(
        "--json",
        action="store_true",
        help="print only one JSON object to stdout: metrics, per-class rows, the "
        "pycocotools summary lines and the confusion matrices (of boxes, pixels or images) "
        "with their class order (everything else goes to stderr)",
    )
    p.add_argument(
        "--plots",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the precision-recall curves and confusion matrices of detection / "
        "instance heads, and the confusion matrices of semantic and classification heads, to "
        "a new <run>/eval (eval-2, ...) folder (default: on)",
    )
    p.add_argument(
        "--save-predictions",
        metavar="JSON",
        help="write the COCO results file that was evaluated (detection heads; a keypoint "
        "head's keypoint results beside it, JSON_keypoints.json), e.g. --save-predictions "
        "preds.json",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="overrides of the data.* and trainer.* sections, e.g. data.val.images=DIR, and "
        "a keypoint head's OKS sigmas, e.g. model.heads.pose.kpt_oks_sigmas=[0.1,0.1,0.1]",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """What ``visionkit eval`` runs: evaluates, then (rank 0) writes the plots and prints the
    report (:func:`report_lines`) or, with ``--json``, one JSON object (:func:`report`)."""
    from visionkit.engine.run_folder import metrics_json
    from visionkit.engine.runner import evaluate
    from visionkit.evaluation.plots import confusion_conf

    if args.matrix_conf is not None and not 0 <= args.matrix_conf <= 1:
        raise ConfigError(
            f"--matrix-conf: a score threshold in [0, 1], got {args.matrix_conf}", options=True
        )
    matrix_conf = confusion_conf(args.conf, args.matrix_conf)
    scored: dict[str, Any] = {}
    # stdout is for the report (or the JSON object) only: progress bars go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        metrics = evaluate(
            args.checkpoint,
            args.overrides,
            save_predictions=args.save_predictions,
            split=args.split,
            scored=scored,
            conf=args.conf,
            iou=args.iou,
            max_det=args.max_det,
            device=args.device,
            half=args.half,
            bf16=args.bf16,
            tta=args.tta,
            imgsz=args.imgsz,
            weights=args.weights,
        )
    if not is_global_zero():
        return 0
    plots = write_plots(scored, args.checkpoint, matrix_conf) if args.plots else []
    if args.json:
        if plots:
            print(f"eval: plots written to {plots[0].parent}", file=sys.stderr)
        scored_split = {"split": args.split, **report(metrics, scored, plots, matrix_conf)}
        print(json.dumps(scored_split, sort_keys=True))
        return 0
    print(f"Scored data.{args.split} with {args.checkpoint}\n")
    for line in report_lines(scored):
        print(line)
    if plots:
        print(f"Plots: {plots[0].parent} ({', '.join(p.name for p in plots)})")
        if coco_evaluators(scored):  # the box matrices' threshold
            print(matrix_line(matrix_conf, args.matrix_conf is not None))
        print()
    print(metrics_json(metrics))
    return 0


def coco_evaluators(evaluators: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluators with COCO results (detection and instance heads) that have scored."""
    return {
        key: evaluator
        for key, evaluator in evaluators.items()
        if hasattr(evaluator, "per_class_ap") and getattr(evaluator, "details", None)
    }


def matrix_line(conf: float, explicit: bool) -> str:
    """The report's line on the confusion matrices' thresholds."""
    from visionkit.evaluation.plots import CONFUSION_CONF, CONFUSION_IOU

    rule = "--matrix-conf" if explicit else f"max(--conf, {CONFUSION_CONF:g})"
    return (
        f"Confusion matrices: detections scoring >= {conf:g} ({rule}), matched to true boxes "
        f"at IoU >= {CONFUSION_IOU:g}"
    )


def write_plots(evaluators: Mapping[str, Any], checkpoint: str, conf: float) -> list[Path]:
    """The PNGs of every evaluator with plots in a new :func:`~visionkit.evaluation.plots.
    eval_dir` folder: a COCO evaluator's (:func:`~visionkit.evaluation.plots.write_eval_plots`,
    the box confusion matrices at score ``conf``), a semantic or classification evaluator's
    confusion matrix with its rows normalised (``confusion_matrix_<head>_normalized.png``:
    :func:`~visionkit.engine.pictures.class_confusion`); none (and no folder) without them."""
    from visionkit.engine.pictures import class_confusion, plot_confusion
    from visionkit.evaluation.plots import eval_dir, write_eval_plots

    coco = coco_evaluators(evaluators)
    matrices = {key: class_confusion(evaluator) for key, evaluator in evaluators.items()}
    matrices = {key: found for key, found in matrices.items() if found is not None}
    if not coco and not matrices:
        return []
    folder = eval_dir(checkpoint)
    written: list[Path] = []
    for key, evaluator in evaluators.items():
        name = key.replace("@", "_")
        if key in coco:
            written += write_eval_plots(evaluator, name, folder, conf=conf)
        elif key in matrices:
            counts, names, unit = matrices[key]
            path = folder / f"confusion_matrix_{name}_normalized.png"
            plot_confusion(counts, names, path, title=f"({name})", unit=unit)
            written.append(path)
    return written


def summary_lines(evaluator: Any, name: str) -> list[str]:
    """Per iou type of a COCO evaluator, a heading and pycocotools' summary lines (or why there
    are none), then the boxes' best F1 and its score threshold
    (:meth:`~visionkit.evaluation.coco.CocoEvaluator.best_f1`), each block followed by a blank
    line."""
    lines = []
    texts = getattr(evaluator, "iscrowd_text", 0)
    if evaluator.left_out or evaluator.boxes_from_segmentation or texts:
        lines.append(left_out_line(evaluator))
    for iou_type in evaluator.summary_types:
        lines.append(f"COCO {iou_type} summary of `{name}` (pycocotools COCOeval.summarize)")
        summary = evaluator.summary(iou_type)
        if summary is None:
            lines.append("no detections to score: pycocotools did not run; every metric is 0")
        else:
            lines += summary
        lines.append("")
    best = evaluator.best_f1()
    if best is not None:
        heading = f"Best F1 of `{name}` ({evaluator.iou_types[0]}, IoU 0.50, mean over classes): "
        if best["F1"] > 0:
            line = (
                f"{best['F1']:.3f} at score {best['conf']:.2f} (precision {best['P']:.3f}, "
                f"recall {best['R']:.3f})"
            )
        else:
            line = "0: no detection matched a true object"
        lines += [heading + line, ""]
    return lines


def left_out_line(evaluator: Any) -> str:
    """How a COCO evaluator's ground truth differs from its annotation file: the annotations
    it leaves out, the boxes taken from segmentations (pycocotools on the file as it is
    stops with a KeyError on a missing ``bbox`` and never matches one of zero size), and the
    ``iscrowd`` values written as text (a crowd to pycocotools on the file, ``"0"`` too)."""
    n, derived = evaluator.left_out, evaluator.boxes_from_segmentation
    parts = []
    if n:
        parts.append(
            f"{n} annotation{'s' if n != 1 else ''} of {evaluator.annotations} left out, as in "
            "training (the warnings of the data check say which and why: dropped, or of a "
            "skipped image); pycocotools on the file as it is counts them"
        )
    if derived:
        parts.append(
            f"{derived} box{'es' if derived != 1 else ''} taken from the segmentation, as in "
            "training, where the file has no bbox or one of zero or negative width or height "
            "(`box from segmentation` in the data check); pycocotools on the file as it is stops "
            "with a KeyError on a missing bbox and never matches a zero one"
        )
    texts = getattr(evaluator, "iscrowd_text", 0)
    if texts:
        from visionkit.data.readers.coco_fields import text_crowd_note

        parts.append(text_crowd_note(texts))
    return "scored against the ground truth the reader kept: " + "; ".join(parts)


def report_lines(evaluators: Mapping[str, Any]) -> list[str]:
    """The readable report: per evaluator, the COCO summary (:func:`summary_lines`) of a
    detection / instance head, then its per-class table (:func:`per_class_tables`)."""
    lines: list[str] = []
    coco = coco_evaluators(evaluators)
    for key, evaluator in evaluators.items():
        if key in coco:
            lines += summary_lines(evaluator, key.replace("@", "/"))
        lines += per_class_tables({key: evaluator})
    return lines


def report(
    metrics: Mapping[str, float],
    evaluators: Mapping[str, Any],
    plots: list[Path] = (),
    matrix_conf: float | None = None,
) -> dict[str, Any]:
    """The ``--json`` object: ``metrics`` (as the last line of the readable report),
    ``per_class`` (evaluator key → its per-class rows, without the mean row), ``summary``
    (COCO evaluator key → iou type → pycocotools' summary lines, ``null`` without detections),
    ``confusion`` (COCO evaluator key → its box confusion matrix at score ``matrix_conf``,
    default 0.25, with the class order: :func:`~visionkit.evaluation.plots.
    detection_confusion`; semantic / classification evaluator key → ``{"classes", "unit":
    "pixels" | "images", "matrix"}``, ``matrix[true][predicted]`` counts) and ``plots`` (the
    PNGs written), ``left_out`` (COCO evaluator key → the annotations of its file that are not
    scored: dropped by the reader, or of an image it skipped: :func:`left_out_line`),
    ``boxes_from_segmentation`` (COCO evaluator key → the boxes the reader took from a
    segmentation where the file has no usable bbox), ``iscrowd_text`` (COCO evaluator key → the
    annotations whose ``iscrowd`` is the text "0" / "1", read as 0 / 1); ``eval --json``
    adds ``split`` (``val`` or ``test``). ``nan`` is written as ``null``."""
    from visionkit.engine.pictures import class_confusion, per_class_table
    from visionkit.evaluation.plots import confusion_conf, detection_confusion

    per_class = {}
    for key, evaluator in evaluators.items():
        table = per_class_table(evaluator)
        if table is not None:
            per_class[key] = table[2][:-1]
    summary = {
        key: {t: evaluator.summary(t) for t in evaluator.summary_types}
        for key, evaluator in coco_evaluators(evaluators).items()
    }
    conf = confusion_conf() if matrix_conf is None else matrix_conf
    confusion = {
        key: detection_confusion(evaluator, conf)
        for key, evaluator in coco_evaluators(evaluators).items()
    }
    for key, evaluator in evaluators.items():
        found = class_confusion(evaluator)
        if found is not None:
            counts, names, unit = found
            confusion[key] = {"classes": names, "unit": unit, "matrix": counts.tolist()}
    return _clean(
        {
            "metrics": dict(metrics),
            "per_class": per_class,
            "summary": summary,
            "confusion": confusion,
            "plots": [str(p) for p in plots],
            "left_out": {k: e.left_out for k, e in evaluators.items() if hasattr(e, "left_out")},
            "boxes_from_segmentation": {
                k: e.boxes_from_segmentation
                for k, e in evaluators.items()
                if hasattr(e, "boxes_from_segmentation")
            },
            "iscrowd_text": {
                k: e.iscrowd_text for k, e in evaluators.items() if hasattr(e, "iscrowd_text")
            },
        }
    )


def _clean(value: Any) -> Any:
    """``value`` with every ``nan`` float replaced by ``None`` (JSON ``null``)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def per_class_tables(evaluators: Mapping[str, Any]) -> list[str]:
    """The lines of a Markdown table per evaluator that has per-class numbers: COCO
    evaluators (:func:`~visionkit.engine.pictures.ap_table`) and semantic ones
    (:func:`iou_table`), each under a heading and followed by a blank line. Evaluator keys
    are ``<head>`` or ``<head>@<set>`` (shown as ``<head>/<set>``)."""
    from visionkit.engine.pictures import markdown_table, per_class_table, table_title

    lines: list[str] = []
    for key, evaluator in evaluators.items():
        table = per_class_table(evaluator)
        if table is None:  # e.g. embeddings: pairs, not classes
            continue
        kind, columns, rows = table
        lines += [table_title(kind, key.replace("@", "/")), "", *markdown_table(columns, rows), ""]
    return lines
