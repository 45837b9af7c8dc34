"""Output: the JSON results file and one Markdown table per section, written between
``<!-- benchmark:<tag>:start/end -->`` markers of a document."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from visionkit.errors import ConfigError

# Version of the results layout: 2 added the flops, pipeline and coco-eval sections, the
# per-case batch_size and each model's flops (files of version 1 are still read).
RESULTS_SCHEMA = 2


def marker(tag: str, end: bool = False) -> str:
    return f"<!-- benchmark:{tag}:{'end' if end else 'start'} -->"


def write_markdown_section(path: str | os.PathLike, tag: str, body: str) -> None:
    """Put ``body`` between the ``benchmark:<tag>`` start/end markers of a Markdown file,
    leaving everything outside them untouched; append the markers and body at the end of the
    file when they are absent (creating the file if needed)."""
    path = Path(path)
    start, end = marker(tag), marker(tag, end=True)
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        text = text[:i] + block + text[j + len(end) :]
    elif i >= 0 or j >= 0:
        raise ConfigError(f"unbalanced markers {start} / {end}", str(path))
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _n(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _rss(entry: Mapping[str, Any], phase: str) -> str:
    peak, start = entry[f"peak_rss_{phase}_mib"], entry.get(f"rss_start_{phase}_mib")
    return f"{peak:.0f}" + (f" (+{max(0.0, peak - start):.0f})" if start else "")


def _load_text(machine: Mapping[str, Any]) -> str:
    start, end = machine.get("load_average_start"), machine.get("load_average_end")
    if not start or not end:
        return ""
    share = machine.get("cpu_share")
    got = "" if share is None else f"; the run got {share:.2f} of its threads' CPU time"
    return f", 1-min load average {start[0]:.1f} at the start and {end[0]:.1f} at the end{got}"


def side_settings(
    results: Mapping[str, Any], entry: Mapping[str, Any]
) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """``{"ours": (precision, (H, W)), "baseline": (...)}`` of one case's entry: what each
    model's entry records, else (results written before these were recorded) the run's
    settings: ``precision``, ``baseline_precision``, the entry's ``image_size``,
    ``baseline_image_size``."""
    s = results.get("settings", {})
    size = entry.get("image_size")
    defaults = {
        "ours": (s.get("precision"), size),
        "baseline": (
            s.get("baseline_precision") or s.get("precision"),
            s.get("baseline_image_size") or size,
        ),
    }
    out = {}
    for which, (precision, default_size) in defaults.items():
        model = entry.get(which, {})
        side_size = model.get("image_size", default_size)
        out[which] = (
            model.get("precision") or precision,
            None if side_size is None else tuple(side_size),
        )
    return out


def sides_differ(results: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    """Whether a case's two models ran at different precisions or image sizes."""
    sides = side_settings(results, entry)
    return sides["ours"] != sides["baseline"]


def _px(size: Any) -> str:
    return "×".join(str(v) for v in size)


def _sides_text(results: Mapping[str, Any], entries: list[Mapping[str, Any]]) -> str | None:
    """``ours: **bf16** at 160×160 px; baseline: **fp32** at 256×256 px`` when some case's
    models ran at different settings, else ``None`` (the table then names one precision)."""
    if not any(sides_differ(results, e) for e in entries):
        return None
    parts = []
    for which in ("ours", "baseline"):
        sides = [side_settings(results, e)[which] for e in entries]
        precisions = sorted({p for p, _ in sides if p})
        sizes = sorted({_px(size) for _, size in sides if size})
        parts.append(
            f"{which}: **{', '.join(precisions)}**"
            + (f" at {', '.join(sizes)} px" if sizes else "")
        )
    return "; ".join(parts)


def _model_cell(results: Mapping[str, Any], entry: Mapping[str, Any], which: str) -> str:
    """A model's label, with its precision and size appended when the two sides differ."""
    label = entry[which]["model"]
    if not sides_differ(results, entry):
        return label
    precision, size = side_settings(results, entry)[which]
    return f"{label} ({precision}" + (f", {_px(size)} px)" if size else ")")


