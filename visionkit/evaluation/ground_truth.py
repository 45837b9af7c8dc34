"""A Sample's labels in the shape of a head's predictions, one function per task (named by
:data:`visionkit.evaluation.tasks.TASKS`), so that
:func:`~visionkit.inference.draw.draw_predictions` draws ground truth and predictions alike
(ground truth has ``scores`` ``None``: captions without scores).

Each function takes the head, a raw Sample (before transforms) and the head's class names
(or ``None``), and returns the prediction-shaped labels, or ``None`` when the Sample carries
no label for the task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from visionkit.data.batch import IGNORE_PIXEL


def class_truth(
    head: Any, sample: dict[str, Any], names: Sequence[str] | None
) -> dict[str, Any] | None:
    """Classification: ``{"label", "name", "scores": None}`` (``None`` without a class)."""
    if int(sample.get("class", -1)) < 0:
        return None
    label = int(sample["class"])
    return {"label": label, "name": names[label] if names else None, "scores": None}


def box_truth(
    head: Any, sample: dict[str, Any], names: Sequence[str] | None
) -> dict[str, Any] | None:
    """Detection: ``{"boxes", "labels", "names", "scores": None}`` (``None`` without boxes)."""
    if "boxes" not in sample:
        return None
    labels = torch.as_tensor(np.asarray(sample["labels"]), dtype=torch.long)
    boxes = torch.as_tensor(np.asarray(sample["boxes"]), dtype=torch.float).reshape(-1, 4)
    return {
        "boxes": boxes,
        "labels": labels,
        "scores": None,
        "names": [names[i] for i in labels.tolist()] if names else None,
    }


def keypoint_truth(
    head: Any, sample: dict[str, Any], names: Sequence[str] | None
) -> dict[str, Any] | None:
    """Keypoints: :func:`box_truth` plus each box's ``keypoints`` ``[N, K, 3]`` (COCO's
    visibility: the labelled ones, ``v`` 1 or 2, are drawn) and the head's ``skeleton``, when
    the Sample has them."""
    entry = box_truth(head, sample, names)
    if entry is not None and sample.get("keypoints") is not None:
        points = torch.as_tensor(np.asarray(sample["keypoints"]), dtype=torch.float)
        entry["keypoints"] = points.reshape(len(entry["boxes"]), head.num_keypoints, 3)
        entry["skeleton"] = getattr(head, "skeleton", None)
    return entry


def instance_truth(
    head: Any, sample: dict[str, Any], names: Sequence[str] | None
) -> dict[str, Any] | None:
    """Instance segmentation: :func:`box_truth` plus the instance ``masks`` when the Sample
    has them."""
    entry = box_truth(head, sample, names)
    if entry is not None and sample.get("masks") is not None:
        entry["masks"] = torch.as_tensor(np.asarray(sample["masks"])).bool()
    return entry


def semantic_truth(
    head: Any, sample: dict[str, Any], names: Sequence[str] | None
) -> dict[str, Any] | None:
    """Semantic segmentation: ``{"mask", "names"}``, ignored pixels ``-1`` (left undrawn)."""
    if sample.get("semantic") is None:
        return None
    semantic = torch.as_tensor(np.asarray(sample["semantic"]), dtype=torch.long)
    semantic = torch.where(semantic == getattr(head, "ignore_index", IGNORE_PIXEL), -1, semantic)
    return {"mask": semantic, "names": names}
