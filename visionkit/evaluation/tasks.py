"""The task table: what each task a head can have (its class attribute ``task``) means, said
once.

A :class:`TaskSpec` holds everything that depends on the task: the label family of the data
it learns from, the Sample targets it needs, its evaluator, its main metric and progress-bar
metrics, how flip test-time augmentation merges its predictions and how its ground truth is
drawn. Adding a task is one entry in :data:`TASKS` (:func:`register_task`, for a head of
your own); no other module branches on task names.

>>> TASKS["detection"].labels, TASKS["detection"].targets, TASKS["detection"].main_metric
('instances', ('boxes',), 'mAP')
>>> sorted(TASKS)  # doctest: +NORMALIZE_WHITESPACE
['classification', 'detection', 'detection_embedding', 'embedding', 'instance', 'keypoints',
 'semantic']
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from torch import nn

from visionkit.data.batch import IGNORE_PIXEL
from visionkit.evaluation.classification import ClassificationEvaluator
from visionkit.evaluation.coco import CocoEvaluator
from visionkit.evaluation.detection_embedding import detection_embedding_evaluator
from visionkit.evaluation.embedding import EmbeddingEvaluator
from visionkit.evaluation.ground_truth import (
    box_truth,
    class_truth,
    instance_truth,
    keypoint_truth,
    semantic_truth,
)
from visionkit.evaluation.keypoints import keypoint_evaluator
from visionkit.evaluation.semantic import SemanticEvaluator
from visionkit.inference.flip import (
    merge_boxes,
    merge_dense_logits,
    merge_embeddings,
    merge_scores,
)

logger = logging.getLogger(__name__)

#: ``(metric prefix, head, validation dataset, category ids or None) -> evaluator or None``
EvaluatorFactory = Callable[[str, nn.Module, Any, Sequence[int] | None], nn.Module | None]


@dataclass(frozen=True)
class TaskSpec:
    """What one task means.

    Attributes:
        labels: the label family it learns from: the key of a dataset's ``label_names`` (and
            of a checkpoint's ``meta["label_names"]``) whose class names fill a head's
            ``num_classes`` and ``class_names``: ``"class"`` (image-level classes),
            ``"instances"`` (box and mask categories: detection and instance heads share it),
            ``"semantic"`` (label-map classes, background first), ``"identity"`` (people or
            objects to recognise: an embedding head's training identities).
        targets: the Sample targets a head of this task learns from (``"class"``,
            ``"identity"``, ``"boxes"``, ``"masks"``, ``"semantic"``); readers are asked for
            them and batches keep them.
        evaluator: builds the evaluator of a head on one validation set, or returns ``None``
            when that set cannot evaluate it (e.g. no COCO annotation file). Default: none.
        main_metric: the metric that sums up a head (``<head>/<main_metric>``; it counts in
            ``val/score``). ``None``: the task has no metric.
        progress_bar: the metrics shown on the progress bar.
        merge_hflip: ``(head, outputs, flipped_outputs, image_sizes, orig_sizes)`` → one
            prediction per image (:mod:`visionkit.inference.flip`). ``None``: flip TTA refuses
            the head.
        ground_truth: ``(head, sample, class_names)`` → the Sample's labels shaped like a
            prediction, or ``None`` (:mod:`visionkit.evaluation.ground_truth`). ``None``: the
            validation pictures draw no ground truth for it.
    """

    labels: str
    targets: tuple[str, ...]
    evaluator: EvaluatorFactory = field(default=lambda *args: None)
    main_metric: str | None = None
    progress_bar: tuple[str, ...] = ()
    merge_hflip: Callable[..., list[dict[str, Any]]] | None = None
    ground_truth: Callable[..., dict[str, Any] | None] | None = None


def classification_evaluator(
    prefix: str, head: nn.Module, dataset: Any, category_ids: Sequence[int] | None
) -> nn.Module:
    """Top-1 (and top-5 with more than 5 classes) accuracy; recall and precision per class."""
    return ClassificationEvaluator(prefix, head.num_classes, getattr(head, "class_names", None))


def coco_evaluator(
    prefix: str,
    head: nn.Module,
    dataset: Any,
    category_ids: Sequence[int] | None,
    iou_types: Sequence[str] = ("bbox",),
) -> nn.Module | None:
    """COCO AP of ``iou_types`` against the dataset's annotation file, less what its reader
    dropped when it says (``coco_ground_truth``); ``None`` when the dataset has no file. A
    set that gives no instance masks (a box-only COCO file, VOC) is scored for boxes only,
    ``mAP`` then ranking checkpoints in place of ``mask_mAP``."""
    if getattr(dataset, "ann_path", None) is None:
        return None
    ids = list(category_ids or dataset.category_ids)
    kept = getattr(dataset, "coco_ground_truth", None)
    truth = kept() if kept is not None else None
    unmasked = len(((truth or {}).get("info") or {}).get("images_without_masks", ()))
    every = bool(truth) and unmasked >= len(truth["images"])  # masks: a flag, none usable
    boxes_only = "segm" in iou_types and (not getattr(dataset, "masks", False) or every)
    if boxes_only:
        logger.warning(
            "%s: %s gives no instance masks: scored for boxes only (mAP, no mask_mAP)",
            prefix,
            dataset.ann_path,
        )
        iou_types = ("bbox",)
    evaluator = CocoEvaluator(
        prefix, dataset.ann_path, ids, iou_types=iou_types, ground_truth=truth
    )
    if boxes_only:
        evaluator.main_metric = "mAP"
    return evaluator


def semantic_evaluator(
    prefix: str, head: nn.Module, dataset: Any, category_ids: Sequence[int] | None
) -> nn.Module | None:
    """mIoU against the dataset's label maps at the original size (``None`` when the
    dataset cannot give them: ``load_semantic``)."""
    if not hasattr(dataset, "load_semantic"):
        return None
    return SemanticEvaluator(
        prefix,
        head.num_classes,
        getattr(head, "class_names", None),
        dataset,
        ignore_index=getattr(head, "ignore_index", IGNORE_PIXEL),
    )


TASKS: dict[str, TaskSpec] = {
    "classification": TaskSpec(
        labels="class",
        targets=("class",),
        evaluator=classification_evaluator,
        main_metric="top1",
        progress_bar=("top1",),
        merge_hflip=merge_scores,
        ground_truth=class_truth,
    ),
    "detection": TaskSpec(
        labels="instances",
        targets=("boxes",),
        evaluator=coco_evaluator,
        main_metric="mAP",
        progress_bar=("mAP",),
        merge_hflip=merge_boxes,
        ground_truth=box_truth,
    ),
    "instance": TaskSpec(
        labels="instances",
        targets=("boxes", "masks"),
        evaluator=partial(coco_evaluator, iou_types=("bbox", "segm")),
        main_metric="mask_mAP",
        progress_bar=("mAP", "mask_mAP"),
        merge_hflip=merge_boxes,
        ground_truth=instance_truth,
    ),
    "keypoints": TaskSpec(  # heads/keypoints.py, evaluation/keypoints.py
        labels="instances",
        targets=("boxes", "keypoints"),
        evaluator=keypoint_evaluator,
        main_metric="kpt_mAP",
        progress_bar=("mAP", "kpt_mAP"),
        merge_hflip=merge_boxes,
        ground_truth=keypoint_truth,
    ),
    "detection_embedding": TaskSpec(  # heads/fcos_embedding.py, evaluation/detection_embedding.py
        labels="instances",
        targets=("boxes", "identities"),
        evaluator=detection_embedding_evaluator,
        main_metric="mAP",
        progress_bar=("mAP", "id_auc"),
        merge_hflip=merge_boxes,
        ground_truth=box_truth,
    ),
    "semantic": TaskSpec(
        labels="semantic",
        targets=("semantic",),
        evaluator=semantic_evaluator,
        main_metric="mIoU",
        progress_bar=("mIoU",),
        merge_hflip=merge_dense_logits,
        ground_truth=semantic_truth,
    ),
    "embedding": TaskSpec(
        labels="identity",
        targets=("identity",),
        evaluator=lambda prefix, head, dataset, ids: EmbeddingEvaluator(prefix, dataset),
        main_metric="auc",
        progress_bar=("auc", "recall@1"),
        merge_hflip=merge_embeddings,
    ),
}


def register_task(name: str, spec: TaskSpec) -> TaskSpec:
    """Add the task ``name`` to :data:`TASKS`, for heads whose ``task`` is ``name``.

    Raises:
        ValueError: ``name`` is already in the table.
    """
    if name in TASKS:
        raise ValueError(f"task {name!r} is already in the task table")
    TASKS[name] = spec
    return spec


def progress_bar_suffixes() -> tuple[str, ...]:
    """Metric-key endings shown on the progress bar: every task's, and the multi-head score."""
    return (
        *dict.fromkeys(f"/{m}" for spec in TASKS.values() for m in spec.progress_bar),
        "val/score",
    )


