"""Multi-task benchmark for issue 20's target "adding either head to the multi-task model keeps
the other heads within 97 % of their metrics".

``python -m benchmarks.multitask_new_heads`` trains ``configs/shapes/multitask_kpt_emb_r18.yaml``
four times at the same step budget (the recipe's ``trainer.max_steps``, or ``--steps``):

- ``base``: the shared heads only (``cls``, ``det``, ``seg``: multitask_r18's), on the shapes set;
- ``+pose``: base + the ``fcos_keypoints`` head, on the same shapes set (it carries keypoints);
- ``+emb``: base + the ``embedding`` head, the identities set mixed in (``weight``s as in the
  recipe);
- ``+pose+emb``: the recipe as written.

Every variant is the recipe less the heads (and, without ``emb``, the identities set) it leaves
out: same backbone, neck, data, augmentations, optimiser, schedule and seed, and the same
number of shapes images per step: without the identities set the batch is the recipe's
``data.batch_size`` times the shapes' share of the mix (the recipe's 10 at 4 : 1 gives 8,
multitask_r18's batch), so the identity images come on top of the shared heads' data
instead of taking a fifth of it. It prints as JSON
each variant's main metrics and, for each shared head, the ratio variant / base of its main
metric (``cls/top1``, ``det/mAP``, ``seg/mIoU``); ``met`` is true when every ratio of a
variant is at least 0.97 (``--out FILE`` also writes the JSON). ``--quick`` shrinks it
(simple_cnn, tiny sets, a few steps) for the benchmark's own test: its ratios mean nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.report import add_output_options, print_results, work_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE = REPO_ROOT / "configs" / "shapes" / "multitask_kpt_emb_r18.yaml"
SHARED = {"cls": "top1", "det": "mAP", "seg": "mIoU"}  # head → main metric
NEW = {"pose": "kpt_mAP", "emb": "auc"}
VARIANTS = {"base": (), "+pose": ("pose",), "+emb": ("emb",), "+pose+emb": ("pose", "emb")}
TARGET = 0.97
#: the identities set of the recipe: in the mix only when the embedding head is
IDENTITIES = "ids"
QUICK = {
    "model.backbone.name": "simple_cnn",
    "model.neck.out_channels": 32,
    "model.heads.det.num_convs": 1,
    "model.heads.pose.num_convs": 1,
    "model.heads.seg.channels": 32,
    "model.heads.emb.num_classes": 6,
    "data.image_size": 64,
    "data.num_workers": 0,
    "scheduler.warmup_steps": 0,
}
QUICK_DATA = {
    ("train", "shapes"): {"num_images": 24, "size": 64, "seed": 0, "max_shapes": 3},
    ("val", "shapes"): {"num_images": 8, "size": 64, "seed": 1, "max_shapes": 3},
    ("train", "ids"): {"identities": 6, "num_images": 24, "size": 32, "seed": 0},
    ("val", "ids"): {"identities": 3, "first_identity": 6, "num_images": 12, "size": 32, "seed": 1},
}


def variant_config(work: Path, new_heads: tuple[str, ...], quick: bool) -> dict[str, Any]:
    """The recipe as a config dict with the shared heads plus ``new_heads``, its datasets
    under ``work`` (generated there on first use), shrunk when ``quick``."""
    from visionkit.config import load_config
    from visionkit.config.files import apply_overrides
    from visionkit.config.mix_keys import MIX_ENTRY_KEYS

    config = load_config(RECIPE).to_dict()
    if quick:
        config = apply_overrides(config, [f"{k}={v}" for k, v in QUICK.items()])
    weights = {name: part.get("weight") or 1.0 for name, part in config["data"]["train"].items()}
    shapes_share = weights["shapes"] / sum(weights.values())
    heads = config["model"]["heads"]
    config["model"]["heads"] = {k: v for k, v in heads.items() if k in SHARED or k in new_heads}
    for split in ("train", "val"):
        parts = config["data"][split]
        for name, entry in parts.items():
            location = "root" if entry["format"] == "identities" else "images"
            entry[location] = str(work / name / split)
            if quick:
                keypoints = {"keypoints": True} if name == "shapes" else {}
                entry["synthetic"] = {**QUICK_DATA[(split, name)], **keypoints}
        if "emb" not in new_heads:  # the shapes set alone: a plain dataset entry
            entry = {k: v for k, v in parts["shapes"].items() if k not in MIX_ENTRY_KEYS}
            config["data"][split] = entry
    if "emb" not in new_heads:  # as many shapes images a step as in the mix
        config["data"]["batch_size"] = max(1, round(config["data"]["batch_size"] * shapes_share))
    config["trainer"]["enable_progress_bar"] = False
    return config


def run(
    work: Path,
    steps: int | None = None,
    quick: bool = False,
    variants: tuple[str, ...] = tuple(VARIANTS),
) -> dict[str, Any]:
    """Train each of ``variants`` at the same step budget; their metrics and, when ``base`` is
    among them, the shared heads' ratios to it."""
    from visionkit.engine.runner import train

    results: dict[str, Any] = {}
    for variant in variants:
        new_heads = VARIANTS[variant]
        config = variant_config(work, new_heads, quick)
        if steps is not None:
            config["trainer"]["max_steps"] = steps
        elif quick:
            config["trainer"]["max_steps"] = 4
        config["name"] = f"multitask_{variant.strip('+').replace('+', '_')}"
        start = time.perf_counter()
        _, metrics = train(config, output_dir=work / "runs" / config["name"])
        wanted = {**SHARED, **{k: NEW[k] for k in new_heads}}
        results[variant] = {
            "heads": sorted(config["model"]["heads"]),
            "steps": config["trainer"]["max_steps"],
            "seconds": round(time.perf_counter() - start, 1),
            "metrics": {
                f"{h}/{m}": round(float(metrics[f"{h}/{m}"]), 4) for h, m in wanted.items()
            },
        }
    if "base" in results:
        add_ratios(results)
    return {
        "case": "multitask_new_heads",
        "recipe": str(RECIPE.relative_to(REPO_ROOT)),
        "target": f"every shared head's main metric >= {TARGET} x base",
        "quick": quick,
        "variants": results,
    }


