"""What the semantic segmentation heads share (``semantic_fpn``, ``deeplabv3plus``).

Both predict per-pixel class logits at a fixed ``output_stride`` and share the loss and the
decoding below: the logits are upsampled bilinearly to the batch tensor's size, trained with
cross-entropy (plus an optional soft dice term) on the pixels whose label is not
``ignore_index``, and decoded by argmax after cropping the padding and resizing to the
original image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.data.batch import IGNORE_PIXEL
from visionkit.errors import SampleError
from visionkit.models.heads._utils import Sizes, as_sizes, zero_loss
from visionkit.models.norm import norm_layer


def conv_gn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1
) -> nn.Sequential:
    """``kernel_size`` conv (same padding, no bias) → GroupNorm → ReLU."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        ),
        norm_layer("group", out_channels),
        nn.ReLU(inplace=True),
    )


def check_semantic_args(
    name: str,
    num_classes: int,
    class_names: Sequence[str] | None,
    ignore_index: int,
    dice_weight: float,
    class_weights: Sequence[float] | None,
    channels: int,
) -> None:
    """The argument checks both semantic heads share; errors name the head."""
    if num_classes < 1:
        raise ValueError(f"{name}: num_classes must be >= 1, got {num_classes}")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{name}: {len(class_names)} class_names for {num_classes} classes")
    if 0 <= ignore_index < num_classes:
        raise ValueError(
            f"{name}: ignore_index {ignore_index} is a valid class (0..{num_classes - 1}); "
            "pick a value outside that range (default 255)"
        )
    if dice_weight < 0:
        raise ValueError(f"{name}: dice_weight must be >= 0, got {dice_weight}")
    if class_weights is not None:
        if len(class_weights) != num_classes:
            raise ValueError(
                f"{name}: {len(class_weights)} class_weights for {num_classes} classes"
            )
        finite = all(math.isfinite(w) and w >= 0 for w in class_weights)
        if not finite or not any(w > 0 for w in class_weights):
            raise ValueError(
                f"{name}: class_weights must be finite and >= 0 with at least one > 0, got "
                f"{list(class_weights)}"
            )
    if channels < 1:
        raise ValueError(f"{name}: channels must be >= 1, got {channels}")


def check_levels(name: str, in_channels: Sequence[int], strides: Sequence[int]) -> None:
    """One channel count per level, strides increasing powers of two."""
    if not strides or len(in_channels) != len(strides):
        raise ValueError(
            f"{name}: in_channels {list(in_channels)} and strides {list(strides)} must be "
            "non-empty lists of the same length"
        )
    if list(strides) != sorted(set(strides)) or any(
        s < 1 or 2 ** round(math.log2(s)) != s for s in strides
    ):
        raise ValueError(f"{name}: strides must be increasing powers of two, got {list(strides)}")


def upsample_to_input(logits: Tensor, output_stride: int, size: Sequence[int]) -> Tensor:
    """Logits ``[B, C, h, w]`` at ``output_stride`` → ``[B, C, H, W]`` for an input of ``size``.

    Upsampled bilinearly by ``output_stride`` (to the padded input the logits cover) and then
    cropped to ``size`` (top-left), so pixel ``(y, x)`` keeps its place; when the logits cover
    less than ``size`` (a backbone that rounds sizes down) they are resized to ``size``.
    """
    h, w = int(size[0]), int(size[1])
    full = (logits.shape[-2] * output_stride, logits.shape[-1] * output_stride)
    if full[0] < h or full[1] < w:
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    if output_stride != 1:
        logits = F.interpolate(logits, size=full, mode="bilinear", align_corners=False)
    return logits[..., :h, :w]


def check_boundary(name: str, weight: float, width: int) -> tuple[float, int]:
    """``boundary_weight >= 0`` and ``boundary_width >= 1``, as ``(float, int)``."""
    if weight < 0:
        raise ValueError(f"{name}: boundary_weight must be >= 0, got {weight}")
    if width < 1:
        raise ValueError(f"{name}: boundary_width must be >= 1, got {width}")
    return float(weight), int(width)


