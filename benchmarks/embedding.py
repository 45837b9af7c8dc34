"""Embedding benchmarks (issue 20): recognition of identities never seen in training.

``python -m benchmarks.embedding`` runs two cases through ``visionkit.engine.runner.train`` and
prints their metrics as JSON (``--out FILE`` also writes them):

* ``shapes``: ``configs/shapes/embedding_r18.yaml`` (40 training styles, 20 held-out styles
  for validation), under a wall-clock budget (``--minutes``, default 8: ``trainer.max_time``).
  Targets: verification ROC AUC >= 0.98 and recall@1 >= 0.95.
* ``digits``: scikit-learn's 8×8 digits as identities, upscaled to 32×32 RGB: train on digits
  0-6, verify on 7-9, which the model never saw, with synthetic identities made of the seven
  (``SwapHalves`` and ``RotateIdentities``, :mod:`visionkit.data.identity_mixing`) for
  ``--digits-steps`` (default 3,000). Target: ROC AUC >= 0.95. Needs
  ``pip install -e ".[bench]"`` (scikit-learn: a benchmark-only extra, not a dependency).

``--backbone simple_cnn`` / ``--loss supcon`` run either case with another backbone or loss;
``--quick`` shrinks both (a smoke run: a few steps, tiny sets) for the benchmark's own test.
Results of a run: ``benchmarks/results/embedding-r18-cpu.json`` (shapes),
``benchmarks/results/embedding-digits-cpu.json`` (digits) and ``docs/embeddings.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.report import add_output_options, print_results, work_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
SHAPES_RECIPE = REPO_ROOT / "configs" / "shapes" / "embedding_r18.yaml"
TARGETS = {
    "shapes": {"emb/auc": 0.98, "emb/recall@1": 0.95},
    "digits": {"emb/auc": 0.95},
}
COMMON = ["trainer.enable_progress_bar=false", "data.num_workers=0"]


def _train(config: Any, overrides: list[str], out: Path) -> tuple[dict[str, float], float]:
    from visionkit.engine.runner import train

    start = time.perf_counter()
    _, metrics = train(config, overrides, output_dir=out)
    return metrics, time.perf_counter() - start


def shapes_case(
    work: Path,
    minutes: float,
    quick: bool = False,
    backbone: str | None = None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """The shapes recipe on held-out styles, stopped after ``minutes`` of training
    (``backbone``: another backbone than the recipe's)."""
    overrides = [
        *([f"model.backbone.name={backbone}"] if backbone else []),
        f"data.train.root={work / 'shape_ids' / 'train'}",
        f"data.val.root={work / 'shape_ids' / 'val'}",
        f"trainer.max_time={{minutes: {int(minutes)}, seconds: {int(minutes % 1 * 60)}}}",
        *COMMON,
        *extra,
    ]
    if quick:
        overrides += [
            "model.backbone.name=simple_cnn",
            "data.train.synthetic.identities=16",
            "model.heads.emb.num_classes=16",
            "data.train.synthetic.num_images=160",
            "data.val.synthetic.num_images=60",
            "trainer.max_steps=6",
            "trainer.val_check_interval=3",
        ]
    metrics, seconds = _train(SHAPES_RECIPE, overrides, work / f"runs_{backbone or 'recipe'}")
    what = f"{SHAPES_RECIPE.relative_to(REPO_ROOT)}" + (
        f", backbone {backbone}" if backbone else ""
    )
    what += "".join(f", {e}" for e in extra)
    return _result("shapes", metrics, seconds, what)


def write_digits(root: Path, size: int = 32) -> None:
    """scikit-learn's digits as two ImageFolders: ``train`` (0-6) and ``val`` (7-9)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        split = "train" if label <= 6 else "val"
        folder = root / split / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        grey = np.clip(pixels / 16.0 * 255.0, 0, 255).astype(np.uint8)
        image = Image.fromarray(grey).resize((size, size), Image.BILINEAR).convert("RGB")
        image.save(folder / f"{i:05d}.png")


def digits_config(root: Path, steps: int) -> dict[str, Any]:
    return {
        "name": "digits_embedding",
        "seed": 0,
        "model": {
            "backbone": {"name": "resnet18"},
            "heads": {
                "emb": {
                    "name": "embedding",
                    "embedding_dim": 64,
                    "loss": "arcface",
                    "scale": 16.0,
                    "margin": 0.3,
                }
            },
        },
        "data": {
            "train": {"format": "identities", "root": str(root / "train")},
            "val": {"format": "identities", "root": str(root / "val")},
            "image_size": 32,
            "batch_size": 64,
            "transforms": {
                "train": [
                    {
                        "name": "Affine",
                        "scale": [0.9, 1.1],
                        "translate_percent": [-0.08, 0.08],
                        "rotate": [-10, 10],
                        "p": 0.8,
                    },
                    # 7 identities are too few to learn what tells new ones apart: every
                    # composite of two halves, and every quarter turn, is an identity of its
                    # own (4 x (7 + 2 x 49) = 420; visionkit.data.identity_mixing)
                    {"name": "SwapHalves", "p": 1.0},
                    {"name": "RotateIdentities"},
                ],
                "val": [{"name": "Resize", "height": 32, "width": 32}],
            },
        },
        "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.05},
        "scheduler": {"name": "cosine", "warmup_steps": max(1, steps // 20)},
        "trainer": {
            "max_steps": steps,
            "check_val_every_n_epoch": None,
            "val_check_interval": max(1, steps // 6),
            "log_every_n_steps": 10,
        },
    }


def digits_case(
    work: Path,
    quick: bool = False,
    backbone: str | None = None,
    steps: int = 3000,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Digits 0-6 trained on, 7-9 verified."""
    write_digits(work / "digits")
    config = digits_config(work / "digits", steps=4 if quick else steps)
    config["model"]["backbone"]["name"] = "simple_cnn" if quick else backbone or "resnet18"
    metrics, seconds = _train(config, [*COMMON, *extra], work / "digit_runs")
    name = config["model"]["backbone"]["name"]
    loss = next((e.split("=", 1)[1] for e in extra if e.startswith("model.heads.emb.loss=")), None)
    what = f"{name}, {loss or 'arcface'}, SwapHalves + RotateIdentities, {steps} steps"
    return _result("digits", metrics, seconds, what)


def _result(case: str, metrics: dict[str, float], seconds: float, what: str) -> dict[str, Any]:
    keep = {k: round(float(v), 4) for k, v in metrics.items() if k.startswith("emb/")}
    targets = TARGETS[case]
    return {
        "case": case,
        "model": what,
        "seconds": round(seconds, 1),
        "metrics": keep,
        "targets": targets,
        "met": all(keep.get(k, -1.0) >= v for k, v in targets.items()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.embedding", description=__doc__)
    parser.add_argument("--cases", nargs="+", default=["shapes", "digits"], choices=list(TARGETS))
    parser.add_argument("--minutes", type=float, default=8.0, help="shapes training budget")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few steps")
    parser.add_argument("--backbone", help="another backbone (e.g. simple_cnn) for both cases")
    parser.add_argument("--digits-steps", type=int, default=3000, help="digits training steps")
    parser.add_argument(
        "--loss", choices=["arcface", "cosface", "supcon", "triplet"], help="another loss"
    )
    add_output_options(parser)
    args = parser.parse_args(argv)
    if "digits" in args.cases and importlib.util.find_spec("sklearn") is None:
        parser.error(
            "the digits case reads scikit-learn's digits: pip install scikit-learn (or "
            "pip install -e '.[bench]'; a benchmark-only dependency), or run --cases shapes"
        )
    extra = [f"model.heads.emb.loss={args.loss}"] if args.loss else []
    with work_folder(args.work) as work:
        results = []
        for case in args.cases:
            if case == "shapes":
                results.append(shapes_case(work, args.minutes, args.quick, args.backbone, extra))
            else:
                results.append(
                    digits_case(work, args.quick, args.backbone, args.digits_steps, extra)
                )
    print_results(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