def comparison_table(
    results: Mapping[str, Any],
    section: str,
    outputs_header: str | None = None,
    ratio_label: str = "ours / torchvision",
) -> str:
    """The Markdown of one model-against-model section: settings line, then one block of
    three rows (ours, baseline, ratio headed ``ratio_label``) per case; a column of
    ``outputs_per_image`` headed ``outputs_header`` when given. When the two models of a case
    ran at different precisions or sizes, the settings line gives each side's and each model
    cell its own."""
    s, m = results["settings"], results["machine"]
    batches = s["infer_batch_sizes"]
    entries = results["sections"].get(section, [])
    sizes = sorted({"×".join(str(v) for v in e["image_size"]) for e in entries})
    train_batches = sorted({str(e.get("batch_size", s["batch_size"])) for e in entries})
    extra = f" {outputs_header} |" if outputs_header else ""
    sides = _sides_text(results, entries) or f"**{s['precision']}**, {', '.join(sizes)} px"
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cpus_usable']} usable cores, "
        f"{m['threads']} torch threads{_load_text(m)}), torch {m['torch']}, torchvision {m['torchvision']}, "
        f"timm {m['timm']}; {sides}, training batch "
        f"{', '.join(train_batches)}, each figure the median of {s['reps']} after {s['warmup']} "
        f"warm-up repetitions; ratios are medians of the per-round ratios (the two models "
        f"timed back to back). Command: `{results['command']}`.",
        "",
        "| recipe | model | params (M) | train images/s | "
        + " | ".join(f"ms/image b{b}" for b in batches)
        + f" |{extra} peak RSS train / infer, MiB (+ over phase start) |",
        "| --- | --- | ---: | ---: | "
        + " | ".join("---:" for _ in batches)
        + (" | ---:" if outputs_header else "")
        + " | ---: |",
    ]
    for e in entries:
        for which, first in (("ours", f" {e['case']} "), ("baseline", " ")):
            r = e[which]
            per_image = r.get("outputs_per_image")
            cell = "" if per_image is None else f"{per_image:.0f}"
            lines.append(
                f"|{first}| {_model_cell(results, e, which)} | {r['params'] / 1e6:.1f} | "
                f"{_n(r['train_images_per_s'])} | "
                + " | ".join(_n(r["infer_ms_per_image"][str(b)]) for b in batches)
                + (f" | {cell}" if outputs_header else "")
                + f" | {_rss(r, 'train')} / {_rss(r, 'infer')} |"
            )
        ratios = e["ratios"]
        lines.append(
            f"| | **{ratio_label}** | | **{ratios['train_images_per_s']:.2f}×** | "
            + " | ".join(f"**{ratios[f'infer_ms_per_image_b{b}']:.2f}×**" for b in batches)
            + (" | | |" if outputs_header else " | |")
        )
    return "\n".join(lines)


def detection_table(results: Mapping[str, Any]) -> str:
    """The Markdown of the ``detection`` section (with a detections/image column)."""
    return comparison_table(results, "detection", "detections/image")


def segmentation_table(results: Mapping[str, Any]) -> str:
    """The Markdown of the ``segmentation`` section."""
    return comparison_table(results, "segmentation")


def classification_table(results: Mapping[str, Any]) -> str:
    """The Markdown of the ``classification`` section (against timm's classifier)."""
    return comparison_table(results, "classification", ratio_label="ours / timm")


# Issue #5: the multi-task model's inference at most this fraction of the single-task models'.
MULTITASK_INFER_TARGET = 0.5


def multitask_table(results: Mapping[str, Any]) -> str:
    """The Markdown of the ``multitask`` section, with whether each inference ratio meets
    :data:`MULTITASK_INFER_TARGET`."""
    lines = [comparison_table(results, "multitask", ratio_label="multi-task / single-task")]
    for e in results["sections"].get("multitask", []):
        verdicts = [
            f"b{b} {e['ratios'][f'infer_ms_per_image_b{b}']:.3f}× "
            + (
                "(met)"
                if e["ratios"][f"infer_ms_per_image_b{b}"] <= MULTITASK_INFER_TARGET
                else "(not met)"
            )
            for b in results["settings"]["infer_batch_sizes"]
        ]
        lines.append(
            f"\n{e['case']}: inference target ≤ {MULTITASK_INFER_TARGET:.2f}× of the single-task "
            f"models in sequence: {', '.join(verdicts)}."
        )
    return "\n".join(lines)


