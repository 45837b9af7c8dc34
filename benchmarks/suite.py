"""A whole benchmark run: every recipe's case (with the matrix-multiply peak their FLOP/s are
compared with), then each recipe's data pipeline and the COCO evaluation, as one results dict;
and the ``tools/benchmark.py`` command line that repeats it."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.cases import BenchmarkCase, RecipeCase
from benchmarks.coco_eval import measure_coco_eval
from benchmarks.harness import PeakRSS, Settings, load_average, machine_info, torch_threads
from benchmarks.peak import measure_matmul_peak
from benchmarks.pipeline import measure_pipeline
from benchmarks.recipes import case_for_recipe
from benchmarks.report import RESULTS_SCHEMA
from benchmarks.runner import run_case
from visionkit.build.trainer import cpu_supports_bf16


def run_benchmark(
    recipes: Sequence[str],
    settings: Settings,
    log: Callable[[str], None] = print,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Measure what ``settings.measure`` asks for; the results dict that ``--output-json``
    writes::

        {"schema": 2, "complete": true, "machine": {...}, "settings": {...},
         "command": "python tools/benchmark.py ...",
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
    of the per-round ratio (see :func:`~benchmarks.harness.paired_ratio`); ``ratios_of_medians`` divide the two
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
            # The peaks each model's FLOP/s is a fraction of (its own precision's).
            precisions = peak_precisions(settings)
            peak = measure_matmul_peak(settings.peak_sizes, precisions, reps=settings.reps, log=log)
            peak_rate = {p: peak[p]["gflops_per_s"] * 1e9 for p in precisions}
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


def peak_precisions(settings: Settings) -> tuple[str, ...]:
    """The precisions whose matrix-multiply peak a run measures: fp32 always, bf16 where a
    model runs at bf16 or the CPU has native bf16. (Without native bf16 a bf16 ``torch.mm``
    is emulated at well under 1 GFLOP/s: one 2048 x 2048 product takes about a minute, and
    the quick run's 8 of them took 8 of its 9 minutes, to report a peak no model used.)"""
    used = {settings.precision, settings.baseline_precision or settings.precision}
    return ("fp32", "bf16") if "bf16" in used or cpu_supports_bf16() else ("fp32",)


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
    """An explicit ``python tools/benchmark.py`` command that repeats a run's settings."""
    size, s = settings.image_size, settings
    parts = [
        "python tools/benchmark.py --recipes",
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
