"""What the heads share: target unpacking, the zero loss, argument checks; for the dense
detection heads (FCOS, RetinaNet, ...) the point grid, towers, focal loss, per-level top-k and
the one detection selection (:func:`select_detections`).

Boxes are plain float ``Tensor[N, 4]`` in absolute-pixel **xyxy** of the batch tensor, as
everywhere in visionkit. Sizes are ``(H, W)``.

>>> import torch
>>> points, strides = grid_points([(2, 3)], [8])
>>> points[:4].tolist(), strides[:2].tolist()
([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [4.0, 12.0]], [8.0, 8.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes, sigmoid_focal_loss

from visionkit.data.annotated_classes import ANNOTATED
from visionkit.errors import DataError
from visionkit.models.norm import NORMS, norm_layer

Sizes = Tensor | Sequence[Sequence[int]]


@dataclass
class DetectionTargets:
    """Box targets of a batch, moved to one device.

    Attributes:
        boxes: per image, float32 ``[Ni, 4]`` xyxy in the batch tensor's pixels.
        labels: per image, int64 ``[Ni]`` in ``0..C-1``.
        valid: bool ``[B]``; ``False`` where an image carries no box label (zero-weighted).
        annotated: bool ``[B, C]``, the classes each image's set annotates (a training mix
            of sets with other box classes, :mod:`visionkit.data.annotated_classes`);
            ``None``: every class.
    """

    boxes: list[Tensor]
    labels: list[Tensor]
    valid: Tensor
    annotated: Tensor | None = None

    def annotated_classes(self, num_classes: int, name: str) -> Tensor | None:
        """:attr:`annotated`, checked to be one row of ``num_classes`` per image (``name``:
        the head, for the error).

        Raises:
            DataError: another shape (a batch of data with other classes than the head's).
        """
        if self.annotated is None:
            return None
        expected = (len(self.valid), num_classes)
        if tuple(self.annotated.shape) != expected:  # a batch of other data (library use)
            found = self.annotated.shape[-1] if self.annotated.ndim else 0
            raise DataError(
                f"{name}: the batch's {ANNOTATED} has shape {list(self.annotated.shape)}; "
                f"expected {list(expected)}, a flag per image and class of the head: the "
                f"batch's data has {found} box classes, the head {num_classes} (give the "
                f"head num_classes: {found}, or "
                "build the model from the training set it learns from)"
            )
        return self.annotated


def unpack_targets(
    targets: Mapping[str, Any], batch_size: int, device: torch.device
) -> DetectionTargets | None:
    """Read ``boxes`` / ``labels`` / ``has_boxes`` (and ``annotated_classes``) of a collated
    batch.

    Returns ``None`` when the batch has no ``boxes`` key at all (no image carries boxes).
    A missing ``has_boxes`` means every image is labelled.
    """
    if targets.get("boxes") is None:
        return None
    boxes = [
        torch.as_tensor(b, dtype=torch.float32, device=device).reshape(-1, 4)
        for b in targets["boxes"]
    ]
    labels = [
        torch.as_tensor(lab, dtype=torch.long, device=device).reshape(-1)
        for lab in targets["labels"]
    ]
    if len(boxes) != batch_size or len(labels) != batch_size:
        raise ValueError(
            f"targets have boxes for {len(boxes)} and labels for {len(labels)} images, but the "
            f"batch has {batch_size}"
        )
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        if len(b) != len(lab):
            raise ValueError(f"image {i}: {len(b)} boxes but {len(lab)} labels")
    has = targets.get("has_boxes")
    valid = (
        torch.ones(batch_size, dtype=torch.bool, device=device)
        if has is None
        else torch.as_tensor(has, dtype=torch.bool, device=device).reshape(batch_size)
    )
    annotated = targets.get(ANNOTATED)
    if annotated is not None:
        annotated = torch.as_tensor(annotated, dtype=torch.bool, device=device)
    return DetectionTargets(boxes, labels, valid, annotated)


def zero_loss(*tensors: Tensor) -> Tensor:
    """An exact ``0.0`` (fp32 scalar) that still depends on ``tensors``, so every parameter
    that produced them receives a (zero) gradient and DDP sees no unused parameters."""
    total = torch.zeros((), dtype=torch.float32, device=tensors[0].device)
    for t in tensors:
        total = total + t.float().sum() * 0.0
    return total


def flatten_levels(maps: Sequence[Tensor]) -> Tensor:
    """Concatenate per-level maps ``[B, K, H_l, W_l]`` into ``[B, sum_l H_l * W_l, K]``
    (row-major within a level, levels in order)."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


def grid_points(
    sizes: Sequence[Sequence[int]],
    strides: Sequence[int],
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Centres of the feature-map cells of every level, in input pixels.

    Args:
        sizes: ``(H_l, W_l)`` of each level.
        strides: stride of each level.

    Returns:
        ``points`` float ``[P, 2]`` as ``(x, y) = ((j + 0.5) * s, (i + 0.5) * s)``, in the
        order of :func:`flatten_levels`, and ``point_strides`` float ``[P]``.
    """
    points, point_strides = [], []
    for (h, w), s in zip(sizes, strides, strict=True):
        # No int(h): sizes stay symbolic under torch.export, so an ONNX graph keeps them dynamic.
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([x.reshape(-1), y.reshape(-1)], dim=1))  # [H*W, 2]
        point_strides.append(torch.full_like(x.reshape(-1), float(s)))  # [H*W]
    return torch.cat(points), torch.cat(point_strides)


def level_slices(point_strides: Tensor) -> list[slice]:
    """Contiguous ranges of points that belong to one level (one stride each)."""
    _, counts = torch.unique_consecutive(point_strides, return_counts=True)
    slices, start = [], 0
    for n in counts.tolist():
        slices.append(slice(start, start + n))
        start += n
    return slices


def as_sizes(sizes: Sizes | None, batch_size: int) -> list[tuple[int, int]] | None:
    """``(H, W)`` per image from a ``[B, 2]`` tensor or a list of pairs."""
    if sizes is None:
        return None
    out = [(int(h), int(w)) for h, w in (sizes.tolist() if isinstance(sizes, Tensor) else sizes)]
    if len(out) != batch_size:
        raise ValueError(f"got {len(out)} image sizes for a batch of {batch_size}")
    return out


def off_the_padding(
    scores: Tensor, centres: Tensor, sizes: Sequence[Sequence[int]] | Tensor
) -> Tensor:
    """``scores [B, P, C]`` with those of the locations whose centre ``[P, 2]`` (x, y) lies
    on the padding of their image set to 0: image ``i`` of ``sizes`` (``(H, W)`` each) fills
    the top-left of the padded batch. A detector fires on the edge where the zeros of the
    padding begin; its box, clipped to the image, was a strip along the image's border, and
    whether it came depended on the other images of the batch."""
    if isinstance(sizes, Tensor):
        limits = sizes.to(device=scores.device, dtype=torch.float32).reshape(-1, 2)
    else:
        limits = torch.tensor(sizes, dtype=torch.float32, device=scores.device).reshape(-1, 2)
    inside = (centres[None, :, 0] < limits[:, None, 1]) & (centres[None, :, 1] < limits[:, None, 0])
    return torch.where(inside[..., None], scores, scores.new_zeros(()))


def rescale_boxes(boxes: Tensor, image_size: Sequence[int], orig_size: Sequence[int]) -> Tensor:
    """Map xyxy boxes from an image of ``image_size`` (H, W) to one of ``orig_size``:
    x by ``orig_W / W``, y by ``orig_H / H``, clipped to it (a box reaching the scaled
    image's edge lands on the original's, not a float's rounding past it)."""
    (h, w), (oh, ow) = image_size, orig_size
    ratio = boxes.new_tensor([ow / w, oh / h, ow / w, oh / h])
    return clip_boxes_to_image(boxes * ratio, (int(oh), int(ow)))


def select_detections(
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    image_size: Sequence[int],
    nms_thresh: float,
    detections_per_img: int,
    orig_size: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[dict[str, Any], Tensor]:
    """Clip to ``image_size``, drop empty boxes, class-wise NMS, keep the best
    ``detections_per_img``; rescale to ``orig_size`` when given.

    Args:
        boxes: float ``[N, 4]`` xyxy candidates in the batch tensor's pixels.
        scores: ``[N]``.
        labels: int64 ``[N]``.
        image_size: ``(H, W)`` of the image inside the batch tensor (boxes are clipped to it).
        orig_size: ``(H, W)`` of the original image; boxes are rescaled to it when given.
        class_names: names of the classes, for ``names``.

    Returns:
        The prediction ``{"boxes": [K, 4], "scores": [K] (descending), "labels": int64 [K],
        "names": list[str] or None}``, and the int64 ``[K]`` indices of the kept candidates
        (for heads that decode more per candidate, e.g. masks).
    """
    boxes = clip_boxes_to_image(boxes, tuple(image_size))
    keep = remove_small_boxes(boxes, min_size=1e-2)
    keep = keep[batched_nms(boxes[keep], scores[keep], labels[keep], nms_thresh)]
    keep = keep[:detections_per_img]
    boxes, labels = boxes[keep], labels[keep].long()
    if orig_size is not None:
        boxes = rescale_boxes(boxes, image_size, orig_size)
    names = [class_names[i] for i in labels.tolist()] if class_names else None
    return {"boxes": boxes, "scores": scores[keep], "labels": labels, "names": names}, keep


def conv_tower(in_channels: int, width: int, num_convs: int, norm: str = "group") -> nn.Sequential:
    """``num_convs`` × (3x3 conv → [norm] → ReLU), the tower a dense head shares across
    levels; ``norm`` is one of :data:`visionkit.models.norm.NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers.append(nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1))
        layer = norm_layer(norm, width)
        if layer is not None:
            layers.append(layer)
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def focal_loss(
    cls_logits: Tensor,
    labels: Tensor,
    valid: Tensor,
    normalizer: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    annotated: Tensor | None = None,
) -> Tensor:
    """Sigmoid focal loss of dense classification, summed and divided by ``normalizer``.

    Args:
        cls_logits: ``[B, N, C]`` logits (fp32).
        labels: int64 ``[B, N]``; a class in ``0..C-1``, or ``-1`` for background.
        valid: bool ``[B]``; images with ``False`` weigh zero (they stay in the graph).
        normalizer: scalar, usually the number of positives clamped to at least 1.
        annotated: bool, broadcastable to ``[B, N, C]`` (``[B, 1, C]``: per image), the
            classes annotated where each location was labelled; the terms of the others are
            left out, positives aside (a labelled box is its class wherever it came from:
            an object pasted or mixed in from another set), so they get no gradient (the
            federated loss). ``None``: every class, the loss of before to the bit.
    """
    one_hot = F.one_hot(labels.clamp(min=0), cls_logits.shape[-1]).to(cls_logits.dtype)
    one_hot = one_hot * (labels >= 0)[..., None]  # [B, N, C]
    loss = sigmoid_focal_loss(cls_logits, one_hot, alpha=alpha, gamma=gamma, reduction="none")
    if annotated is not None:  # unannotated classes' negatives: no term, no gradient
        loss = torch.where(annotated | one_hot.bool(), loss, loss.new_zeros(()))
    return (loss.sum(dim=2) * valid.to(loss.dtype)[:, None]).sum() / normalizer


def topk_per_level(scores: Tensor, levels: Sequence[slice], k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` best (location, class) pairs of each level, for a batch.

    Args:
        scores: ``[B, N, C]``.
        levels: the range of locations of each level (see :func:`level_slices`).

    Returns:
        ``scores`` ``[B, K]`` and flat indices ``[B, K]`` into ``N * C``
        (location ``= index // C``, class ``= index % C``), levels concatenated.
    """
    num_classes = scores.shape[2]
    top_scores, top_index = [], []
    for level in levels:
        flat = scores[:, level].flatten(1)  # [B, N_l * C]
        best, index = flat.topk(min(k, flat.shape[1]), dim=1)
        top_scores.append(best)
        top_index.append(index + level.start * num_classes)
    return torch.cat(top_scores, dim=1), torch.cat(top_index, dim=1)


def pyramid_channels(name: str, in_channels: Sequence[int], strides: Sequence[int]) -> int:
    """The one channel count of a pyramid whose levels share a head's towers (e.g. an FPN
    neck's); raise unless there is one per stride, all equal."""
    if len(set(in_channels)) != 1 or len(in_channels) != len(strides):
        raise ValueError(
            f"{name}: shares its towers across levels, so it needs one channel count per level, "
            f"all equal (e.g. an FPN neck); got in_channels {list(in_channels)}, "
            f"strides {list(strides)}"
        )
    return int(in_channels[0])


def resolve_num_classes(
    name: str, num_classes: int | None, class_names: Sequence[str] | None
) -> int:
    """``num_classes``, or the number of ``class_names`` when it is unset."""
    if num_classes is None:
        if not class_names:
            raise ValueError(f"{name}: set num_classes (or class_names)")
        return len(class_names)
    return num_classes


def check_head_args(
    name: str,
    num_classes: int,
    class_names: Sequence[str] | None,
    strides: Sequence[int],
    prior_prob: float,
) -> None:
    """The argument checks every detection head's constructor shares; errors name the head."""
    if num_classes < 1:
        raise ValueError(f"{name}: num_classes must be >= 1, got {num_classes}")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{name}: {len(class_names)} class_names for {num_classes} classes")
    if list(strides) != sorted(set(strides)):
        raise ValueError(f"{name}: strides must increase, got {list(strides)}")
    if not 0 < prior_prob < 1:
        raise ValueError(f"{name}: prior_prob must lie in (0, 1), got {prior_prob}")
