"""COCO box evaluation through pycocotools ``COCOeval``.

Predictions (original-image xyxy boxes, contiguous labels) become a COCO results list
(``image_id``, ``category_id`` of the file, ``bbox`` xywh, ``score``), gathered from every
process, and are scored against the dataset's own annotation file — so running pycocotools by
hand on :attr:`CocoEvaluator.results` gives the same numbers.

>>> ev = CocoEvaluator("det", "data/shapes/val/annotations.json", [1, 2, 3])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from typing import Any

import torch.distributed as dist
from torch import nn

from visionkit.errors import DataError

# The 12 numbers of COCOeval.summarize(), in order.
SUMMARY_KEYS = (
    "mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip


def load_coco_gt(annotations: str | os.PathLike) -> Any:
    """A quiet ``pycocotools.coco.COCO`` of the ground-truth file."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotations))


def to_coco_results(
    image_id: int, prediction: dict[str, Any], category_ids: list[int]
) -> list[dict[str, Any]]:
    """One image's ``{"boxes", "scores", "labels"}`` as COCO result dicts (bbox in xywh)."""
    boxes = prediction["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
    scores = prediction["scores"].detach().float().cpu().numpy().reshape(-1)
    labels = prediction["labels"].detach().cpu().numpy().reshape(-1)
    wh = boxes[:, 2:] - boxes[:, :2]
    return [
        {
            "image_id": int(image_id),
            "category_id": int(category_ids[int(label)]),
            "bbox": [float(boxes[i, 0]), float(boxes[i, 1]), float(wh[i, 0]), float(wh[i, 1])],
            "score": float(scores[i]),
        }
        for i, label in enumerate(labels)
    ]


def coco_evaluate(
    gt: Any, results: list[dict[str, Any]], image_ids: list[int] | None = None
) -> dict[str, float]:
    """Run ``COCOeval(iouType="bbox")``; returns the 12 summary numbers (``nan`` where COCO
    reports -1, e.g. no small objects). No results at all gives zeros, not a crash."""
    from pycocotools.cocoeval import COCOeval

    known_images = set(gt.getImgIds())
    known_cats = set(gt.getCatIds())
    bad = [
        f"image_id {r['image_id']} / category_id {r['category_id']}"
        for r in results
        if r["image_id"] not in known_images or r["category_id"] not in known_cats
    ]
    if bad:
        raise DataError("predictions refer to images or categories not in the ground truth:", bad)
    if not results:
        return {k: 0.0 for k in SUMMARY_KEYS}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="bbox")
        if image_ids is not None:
            ev.params.imgIds = sorted(set(image_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {
        k: (float(v) if v >= 0 else math.nan) for k, v in zip(SUMMARY_KEYS, ev.stats, strict=True)
    }


class CocoEvaluator(nn.Module):
    """``reset / process / evaluate`` for a detection head against a COCO json.

    Args:
        head: the head's name; metric keys are ``"<head>/mAP"``, ``"<head>/mAP50"``, ...
        annotations: the ground-truth COCO json of the evaluated split.
        category_ids: ``category_ids[label]`` is the file's category id of contiguous ``label``.
    """

    def __init__(self, head: str, annotations: str | os.PathLike, category_ids: list[int]) -> None:
        super().__init__()
        self.head = head
        self.annotations = str(annotations)
        self.category_ids = list(category_ids)
        self.results: list[dict[str, Any]] = []
        self.image_ids: list[int] = []
        self._gt = None

    def reset(self) -> None:
        self.results = []
        self.image_ids = []

    def process(self, batch: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
        """``predictions``: this head's per-image dicts in original image coordinates."""
        ids = batch["image_ids"].tolist()
        for image_id, prediction in zip(ids, predictions, strict=True):
            self.image_ids.append(int(image_id))
            self.results += to_coco_results(image_id, prediction, self.category_ids)

    def gather(self) -> tuple[list[dict[str, Any]], list[int]]:
        """Results and image ids from every process (all of them on every rank).

        An image evaluated on several ranks (``DistributedSampler`` pads with repeats) keeps
        the results of the first rank only.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.results, sorted(set(self.image_ids))
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (self.results, self.image_ids))
        owner: dict[int, int] = {}
        for rank, (_, ids) in enumerate(parts):
            for image_id in ids:
                owner.setdefault(image_id, rank)
        results = [
            r for rank, (rs, _) in enumerate(parts) for r in rs if owner[r["image_id"]] == rank
        ]
        return results, sorted(owner)

    def evaluate(self) -> dict[str, float]:
        results, image_ids = self.gather()
        self.results = results
        if self._gt is None:
            self._gt = load_coco_gt(self.annotations)
        stats = coco_evaluate(self._gt, results, image_ids)
        return {f"{self.head}/{k}": v for k, v in stats.items()}
