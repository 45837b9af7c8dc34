"""``visionkit benchmark``: speed of the shipped recipes against a baseline measured in the same
run, and of what surrounds training (matrix-multiply peak, data pipeline, COCO evaluation).

Each *case* pairs our model (built from a recipe by :func:`visionkit.create_model`, untrained)
with a baseline built from another library, fed the same synthetic images and targets at the
same size and precision (or, with ``--baseline-precision`` / ``--baseline-image-size``, the
baseline at its own). For both models the harness measures:

- training images/s: forward + loss + backward + optimiser step at the recipe's batch;
- inference ms/image at each of ``infer_batch_sizes``: eval mode, ``torch.inference_mode``,
  post-processing (decoding, NMS) included;
- FLOPs of a training step and of inference (``torch.utils.flop_counter``), and the achieved
  FLOP/s as a fraction of the matrix-multiply peak (at the model's precision) measured at the
  start of the run;
- peak resident memory (process-wide, see :class:`PeakRSS`) while training and while inferring.

Every figure is the median of ``reps`` timed repetitions after ``warmup`` untimed ones. The
timed repetitions of the two models alternate in rounds (ours, baseline; ours, baseline; ...),
and each ratio ours / baseline is the median over rounds of the ratio within a round, so load
from other processes on a shared machine falls on both alike. The ratios are the figures to
read, not the absolute speeds.

The pieces live in :mod:`visionkit.benchmarks`: ``harness`` (settings, timing, memory,
machine), ``cases`` and one module per case — ``detection`` (FCOS / RetinaNet recipes against
torchvision's with a ResNet-18 FPN), ``segmentation`` (against
``deeplabv3_mobilenet_v3_large``), ``multitask`` (against the single-task models in
sequence), ``classification`` (against timm's classifier) —, ``runner`` (one case),
``flops``, ``peak``, ``pipeline`` (the recipe's training loader alone), ``coco_eval``
(pycocotools on a large synthetic results file), ``floors`` and ``report`` (JSON and Markdown).
A new comparison is one more :class:`BenchmarkCase` subclass and one entry in :data:`CASES`.

>>> durations = iter([0.0, 1.0, 1.0, 4.0, 4.0, 6.0])  # a fake clock: calls take 1, 3, 2 s
>>> times = time_alternating({"f": lambda: None}, reps=3, clock=lambda: next(durations))
>>> times, median(times["f"])
({'f': [1.0, 3.0, 2.0]}, 2.0)
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from visionkit.benchmarks.cases import (
    BenchmarkCase,
    RecipeCase,
    build_optimizer,
    recipe_image_size,
    single_head,
)
from visionkit.benchmarks.classification import ClassificationCase
from visionkit.benchmarks.coco_eval import measure_coco_eval
from visionkit.benchmarks.detection import DetectionCase
from visionkit.benchmarks.floors import (
    HIGHER_IS_BETTER,
    check_floors,
    read_floors,
    refuse_floors_at_differing_sides,
    unequal_cases,
)
from visionkit.benchmarks.flops import count_flops
from visionkit.benchmarks.harness import (
    MEASUREMENTS,
    QUICK,
    PeakRSS,
    Settings,
    load_average,
    machine_info,
    median,
    paired_ratio,
    resolve_precision_name,
    time_alternating,
    torch_threads,
)
from visionkit.benchmarks.multitask import MultitaskCase
from visionkit.benchmarks.peak import measure_matmul_peak
from visionkit.benchmarks.pipeline import measure_pipeline
from visionkit.benchmarks.report import (
    RESULTS_SCHEMA,
    TABLES,
    marker,
    read_results,
    write_json,
    write_markdown_section,
)
from visionkit.benchmarks.runner import count_params, run_case
from visionkit.benchmarks.segmentation import IMAGENET_MEAN, IMAGENET_STD, SegmentationCase
from visionkit.config import load_config
from visionkit.errors import ConfigError

__all__ = [
    "CASES",
    "DEFAULT_RECIPES",
    "HIGHER_IS_BETTER",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MEASUREMENTS",
    "QUICK",
    "RESULTS_SCHEMA",
    "TABLES",
    "BenchmarkCase",
    "ClassificationCase",
    "ConfigError",
    "DetectionCase",
    "MultitaskCase",
    "Options",
    "PeakRSS",
    "RecipeCase",
    "SegmentationCase",
    "Settings",
    "asdict",
    "build_optimizer",
    "case_for_recipe",
    "check_floors",
    "command_line",
    "count_flops",
    "count_params",
    "machine_info",
    "marker",
    "median",
    "paired_ratio",
    "read_floors",
    "read_results",
    "recipe_image_size",
    "resolve_precision_name",
    "resolve_recipe",
    "run_benchmark",
    "run_case",
    "run_command",
    "settings_from_options",
    "single_head",
    "time_alternating",
    "write_json",
    "write_markdown_section",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE_DIR = REPO_ROOT / "configs" / "shapes"
DEFAULT_RECIPES = ("classify_r18", "fcos_r18", "retinanet_r18", "semseg_fpn_r18")

# Recipe head name → case class.
CASES: dict[str, type[BenchmarkCase]] = {
    "linear": ClassificationCase,
    "mlp": ClassificationCase,
    "fcos": DetectionCase,
    "retinanet": DetectionCase,
    "semantic_fpn": SegmentationCase,
    "deeplabv3plus": SegmentationCase,
}


def resolve_recipe(recipe: str) -> Path:
    """A recipe path as given, or the name of a shipped recipe (``fcos_r18``)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = RECIPE_DIR / f"{recipe}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    raise ConfigError(f"recipe {recipe!r}: no such file, nor a shipped recipe ({', '.join(names)})")


