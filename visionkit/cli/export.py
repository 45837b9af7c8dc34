"""``visionkit export --checkpoint CKPT --format onnx|torchscript|safetensors --output FILE``:
export a trained model and check it against PyTorch (see :mod:`visionkit.export`); ``--nms``
(ONNX) puts decoding and NMS in the graph (:mod:`visionkit.export.end_to_end`)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from visionkit.choices import (
    DEFAULT_ATOL,
    DEFAULT_OPSET,
    DYNAMO_MIN_OPSET,
    EXPORT_FORMATS,
    EXPORTERS,
    MIN_OPSET,
    ULTRALYTICS_EXPORT_ARGS,
    ULTRALYTICS_EXPORT_FORMATS,
)
from visionkit.cli._shared import add_weights_argument, key_value_lines, ultralytics_argument_lines

DESCRIPTION = """\
Export a checkpoint written by 'visionkit train' (backbone, neck and every head of the model).

onnx:        one graph; input 'images' float32 [B, 3, H, W], normalised with the backbone's
             mean/std; B, H and W dynamic (the graph pads H and W with zeros at the
             bottom/right to multiples of 32, as visionkit does). Outputs are the heads' raw
             outputs named <head>.<key> (cls.logits, det.cls_logits, det.points, ...).
             Post-processing is not in the graph: visionkit.inference.onnx_runtime.OnnxPredictor runs
             the heads' own postprocess on them. The file's metadata (visionkit.*) holds the
             config, class names, category ids, mean/std and output names.
onnx --nms:  end to end: decoding, score threshold (--conf), NMS (--iou) and the best --max-det
             per image are in the graph. Inputs 'images' and 'image_sizes' int64 [B, 2] (h, w
             of each image in the padded batch); outputs per detection head <head>.boxes
             [N, 4] xyxy, <head>.scores [N], <head>.labels [N], <head>.batch_index [N]; per
             classification head <head>.scores [B, C] (softmax); per semantic head <head>.mask
             [B, H, W] (uint8). onnxruntime alone runs it: python -m visionkit.export.standalone
             (or a copy of that file) needs only onnxruntime, numpy and Pillow. --half: float16
             weights and input (onnxruntime's CPU provider runs it).
torchscript: torch.jit.trace of the same module (metadata in the extra file visionkit.json).
safetensors: the state dict with the config and class names in its header; loads back with
             model.init_from=FILE.

After writing, the export and PyTorch (fp32, eval mode) run on the same random inputs at batch
sizes 1 and 2 and two image sizes; the largest difference of each output is printed (absolute,
and divided by max(1, |torch|)), and the command fails (exit 1) when the latter exceeds --atol.
"""

EPILOG = """\
example: visionkit export --checkpoint runs/quickstart/checkpoints/best.ckpt --format onnx
example: visionkit export --checkpoint runs/quickstart/checkpoints/best.ckpt --format onnx --output quickstart.onnx
example: visionkit export --checkpoint best.ckpt --format onnx --nms --conf 0.25 --iou 0.5 --output model.onnx
example: visionkit export --checkpoint best.ckpt --format onnx --nms --exporter torchscript --output model_nms.onnx
example: visionkit export --checkpoint best.ckpt --format torchscript --output model.pt --image-size 256
example: visionkit export --checkpoint best.ckpt --format safetensors --output model.safetensors --no-check
example: visionkit export --checkpoint last.ckpt --format onnx --weights raw --output raw.onnx

From Ultralytics' yolo export: --imgsz is taken; the file is always dynamic (no --dynamic,
--batch or --simplify); format=onnx is written --format onnx.
"""


def image_size(text: str) -> int | tuple[int, int]:
    """``"256"`` → 256; ``"480x640"`` → (480, 640)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW, e.g. 256 or 480x640, got {text!r}")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


def default_output(checkpoint: str, format: str) -> Path:
    """Where ``export`` writes without ``--output``: beside the checkpoint, with the format's
    usual suffix (``best.ckpt`` → ``best.onnx``), as Ultralytics does; a file already there is
    an error, not replaced (``--output`` names a file to replace)."""
    from visionkit.errors import ExportError
    from visionkit.export import SUFFIXES

    path = Path(checkpoint).with_suffix(SUFFIXES[format][0])
    if path.exists():
        raise ExportError(
            f"{path} exists (written before?); it is kept: give --output {path} to replace it, "
            "or another file"
        )
    return path


#: Ultralytics' names of the options that have another name here.
RENAMED = {"model": "--checkpoint", "weights": "--checkpoint", "imgsz": "--imgsz"}


