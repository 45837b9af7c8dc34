"""``python tools/benchmark.py --real DIR``: visionkit's recipes for real photos against
torchvision (and Ultralytics, when installed) trained from scratch for the same wall time, in
the same run, on the dev data (``DIR/raccoon``: VOC XML as published; ``DIR/camvid``: CamVid
label PNGs).

For each task, visionkit's recipe trains first with its own step budget; each baseline then
trains for the wall time visionkit's training steps took (validation excluded on both sides),
with the same precision and threads, and everything is scored the same way: pycocotools'
mAP@[.5:.95] on the held-out photos (detection), mean IoU over the classes at the original
resolution, void ignored (segmentation). A detector sees the photos resized to a longest side:
visionkit's that of its recipe's evaluation pipeline (``data.val_image_size``), each baseline's
the better for it of its training size and that one. The raccoon photos have no split of their
own: every fifth photo (sorted by name) is held out, through ``ImageSets/Main/{train,val}.txt`` written
beside links to the published folders (the data itself is never touched).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import real_baselines as baselines
from visionkit.build.data import build_dataset
from visionkit.data.convert.voc import voc_to_coco

REPO = Path(__file__).resolve().parents[1]
RECIPES = {
    "detection": REPO / "configs" / "custom" / "detect_fcos_r18.yaml",
    "segmentation": REPO / "configs" / "custom" / "semseg_r18.yaml",
}
#: What the targets of the issue ask, shown beside the results.
TARGETS = {
    "detection": "mAP ≥ 0.40 and ≥ 1.5× each baseline, ≤ 10 min of training",
    "segmentation": "mIoU ≥ 0.45 and ≥ 1.5× the baseline, ≤ 10 min of training",
}


def voc_split_root(source: Path, work: Path, every: int = 5) -> Path:
    """A VOC root in ``work`` linking ``source``'s two folders, with every ``every``-th photo
    (by sorted name) in ``ImageSets/Main/val.txt`` and the rest in ``train.txt``."""
    from visionkit.data.convert.voc import voc_folders

    xml_dir, image_dir = voc_folders(source)
    root = work / source.name
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for folder in (xml_dir, image_dir):
        link = root / folder.name
        if not link.exists():
            link.symlink_to(folder.resolve(), target_is_directory=True)
    ids = sorted(p.stem for p in xml_dir.glob("*.xml"))
    val = ids[every - 1 :: every]
    train = [i for i in ids if i not in set(val)]
    for split, names in (("train", train), ("val", val)):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def train_recipe(
    recipe: Path, overrides: Sequence[str], work: Path
) -> tuple[dict[str, float], float, int]:
    """visionkit's recipe from scratch; its validation metrics, training seconds and optimiser
    steps (the recipes stop at a step budget or at their ``max_time``, whichever ends first)."""
    from visionkit.checkpoint import load_checkpoint
    from visionkit.engine.runner import train

    args = [*overrides, "model.backbone.pretrained=false", "trainer.enable_progress_bar=false"]
    run_dir, metrics = train(recipe, args, output_dir=work / recipe.stem)
    steps = int(load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"])
    return metrics, float(metrics["time/train_s"]), steps


def yolo_dataset(root: Path, work: Path, train_set: Any, val_set: Any) -> Path:
    """The VOC split as an Ultralytics dataset (links to the photos, txt labels) and its yaml."""
    base = work / "yolo"
    for split, dataset in (("train", train_set), ("val", val_set)):
        (base / "images" / split).mkdir(parents=True, exist_ok=True)
        (base / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(len(dataset)):
            sample = dataset[i]
            path = Path(dataset.path_of(i))
            link = base / "images" / split / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
            h, w = sample["image"].shape[:2]
            lines = [
                f"{label} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} "
                f"{(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
                for (x0, y0, x1, y1), label in zip(
                    sample["boxes"].tolist(), sample["labels"].tolist(), strict=True
                )
            ]
            (base / "labels" / split / f"{path.stem}.txt").write_text("\n".join(lines))
    names = train_set.label_names["instances"]
    data = base / "data.yaml"
    data.write_text(f"path: {base}\ntrain: images/train\nval: images/val\nnames: {list(names)!r}\n")
    return data


def run_detection(
    data_dir: Path, work: Path, use_bf16: bool, log: Callable[[str], None], extra: Sequence[str]
) -> dict:
    root = voc_split_root(data_dir / "raccoon", work)
    roots = [f"data.train.root={root}", f"data.val.root={root}"]
    log(f"detection: visionkit {RECIPES['detection'].name} on {root} (from scratch)")
    ours, seconds, our_steps = train_recipe(RECIPES["detection"], [*roots, *extra], work)
    log(f"detection: visionkit mAP {ours['det/mAP']:.3f} after {seconds:.0f} s of training")
    spec = {"format": "voc", "root": str(root)}
    train_set = build_dataset({**spec, "split": "train"}, split="train")
    names = train_set.label_names["instances"]
    val_set = build_dataset({**spec, "split": "val", "class_names": names}, split="val")
    gt_json = baselines.write_json(
        work / "val.json", voc_to_coco(root, "val", class_names=names).coco
    )
    longest, scored_at = _recipe_sizes(RECIPES["detection"], extra)
    rows = [_row("visionkit detect_fcos_r18", ours["det/mAP"], seconds, "mAP", our_steps)]
    rows[0]["scored_at"] = scored_at
    log(f"detection: torchvision FCOS-R18 for {seconds:.0f} s")
    tv = baselines.train_torchvision_fcos(
        train_set, val_set, gt_json, seconds, longest, use_bf16, eval_sides=[scored_at]
    )
    rows.append(_row("torchvision FCOS-R18", tv["mAP"], seconds, "mAP", tv["steps"]))
    rows[-1].update(scored_at=tv["eval_side"], scores=tv["scores"])
    if baselines.ultralytics_installed():
        log(f"detection: Ultralytics YOLOv8n for {seconds:.0f} s")
        data_yaml = yolo_dataset(root, work, train_set, val_set)
        val_images = [
            (int(val_set[i]["image_id"]), Path(val_set.path_of(i))) for i in range(len(val_set))
        ]
        yolo = baselines.train_yolov8n(
            data_yaml, val_images, val_set.category_ids, gt_json, seconds, longest, work,
            eval_sizes=[scored_at],
        )  # fmt: skip
        rows.append(_row("Ultralytics YOLOv8n", yolo["mAP"], seconds, "mAP"))
        rows[-1].update(scored_at=yolo["eval_side"], scores=yolo["scores"])
    else:
        log("detection: ultralytics is not installed: no YOLOv8n baseline")
    return {"dataset": "raccoon", "train": len(train_set), "val": len(val_set), "rows": rows}


def run_segmentation(
    data_dir: Path, work: Path, use_bf16: bool, log: Callable[[str], None], extra: Sequence[str]
) -> dict:
    root = data_dir / "camvid"
    roots = [f"data.train.root={root}", f"data.val.root={root}"]
    log(f"segmentation: visionkit {RECIPES['segmentation'].name} on {root} (from scratch)")
    ours, seconds, our_steps = train_recipe(RECIPES["segmentation"], [*roots, *extra], work)
    log(f"segmentation: visionkit mIoU {ours['seg/mIoU']:.3f} after {seconds:.0f} s of training")
    spec = {"format": "mask_folder", "root": str(root), "ignore_index": 11}
    train_set = build_dataset({**spec, "images": "train", "masks": "trainannot"}, split="train")
    val_set = build_dataset({**spec, "images": "val", "masks": "valannot"}, split="val")
    rows = [_row("visionkit semseg_r18", ours["seg/mIoU"], seconds, "mIoU", our_steps)]
    log(f"segmentation: torchvision DeepLabV3-MobileNetV3 for {seconds:.0f} s")
    longest, _ = _recipe_sizes(RECIPES["segmentation"], extra)
    tv = baselines.train_torchvision_deeplab(train_set, val_set, seconds, 256, longest, use_bf16)
    rows.append(_row("torchvision DeepLabV3-MobileNetV3", tv["mIoU"], seconds, "mIoU", tv["steps"]))
    return {"dataset": "camvid", "train": len(train_set), "val": len(val_set), "rows": rows}


def run_real(
    data_dir: str | os.PathLike,
    tasks: Sequence[str] = ("detection", "segmentation"),
    log: Callable[[str], None] = print,
    work_dir: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Every task of ``tasks`` on ``data_dir``; the results as one JSON-able dict.
    ``overrides`` are added to visionkit's recipes (the tests make them tiny)."""
    from benchmarks.harness import Settings, machine_info
    from benchmarks.report import RESULTS_SCHEMA

    data_dir = Path(data_dir)
    use_bf16 = _precision() == "bf16-mixed"
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="visionkit-real-"))
    results: dict[str, Any] = {
        "schema": RESULTS_SCHEMA,
        "machine": machine_info(Settings(precision="bf16" if use_bf16 else "fp32")),
        "sections": [],
        "real": {},
    }
    runners = {"detection": run_detection, "segmentation": run_segmentation}
    for task in tasks:
        start = time.perf_counter()
        result = runners[task](data_dir, work, use_bf16, log, overrides)
        result["target"] = TARGETS[task]
        result["wall_s"] = time.perf_counter() - start
        results["real"][task] = result
        results["sections"].append(f"real-{task}")
    results["machine"]["load_average_end"] = list(os.getloadavg())
    return results


