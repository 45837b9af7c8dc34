"""Evaluation of a detection-plus-embedding head (``fcos_embedding``): COCO box metrics and
the embeddings of the detected objects.

Boxes: ``<head>/mAP``, ``<head>/mAP50``, ... of :class:`~visionkit.evaluation.coco.
CocoEvaluator`. Embeddings: each ground-truth box with an identity (the annotation's
``identity``, read by :mod:`visionkit.data.readers.coco_identities`) takes the embedding of
the detection that overlaps it most, when that IoU is at least ``iou_thresh`` (0.5), whatever
its class or score; over those embeddings, the verification and retrieval metrics of
:mod:`visionkit.evaluation.embedding`, prefixed ``id_``: ``<head>/id_auc``,
``/id_tar@far1e-3``, ``/id_tar@far1e-2``, ``/id_accuracy``, ``/id_threshold``,
``/id_recall@1``, ``/id_recall@5``, ``/id_recall@10``, ``/id_mAP``; and
``<head>/id_matched``, the fraction of identity boxes that a detection matched (a box that
none matched has no embedding to score). Records are sorted by (image id, box), so the pairs
and the gallery/query split do not depend on batching or the number of processes.

>>> import numpy as np, torch
>>> truth = {1: (np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0, 1]))}
>>> prediction = {"boxes": torch.tensor([[1.0, 0, 10, 10]]), "embeddings": torch.eye(2)[:1]}
>>> [(image, box, identity) for image, box, identity, _ in match_identities(1, truth[1],
...  prediction, 0.5)]
[(1, 0, 0)]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torchvision.ops import box_iou

from visionkit.errors import DataError
from visionkit.evaluation.coco import CocoEvaluator
from visionkit.evaluation.embedding import (
    retrieval_metrics,
    small_set_note,
    verification_metrics,
)

logger = logging.getLogger(__name__)

#: One identity box's record: (image id, box index in the image, identity, embedding [D]).
Record = tuple[int, int, int, np.ndarray]


def identity_truth(dataset: Any) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """image id → (float ``[N, 4]`` xyxy boxes in original pixels, int64 ``[N]`` identity
    indices, ``-1`` without one) of a COCO reader built with ``identities=True``.

    Raises:
        DataError: the dataset carries no identities.
    """
    targets = getattr(dataset, "targets", None)
    if not getattr(dataset, "identities", False) or targets is None:
        where = getattr(dataset, "ann_path", type(dataset).__name__)
        raise DataError(
            f"{where}: the embedding metrics of fcos_embedding need the annotations' "
            "'identity' field, read by the coco reader with identities: true"
        )
    return {
        int(info["id"]): (np.asarray(t["boxes"], np.float32), np.asarray(t["identities"]))
        for info, t in zip(dataset.images, targets, strict=True)
    }


def match_identities(
    image_id: int,
    truth: tuple[np.ndarray, np.ndarray],
    prediction: Mapping[str, Any],
    iou_thresh: float,
) -> list[Record]:
    """The records of one image: for each ground-truth box with an identity, the embedding
    of the detection with the highest IoU with it, if that IoU is at least ``iou_thresh``."""
    boxes, identities = truth
    chosen = np.flatnonzero(np.asarray(identities) >= 0)
    detected = torch.as_tensor(prediction["boxes"]).float().cpu().reshape(-1, 4)
    if len(chosen) == 0 or len(detected) == 0:
        return []
    iou = box_iou(torch.as_tensor(boxes[chosen]).float(), detected)  # [G, K]
    best, index = iou.max(dim=1)
    embeddings = torch.as_tensor(prediction["embeddings"]).float().cpu().numpy()
    return [
        (int(image_id), int(j), int(identities[j]), embeddings[int(k)])
        for j, ok, k in zip(chosen, (best >= iou_thresh).tolist(), index.tolist(), strict=True)
        if ok
    ]


def identity_metrics(records: Sequence[Record], identity_boxes: int) -> dict[str, float]:
    """``id_matched`` and the ``id_``-prefixed verification and retrieval metrics of the
    records' embeddings (``id_auc`` ``nan`` with fewer than two records)."""
    metrics = {"id_matched": len(records) / identity_boxes if identity_boxes else float("nan")}
    if len(records) < 2:
        return {**metrics, "id_auc": float("nan")}
    z = np.stack([r[3] for r in records])
    labels = np.array([r[2] for r in records])
    found = {**verification_metrics(z, labels), **retrieval_metrics(z, labels)}
    metrics.update({f"id_{k}": v for k, v in found.items() if np.isfinite(v) or k == "auc"})
    return metrics


