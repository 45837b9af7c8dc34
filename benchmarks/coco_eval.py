"""How long COCO box evaluation takes with pycocotools, on a large synthetic results file.

visionkit evaluates detections with pycocotools ``COCOeval`` (see
:mod:`visionkit.evaluation.coco`), so its cost is part of every validation. The harness makes
a ground truth of ``images`` images (640x480) with ``objects`` boxes each over 80 categories
(COCO's count), and a results list of ``dets`` detections per image: for each object three
detections near it (jittered by up to 5 %, 15 % and 30 % of its size; the category right 80 %
of the time), the rest random boxes of random categories, scores uniform. It then times what
:class:`~visionkit.evaluation.coco.CocoEvaluator` does: ``loadRes`` of the results, then
``evaluate``, ``accumulate`` and ``summarize`` of ``COCOeval(gt, dt, "bbox")``.

>>> gt, results = synthetic_coco(images=2, objects=3, dets=10, seed=0)
>>> len(gt["images"]), len(gt["annotations"]), len(results)
(2, 6, 20)
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.harness import median

NUM_CATEGORIES = 80
WIDTH, HEIGHT = 640, 480
JITTERS = (0.05, 0.15, 0.30)  # fraction of the object's size, one detection per jitter
STAT_NAMES = (
    "mAP",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` xywh boxes inside the image, sides 8 px to half the image."""
    wh = rng.uniform(8, [WIDTH / 2, HEIGHT / 2], size=(n, 2))
    xy = rng.uniform(0, 1, size=(n, 2)) * ([WIDTH, HEIGHT] - wh)
    return np.concatenate([xy, wh], axis=1)


def synthetic_coco(
    images: int, objects: int, dets: int, seed: int = 0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO ground-truth dict and a results list (``dets`` detections per image); see the
    module docstring for how they are drawn."""
    rng = np.random.default_rng(seed)
    gt: dict[str, Any] = {
        "info": {"description": "visionkit synthetic COCO evaluation benchmark"},
        "images": [],
        "annotations": [],
        "categories": [{"id": c, "name": f"class{c}"} for c in range(1, NUM_CATEGORIES + 1)],
    }
    results: list[dict[str, Any]] = []
    for image_id in range(1, images + 1):
        gt["images"].append({"id": image_id, "width": WIDTH, "height": HEIGHT})
        boxes = _random_boxes(rng, objects)
        cats = rng.integers(1, NUM_CATEGORIES + 1, size=objects)
        for box, cat in zip(boxes, cats, strict=True):
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": int(cat),
                    "bbox": [round(float(v), 2) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
        near = [
            (box, cat, jitter) for jitter in JITTERS for box, cat in zip(boxes, cats, strict=True)
        ][:dets]
        det_boxes, det_cats = [], []
        for box, cat, jitter in near:
            shift = rng.uniform(-jitter, jitter, size=4) * np.r_[box[2:], box[2:]]
            moved = box + shift
            moved[2:] = np.maximum(moved[2:], 1.0)
            det_boxes.append(moved)
            right = rng.uniform() < 0.8
            det_cats.append(int(cat) if right else int(rng.integers(1, NUM_CATEGORIES + 1)))
        extra = dets - len(near)
        if extra > 0:
            det_boxes.extend(_random_boxes(rng, extra))
            det_cats.extend(int(c) for c in rng.integers(1, NUM_CATEGORIES + 1, size=extra))
        scores = rng.uniform(0.01, 1.0, size=len(det_boxes))
        for box, cat, score in zip(det_boxes, det_cats, scores, strict=True):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [round(float(v), 2) for v in box],
                    "score": round(float(score), 4),
                }
            )
    return gt, results


def coco_from_dict(data: dict[str, Any]):
    """A pycocotools ``COCO`` over an in-memory dataset dict (its index built)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def evaluate_boxes(gt_coco, results: list[dict[str, Any]]) -> tuple[list[float], dict[str, float]]:
    """``COCOeval`` of ``results`` against ``gt_coco`` (``bbox``): the 12 summary stats and
    the seconds of ``loadRes``, ``evaluate``, ``accumulate`` and ``summarize``."""
    from pycocotools.cocoeval import COCOeval

    seconds = {}
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        dt = gt_coco.loadRes(results)
        seconds["load_s"] = time.perf_counter() - start
        evaluator = COCOeval(gt_coco, dt, "bbox")
        for step in ("evaluate", "accumulate", "summarize"):
            start = time.perf_counter()
            getattr(evaluator, step)()
            seconds[f"{step}_s"] = time.perf_counter() - start
    return [float(v) for v in evaluator.stats], seconds


def measure_coco_eval(
    images: int,
    objects: int,
    dets: int,
    reps: int,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time :func:`evaluate_boxes` ``reps`` times on one synthetic dataset.

    Returns:
        ``{"backend": "pycocotools", "images", "objects_per_image", "dets_per_image",
        "detections", "eval_s" (median of evaluate + accumulate + summarize), "load_s",
        "evaluate_s", "accumulate_s", "summarize_s" (medians), "eval_times_s": [...],
        "stats": {name: value}}``.
    """
    import pycocotools

    gt, results = synthetic_coco(images, objects, dets, seed)
    gt_coco = coco_from_dict(gt)
    parts: dict[str, list[float]] = {}
    stats: list[float] | None = None
    for _ in range(reps):
        rep_stats, seconds = evaluate_boxes(gt_coco, results)
        if stats is not None and rep_stats != stats:
            raise RuntimeError("COCOeval gave different stats on the same data")
        stats = rep_stats
        for key, value in seconds.items():
            parts.setdefault(key, []).append(value)
    eval_times = [
        e + a + s
        for e, a, s in zip(
            parts["evaluate_s"], parts["accumulate_s"], parts["summarize_s"], strict=True
        )
    ]
    out: dict[str, Any] = {
        "backend": f"pycocotools {getattr(pycocotools, '__version__', '')}".strip(),
        "images": images,
        "objects_per_image": objects,
        "dets_per_image": dets,
        "detections": len(results),
        "eval_s": median(eval_times),
        "eval_times_s": eval_times,
        **{key: median(values) for key, values in parts.items()},
        "stats": dict(zip(STAT_NAMES, stats or [], strict=True)),
    }
    log(
        f"[coco-eval] {images} images x {dets} detections: evaluate+accumulate+summarize "
        f"{out['eval_s']:.2f} s (median of {reps}; loadRes {out['load_s']:.2f} s), "
        f"mAP {out['stats']['mAP']:.3f}"
    )
    return out
