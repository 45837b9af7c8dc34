"""The command of ``python tools/benchmark.py`` (also ``python -m benchmarks``): its options,
the :class:`~benchmarks.harness.Settings` they make, and the run: measure (or read
``--from-json``), write the JSON and the Markdown tables, check the floors.

Errors of visionkit (:class:`~visionkit.errors.VisionkitError`, e.g. an unknown recipe or a
bad floors file) are printed as one message without a traceback (``--debug`` adds it), with
exit status 2 for configuration errors, as the ``visionkit`` command does.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from benchmarks.floors import (
    check_floors,
    read_floors,
    refuse_floors_at_differing_sides,
    unequal_cases,
)
from benchmarks.harness import MEASUREMENTS, QUICK, Settings, resolve_precision_name
from benchmarks.recipes import DEFAULT_RECIPES, case_for_recipe
from benchmarks.report import TABLES, marker, read_results, write_json, write_markdown_section
from benchmarks.suite import run_benchmark
from visionkit.errors import ConfigError, VisionkitError
from visionkit.registry import UnknownNameError


@dataclass
class Options:
    """The ``tools/benchmark.py`` options (``None``: the default, or ``--quick``'s).

    ``coco_eval_size`` is ``(images, objects per image, detections per image)``.
    """

    recipes: Sequence[str] = DEFAULT_RECIPES
    precision: str = "auto"
    threads: int | None = None
    quick: bool = False
    measure: Sequence[str] | None = None
    image_size: Sequence[int] | None = None
    baseline_precision: str | None = None
    baseline_image_size: Sequence[int] | None = None
    batch_size: int | None = None
    infer_batch_sizes: Sequence[int] | None = None
    warmup: int | None = None
    reps: int | None = None
    peak_sizes: Sequence[int] | None = None
    pipeline_batches: int | None = None
    pipeline_workers: int | None = None
    coco_eval_size: Sequence[int] | None = None
    coco_eval_reps: int | None = None
    output_json: str | None = None
    markdown: str | None = None
    markdown_variant: str | None = None
    check_floors: str | None = None
    from_json: str | None = None
    real: str | None = None
    real_tasks: Sequence[str] = ("detection", "segmentation")


def settings_from_options(options: Options) -> Settings:
    """Settings from the options: explicit values first, then ``--quick``'s, then defaults."""
    chosen: dict[str, Any] = dict(QUICK) if options.quick else {}
    for name in ("image_size", "baseline_image_size"):
        if getattr(options, name) is not None:
            size = list(getattr(options, name))
            if len(size) not in (1, 2) or min(size) < 32:
                raise ConfigError(
                    f"--{name.replace('_', '-')}: expected one side or H W, each at least 32; "
                    f"got {size}",
                    "benchmark options",
                )
            chosen[name] = (size[0], size[-1])
    if options.baseline_precision is not None:
        try:
            chosen["baseline_precision"] = resolve_precision_name(options.baseline_precision)
        except ValueError as err:
            raise ConfigError(f"--baseline-{err}", "benchmark options") from None
    if options.coco_eval_size is not None:
        if len(options.coco_eval_size) != 3:
            raise ConfigError(
                "--coco-eval-size: expected IMAGES OBJECTS DETECTIONS, got "
                f"{list(options.coco_eval_size)}",
                "benchmark options",
            )
        names = ("coco_images", "coco_objects", "coco_dets")
        chosen.update(zip(names, options.coco_eval_size, strict=True))
    for name in ("batch_size", "warmup", "reps", "pipeline_batches", "pipeline_workers"):
        if getattr(options, name) is not None:
            chosen[name] = getattr(options, name)
    if options.coco_eval_reps is not None:
        chosen["coco_reps"] = options.coco_eval_reps
    for name in ("infer_batch_sizes", "peak_sizes", "measure"):
        if getattr(options, name) is not None:
            chosen[name] = tuple(dict.fromkeys(getattr(options, name)))
    base = Settings(
        precision=resolve_precision_name(options.precision),
        threads=options.threads or torch.get_num_threads(),
    )
    try:
        return replace(base, **chosen)
    except ValueError as err:
        raise ConfigError(str(err), "benchmark options") from None


def run_command(options: Options, log: Callable[[str], None] = print) -> int:
    """``tools/benchmark.py``: measure (or read ``--from-json``), write the JSON and the
    Markdown tables, check the floors. Returns the exit code: 1 when a floor is not met."""
    if options.real:
        from benchmarks.real import run_real

        results = run_real(options.real, options.real_tasks, log)
    elif options.from_json:
        results = read_results(options.from_json)
        if options.check_floors:
            refuse_floors_at_differing_sides(unequal_cases(results), options.check_floors)
    else:
        settings = settings_from_options(options)
        if options.check_floors:  # before measuring anything
            cases = [case_for_recipe(r, settings) for r in options.recipes]
            differing = [c.name for c in cases if c.sides_differ()]
            refuse_floors_at_differing_sides(differing, options.check_floors)
        path = options.output_json
        progress = (lambda partial: write_json(path, partial)) if path else None
        results = run_benchmark(options.recipes, settings, log, progress)
    if options.output_json:
        write_json(options.output_json, results)
        log(f"wrote {options.output_json}")
    for section in results["sections"]:
        table = TABLES[section](results)
        log("\n" + table + "\n")
        if options.markdown:
            tag = f"{section}-{options.markdown_variant}" if options.markdown_variant else section
            write_markdown_section(options.markdown, tag, table)
            log(f"wrote the {marker(tag)} section of {options.markdown}")
    if options.check_floors:
        failures, notes = check_floors(results, read_floors(options.check_floors))
        for note in notes:
            log(f"floors: {note}")
        if failures:
            log(f"FAILED: performance floors of {options.check_floors} not met:")
            for failure in failures:
                log(f"  {failure}")
            return 1
        log(f"floors of {options.check_floors}: all met")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The options of ``python tools/benchmark.py``: the fields of :class:`Options`."""
    parser = argparse.ArgumentParser(
        prog="tools/benchmark.py",
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
        epilog="example: python tools/benchmark.py --quick --recipes fcos_r18",
    )
    parser.add_argument(
        "--recipes",
        nargs="+",
        default=None,
        metavar="RECIPE",
        help="recipe YAML paths or names of shipped recipes in configs/shapes/ (default: "
        f"{' '.join(DEFAULT_RECIPES)})",
    )
    parser.add_argument(
        "--measure",
        nargs="+",
        choices=MEASUREMENTS,
        metavar="WHAT",
        help="what to measure: models (each recipe against its baseline, FLOPs and the matmul "
        "peak), pipeline (each recipe's training data loader), coco-eval (pycocotools on a "
        "synthetic results file) (default: all three; --quick: models)",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "auto"],
        default="auto",
        help="fp32, bf16 (CPU autocast), or auto: bf16 on CPUs with AVX-512 BF16/AMX, else "
        "fp32; of both models unless --baseline-precision is given (default auto)",
    )
    parser.add_argument(
        "--baseline-precision",
        choices=["fp32", "bf16", "auto"],
        help="the baseline's own precision, to measure it at its defaults against the recipe at "
        "the recipe's, e.g. --baseline-precision fp32 --baseline-image-size 256 for torchvision "
        "FCOS at fp32 on 256 px images against fcos_r18 at --precision bf16 and its 160 px "
        "(default: --precision; not allowed with --check-floors when it differs)",
    )
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch.get_num_threads())"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="regression-guard mode for CI (under a minute on a quiet 2-core CPU): models only, "
        "128 px, batch 4, inference at batch 1 and 4, 1 warm-up, 7 repetitions, matmul peak "
        "at 2048 only (explicit options still win)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        nargs="+",
        metavar="PX",
        help="input size of our model, and of the baseline unless --baseline-image-size is "
        "given: one side, or H W (default: each recipe's data.image_size)",
    )
    parser.add_argument(
        "--baseline-image-size",
        type=int,
        nargs="+",
        metavar="PX",
        help="the baseline's own input size, one side or H W, e.g. 256 for torchvision FCOS on "
        "the 256 px shapes images while the recipe sees its data.image_size (default: our "
        "model's size; not allowed with --check-floors when it differs)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="training batch of the models and the data loader (default: each recipe's "
        "data.batch_size)",
    )
    parser.add_argument(
        "--infer-batch-sizes",
        type=int,
        nargs="+",
        metavar="B",
        help="batches for inference latency (default 1 8)",
    )
    parser.add_argument(
        "--warmup", type=int, help="untimed repetitions before each series (default 2)"
    )
    parser.add_argument(
        "--reps", type=int, help="timed repetitions; figures are medians (default 5)"
    )
    parser.add_argument(
        "--peak-sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="sides of the square matrix multiplications timed for the fp32 and bf16 peak; "
        "the peak is the best median (default 2048 3072 4096)",
    )
    parser.add_argument(
        "--pipeline-batches",
        type=int,
        metavar="N",
        help="batches per timed repetition of the data pipeline (default 4)",
    )
    parser.add_argument(
        "--pipeline-workers",
        type=int,
        metavar="N",
        help="data loader workers (default: each recipe's data.num_workers)",
    )
    parser.add_argument(
        "--coco-eval-size",
        type=int,
        nargs=3,
        metavar=("IMAGES", "OBJECTS", "DETS"),
        help="synthetic COCO evaluation: images, ground-truth objects per image, detections "
        "per image (default 500 10 100)",
    )
    parser.add_argument(
        "--coco-eval-reps",
        type=int,
        metavar="N",
        help="timed repetitions of the COCO evaluation (default 3)",
    )
    parser.add_argument("--output-json", metavar="FILE", help="write every figure and machine info")
    parser.add_argument(
        "--markdown",
        metavar="FILE",
        help="(re)write each measured section's table between its <!-- benchmark:SECTION:start/"
        "end --> markers of FILE (e.g. docs/benchmarks.md; sections: classification, "
        "detection, segmentation, multitask, flops, pipeline, coco-eval), appending them when "
        "absent; the rest is kept",
    )
    parser.add_argument(
        "--markdown-variant",
        metavar="NAME",
        help="use markers benchmark:SECTION-NAME instead, e.g. fp32, to keep several tables",
    )
    parser.add_argument(
        "--check-floors",
        metavar="FILE",
        help="exit 1 when a ratio ours/baseline is below its floor in FILE "
        "(e.g. benchmarks/floors.json)",
    )
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="measure nothing: read results written by --output-json (to rewrite the tables or "
        "check floors)",
    )
    parser.add_argument(
        "--real",
        metavar="DIR",
        help="instead of the synthetic measurements: train the recipes for real photos "
        "(configs/custom/) from scratch on DIR/raccoon (VOC) and DIR/camvid (mask folder) and "
        "torchvision FCOS-R18 / DeepLabV3-MobileNetV3 (and YOLOv8n when ultralytics is "
        "installed) for the same wall time, scored by pycocotools mAP / mIoU on held-out "
        "photos (tables real-detection, real-segmentation); about an hour on 2 CPU cores",
    )
    parser.add_argument(
        "--real-tasks",
        nargs="+",
        choices=("detection", "segmentation"),
        default=("detection", "segmentation"),
        help="with --real: the tasks to run (default both)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the Python traceback as well as the message when the run fails",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> Options:
    """The :class:`Options` of parsed arguments (no ``--recipes``: :data:`DEFAULT_RECIPES`)."""
    chosen = {f.name: getattr(args, f.name) for f in fields(Options)}
    chosen["recipes"] = args.recipes or list(DEFAULT_RECIPES)
    return Options(**chosen)


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
    """INFO messages of visionkit's own loggers on stderr, as the ``visionkit`` command shows
    them."""
    logger = logging.getLogger("visionkit")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python tools/benchmark.py``; returns the exit status."""
    args = build_parser().parse_args(argv)
    _log_to_stderr()
    try:
        return run_command(options_from_args(args), log=lambda line: print(line, flush=True))
    except (VisionkitError, UnknownNameError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