def _measured(results: Mapping[str, Any]) -> str:
    """The first words of a table's settings line: date, machine, threads, versions."""
    m = results["machine"]
    return (
        f"Measured {m['date']} on {m['cpu']} ({m['cpus_usable']} usable cores, "
        f"{m['threads']} torch threads{_load_text(m)}), torch {m['torch']}"
    )


# Issue #9 targets: the fraction of the measured matrix-multiply peak a training step reaches.
TRAIN_PEAK_TARGETS = {"bf16": 0.50, "fp32": 0.70}


def flops_table(results: Mapping[str, Any]) -> str:
    """The Markdown of the ``flops`` section: the measured matrix-multiply peaks, then for
    each model of each case the FLOPs of a training step and of inference (counted with
    ``FlopCounterMode``), the achieved GFLOP/s (FLOPs / median time) and their fraction of
    the peak at the model's precision, with the training target of issue #9 (at our
    precision)."""
    s = results["settings"]
    peak = results["sections"]["flops"]["peak"]
    precision = s["precision"]
    cases = [
        e
        for entries in results["sections"].values()
        if isinstance(entries, list)
        for e in entries
        if "flops" in e.get("ours", {})
    ]
    sides = _sides_text(results, cases)
    batches = s["infer_batch_sizes"]
    by_size = "; ".join(
        f"{p} " + ", ".join(f"{n}: {v['gflops_per_s']:.0f}" for n, v in peak[p]["by_size"].items())
        for p in ("fp32", "bf16")
        if p in peak
    )
    target = TRAIN_PEAK_TARGETS[precision]
    lines = [
        f"{_measured(results)}; "
        + (
            f"{sides}; each model's % of the peak at its own precision"
            if sides
            else f"**{precision}**"
        )
        + ". Matrix-multiply peak (`torch.mm`, square, "
        f"median of {peak['reps']}, GFLOP/s by side: {by_size}): "
        + ", ".join(
            f"**{p} {peak[p]['gflops_per_s']:.0f} GFLOP/s**" for p in ("fp32", "bf16") if p in peak
        )
        + ("" if "bf16" in peak else " (bf16 not measured: no native bf16, no model at bf16)")
        + ". FLOPs counted with `torch.utils.flop_counter.FlopCounterMode` "
        f"(training: forward + loss + backward; inference: the whole call), divided by the "
        f"median time of the same run's step (the optimiser step and everything uncounted "
        f"included). Command: `{results['command']}`.",
        "",
        "| case | model | train GFLOP/image | train GFLOP/s | train % of peak | "
        + " | ".join(f"infer GFLOP/s b{b} (% of peak)" for b in batches)
        + " |",
        "| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in batches) + " |",
    ]
    verdicts = []
    for section, entries in results["sections"].items():
        if not isinstance(entries, list):
            continue
        for e in entries:
            if "flops" not in e.get("ours", {}):
                continue
            for which, first in (("ours", f" {section}/{e['case']} "), ("baseline", " ")):
                f = e[which]["flops"]
                batch = e.get("batch_size", s["batch_size"])
                lines.append(
                    f"|{first}| {_model_cell(results, e, which)} | "
                    f"{f['train_flops'] / batch / 1e9:.2f} | "
                    f"{_n(f['train_gflops_per_s'])} | {100 * f['train_peak_fraction']:.0f} % | "
                    + " | ".join(
                        f"{_n(f['infer_gflops_per_s'][str(b)])} "
                        f"({100 * f['infer_peak_fraction'][str(b)]:.0f} %)"
                        for b in batches
                    )
                    + " |"
                )
            ours = e["ours"]["flops"]["train_peak_fraction"]
            base = e["baseline"]["flops"]["train_peak_fraction"]
            of = f" of the {side_settings(results, e)['baseline'][0]} peak" if sides else ""
            verdicts.append(
                f"{e['case']} {100 * ours:.0f} % (baseline {100 * base:.0f} %{of}, "
                + ("met" if ours >= target else "not met")
                + ")"
            )
    if verdicts:
        lines.append(
            f"\nTraining target ≥ {100 * target:.0f} % of the {precision} peak: "
            + "; ".join(verdicts)
            + "."
        )
    return "\n".join(lines)


