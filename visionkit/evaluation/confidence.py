"""The score threshold at which a detection head's boxes are best kept: the confidence of the
best F1 (the harmonic mean of precision and recall at IoU 0.50), as Ultralytics reads it from
its F1-confidence curve (``F1_curve.png``, "all classes 0.81 at 0.43").

:func:`f1_curve` reads it from a ``COCOeval`` after ``evaluate()``: COCOeval matches the
detections of each image and class to the ground truth in decreasing score order (a detection
matches the best free true box at IoU >= 0.50), so keeping the detections above a threshold
keeps their matches, and precision and recall at every threshold follow from the matched
detections' scores alone. Per class with ground truth, at each score threshold ``c`` of
:data:`CONF_GRID`: precision = matched / kept detections scoring at least ``c`` (1 when none
does), recall = matched / true objects (COCOeval's ignored ones, crowds, left out); F1 =
2PR / (P + R); the curves are averaged over those classes. :func:`best_conf` picks the
threshold of the best F1 on the mean curve smoothed over ±0.05 (Ultralytics' ``smooth``),
and reports the unsmoothed precision, recall and F1 there.

``visionkit`` keeps it per head with the model (``meta["predict_conf"]``, written at each
validation of training): :mod:`visionkit.inference.options` uses it as the default ``conf``
of predictions (:func:`~visionkit.inference.options.prediction_conf`).

>>> f1 = 0.8 - np.abs(CONF_GRID - 0.43)  # a curve peaking at 0.43
>>> best_conf(f1 + 0.1, f1 - 0.1, f1)
{'conf': 0.43, 'P': 0.9, 'R': 0.7, 'F1': 0.8}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: score thresholds of the F1 curve: 0.01, 0.02, ..., 0.99
CONF_GRID = np.round(np.arange(1, 100) / 100, 2)
#: half width of the smoothing of the mean F1 curve, in grid steps (±0.05)
SMOOTH_STEPS = 5
#: what :func:`best_conf` gives when no box matched (or nothing was detected)
NO_F1 = {"conf": math.nan, "P": 0.0, "R": 0.0, "F1": 0.0}


def f1_curve(ev: Any, conf: np.ndarray = CONF_GRID) -> dict[str, np.ndarray] | None:
    """Mean precision, recall and F1 over the classes with ground truth, at each threshold of
    ``conf``, at COCOeval's IoU (OKS) threshold 0.50, area "all" and its largest number of
    detections per image; ``None`` when no class has ground truth (or nothing was evaluated).
    Also each of those classes' F1 (``"F1_per_class"`` ``[K, len(conf)]``, of the category ids
    ``"cat_ids"``). A class with no detection at all has precision 0 (as Ultralytics' P); one
    whose detections all score under a threshold, precision 1 there.

    ``ev``: a ``pycocotools.cocoeval.COCOeval`` after ``evaluate()`` (boxes, masks or
    keypoints alike: its per-image matches, ``evalImgs``)."""
    params = ev.params
    if not getattr(ev, "evalImgs", None) or not params.iouThrs.size:
        return None
    t = int(np.argmin(np.abs(params.iouThrs - 0.5)))
    max_det = params.maxDets[-1]
    cats = params.catIds if params.useCats else [-1]
    images, areas = len(params.imgIds), len(params.areaRng)
    curves, with_truth = [], []
    for k in range(len(cats)):
        start = k * areas * images  # evalImgs is ordered [category][area][image]; area 0: all
        entries = [e for e in ev.evalImgs[start : start + images] if e is not None]
        truths = sum(int(np.count_nonzero(e["gtIgnore"] == 0)) for e in entries)
        if not truths:
            continue
        scores = np.concatenate([np.asarray(e["dtScores"][:max_det]) for e in entries] or [[]])
        matched = np.concatenate([e["dtMatches"][t, :max_det] for e in entries] or [[]]) > 0
        ignored = np.concatenate([e["dtIgnore"][t, :max_det] for e in entries] or [[]]) > 0
        scores, matched = scores[~ignored], matched[~ignored]
        order = np.argsort(-scores, kind="stable")
        scores, hits = scores[order], np.cumsum(matched[order])
        # detections scoring at least c: the first n of the sorted scores
        n = np.searchsorted(-scores, -conf, side="right")
        tp = np.where(n > 0, hits[np.maximum(n - 1, 0)] if len(hits) else 0, 0)
        precision = np.where(n > 0, tp / np.maximum(n, 1), 1.0 if len(scores) else 0.0)
        recall = tp / truths
        curves.append((precision, recall))
        with_truth.append(cats[k])
    if not curves:
        return None
    precision = np.mean([p for p, _ in curves], axis=0)
    recall = np.mean([r for _, r in curves], axis=0)
    per_class_f1 = np.array([2 * p * r / np.maximum(p + r, 1e-16) for p, r in curves])
    return {
        "conf": np.asarray(conf, dtype=np.float64),
        "P": precision,
        "R": recall,
        "F1": per_class_f1.mean(axis=0),
        "F1_per_class": per_class_f1,
        "cat_ids": with_truth,
    }


def best_conf(
    precision: np.ndarray,
    recall: np.ndarray,
    f1: np.ndarray,
    conf: np.ndarray = CONF_GRID,
    floor: float = 0.0,
) -> dict[str, float]:
    """The threshold of the best F1 on ``f1`` smoothed over ±:data:`SMOOTH_STEPS` grid steps
    (edges repeated), and the unsmoothed precision, recall and F1 there (rounded to 4 places,
    the threshold to the grid's 2). Where the best value holds over a run of thresholds (a
    model whose hits all score above its false positives), the run's middle: the threshold
    farthest from both. Thresholds under ``floor`` (the score threshold the evaluated
    detections were kept at, rounded down to the grid) are not chosen: nothing was scored
    there. No F1 above 0 (no box matched): ``conf`` is ``nan``, the rest 0 (:data:`NO_F1`)."""
    if not np.any(f1 > 0):
        return dict(NO_F1)
    padded = np.concatenate([np.repeat(f1[:1], SMOOTH_STEPS), f1, np.repeat(f1[-1:], SMOOTH_STEPS)])
    window = np.ones(2 * SMOOTH_STEPS + 1) / (2 * SMOOTH_STEPS + 1)
    smooth = np.convolve(padded, window, mode="valid")
    below = conf < max(float(conf[0]), math.floor(floor * 100 + 1e-9) / 100 - 1e-9)
    smooth[below] = -np.inf
    first = int(np.argmax(smooth))
    last = first
    while last + 1 < len(smooth) and smooth[last + 1] >= smooth[first] - 1e-12:
        last += 1
    i = (first + last) // 2
    return {
        "conf": round(float(conf[i]), 2),
        "P": round(float(precision[i]), 4),
        "R": round(float(recall[i]), 4),
        "F1": round(float(f1[i]), 4),
    }
