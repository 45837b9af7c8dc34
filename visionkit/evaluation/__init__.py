"""Evaluators: ``reset() / process(batch, predictions) / evaluate() -> {"<head>/<metric>": float}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from visionkit.evaluation.classification import ClassificationEvaluator
from visionkit.evaluation.coco import CocoEvaluator
from visionkit.evaluation.semantic import SemanticEvaluator


def build_evaluator(
    head_name: str,
    head: nn.Module,
    dataset: Any = None,
    category_ids: Sequence[int] | None = None,
) -> nn.Module | None:
    """The evaluator for a head, chosen by its ``task``; ``None`` when there is nothing to
    evaluate against (e.g. a detection head without a COCO-format validation set).

    Args:
        head_name: the head's name in the model (prefix of the metric keys).
        head: the head module.
        dataset: the validation dataset (COCO evaluation needs its ``ann_path``; semantic
            evaluation its ``load_semantic(image_id)``, the label map at the original size).
        category_ids: the model's label → category id mapping (default: the dataset's).
    """
    if head.task == "classification":
        return ClassificationEvaluator(head_name, head.num_classes)
    if head.task in ("detection", "instance") and getattr(dataset, "ann_path", None) is not None:
        ids = list(category_ids or dataset.category_ids)
        iou_types = ("bbox", "segm") if head.task == "instance" else ("bbox",)
        return CocoEvaluator(head_name, dataset.ann_path, ids, iou_types=iou_types)
    if head.task == "semantic" and hasattr(dataset, "load_semantic"):
        return SemanticEvaluator(
            head_name,
            head.num_classes,
            getattr(head, "class_names", None),
            dataset,
            ignore_index=getattr(head, "ignore_index", 255),
        )
    return None


__all__ = ["ClassificationEvaluator", "CocoEvaluator", "SemanticEvaluator", "build_evaluator"]