# Issue #9 target: the data pipeline delivers at least this multiple of what the model consumes.
PIPELINE_TARGET = 3.0


def pipeline_table(results: Mapping[str, Any]) -> str:
    """The Markdown of the ``pipeline`` section: the recipe's training loader alone, against
    our model's training images/s of the same run."""
    lines = [
        f"{_measured(results)}. Each figure the median of {results['settings']['reps']} "
        f"repetitions of {results['settings']['pipeline_batches']} batches after the warm-up "
        f"(which starts the workers). Command: `{results['command']}`.",
        "",
        "| recipe | workers | batch | px | train transforms | pipeline images/s | "
        "model train images/s (same run) | pipeline / model |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for e in results["sections"]["pipeline"]:
        model = e.get("model_train_images_per_s")
        ratio = e.get("pipeline_over_model")
        verdict = "" if ratio is None else (" (met)" if ratio >= PIPELINE_TARGET else " (not met)")
        lines.append(
            f"| {e['case']} | {e['num_workers']} | {e['batch_size']} | {e['image_size'][0]} | "
            f"{', '.join(e['transforms']) or 'none'} + normalise | {_n(e['images_per_s'])} | "
            + ("" if model is None else _n(model))
            + " | "
            + ("" if ratio is None else f"**{ratio:.1f}×**{verdict}")
            + " |"
        )
    lines.append(f"\nTarget: pipeline / model ≥ {PIPELINE_TARGET:.0f}×.")
    return "\n".join(lines)


def coco_eval_table(results: Mapping[str, Any]) -> str:
    """The Markdown of the ``coco-eval`` section."""
    c = results["sections"]["coco-eval"]
    reps = len(c["eval_times_s"])
    return "\n".join(
        [
            f"{_measured(results)}. Median of {reps} repetitions. Command: `{results['command']}`.",
            "",
            "| backend | images | objects/image | detections | loadRes s | evaluate s | "
            "accumulate s | summarize s | **evaluate + accumulate + summarize s** | mAP |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {c['backend']} | {c['images']} | {c['objects_per_image']} | "
            f"{c['detections']} | {c['load_s']:.2f} | {c['evaluate_s']:.2f} | "
            f"{c['accumulate_s']:.2f} | {c['summarize_s']:.3f} | **{c['eval_s']:.2f}** | "
            f"{c['stats']['mAP']:.4f} |",
        ]
    )


# One table function per section.
TABLES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "detection": detection_table,
    "segmentation": segmentation_table,
    "multitask": multitask_table,
    "classification": classification_table,
    "flops": flops_table,
    "pipeline": pipeline_table,
    "coco-eval": coco_eval_table,
    "real-detection": lambda results: _real_table(results, "detection"),
    "real-segmentation": lambda results: _real_table(results, "segmentation"),
}


def _real_table(results: Mapping[str, Any], task: str) -> str:
    from benchmarks.real import real_table  # imports visionkit's trainer: only when needed

    return real_table(dict(results), task)


def write_json(path: str | os.PathLike, results: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--out`` and ``--work``: the options every ``python -m benchmarks.<name>`` shares."""
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")


@contextlib.contextmanager
def work_folder(work: Path | None) -> Iterator[Path]:
    """``work`` (made when missing, kept afterwards), else a temporary folder removed at the
    end."""
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
        yield work
        return
    with tempfile.TemporaryDirectory(prefix="visionkit-benchmark-") as tmp:
        yield Path(tmp)


def print_results(results: Any, out: Path | None) -> None:
    """Print ``results`` as JSON and, given ``out``, write them there too."""
    print(json.dumps(results, indent=1))
    if out is not None:
        write_json(out, results)


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a results file written by ``--output-json``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read benchmark results: {err}", str(path)) from None
    if not isinstance(data, dict) or data.get("schema") not in (1, RESULTS_SCHEMA):
        raise ConfigError(f"not a benchmark results file (schema {RESULTS_SCHEMA})", str(path))
    return data