def real_table(results: dict[str, Any], task: str) -> str:
    """The Markdown table of one task: each model's score, its ratio to visionkit's, time."""
    result = results["real"][task]
    rows = result["rows"]
    metric = rows[0]["metric"]
    ours = rows[0]["score"]
    sized = all(row.get("scored_at") for row in rows)  # detection: the longest side scored at
    lines = [
        f"{task} on {result['dataset']} ({result['train']} training, {result['val']} held-out "
        f"images), from scratch; target: {result['target']}",
        "",
        f"| model | {metric} | visionkit ÷ model | training s | steps |{sized * ' scored at |'}",
        f"| --- | --- | --- | --- | --- |{sized * ' --- |'}",
    ]
    for row in rows:
        ratio = ours / row["score"] if row["score"] > 0 else float("inf")
        steps = row["steps"] if row["steps"] is not None else "recipe"
        at = f" longest side {row['scored_at']} px |" if sized else ""
        lines.append(
            f"| {row['model']} | {row['score']:.3f} | {ratio:.2f}× | {row['train_s']:.0f} | "
            f"{steps} |{at}"
        )
    m = results["machine"]
    lines += [
        "",
        f"{m['cpu']}, {m['threads']} threads, {m['precision']}, torch {m['torch']}; load "
        f"average {m['load_average_start']} at the start, {m.get('load_average_end')} at the end.",
    ]
    return "\n".join(lines)


def _row(model: str, score: float, train_s: float, metric: str, steps: int | None = None) -> dict:
    return {
        "model": model,
        "score": float(score),
        "train_s": train_s,
        "metric": metric,
        "steps": steps,
    }


def _recipe_sizes(recipe: Path, overrides: Sequence[str] = ()) -> tuple[int, int]:
    """The longest side of the recipe's training and evaluation sizes (``data.image_size``,
    ``data.val_image_size``), with the run's ``overrides``."""
    from visionkit.config import load_config
    from visionkit.data.image_size import split_image_size

    data = load_config(recipe, ["data.train.root=.", "data.val.root=.", *overrides]).data
    sizes = (split_image_size(data, train=split == "train") for split in ("train", "val"))
    return tuple(s if isinstance(s, int) else max(s) for s in sizes)


def _precision() -> str:
    from visionkit.build.trainer import resolve_precision

    return resolve_precision("auto", "cpu") if not torch.cuda.is_available() else "32-true"
