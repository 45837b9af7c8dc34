"""Semantic segmentation heads: ``semantic_fpn`` (Panoptic FPN's branch) and ``deeplabv3plus``.

Both predict per-pixel class logits at a fixed ``output_stride`` and share the loss and the
decoding below: the logits are upsampled bilinearly to the batch tensor's size, trained with
cross-entropy (plus an optional soft dice term) on the pixels whose label is not
``ignore_index``, and decoded by argmax after cropping the padding and resizing to the
original image.

Why DeepLabV3+ rather than U-Net as the second architecture: it reads only two backbone
levels (the deepest, through ASPP, and one stride-4/8 skip), so its cost barely depends on the
backbone's depth or widths and it works on any timm/torchvision backbone as-is; a U-Net
decoder needs a skip and an up-block at every level, which doubles the decoder cost on wide
backbones and ties the layout to the backbone's level list. ASPP's dilated branches and
image-level pooling give the large context that a plain U-Net lacks, and DeepLabV3+ is the
usual strong baseline for semantic segmentation on a classification backbone.

>>> import torch
>>> head = semantic_fpn(in_channels=[16, 16, 16], strides=[8, 16, 32], num_classes=3,
...                     channels=8)
>>> feats = [torch.rand(2, 16, 64 // s, 64 // s) for s in (8, 16, 32)]
>>> out = head(feats)
>>> out["logits"].shape, head.output_stride
(torch.Size([2, 3, 16, 16]), 4)
>>> target = torch.zeros(2, 64, 64, dtype=torch.long)
>>> sorted(head.loss(out, {"semantic": target}))
['ce']
>>> head.postprocess(out, [(64, 64), (50, 40)], [(64, 64), (100, 80)])[1]["mask"].shape
torch.Size([100, 80])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.models.heads.detection_utils import Sizes, as_sizes, zero_loss
from visionkit.registry import HEADS

IGNORE_INDEX = 255  # value of ``targets["semantic"]`` for unlabelled and padded pixels


# ---- shared pieces ------------------------------------------------------------------------------
def _groups(channels: int) -> int:
    """GroupNorm groups: 32, or the largest of 16/8/4/2/1 that divides ``channels``."""
    return next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)


def conv_gn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1
) -> nn.Sequential:
    """``kernel_size`` conv (same padding, no bias) → GroupNorm → ReLU."""
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        ),
        nn.GroupNorm(_groups(out_channels), out_channels),
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
        if any(w < 0 for w in class_weights) or not any(w > 0 for w in class_weights):
            raise ValueError(
                f"{name}: class_weights must be >= 0 with at least one > 0, got "
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


def resolve_num_classes(name: str, num_classes: int | None, class_names: list[str] | None) -> int:
    """``num_classes``, or the number of ``class_names`` when it is unset."""
    if num_classes is None:
        if not class_names:
            raise ValueError(f"{name}: set num_classes (or class_names)")
        return len(class_names)
    return num_classes


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


class _SemanticLossAndDecode:
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
        valid = target != self.ignore_index  # [B, H, W]
        bad = valid & ((target < 0) | (target >= self.num_classes))
        if bad.any():
            values = sorted(set(target[bad].unique().tolist()))[:10]
            raise ValueError(
                f"targets['semantic'] has values {values} outside 0..{self.num_classes - 1} "
                f"that are not ignore_index ({self.ignore_index})"
            )
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


# ---- Panoptic FPN semantic branch ---------------------------------------------------------------
class SemanticFPNHead(_SemanticLossAndDecode, nn.Module):
    """Panoptic FPN's semantic branch (Kirillov et al., 2019) on a feature pyramid.

    Each level at stride ``s`` goes through ``log2(s / s0)`` stages of 3x3 conv → GroupNorm →
    ReLU → 2x bilinear upsample (one stage without upsample for the finest level ``s0``); the
    levels are summed at stride ``s0`` and a 1x1 conv predicts the classes. The logits are then
    upsampled to ``output_stride = min(s0, 4)`` (so ×2 on a P3 pyramid; this equals upsampling
    the features before the 1x1 conv, at a fraction of the cost).

    Args:
        in_channels: channels of each input level.
        strides: stride of each input level (increasing powers of two).
        num_classes: number of classes C (background included, as class 0 usually).
        channels: width of the stages.
        max_stride: levels of a larger stride are not read (Panoptic FPN reads P2–P5: set 32
            when the neck also makes P6/P7 for a detector); ``None`` reads every level.
        ignore_index: target value of pixels without a label.
        dice_weight: weight of the soft dice term; ``0`` leaves it out.
        boundary_weight: extra cross-entropy weight of pixels within ``boundary_width``
            pixels (at the input size) of a change of label: each counts
            ``1 + boundary_weight`` times (``0``: every pixel alike). Most errors of a
            semantic map at a coarse output stride sit on the object outlines.
        boundary_width: reach of ``boundary_weight``, in input pixels.
        class_weights: per-class weights of the cross-entropy (C values).
        class_names: names of the C classes, passed on in predictions.

    Example:
        >>> import torch
        >>> head = SemanticFPNHead([8, 8], [4, 8], num_classes=2, channels=8)
        >>> head([torch.rand(1, 8, 16, 16), torch.rand(1, 8, 8, 8)])["logits"].shape
        torch.Size([1, 2, 16, 16])
    """

    task: ClassVar[str] = "semantic"
    label_key: ClassVar[str] = "semantic"
    reads: ClassVar[str] = "neck"

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        channels: int = 128,
        max_stride: int | None = None,
        ignore_index: int = IGNORE_INDEX,
        dice_weight: float = 0.0,
        class_weights: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        boundary_weight: float = 0.0,
        boundary_width: int = 2,
    ) -> None:
        super().__init__()
        name = "semantic_fpn"
        check_levels(name, in_channels, strides)
        check_semantic_args(
            name, num_classes, class_names, ignore_index, dice_weight, class_weights, channels
        )
        used = [i for i, s in enumerate(strides) if max_stride is None or s <= max_stride]
        if not used:
            raise ValueError(
                f"{name}: max_stride {max_stride} is below every level's stride {list(strides)}"
            )
        self.num_classes = num_classes
        self.strides = [int(s) for s in strides]
        self.levels = used  # indices of the feature maps read
        self.finest_stride = self.strides[used[0]]
        self.output_stride = min(self.finest_stride, 4)
        self.ignore_index = ignore_index
        self.dice_weight = float(dice_weight)
        self.boundary_weight, self.boundary_width = check_boundary(
            name, boundary_weight, boundary_width
        )
        self.class_names = list(class_names) if class_names else None
        self.register_buffer(
            "class_weights",
            torch.tensor(class_weights, dtype=torch.float32) if class_weights else None,
            persistent=False,
        )
        self.scale_heads = nn.ModuleList()
        for i in used:
            num_up = round(math.log2(self.strides[i] // self.finest_stride))
            stages = [
                conv_gn_relu(in_channels[i] if k == 0 else channels, channels)
                for k in range(max(num_up, 1))
            ]
            self.scale_heads.append(nn.ModuleList(stages))
        self.predictor = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """``{"logits": [B, C, h0 * r, w0 * r]}`` for maps ``[B, C_l, H_l, W_l]``, one per
        stride, where ``(h0, w0)`` is the finest read map's size and
        ``r = finest stride / output_stride``."""
        if len(features) != len(self.strides):
            raise ValueError(
                f"semantic_fpn: got {len(features)} feature maps, built for strides {self.strides}"
            )
        size = features[self.levels[0]].shape[-2:]
        merged = None
        for index, stages in zip(self.levels, self.scale_heads, strict=True):
            x = features[index]
            num_up = round(math.log2(self.strides[index] // self.finest_stride))
            for k, stage in enumerate(stages):
                x = stage(x)
                if k < num_up - 1:
                    x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
                elif k == num_up - 1:  # last upsample: exactly onto the finest map
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            merged = x if merged is None else merged + x  # [B, channels, h0, w0]
        logits = self.predictor(merged)  # [B, C, h0, w0]
        ratio = self.finest_stride // self.output_stride
        if ratio > 1:
            logits = F.interpolate(
                logits, scale_factor=float(ratio), mode="bilinear", align_corners=False
            )
        return {"logits": logits}


# ---- DeepLabV3+ ---------------------------------------------------------------------------------
class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with GroupNorm.

    A 1x1 branch, one dilated 3x3 branch per rate and an image-pooling branch, concatenated and
    projected by 1x1 conv → GroupNorm → ReLU. Unlike ``torchvision``'s ``ASPP`` it uses no
    BatchNorm (its pooled 1x1 map cannot be batch-normalised at batch size 1, and small
    per-GPU batches make batch statistics noisy) and no dropout, so train and eval outputs
    agree; the pooling branch is conv (with bias) → ReLU, without a norm.
    """

    def __init__(self, in_channels: int, rates: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList([conv_gn_relu(in_channels, out_channels, 1)])
        for rate in rates:
            self.branches.append(conv_gn_relu(in_channels, out_channels, 3, dilation=int(rate)))
        self.pooling = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True)
        )
        self.project = conv_gn_relu((len(rates) + 2) * out_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pooling(x).expand(-1, -1, *x.shape[-2:]))  # [B, out, H, W]
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusHead(_SemanticLossAndDecode, nn.Module):
    """DeepLabV3+ decoder (Chen et al., 2018) on a backbone's levels.

    ASPP on the deepest map, upsampled to the low-level map (backbone level
    ``low_level_index``) and concatenated with that map reduced to ``low_level_channels`` by
    a 1x1 conv; two 3x3 convs and a 1x1 classifier. Logits are at the low-level map's stride
    (``output_stride``). Every conv is followed by GroupNorm and ReLU.

    Args:
        in_channels: channels of each backbone level.
        strides: stride of each backbone level (increasing powers of two).
        num_classes: number of classes C (background included, as class 0 usually).
        channels: width of ASPP and of the decoder.
        aspp_rates: dilation rates of ASPP's 3x3 branches, in cells of the deepest map. The
            default halves DeepLab's ``(6, 12, 18)``, which were chosen for a stride-16 map
            of a 513-pixel crop, because an undilated backbone's deepest map is stride 32;
            a rate beyond the map's size only sees the centre tap (a 1x1 conv).
        low_level_index: which backbone level is the skip; ``None`` picks the finest level
            of stride >= 4 (DeepLabV3+ decodes at 1/4), the deepest one excluded.
        low_level_channels: channels the skip is reduced to.
        ignore_index, dice_weight, class_weights, class_names, boundary_weight,
        boundary_width: as in :class:`SemanticFPNHead`.

    Example:
        >>> import torch
        >>> head = DeepLabV3PlusHead([8, 16, 32], [4, 8, 16], num_classes=2, channels=8)
        >>> out = head([torch.rand(1, 8, 16, 16), torch.rand(1, 16, 8, 8), torch.rand(1, 32, 4, 4)])
        >>> out["logits"].shape, head.output_stride
        (torch.Size([1, 2, 16, 16]), 4)
    """

    task: ClassVar[str] = "semantic"
    label_key: ClassVar[str] = "semantic"
    reads: ClassVar[str] = "backbone"

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        num_classes: int,
        channels: int = 128,
        aspp_rates: Sequence[int] = (3, 6, 9),
        low_level_index: int | None = None,
        low_level_channels: int = 48,
        ignore_index: int = IGNORE_INDEX,
        dice_weight: float = 0.0,
        class_weights: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        boundary_weight: float = 0.0,
        boundary_width: int = 2,
    ) -> None:
        super().__init__()
        name = "deeplabv3plus"
        check_levels(name, in_channels, strides)
        check_semantic_args(
            name, num_classes, class_names, ignore_index, dice_weight, class_weights, channels
        )
        num_levels = len(strides)
        if num_levels < 2:
            raise ValueError(
                f"{name}: needs at least two backbone levels (a low-level skip and a deep map), "
                f"got strides {list(strides)}"
            )
        if low_level_index is None:
            low_level_index = next(
                (i for i in range(num_levels - 1) if strides[i] >= 4), num_levels - 2
            )
        if not -num_levels <= low_level_index < num_levels:
            raise ValueError(
                f"{name}: low_level_index {low_level_index} is out of range for "
                f"{num_levels} backbone levels (strides {list(strides)})"
            )
        low_level_index %= num_levels
        if low_level_index == num_levels - 1:
            raise ValueError(
                f"{name}: low_level_index must name a level finer than the deepest "
                f"(0..{num_levels - 2} for strides {list(strides)}), got {low_level_index}"
            )
        if not aspp_rates or any(int(r) < 1 for r in aspp_rates):
            raise ValueError(f"{name}: aspp_rates must be >= 1, got {list(aspp_rates)}")
        if low_level_channels < 1:
            raise ValueError(f"{name}: low_level_channels must be >= 1, got {low_level_channels}")
        self.num_classes = num_classes
        self.strides = [int(s) for s in strides]
        self.low_level_index = low_level_index
        self.output_stride = self.strides[low_level_index]
        self.ignore_index = ignore_index
        self.dice_weight = float(dice_weight)
        self.boundary_weight, self.boundary_width = check_boundary(
            name, boundary_weight, boundary_width
        )
        self.class_names = list(class_names) if class_names else None
        self.register_buffer(
            "class_weights",
            torch.tensor(class_weights, dtype=torch.float32) if class_weights else None,
            persistent=False,
        )
        self.aspp = ASPP(in_channels[-1], aspp_rates, channels)
        self.reduce = conv_gn_relu(in_channels[low_level_index], low_level_channels, 1)
        self.decoder = nn.Sequential(
            conv_gn_relu(channels + low_level_channels, channels),
            conv_gn_relu(channels, channels),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """``{"logits": [B, C, H_k, W_k]}`` at the low-level map's size (level ``k =
        low_level_index``), for backbone maps ``[B, C_l, H_l, W_l]``, one per stride."""
        if len(features) != len(self.strides):
            raise ValueError(
                f"deeplabv3plus: got {len(features)} feature maps, built for strides {self.strides}"
            )
        low = features[self.low_level_index]
        x = self.aspp(features[-1])  # [B, channels, H_deep, W_deep]
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = self.decoder(torch.cat([x, self.reduce(low)], dim=1))  # [B, channels, H_k, W_k]
        return {"logits": self.classifier(x)}


# ---- builders -----------------------------------------------------------------------------------
@HEADS.register
def semantic_fpn(
    in_channels: list[int],
    strides: list[int],
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    channels: int = 128,
    max_stride: int | None = None,
    ignore_index: int = IGNORE_INDEX,
    dice_weight: float = 0.0,
    class_weights: list[float] | None = None,
    boundary_weight: float = 0.0,
    boundary_width: int = 2,
) -> SemanticFPNHead:
    """Panoptic-FPN semantic branch on a neck's levels; logits at stride ``min(P_min, 4)``."""
    return SemanticFPNHead(
        in_channels,
        strides,
        resolve_num_classes("semantic_fpn", num_classes, class_names),
        channels=channels,
        max_stride=max_stride,
        ignore_index=ignore_index,
        dice_weight=dice_weight,
        class_weights=class_weights,
        class_names=class_names,
        boundary_weight=boundary_weight,
        boundary_width=boundary_width,
    )


@HEADS.register
def deeplabv3plus(
    in_channels: list[int],
    strides: list[int],
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    channels: int = 128,
    aspp_rates: tuple[int, ...] = (3, 6, 9),
    low_level_index: int | None = None,
    low_level_channels: int = 48,
    ignore_index: int = IGNORE_INDEX,
    dice_weight: float = 0.0,
    class_weights: list[float] | None = None,
    boundary_weight: float = 0.0,
    boundary_width: int = 2,
) -> DeepLabV3PlusHead:
    """DeepLabV3+ on a backbone's levels; logits at the low-level skip's stride."""
    return DeepLabV3PlusHead(
        in_channels,
        strides,
        resolve_num_classes("deeplabv3plus", num_classes, class_names),
        channels=channels,
        aspp_rates=aspp_rates,
        low_level_index=low_level_index,
        low_level_channels=low_level_channels,
        ignore_index=ignore_index,
        dice_weight=dice_weight,
        class_weights=class_weights,
        class_names=class_names,
        boundary_weight=boundary_weight,
        boundary_width=boundary_width,
    )
