"""The ``visionkit`` command: ``train``, ``eval``, ``predict``, ``make-shapes``, ``benchmark``.

Every subcommand prints a :class:`~visionkit.errors.VisionkitError` as a plain message (no
traceback) and exits non-zero: 2 for configuration errors, 1 for other problems.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from visionkit.errors import VisionkitError
from visionkit.registry import UnknownNameError

# Subcommands that live in their own module ``visionkit.cli.<name>``; each module defines
# ``add_parser(subparsers)``, which adds the subcommand and sets ``func`` on it.
COMMAND_MODULES: list[str] = ["list", "convert", "check_data", "export"]

OVERRIDES_HELP = (
    "dotted config overrides, e.g. trainer.max_epochs=3 model.backbone.name=resnet34 "
    "(values are parsed as YAML)"
)


def _train(args: argparse.Namespace) -> int:
    from visionkit.config import load_config, to_yaml

    if args.print_config:
        print(to_yaml(load_config(args.config, args.overrides)), end="")
        return 0
    from visionkit.engine.runner import metrics_json, train

    run_dir, metrics = train(
        args.config, args.overrides, output_dir=args.output_dir, resume=args.resume
    )
    if _is_global_zero():
        print(f"run folder: {run_dir}")
        print(metrics_json(metrics))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from visionkit.engine.runner import evaluate, metrics_json

    metrics = evaluate(args.checkpoint, args.overrides, save_predictions=args.save_predictions)
    if _is_global_zero():
        print(metrics_json(metrics))
    return 0


def _is_global_zero() -> bool:
    """Whether this process reports results: rank 0 of a distributed run (every rank runs the
    command, and Lightning sets the rank when the run starts, or torchrun / SLURM before), or
    the only process."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _predict(args: argparse.Namespace) -> int:
    from visionkit.inference.predict import predict_files

    path = predict_files(
        args.checkpoint,
        args.input,
        args.output_dir,
        batch_size=args.batch_size,
        draw=not args.no_draw,
        every=args.every,
        tta=args.tta,
    )
    print(f"wrote {path}")
    return 0