def task_of(head: Any) -> TaskSpec:
    """The :class:`TaskSpec` of a head (an instance or its class), by its ``task``.

    Raises:
        KeyError: the task is not in :data:`TASKS` (the message names the valid ones).
    """
    task = getattr(head, "task", None)
    if task not in TASKS:
        raise KeyError(f"unknown task {task!r}; the task table knows {', '.join(TASKS)}")
    return TASKS[task]


#: What every head class has (docs/extending.md, "Adding a head"), checked before it is built.
HEAD_METHODS = ("forward(features)", "loss(outputs, targets)", "postprocess(outputs, image_sizes)")


def head_class_problems(cls: Any, where: str) -> list[str]:
    """What the head class ``cls`` (configured at ``where``) lacks of the head contract: a
    ``task`` of the task table, ``reads`` ``"backbone"`` or ``"neck"`` and the methods of
    :data:`HEAD_METHODS`; a head of one's own is told here, not by an ``AttributeError``
    mid-training."""
    name = f"{where}: {getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)}"
    problems = []
    task = getattr(cls, "task", None)
    if task not in TASKS:
        problems.append(f"{name}: task {task!r} is not a task of the table ({', '.join(TASKS)})")
    if getattr(cls, "reads", None) not in ("backbone", "neck"):
        problems.append(f"{name}: reads {getattr(cls, 'reads', None)!r}: 'backbone' or 'neck'")
    missing = [m for m in HEAD_METHODS if not callable(getattr(cls, m.split("(")[0], None))]
    if missing:
        problems.append(f"{name}: no method {', '.join(missing)}")
    return [f"{p} (the head contract: docs/extending.md#adding-a-head)" for p in problems]


def label_family(head: Any) -> str:
    """The label family a head (instance or class) learns from (:attr:`TaskSpec.labels`)."""
    return task_of(head).labels