def near_boundary(target: Tensor, width: int) -> Tensor:
    """Float ``[B, H, W]``: 1 where a pixel of another label lies within ``width`` pixels
    (a ``(2 width + 1)²`` window) of it, else 0.

    >>> t = torch.zeros(1, 1, 6, dtype=torch.long); t[..., 3:] = 1
    >>> near_boundary(t, 1)[0, 0].tolist()
    [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    """
    labels = target[:, None].float()
    size = 2 * width + 1
    high = F.max_pool2d(labels, size, stride=1, padding=width)
    low = -F.max_pool2d(-labels, size, stride=1, padding=width)
    return (high != low)[:, 0].to(labels.dtype)


def soft_dice_loss(probs: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """``1 - mean_c dice_c`` over the classes present in ``target``, pooled over the batch.

    Args:
        probs: ``[B, C, H, W]`` softmax probabilities.
        target: int64 ``[B, H, W]`` in ``0..C-1`` where ``valid``.
        valid: bool ``[B, H, W]``; other pixels do not count.
    """
    num_classes = probs.shape[1]
    mask = valid[:, None].to(probs.dtype)  # [B, 1, H, W]
    one_hot = F.one_hot(target.clamp(0, num_classes - 1), num_classes).permute(0, 3, 1, 2)
    one_hot = one_hot.to(probs.dtype) * mask  # [B, C, H, W]
    probs = probs * mask
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)  # [C]
    cardinality = probs.sum(dims) + one_hot.sum(dims)  # [C]
    dice = 2 * intersection / cardinality.clamp(min=1e-6)
    present = (one_hot.sum(dims) > 0).to(probs.dtype)
    return ((1 - dice) * present).sum() / present.sum().clamp(min=1)


def raise_bad_labels(target: Tensor, bad: Tensor, image_ids: Any, head: Any) -> None:
    """Raise the :class:`~visionkit.errors.SampleError` of label maps with values that are
    no class of ``head`` nor ignored (``bad``: bool ``[B, H, W]``), naming the images' ids,
    the values and the range: the last guard behind the readers' own checks."""
    rows = bad.flatten(1).any(dim=1).nonzero().flatten().tolist()
    if image_ids is None:
        which = f"batch images {rows[:10]}"
    else:
        which = f"image ids {[int(image_ids[i]) for i in rows][:10]}"
    values = sorted(set(target[bad].unique().tolist()))[:10]
    raise SampleError(
        f"semantic label maps of {which} have values {values} that are neither "
        f"classes 0..{head.num_classes - 1} nor ignored ({IGNORE_PIXEL} or ignore_index "
        f"{head.ignore_index}); check the label files (visionkit check-data) and the "
        "dataset's ignore_index"
    )