def ultralytics_hint(message: str, given: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """What argparse's error on ``yolo export``'s arguments adds: for ``--dynamic``,
    ``--simplify``, ... why there is no such option (:data:`~visionkit.choices.
    ULTRALYTICS_EXPORT_ARGS`); for ``--format engine`` how to get there
    (:data:`~visionkit.choices.ULTRALYTICS_EXPORT_FORMATS`); for ``KEY=VALUE`` arguments
    (``format=onnx imgsz=640``, ``imgsz=[320,320]``: ``--imgsz 320x320``) the command with
    options in their place; ``""`` otherwise."""
    command = key_value_lines(given, parser, ULTRALYTICS_EXPORT_ARGS, RENAMED, {"--imgsz": "x"})
    lines = [] if command else ultralytics_argument_lines(message, ULTRALYTICS_EXPORT_ARGS)
    choice = re.match(r"argument --format: invalid choice: '([^']*)'", message)
    if choice and choice.group(1) in ULTRALYTICS_EXPORT_FORMATS:
        lines.append(f"for {ULTRALYTICS_EXPORT_FORMATS[choice.group(1)]}")
    return "".join(f"\n{line}" for line in lines + command)


def run(args: argparse.Namespace) -> int:
    """What ``visionkit export`` runs; prints the file written and the check's table."""
    from visionkit.export import export

    output = args.output or default_output(args.checkpoint, args.format)  # refused before work
    checked = "" if args.no_check else ", then checking it against PyTorch"
    print(  # the export takes half a minute or more with nothing else to show
        f"export: exporting {args.checkpoint} to {args.format}{checked} ...",
        file=sys.stderr,
        flush=True,
    )
    report = export(
        args.checkpoint,
        args.format,
        output,
        image_size=args.image_size,
        opset=args.opset,
        atol=args.atol,
        check=not args.no_check,
        nms=args.nms,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        half=args.half,
        exporter=args.exporter,
        weights=args.weights,
    )
    print(f"wrote {report.path}")
    if report.exporter:
        dynamic = f"; dynamic axes: {', '.join(report.dynamic)}" if report.dynamic else ""
        print(f"exporter: {report.exporter}{dynamic}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"outputs: {', '.join(report.output_names)}")
    if report.check is not None:
        print(report.check.table())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``export`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX, TorchScript or safetensors, checked against PyTorch",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.command_hint = ultralytics_hint
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="CKPT",
        help="a .ckpt written by train, e.g. runs/quickstart/checkpoints/best.ckpt",
    )
    p.add_argument(
        "--format",
        required=True,
        type=str.lower,  # ONNX, as Ultralytics takes it
        choices=EXPORT_FORMATS,
        help="onnx (graph for onnxruntime), torchscript (torch.jit.trace) or safetensors "
        "(weights + config), e.g. --format onnx",
    )
    p.add_argument(
        "--output",
        metavar="FILE",
        help="the file to write, e.g. model.onnx (an earlier visionkit export of the format "
        "there is replaced; any other file, e.g. a .ckpt, a state dict .pth or another "
        "program's weights, is kept and the command stops); default: beside the checkpoint, "
        "runs/x/checkpoints/best.onnx (.pt for torchscript, .safetensors), never over a file "
        "already there",
    )
    add_weights_argument(p)
    p.add_argument(
        "--image-size",
        "--imgsz",
        type=image_size,
        metavar="N|HxW",
        help="first image size of the check, rounded up to a multiple of 32 (the second is 32 "
        "taller and 64 wider; the graph takes any size: its height and width are dynamic); "
        "default: the config's data.val_image_size, else data.image_size; e.g. --image-size "
        "480x640",
    )
    p.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="auto",
        help="onnx only: which torch.onnx exporter writes the graph: auto (default) tries the "
        "dynamo one and falls back to the TorchScript-based one; dynamo or torchscript use "
        "that one only (the TorchScript-based one is several times faster), e.g. "
        "--exporter torchscript",
    )
    p.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset version (default {DEFAULT_OPSET}), from {MIN_OPSET} to the newest the "
        f"installed onnx knows; below {DYNAMO_MIN_OPSET} the TorchScript-based exporter writes "
        f"the file (the dynamo one writes {DYNAMO_MIN_OPSET} and above), e.g. --opset 17",
    )
    p.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help=f"largest difference allowed between the export and PyTorch, as "
        f"|exported - torch| / max(1, |torch|): absolute for values up to 1 (logits), relative "
        f"above (box distances in pixels); default {DEFAULT_ATOL:g}, e.g. --atol 1e-3",
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="write the file without comparing it with PyTorch, e.g. for a quick safetensors copy",
    )
    p.add_argument(
        "--nms",
        action="store_true",
        help="onnx only: put decoding, score threshold and NMS in the graph, so that "
        "onnxruntime alone gives final boxes / scores / labels (see above)",
    )
    p.add_argument(
        "--conf",
        type=float,
        metavar="SCORE",
        help="with --nms: the score threshold baked in; default: the one visionkit predict "
        "keeps, each detection head's best-F1 score on the validation set (kept in the "
        "checkpoint by training), else 0.25; e.g. --conf 0.4",
    )
    p.add_argument(
        "--iou",
        type=float,
        help="with --nms: the NMS IoU threshold baked in; default: each head's nms_thresh; "
        "e.g. --iou 0.5",
    )
    p.add_argument(
        "--max-det",
        type=int,
        metavar="N",
        help="with --nms: detections kept per image; default: each head's "
        "detections_per_img; e.g. --max-det 300",
    )
    p.add_argument(
        "--half",
        action="store_true",
        help="with --nms: float16 weights and input 'images' (outputs stay float32); runs on "
        "onnxruntime's CPU provider (1.32) too; checked against the model in float16 with "
        "--atol raised to at least 0.02",
    )
    return p
