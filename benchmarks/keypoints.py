"""Keypoint benchmark (issue 20): OKS mAP of ``configs/shapes/keypoints_r18.yaml`` on the shapes
data after a wall-clock training budget.

``python -m benchmarks.keypoints`` trains the recipe through ``visionkit.engine.runner.train``
with ``trainer.max_time`` = ``--minutes`` (default 8; the recipe's 1,200-step schedule is cut
there when the machine is slower) and prints the ``pose/`` metrics of the best checkpoint as
JSON (``--out FILE`` also writes them). Target: ``pose/kpt_mAP`` (pycocotools OKS mAP,
IoU .50:.95, the head's ``kpt_oks_sigmas``) >= 0.80. Generating the dataset (first run) is
not counted in ``seconds``: it happens before training, in ``--work``.

``--quick`` shrinks it (simple_cnn, tiny sets, a few steps) for the benchmark's own test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.report import add_output_options, print_results, work_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE = REPO_ROOT / "configs" / "shapes" / "keypoints_r18.yaml"
TARGETS = {"pose/kpt_mAP": 0.80}
COMMON = ["trainer.enable_progress_bar=false"]


def prepare(work: Path, quick: bool) -> list[str]:
    """Generate the datasets in ``work`` (outside the timed training); the overrides that
    point the recipe at them."""
    from visionkit.build.data import shapes_arguments
    from visionkit.config import load_config
    from visionkit.data.synthetic import make_shapes

    config = load_config(RECIPE)
    overrides = []
    for split in ("train", "val"):
        params = shapes_arguments(config.data.model_dump()[split]["synthetic"])
        params = {k: v for k, v in params.items() if v is not None}
        if quick:
            params.update(num_images=24 if split == "train" else 8, size=64)
            overrides.append(f"data.{split}.synthetic.num_images={params['num_images']}")
            overrides.append(f"data.{split}.synthetic.size=64")
        folder = work / "shapes_kp" / split
        if not (folder / "annotations.json").is_file():
            make_shapes(folder, **params)
        overrides.append(f"data.{split}.images={folder}")
    return overrides


def run(work: Path, minutes: float, quick: bool = False) -> dict[str, Any]:
    """Train the recipe under the budget; its metrics, seconds and targets."""
    from visionkit.engine.runner import train

    overrides = [
        *prepare(work, quick),
        f"trainer.max_time={{minutes: {int(minutes)}, seconds: {int(minutes % 1 * 60)}}}",
        *COMMON,
    ]
    if quick:
        overrides += [
            "model.backbone.name=simple_cnn",
            "data.image_size=64",
            "data.num_workers=0",
            "trainer.max_steps=4",
        ]
    start = time.perf_counter()
    _, metrics = train(RECIPE, overrides, output_dir=work / "runs")
    seconds = time.perf_counter() - start
    keep = {k: round(float(v), 4) for k, v in metrics.items() if k.startswith(("pose/", "time/"))}
    return {
        "case": "shapes_keypoints",
        "recipe": str(RECIPE.relative_to(REPO_ROOT)),
        "minutes": minutes,
        "seconds": round(seconds, 1),
        "metrics": keep,
        "targets": TARGETS,
        "met": all(keep.get(k, -1.0) >= v for k, v in TARGETS.items()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.keypoints", description=__doc__)
    parser.add_argument("--minutes", type=float, default=8.0, help="training budget")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few steps")
    add_output_options(parser)
    args = parser.parse_args(argv)
    with work_folder(args.work) as work:
        result = run(work, args.minutes, args.quick)
    print_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