class SemanticLossAndDecode:
    """Loss and postprocess shared by the semantic heads (the state they read is set by the
    heads' constructors: ``num_classes``, ``output_stride``, ``ignore_index``,
    ``dice_weight``, ``class_names`` and the ``class_weights`` buffer)."""

    num_classes: int
    output_stride: int
    ignore_index: int
    dice_weight: float
    boundary_weight: float
    boundary_width: int
    class_names: list[str] | None
    class_weights: Tensor | None

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        """Cross-entropy (``ce``) and, when ``dice_weight > 0``, ``dice_weight`` × soft dice
        (``dice``), in fp32 on the logits upsampled to the target size.

        ``targets["semantic"]`` is int64 ``[B, H, W]`` (the batch tensor's size) with values
        ``0..C-1`` or ``ignore_index``; images whose ``targets["has_semantic"]`` is False count
        as all-ignore. ``ce`` is averaged over the counted pixels (weighted by
        ``class_weights`` when set, normalised by the sum of their weights); without any counted
        pixel, or without a ``semantic`` key, every term is an exact 0 that stays connected to
        every parameter.
        """
        logits = outputs["logits"]
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return self._loss(logits.float(), targets)

    def _loss(self, logits: Tensor, targets: Mapping[str, Any]) -> dict[str, Tensor]:
        target = targets.get("semantic")
        if target is None:
            zero = zero_loss(logits)
            return {"ce": zero, "dice": zero} if self.dice_weight > 0 else {"ce": zero}
        target = torch.as_tensor(target, dtype=torch.long, device=logits.device)
        if target.dim() != 3 or target.shape[0] != logits.shape[0]:
            raise ValueError(
                f"targets['semantic'] must be [B, H, W] with B = {logits.shape[0]}, got "
                f"{tuple(target.shape)}"
            )
        has = targets.get("has_semantic")
        if has is not None:
            has = torch.as_tensor(has, dtype=torch.bool, device=logits.device).reshape(-1)
            target = torch.where(has[:, None, None], target, self.ignore_index)
        # IGNORE_PIXEL is what readers give unlabelled pixels; ignore_index may name another.
        valid = (target != self.ignore_index) & (target != IGNORE_PIXEL)  # [B, H, W]
        bad = valid & ((target < 0) | (target >= self.num_classes))
        if bad.any():
            raise_bad_labels(target, bad, targets.get("image_ids"), self)
        logits = upsample_to_input(logits, self.output_stride, target.shape[-2:])  # [B,C,H,W]
        safe = torch.where(valid, target, 0)  # [B, H, W]
        per_pixel = F.cross_entropy(logits, safe, reduction="none")  # [B, H, W]
        if self.class_weights is None:
            weight = valid.to(per_pixel.dtype)
        else:
            weight = self.class_weights.to(per_pixel.device)[safe] * valid
        if self.boundary_weight > 0:  # pixels near a change of label count more
            weight = weight * (1 + self.boundary_weight * near_boundary(safe, self.boundary_width))
        # Zero-weighted rather than indexed out: every parameter stays in the graph (DDP-safe).
        losses = {"ce": (per_pixel * weight).sum() / weight.sum().clamp(min=1e-6)}
        if self.dice_weight > 0:
            dice = soft_dice_loss(logits.softmax(dim=1), safe, valid)
            losses["dice"] = self.dice_weight * dice
        return losses

    @torch.no_grad()
    def postprocess(
        self,
        outputs: Mapping[str, Tensor],
        image_sizes: Sizes,
        orig_sizes: Sizes | None = None,
    ) -> list[dict[str, Any]]:
        """Per-pixel classes per image, decoded in fp32.

        The logits are upsampled by ``output_stride`` to the padded batch tensor, cropped to
        ``image_sizes[i]`` (H, W; the image sits top-left), resized bilinearly to
        ``orig_sizes[i]`` when given, and reduced by argmax.

        Returns:
            Per image ``{"mask": int64 [H, W] (orig size when given, else image size),
            "names": list[str] or None}`` (``names`` are the class names, for a legend).
        """
        logits = outputs["logits"]
        batch_size = logits.shape[0]
        sizes = as_sizes(image_sizes, batch_size)
        originals = as_sizes(orig_sizes, batch_size)
        results = []
        with torch.autocast(device_type=logits.device.type, enabled=False):
            for i in range(batch_size):  # one image at a time: full-size logits are large
                image = upsample_to_input(logits[i : i + 1].float(), self.output_stride, sizes[i])
                if originals is not None and tuple(originals[i]) != tuple(sizes[i]):
                    image = F.interpolate(
                        image, size=originals[i], mode="bilinear", align_corners=False
                    )
                # max(dim=0).indices, not argmax(dim=0): the same first-maximum index,
                # about 8x faster on CPU for a [C, H, W] map (argmax's outer-dim reduction).
                mask = image[0].max(dim=0).indices  # [H, W] int64
                results.append({"mask": mask, "names": self.class_names})
        return results