class DetectionEmbeddingEvaluator(CocoEvaluator):
    """``reset / process / evaluate`` for ``fcos_embedding``: box metrics and the identity
    metrics of the module docstring.

    Args:
        head: the head's name (metric prefix).
        annotations: the ground-truth COCO json of the evaluated split.
        category_ids: ``category_ids[label]`` is the file's category id of ``label``.
        truth: :func:`identity_truth` of the evaluated set.
        ground_truth: the COCO object to score the boxes against (``None``: the file).
        iou_thresh: the least IoU of a detection with an identity box to give it its
            embedding.
    """

    def __init__(
        self,
        head: str,
        annotations: str | os.PathLike,
        category_ids: list[int],
        truth: Mapping[int, tuple[np.ndarray, np.ndarray]],
        ground_truth: dict[str, Any] | None = None,
        iou_thresh: float = 0.5,
    ) -> None:
        super().__init__(head, annotations, category_ids, ("bbox",), ground_truth)
        self.truth = dict(truth)
        self.iou_thresh = float(iou_thresh)
        self.records: list[Record] = []
        self.counts: dict[int, int] = {}  # image id -> its identity boxes
        self.noted = False  # small_set_note logged (once)

    def reset(self) -> None:
        super().reset()
        self.records, self.counts = [], {}

    def process(self, batch: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
        super().process(batch, predictions)
        for image_id, prediction in zip(batch["image_ids"].tolist(), predictions, strict=True):
            truth = self.truth.get(int(image_id))
            if truth is None:
                raise DataError(
                    f"{self.head}: image id {image_id} is not an image of {self.annotations}"
                )
            self.counts[int(image_id)] = int((np.asarray(truth[1]) >= 0).sum())
            self.records += match_identities(image_id, truth, prediction, self.iou_thresh)

    def gather_identities(self) -> tuple[list[Record], int]:
        """Every process's records (an image counted once), sorted, and the number of
        identity boxes of the evaluated images."""
        parts = [(self.records, self.counts)]
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, (self.records, self.counts))
        owner: dict[int, int] = {}
        for rank, (_, counts) in enumerate(parts):
            for image_id in counts:
                owner.setdefault(image_id, rank)
        records = [r for rank, (rs, _) in enumerate(parts) for r in rs if owner[r[0]] == rank]
        total = sum(parts[rank][1][image_id] for image_id, rank in owner.items())
        return sorted(records, key=lambda r: (r[0], r[1])), total

    def evaluate(self) -> dict[str, float]:
        metrics = super().evaluate()
        records, total = self.gather_identities()
        found = identity_metrics(records, total)
        if not self.noted:  # measured on every identity box, matched or not
            self.noted = True
            labels = np.concatenate([np.asarray(t[1]) for t in self.truth.values()] or [[]])
            note = small_set_note(labels[labels >= 0])
            if note:
                logger.warning("%s: a small validation set: %s", self.head, note)
        metrics.update({f"{self.head}/{k}": v for k, v in found.items()})
        return metrics


def detection_embedding_evaluator(
    prefix: str, head: nn.Module, dataset: Any, category_ids: Sequence[int] | None
) -> nn.Module | None:
    """The task table's factory: a :class:`DetectionEmbeddingEvaluator` against the
    dataset's kept ground truth (``None`` without an annotation file)."""
    if getattr(dataset, "ann_path", None) is None:
        return None
    ids = list(category_ids or dataset.category_ids)
    kept = getattr(dataset, "coco_ground_truth", None)
    truth = kept() if kept is not None else None
    return DetectionEmbeddingEvaluator(
        prefix, dataset.ann_path, ids, identity_truth(dataset), truth
    )