def case_for_recipe(recipe: str, settings: Settings) -> BenchmarkCase:
    """The benchmark case of a recipe, chosen by its head (:data:`CASES`); a recipe with
    several heads is a :class:`MultitaskCase`."""
    path = resolve_recipe(recipe)
    config = load_config(path)
    heads = [spec["name"] for spec in config.model.heads.values()]
    case_class = CASES.get(heads[0]) if len(heads) == 1 else None
    if len(heads) > 1:
        case_class = MultitaskCase
    if case_class is None:
        raise ConfigError(
            f"{path}: no benchmark case for heads {heads}; cases exist for one head of: "
            f"{', '.join(sorted(CASES))}, or several heads (multi-task)"
        )
    return case_class(path.stem, settings, config, str(path))


# --------------------------------------------------------------------------- running


def run_benchmark(
    recipes: Sequence[str],
    settings: Settings,
    log: Callable[[str], None] = print,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Measure what ``settings.measure`` asks for; the results dict that ``--output-json``
    writes::

        {"schema": 2, "machine": {...}, "settings": {...}, "command": "visionkit benchmark ...",
         "sections": {
           "detection": [{"case": "fcos_r18", "recipe": ..., "image_size": [H, W] (ours),
             "batch_size": 8,
             "ours": {"model", "params", "precision", "image_size": [H, W],
                      "train_images_per_s", "train_step_s": [...],
                      "infer_ms_per_image": {"1": ..., "8": ...}, "infer_s": {...},
                      "peak_rss_train_mib", "peak_rss_infer_mib", "rss_start_train_mib",
                      "rss_start_infer_mib", "outputs_per_image",
                      "flops": {"train_flops", "train_gflops_per_s", "train_peak_fraction",
                                "infer_flops": {"1": ...}, "infer_gflops_per_s": {...},
                                "infer_peak_fraction": {...}}},
             "baseline": {... the same ...},
             "ratios": {"train_images_per_s", "infer_ms_per_image_b1", ...},
             "ratios_of_medians": {... the same keys ...}}],
           "classification": [...], "segmentation": [...], "multitask": [...],
           "flops": {"peak": {"fp32": {"gflops_per_s", "best_size", "by_size"}, "bf16": ...}},
           "pipeline": [{"case", "recipe", "images_per_s", "rep_images_per_s", "batch_size",
                         "num_workers", "image_size", "model_train_images_per_s",
                         "pipeline_over_model", ...}],
           "coco-eval": {"backend", "images", "detections", "eval_s", "stats", ...}}}

    Ratios are ours / baseline of each figure: above 1 is better for images/s, below 1 is
    better for ms/image. Each model's ``precision`` and ``image_size`` are its own
    (``settings.baseline_precision`` / ``baseline_image_size`` for the baseline), and its
    ``peak_fraction``s are of the peak at its precision. ``ratios`` are medians over rounds
    of the per-round ratio (see :func:`paired_ratio`); ``ratios_of_medians`` divide the two
    medians. The pipeline is
    measured for the recipes that have a case, after the models (never at the same time).
    ``progress``, when given, receives the results measured so far (``"complete": False``)
    after each case and each section, so a run stopped part-way leaves them behind.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    measure = settings.measure
    cases = [case_for_recipe(r, settings) for r in recipes]  # every recipe checked first
    rss = PeakRSS()
    sections: dict[str, Any] = {}

    def results(complete: bool) -> dict[str, Any]:
        return {
            "schema": RESULTS_SCHEMA,
            "complete": complete,
            "machine": info,
            "settings": asdict(settings),
            "command": command_line([c.name for c in cases], settings),
            "sections": sections,
        }

    def saved() -> None:
        if progress is not None:
            progress(results(complete=False))

    with torch_threads(settings.threads):
        info = machine_info(settings)
        precision = settings.precision
        if settings.baseline_precision not in (None, precision):
            precision = f"ours {precision}, baseline {settings.baseline_precision}"
        log(
            f"benchmark: {', '.join(measure)}; {len(cases)} recipe(s), {precision}, "
            f"{settings.threads} threads, median of {settings.reps} after {settings.warmup} "
            f"warm-up; CPU {info['cpu']}"
        )
        if "models" in measure:
            # Both precisions' peaks: each model's FLOP/s is a fraction of its own precision's.
            peak = measure_matmul_peak(settings.peak_sizes, reps=settings.reps, log=log)
            peak_rate = {p: peak[p]["gflops_per_s"] * 1e9 for p in ("fp32", "bf16")}
            sections["flops"] = {"peak": peak}
            for case in cases:
                sections.setdefault(case.section, []).append(run_case(case, log, rss, peak_rate))
                sections["flops"] = sections.pop("flops")  # its table after the cases'
                saved()
        if "pipeline" in measure:
            sections["pipeline"] = measure_pipelines(cases, settings, sections, log)
            saved()
        if "coco-eval" in measure:
            sections["coco-eval"] = measure_coco_eval(
                settings.coco_images,
                settings.coco_objects,
                settings.coco_dets,
                settings.coco_reps,
                seed=settings.seed,
                log=log,
            )
    info["peak_rss_resettable"] = rss.resettable
    info["load_average_end"] = load_average()
    info["wall_s"] = round(time.perf_counter() - started, 1)
    # CPU time this process got per second per thread: near 1 when its threads had the cores
    # to themselves, well below under contention (data loader workers are not counted).
    cpu_s = time.process_time() - cpu_started
    info["cpu_share"] = round(cpu_s / max(info["wall_s"], 1e-9) / settings.threads, 2)
    log(
        f"benchmark: measured in {info['wall_s']:.1f} s; this process got "
        f"{info['cpu_share']:.2f} of {settings.threads} threads' CPU time"
    )
    return results(complete=True)


def measure_pipelines(
    cases: Sequence[BenchmarkCase],
    settings: Settings,
    sections: dict[str, Any],
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The training loader of each recipe case, alone, at the case's image size and batch;
    beside our model's training images/s of the same run when it was measured."""
    measured = {
        entry["case"]: entry["ours"]["train_images_per_s"]
        for entries in sections.values()
        if isinstance(entries, list)
        for entry in entries
    }
    out = []
    with tempfile.TemporaryDirectory(prefix="visionkit-benchmark-") as root:
        cache: dict[tuple, Path] = {}
        for case in cases:
            if not isinstance(case, RecipeCase):
                continue
            result = measure_pipeline(
                case.config,
                case.image_size,
                case.batch_size,
                settings.pipeline_workers,
                settings.pipeline_batches,
                settings.warmup,
                settings.reps,
                Path(root),
                cache,
                name=case.name,
                log=log,
            )
            model = measured.get(case.name)
            ratio = result["images_per_s"] / model if model else None
            if ratio is not None:
                log(f"[pipeline/{case.name}] pipeline / model training: {ratio:.2f}x")
            out.append(
                {
                    "case": case.name,
                    "recipe": case.recipe,
                    **result,
                    "model_train_images_per_s": model,
                    "pipeline_over_model": ratio,
                }
            )
    return out


def command_line(recipes: Sequence[str], settings: Settings) -> str:
    """An explicit ``visionkit benchmark`` command that repeats a run's settings."""
    size, s = settings.image_size, settings
    parts = [
        "visionkit benchmark --recipes",
        *recipes,
        "--measure",
        *s.measure,
        f"--precision {s.precision} --threads {s.threads}",
        f"--image-size {size[0]} {size[1]}" if size else "",
        f"--baseline-precision {s.baseline_precision}" if s.baseline_precision else "",
        "--baseline-image-size {} {}".format(*s.baseline_image_size)
        if s.baseline_image_size
        else "",
        f"--batch-size {s.batch_size}" if s.batch_size else "",
        "--infer-batch-sizes",
        *(str(b) for b in s.infer_batch_sizes),
        f"--warmup {s.warmup} --reps {s.reps}",
    ]
    if "models" in s.measure:
        parts += ["--peak-sizes", *(str(n) for n in s.peak_sizes)]
    if "pipeline" in s.measure:
        parts.append(f"--pipeline-batches {s.pipeline_batches}")
        if s.pipeline_workers is not None:
            parts.append(f"--pipeline-workers {s.pipeline_workers}")
    if "coco-eval" in s.measure:
        parts.append(
            f"--coco-eval-size {s.coco_images} {s.coco_objects} {s.coco_dets} "
            f"--coco-eval-reps {s.coco_reps}"
        )
    return " ".join(p for p in parts if p)


# --------------------------------------------------------------------------- command


@dataclass
class Options:
    """The ``visionkit benchmark`` options (``None``: the default, or ``--quick``'s).

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
    """``visionkit benchmark``: measure (or read ``--from-json``), write the JSON and the
    Markdown tables, check the floors. Returns the exit code: 1 when a floor is not met."""
    if options.from_json:
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
