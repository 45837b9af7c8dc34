"""Which points learn which box, and what they learn: FCOS's matching rule (Tian et al.,
2019) and its targets. A point is matched by geometry alone: inside the box (or its centre
region) and at the level whose size range fits the box (:func:`match_fcos_points`); it learns
the distances to the box's sides, and its centerness (:func:`centerness_targets`) or the IoU
of the box it predicts (:func:`ltrb_iou`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def fcos_scale_ranges(strides: Sequence[int], factor: float = 8.0) -> Tensor:
    """Size range ``[lo, hi]`` of each level, ``[L, 2]``: ``[factor * s_{i-1}, factor * s_i]``
    with ``0`` for the first ``lo`` and ``inf`` for the last ``hi``."""
    bounds = [factor * float(s) for s in strides[:-1]]
    return torch.tensor([[0.0, *bounds], [*bounds, math.inf]], dtype=torch.float32).T


def match_fcos_points(
    points: Tensor,
    point_ranges: Tensor,
    point_strides: Tensor,
    boxes: Tensor,
    center_sampling_radius: float = 1.5,
) -> tuple[Tensor, Tensor]:
    """FCOS point-to-box matching for one image, vectorised over points × boxes (the one
    matching rule: :meth:`FCOSHead.assign_batch` applies it to every image of a batch).

    A point is a candidate for a box when (1) it lies strictly inside the box — or, with
    ``center_sampling_radius > 0``, strictly inside the square of half-side
    ``radius * stride`` around the box centre, clipped to the box — and (2) the largest of
    its distances to the four box sides lies in the point's level range. A point with
    several candidate boxes takes the one of smallest area (the first on ties).

    Args:
        points: ``[P, 2]`` (x, y) in pixels.
        point_ranges: ``[P, 2]`` size range ``[lo, hi]`` of each point's level.
        point_strides: ``[P]`` stride of each point's level.
        boxes: ``[M, 4]`` xyxy ground-truth boxes.
        center_sampling_radius: in units of the point's stride; ``<= 0`` disables.

    Returns:
        ``matched`` int64 ``[P]``, the index into ``boxes`` of each point's box (``-1`` for
        background), and ``ltrb`` float ``[P, 4]``, the distances from each point to the sides
        of its box (meaningless for background).
    """
    num_points = points.shape[0]
    if boxes.numel() == 0:
        background = torch.full((num_points,), -1, dtype=torch.long, device=points.device)
        return background, points.new_zeros(num_points, 4)
    x, y = points[:, 0, None], points[:, 1, None]  # [P, 1]
    x1, y1, x2, y2 = boxes.unbind(dim=1)  # [M] each
    ltrb = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=2)  # [P, M, 4]
    if center_sampling_radius > 0:
        radius = point_strides[:, None] * center_sampling_radius  # [P, 1]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2  # [M]
        inside = (
            (x > torch.maximum(cx - radius, x1))
            & (x < torch.minimum(cx + radius, x2))
            & (y > torch.maximum(cy - radius, y1))
            & (y < torch.minimum(cy + radius, y2))
        )  # [P, M]
    else:
        inside = ltrb.amin(dim=2) > 0
    largest = ltrb.amax(dim=2)  # [P, M]
    in_range = (largest >= point_ranges[:, :1]) & (largest <= point_ranges[:, 1:])
    areas = (x2 - x1) * (y2 - y1)  # [M]
    cost = torch.where(inside & in_range, areas[None, :], torch.full_like(largest, math.inf))
    best_cost, best = cost.min(dim=1)  # [P]
    matched = torch.where(torch.isfinite(best_cost), best, best.new_full((), -1))
    out_ltrb = ltrb[torch.arange(num_points, device=points.device), best]  # [P, 4]
    return matched, out_ltrb


def labels_of(matched: Tensor, labels: Tensor) -> Tensor:
    """The class of each point's matched box, ``-1`` where ``matched`` is ``-1``."""
    if labels.numel() == 0:
        return torch.full_like(matched, -1)
    return torch.where(matched >= 0, labels[matched.clamp(min=0)], matched.new_full((), -1))


@dataclass
class FCOSTargets:
    """Per-point training targets of a batch (see :meth:`FCOSHead.assign_batch`).

    Attributes:
        labels: int64 ``[B, P]``, class of each point, ``-1`` for background and for every
            point of an image without box labels.
        ltrb: float ``[B, P, 4]`` distances to the matched box's sides (a valid dummy box
            ``stride`` on each side where the point is background).
        matched: int64 ``[B, P]``, index into ``boxes[i]`` of each point's box, ``-1`` where
            ``labels`` is ``-1``.
    """

    labels: Tensor
    ltrb: Tensor
    matched: Tensor


def centerness_targets(ltrb: Tensor) -> Tensor:
    """``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` for ``[..., 4]`` distances."""
    lr, tb = ltrb[..., 0::2], ltrb[..., 1::2]
    ratio = lr.amin(-1) / lr.amax(-1).clamp(min=1e-6) * tb.amin(-1) / tb.amax(-1).clamp(min=1e-6)
    return ratio.clamp(min=0).sqrt()


def ltrb_iou(pred: Tensor, target: Tensor) -> Tensor:
    """IoU of two boxes given as distances ``[..., 4]`` (l, t, r, b) from the same point.

    >>> float(ltrb_iou(torch.tensor([1.0, 1.0, 1.0, 1.0]), torch.tensor([1.0, 1.0, 3.0, 1.0])))
    0.5
    """
    nearest = torch.minimum(pred, target)  # the intersection's distances to the point
    inter_w, inter_h = nearest[..., 0] + nearest[..., 2], nearest[..., 1] + nearest[..., 3]
    inter = inter_w.clamp(min=0) * inter_h.clamp(min=0)
    area_pred = (pred[..., 0] + pred[..., 2]) * (pred[..., 1] + pred[..., 3])
    area_target = (target[..., 0] + target[..., 2]) * (target[..., 1] + target[..., 3])
    return inter / (area_pred + area_target - inter).clamp(min=1e-6)
