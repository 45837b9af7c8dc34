"""Panoptic FPN's semantic branch as a head: ``semantic_fpn``.

>>> import torch
>>> head = SemanticFPNHead(in_channels=[16, 16, 16], strides=[8, 16, 32], num_classes=3,
...                        channels=8)
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
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.data.batch import IGNORE_PIXEL
from visionkit.models.heads._semantic import (
    SemanticLossAndDecode,
    check_boundary,
    check_levels,
    check_semantic_args,
    conv_gn_relu,
)
from visionkit.models.heads._utils import resolve_num_classes
from visionkit.registry import HEADS


@HEADS.register("semantic_fpn")
class SemanticFPNHead(SemanticLossAndDecode, nn.Module):
    """Panoptic FPN's semantic branch (Kirillov et al., 2019) on a neck's levels; logits at
    stride ``min(P_min, 4)``.

    Each level at stride ``s`` goes through ``log2(s / s0)`` stages of 3x3 conv → GroupNorm →
    ReLU → 2x bilinear upsample (one stage without upsample for the finest level ``s0``); the
    levels are summed at stride ``s0`` and a 1x1 conv predicts the classes. The logits are then
    upsampled to ``output_stride = min(s0, 4)`` (so ×2 on a P3 pyramid; this equals upsampling
    the features before the 1x1 conv, at a fraction of the cost).

    Args:
        in_channels: channels of each input level.
        strides: stride of each input level (increasing powers of two).
        num_classes: number of classes C (background included, as class 0 usually);
            ``None`` takes the number of ``class_names``.
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
    reads: ClassVar[str] = "neck"

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int | None = None,
        channels: int = 128,
        max_stride: int | None = None,
        ignore_index: int = IGNORE_PIXEL,
        dice_weight: float = 0.0,
        class_weights: list[float] | None = None,
        class_names: list[str] | None = None,
        boundary_weight: float = 0.0,
        boundary_width: int = 2,
    ) -> None:
        super().__init__()
        name = "semantic_fpn"
        check_levels(name, in_channels, strides)
        num_classes = resolve_num_classes(name, num_classes, class_names)
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