def _make_shapes(args: argparse.Namespace) -> int:
    from visionkit.data.synthetic import make_shapes

    try:
        path = make_shapes(
            args.out,
            num_images=args.num_images,
            size=args.size,
            seed=args.seed,
            min_shapes=args.min_shapes,
            max_shapes=args.max_shapes,
            progress=True,
        )
    except ValueError as err:
        print(f"error: make-shapes: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from visionkit.benchmark import DEFAULT_RECIPES, Options, run_command

    options = Options(
        recipes=args.recipes or list(DEFAULT_RECIPES),
        precision=args.precision,
        threads=args.threads,
        quick=args.quick,
        measure=args.measure,
        image_size=args.image_size,
        baseline_precision=args.baseline_precision,
        baseline_image_size=args.baseline_image_size,
        batch_size=args.batch_size,
        infer_batch_sizes=args.infer_batch_sizes,
        warmup=args.warmup,
        reps=args.reps,
        peak_sizes=args.peak_sizes,
        pipeline_batches=args.pipeline_batches,
        pipeline_workers=args.pipeline_workers,
        coco_eval_size=args.coco_eval_size,
        coco_eval_reps=args.coco_eval_reps,
        output_json=args.output_json,
        markdown=args.markdown,
        markdown_variant=args.markdown_variant,
        check_floors=args.check_floors,
        from_json=args.from_json,
    )
    return run_command(options, log=lambda line: print(line, flush=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visionkit",
        description="Multi-task computer vision: one backbone, interchangeable heads.",
        epilog="example: visionkit train --config configs/quickstart.yaml trainer.max_epochs=1\n"
        "run 'visionkit COMMAND --help' for the options of each command",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the Python traceback as well as the message when a command fails",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train from a YAML config; writes a run folder "
        "(config.yaml, checkpoints/{best,last}.ckpt, metrics.csv, metrics.json, plots/).",
        epilog="example: visionkit train --config configs/quickstart.yaml trainer.max_epochs=3",
    )
    p.add_argument("--config", required=True, help="path to the YAML config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    p.add_argument("--output-dir", help="run folder (default: <output_dir>/<name> from the config)")
    p.add_argument("--resume", metavar="CKPT", help="continue the run saved in this checkpoint")
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved, validated config and exit"
    )
    p.set_defaults(func=_train)

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
    p.set_defaults(func=_eval)

    p = sub.add_parser(
        "predict",
        help="predict on images; write drawn images and predictions.json",
        description="Predict on image files, folders (recursively), glob patterns and videos "
        "(.mp4, .avi, .mov, .mkv, ...: frame by frame, with OpenCV). Writes "
        "<stem>_pred.png (<stem>_pred.mp4 for a video) with the predictions drawn (boxes, masks, a legend of semantic "
        "classes), predictions.json (boxes and instance masks as a COCO results list: xywh, "
        "the training file's category ids, RLE segmentation), images.json (one entry per "
        "image id, i.e. image or video frame: file, frame, size, class name and score of "
        "classifiers) and <stem>_<head>.png "
        "(the label map of each semantic head).",
        epilog="example: visionkit predict --checkpoint runs/quickstart/checkpoints/best.ckpt "
        "--input photos/ 'more/*.png' --output-dir preds/",
    )
    p.add_argument("--checkpoint", required=True, help="path to a .ckpt written by train")
    p.add_argument(
        "--input",
        required=True,
        nargs="+",
        metavar="PATH",
        help="image or video files, folders or glob patterns (quote globs)",
    )
    p.add_argument("--output-dir", required=True, help="folder for the drawn images and json")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument(
        "--no-draw", action="store_true", help="write the json files and label maps only"
    )
    p.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="N",
        help="videos: predict on every N-th frame only (frames 0, N, 2N, ...; default 1)",
    )
    p.add_argument(
        "--tta",
        choices=["flip"],
        help="test-time augmentation: 'flip' also runs the mirrored image and merges both "
        "(averaged class probabilities and label maps; boxes merged by NMS)",
    )
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "make-shapes",
        help="write the synthetic shapes dataset (COCO format)",
        description="Write a deterministic synthetic dataset: OUT/images/*.png and "
        "OUT/annotations.json (boxes, masks, and an image-level 'background' class).",
        epilog="example: visionkit make-shapes data/my_shapes --num-images 500 --size 128",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--num-images", type=int, default=200, help="number of images (default 200)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed, same files (default 0)"
    )
    p.add_argument("--min-shapes", type=int, default=1, help="fewest shapes per image (default 1)")
    p.add_argument("--max-shapes", type=int, default=4, help="most shapes per image (default 4)")
    p.set_defaults(func=_make_shapes)

    p = sub.add_parser(
        "benchmark",
        help="speed of the shipped recipes against torchvision's / timm's equivalents, in the "
        "same run; matmul peak, data pipeline and COCO evaluation",
        description="Train images/s, inference ms/image, FLOP/s (as a fraction of the "
        "matrix-multiply peak measured in the same run) and peak memory of each recipe's model "
        "(untrained) beside its equivalent (torchvision FCOS / RetinaNet / DeepLabV3, a timm "
        "classifier), on the same synthetic images, size and precision (or the baseline at its "
        "own: --baseline-precision, --baseline-image-size); the recipe's training "
        "data loader alone against the model's training rate; pycocotools evaluation of a "
        "large synthetic results file. Each figure is the median of --reps timed repetitions "
        "after --warmup, the two models alternating. Writes JSON and Markdown tables; "
        "--check-floors exits 1 when a ratio ours/baseline falls below the floor recorded in a "
        "file. A multi-task recipe is compared with its heads as single-task models run one "
        "after another.",
        epilog="example: visionkit benchmark --quick --recipes fcos_r18",
    )
    p.add_argument(
        "--recipes",
        nargs="+",
        default=None,
        metavar="RECIPE",
        help="recipe YAML paths or names of shipped recipes (default: "
        "classify_r18 fcos_r18 retinanet_r18 semseg_fpn_r18)",
    )
    p.add_argument(
        "--measure",
        nargs="+",
        choices=["models", "pipeline", "coco-eval"],
        metavar="WHAT",
        help="what to measure: models (each recipe against its baseline, FLOPs and the matmul "
        "peak), pipeline (each recipe's training data loader), coco-eval (pycocotools on a "
        "synthetic results file) (default: all three; --quick: models)",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        default="auto",
        help="fp32, bf16 (CPU autocast), or auto: bf16 on CPUs with AVX-512 BF16/AMX, else "
        "fp32; of both models unless --baseline-precision is given (default auto)",
    )
    p.add_argument(
        "--baseline-precision",
        choices=["fp32", "bf16", "auto"],
        help="the baseline's own precision, to measure it at its defaults against the recipe at "
        "the recipe's, e.g. --baseline-precision fp32 --baseline-image-size 256 for torchvision "
        "FCOS at fp32 on 256 px images against fcos_r18 at --precision bf16 and its 160 px "
        "(default: --precision; not allowed with --check-floors when it differs)",
    )
    p.add_argument("--threads", type=int, help="torch threads (default: torch.get_num_threads())")
    p.add_argument(
        "--quick",
        action="store_true",
        help="regression-guard mode for CI (under a minute on a quiet 2-core CPU): models only, "
        "128 px, batch 4, inference at batch 1 and 4, 1 warm-up, 7 repetitions, matmul peak "
        "at 2048 only (explicit options still win)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        metavar="PX",
        help="input size of our model, and of the baseline unless --baseline-image-size is "
        "given: one side, or H W (default: each recipe's data.image_size)",
    )
    p.add_argument(
        "--baseline-image-size",
        type=int,
        nargs="+",
        metavar="PX",
        help="the baseline's own input size, one side or H W, e.g. 256 for torchvision FCOS on "
        "the 256 px shapes images while the recipe sees its data.image_size (default: our "
        "model's size; not allowed with --check-floors when it differs)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="training batch of the models and the data loader (default: each recipe's "
        "data.batch_size)",
    )
    p.add_argument(
        "--infer-batch-sizes",
        type=int,
        nargs="+",
        metavar="B",
        help="batches for inference latency (default 1 8)",
    )
    p.add_argument("--warmup", type=int, help="untimed repetitions before each series (default 2)")
    p.add_argument("--reps", type=int, help="timed repetitions; figures are medians (default 5)")
    p.add_argument(
        "--peak-sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="sides of the square matrix multiplications timed for the fp32 and bf16 peak; "
        "the peak is the best median (default 2048 3072 4096)",
    )
    p.add_argument(
        "--pipeline-batches",
        type=int,
        metavar="N",
        help="batches per timed repetition of the data pipeline (default 4)",
    )
    p.add_argument(
        "--pipeline-workers",
        type=int,
        metavar="N",
        help="data loader workers (default: each recipe's data.num_workers)",
    )
    p.add_argument(
        "--coco-eval-size",
        type=int,
        nargs=3,
        metavar=("IMAGES", "OBJECTS", "DETS"),
        help="synthetic COCO evaluation: images, ground-truth objects per image, detections "
        "per image (default 500 10 100)",
    )
    p.add_argument(
        "--coco-eval-reps",
        type=int,
        metavar="N",
        help="timed repetitions of the COCO evaluation (default 3)",
    )
    p.add_argument("--output-json", metavar="FILE", help="write every figure and machine info")
    p.add_argument(
        "--markdown",
        metavar="FILE",
        help="(re)write each measured section's table between its <!-- benchmark:SECTION:start/"
        "end --> markers of FILE (e.g. docs/benchmarks.md; sections: classification, "
        "detection, segmentation, multitask, flops, pipeline, coco-eval), appending them when "
        "absent; the rest is kept",
    )
    p.add_argument(
        "--markdown-variant",
        metavar="NAME",
        help="use markers benchmark:SECTION-NAME instead, e.g. fp32, to keep several tables",
    )
    p.add_argument(
        "--check-floors",
        metavar="FILE",
        help="exit 1 when a ratio ours/baseline is below its floor in FILE "
        "(e.g. benchmarks/floors.json)",
    )
    p.add_argument(
        "--from-json",
        metavar="FILE",
        help="measure nothing: read results written by --output-json (to rewrite the tables or "
        "check floors)",
    )
    p.set_defaults(func=_benchmark)

    for module_name in COMMAND_MODULES:
        importlib.import_module(f"visionkit.cli.{module_name}").add_parser(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each message (so a ``main()`` called
    in-process, e.g. under pytest's capture, never writes to a stream closed since)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # the base class sets it in __init__; ignored
        pass


def _log_to_stderr() -> None:
    """INFO messages of visionkit's own loggers on stderr (Lightning has its own handler).
    Records still propagate, so handlers the caller installed (or pytest's) see them too."""
    logger = logging.getLogger("visionkit")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``visionkit`` command (and of ``tools/*.py``)."""
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        return args.func(args)
    except (VisionkitError, UnknownNameError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)


if __name__ == "__main__":
    sys.exit(main())
