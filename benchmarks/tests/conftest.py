"""Shared helpers of the benchmark tests: a fake clock, a Markdown page with one section, results
dicts as ``--output-json`` writes them, a floors file, the smallest command line."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from benchmarks.harness import Settings, machine_info
from benchmarks.report import RESULTS_SCHEMA
from benchmarks.suite import command_line


class FakeClock:
    """A clock that advances by the next duration each time a call starts."""

    def __init__(self, durations):
        self.durations = list(durations)
        self.now = 0.0
        self.started = False

    def __call__(self) -> float:
        if self.started:  # the end of a call
            self.now += self.durations.pop(0)
        self.started = not self.started
        return self.now


DOC = """# Benchmarks

Intro text.

<!-- benchmark:detection:start -->
old table
<!-- benchmark:detection:end -->

## Later section

kept as is
"""


def model_entry(label: str, step_s: float, ms: float) -> dict:
    return {
        "model": label,
        "params": 1_000_000,
        "train_step_s": [step_s] * 3,
        "train_images_per_s": 8 / step_s,
        "infer_s": {"1": [ms / 1000] * 3, "8": [8 * ms / 1000] * 3},
        "infer_ms_per_image": {"1": ms, "8": ms},
        "peak_rss_train_mib": 900.0,
        "rss_start_train_mib": 800.0,
        "peak_rss_infer_mib": 850.0,
        "rss_start_infer_mib": 840.0,
        "outputs_per_image": 10.0,
    }


def fake_results(train_ratio: float) -> dict:
    """A complete results dict (as --output-json writes) with a chosen training ratio."""
    base = model_entry("torchvision FCOS", 1.0, 40.0)
    ours = model_entry("visionkit", 1.0 / train_ratio, 20.0)
    settings = Settings(precision="bf16", threads=2)
    return {
        "schema": RESULTS_SCHEMA,
        "machine": machine_info(settings),
        "settings": asdict(settings),
        "command": command_line(["fcos_r18"], settings),
        "sections": {
            "detection": [
                {
                    "case": "fcos_r18",
                    "recipe": "configs/shapes/fcos_r18.yaml",
                    "image_size": [256, 256],
                    "batch_size": 8,
                    "ours": ours,
                    "baseline": base,
                    "ratios": {
                        "train_images_per_s": train_ratio,
                        "infer_ms_per_image_b1": 0.5,
                        "infer_ms_per_image_b8": 0.5,
                    },
                }
            ]
        },
    }


def differing_results() -> dict:
    """``fake_results`` with ours at bf16 and 160 px, the baseline at fp32 and 256 px."""
    results = fake_results(train_ratio=3.0)
    results["settings"].update(baseline_precision="fp32", baseline_image_size=[256, 256])
    entry = results["sections"]["detection"][0]
    entry["image_size"] = [160, 160]
    entry["ours"].update(precision="bf16", image_size=[160, 160])
    entry["baseline"].update(precision="fp32", image_size=[256, 256])
    return results


@pytest.fixture()
def floors_file(tmp_path):
    path = tmp_path / "floors.json"
    floors = {
        "detection/fcos_r18": {"train_images_per_s": 1.2},
        "detection/retinanet_r18": {"train_images_per_s": 1.2},
    }
    path.write_text(json.dumps({"floors": floors}), encoding="utf-8")
    return path


def tiny_benchmark_argv(recipe: str, out, doc) -> list[str]:
    """``tools/benchmark.py`` on one recipe, as small and short as it goes (models only)."""
    return ["--recipes", recipe, "--measure", "models", "--peak-sizes", "64",
        "--precision", "fp32", "--threads", "1", "--image-size", "64", "--batch-size", "2",
        "--infer-batch-sizes", "1", "2", "--warmup", "1", "--reps", "1",
        "--output-json", str(out), "--markdown", str(doc),
    ]  # fmt: skip
