"""Semantic segmentation metrics (mIoU, pixel accuracy, per-class IoU) from a confusion matrix.

Predictions are compared with the dataset's own label maps at the original image size
(``dataset.load_semantic(image_id)``), so the numbers do not depend on the evaluation
resizing. The int64 confusion matrix is summed over processes before the metrics are taken;
an image evaluated on several processes (a padding ``DistributedSampler`` repeats images to
even out the ranks) counts once, as in one process.

>>> import numpy as np, torch
>>> class Labels:  # any dataset with ``load_semantic(image_id) -> [H, W]`` int array
...     def load_semantic(self, image_id):
...         return np.array([[0, 0], [1, 255]])
>>> ev = SemanticEvaluator("seg", num_classes=2, class_names=["bg", "fg"], dataset=Labels())
>>> ev.process({"image_ids": torch.tensor([7])}, [{"mask": torch.tensor([[0, 1], [1, 1]])}])
>>> ev.evaluate()
{'seg/mIoU': 0.5, 'seg/pixel_acc': 0.6666666666666666, 'seg/IoU_bg': 0.5, 'seg/IoU_fg': 0.5}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from visionkit.data.batch import IGNORE_PIXEL
from visionkit.errors import DataError


def iou_from_confusion(confusion: Tensor) -> Tensor:
    """Per-class IoU ``TP / (TP + FP + FN)`` of a ``[C, C]`` matrix (rows ground truth,
    columns prediction), float64 ``[C]``; ``nan`` for a class neither in the ground truth
    nor predicted."""
    conf = confusion.double()
    tp = conf.diagonal()
    union = conf.sum(0) + conf.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))


class SemanticEvaluator(nn.Module):
    """``reset / process / evaluate`` for a semantic segmentation head.

    Args:
        head: the head's name; metric keys are ``"<head>/mIoU"``, ``"<head>/pixel_acc"`` and
            ``"<head>/IoU_<class>"`` (the class name with ``/`` replaced by ``_``, or the
            class index when there are no names).
        num_classes: number of classes C.
        class_names: names of the C classes, or ``None``.
        dataset: provides ``load_semantic(image_id)``: the label map at the original image
            size, an int array ``[H, W]`` of ``0..C-1`` or ``ignore_index`` (``None`` for an
            image without a semantic label, which is skipped).
        ignore_index: label of pixels that are not counted.

    Attributes:
        confusion: int64 ``[C, C]`` pixel counts of this process (rows ground truth, columns
            prediction), accumulated by :meth:`process`.
        global_confusion: the matrix the last :meth:`evaluate` scored, summed over processes
            (equal to ``confusion`` in one process); ``None`` before it runs. For plots.
        contributions: per processed image, ``(image_id, flat indices, counts)``: its
            non-zero entries of ``confusion`` (a few per image), kept so that an image
            evaluated on several processes can be counted once.
    """

    def __init__(
        self,
        head: str,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        dataset: Any = None,
        ignore_index: int = IGNORE_PIXEL,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"{head}: num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{head}: {len(class_names)} class_names for {num_classes} classes")
        self.head = head
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else None
        self.dataset = dataset
        self.ignore_index = ignore_index
        self.register_buffer(
            "confusion", torch.zeros(num_classes, num_classes, dtype=torch.long), persistent=False
        )
        self.global_confusion: Tensor | None = None
        self.contributions: list[tuple[int, Tensor, Tensor]] = []

    def reset(self) -> None:
        self.confusion.zero_()
        self.global_confusion = None
        self.contributions = []

    @torch.no_grad()
    def process(self, batch: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
        """``predictions``: this head's per-image dicts, each with ``mask`` int ``[H0, W0]`` at
        the original image size, in the order of ``batch["image_ids"]``.

        Raises:
            DataError: a label map whose size differs from the prediction's, or with values
                outside ``0..C-1`` that are not ``ignore_index``.
        """
        ids = [int(i) for i in torch.as_tensor(batch["image_ids"]).reshape(-1).tolist()]
        if len(ids) != len(predictions):
            raise ValueError(
                f"{self.head}: {len(predictions)} predictions for {len(ids)} image ids"
            )
        device = self.confusion.device
        c = self.num_classes
        for image_id, prediction in zip(ids, predictions, strict=True):
            label_map = self.dataset.load_semantic(image_id)
            if label_map is None:
                continue
            gt = torch.as_tensor(np.asarray(label_map), device=device).long()
            pred = torch.as_tensor(prediction["mask"], device=device).long()
            if gt.shape != pred.shape:
                raise DataError(
                    f"{self.head}: image {image_id}: the semantic label map has shape "
                    f"{tuple(gt.shape)}, the predicted mask {tuple(pred.shape)}; predictions "
                    "must be at the original image size (postprocess with orig_sizes)"
                )
            valid = (gt != self.ignore_index) & (gt != IGNORE_PIXEL)
            gt, pred = gt[valid], pred[valid]
            if gt.numel() and (gt.min() < 0 or gt.max() >= c):
                values = sorted(set(gt[(gt < 0) | (gt >= c)].unique().tolist()))[:10]
                raise DataError(
                    f"{self.head}: image {image_id}: semantic labels {values} are outside "
                    f"0..{c - 1} and not ignore_index ({self.ignore_index})"
                )
            if pred.numel() and (pred.min() < 0 or pred.max() >= c):
                raise ValueError(
                    f"{self.head}: image {image_id}: predicted classes outside 0..{c - 1}"
                )
            counts = torch.bincount(gt * c + pred, minlength=c * c)  # [C * C]
            self.confusion += counts.reshape(c, c)
            where = counts.nonzero().squeeze(1)  # [K], K <= C * C, a few per image
            self.contributions.append((image_id, where.cpu(), counts[where].cpu()))

    def summed_confusion(self) -> Tensor:
        """``confusion`` summed over every process (a copy; the local matrix is unchanged).

        An image id processed on several processes counts on the lowest rank that has it
        only (every process learns the others' image ids first), so the sum equals the
        matrix of one process that saw each image once.
        """
        total = self.confusion.clone()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, sorted({i for i, _, _ in self.contributions}))
            owner: dict[int, int] = {}
            for rank, ids in enumerate(parts):
                for image_id in ids:
                    owner.setdefault(image_id, rank)
            rank = dist.get_rank()
            flat = total.view(-1)
            for image_id, where, counts in self.contributions:
                if owner[image_id] != rank:  # counted by a lower rank
                    flat.index_add_(0, where.to(flat.device), -counts.to(flat.device))
            if dist.get_backend() == "nccl" and not total.is_cuda:
                total = total.cuda()
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total.cpu()

    def evaluate(self) -> dict[str, float]:
        """mIoU (mean over the classes whose IoU is not ``nan``), pixel accuracy, and the IoU
        of every class (``nan`` for a class neither in the ground truth nor predicted).

        With nothing counted (no image processed, or every pixel ignored) ``mIoU`` and
        ``pixel_acc`` are ``0.0``, not ``nan``, so that monitoring and "best checkpoint"
        logic keep working; the per-class IoUs are ``nan``.
        """
        confusion = self.summed_confusion()
        self.global_confusion = confusion
        iou = iou_from_confusion(confusion)  # [C]
        total = int(confusion.sum())
        out = {
            f"{self.head}/mIoU": float(iou.nanmean()) if total else 0.0,
            f"{self.head}/pixel_acc": int(confusion.diagonal().sum()) / total if total else 0.0,
        }
        for index, value in enumerate(iou.tolist()):
            name = self.class_names[index].replace("/", "_") if self.class_names else index
            out[f"{self.head}/IoU_{name}"] = float(value)
        return out