def add_ratios(results: dict[str, Any]) -> None:
    """Each variant's ``ratio_to_base`` (shared heads' main metrics over ``base``'s) and
    ``met``."""
    base = results["base"]["metrics"]
    for result in results.values():
        ratios = {
            key: round(value / base[key], 4) if base[key] > 0 else None
            for key, value in result["metrics"].items()
            if key in base
        }
        result["ratio_to_base"] = ratios
        result["met"] = all(r is not None and r >= TARGET for r in ratios.values())


def merge(paths: list[Path]) -> dict[str, Any]:
    """The results of several runs (``--variants`` subsets at the same steps) as one, with
    the ratios to ``base``."""
    parts = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    results: dict[str, Any] = {}
    for part in parts:
        results.update(part["variants"])
    if len({r["steps"] for r in results.values()}) > 1:
        raise SystemExit(f"--merge: the runs trained different step budgets: {paths}")
    if "base" in results:
        add_ratios(results)
    return {**parts[0], "variants": {v: results[v] for v in VARIANTS if v in results}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.multitask_new_heads", description=__doc__
    )
    parser.add_argument("--steps", type=int, help="training steps of every variant")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few steps")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="train only these (ratios need base); --merge joins the JSON of several runs",
    )
    parser.add_argument(
        "--merge", nargs="+", type=Path, help="join these --out files of runs of other variants"
    )
    add_output_options(parser)
    args = parser.parse_args(argv)
    if args.merge:
        result = merge(args.merge)
    else:
        with work_folder(args.work) as work:
            result = run(work, args.steps, args.quick, tuple(args.variants))
    print_results(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
