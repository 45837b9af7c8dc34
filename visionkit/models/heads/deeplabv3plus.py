"""DeepLabV3+ as a head: ``deeplabv3plus``.

Why DeepLabV3+ rather than U-Net as the second semantic architecture: it reads only two
backbone levels (the deepest, through ASPP, and one stride-4/8 skip), so its cost barely
depends on the backbone's depth or widths and it works on any timm/torchvision backbone as-is;
a U-Net decoder needs a skip and an up-block at every level, which doubles the decoder cost on
wide backbones and ties the layout to the backbone's level list. ASPP's dilated branches and
image-level pooling give the large context that a plain U-Net lacks, and DeepLabV3+ is the
usual strong baseline for semantic segmentation on a classification backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
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


@HEADS.register("deeplabv3plus")
class DeepLabV3PlusHead(SemanticLossAndDecode, nn.Module):
    """DeepLabV3+ decoder (Chen et al., 2018) on a backbone's levels; logits at the low-level
    skip's stride.

    ASPP on the deepest map, upsampled to the low-level map (backbone level
    ``low_level_index``) and concatenated with that map reduced to ``low_level_channels`` by
    a 1x1 conv; two 3x3 convs and a 1x1 classifier. Logits are at the low-level map's stride
    (``output_stride``). Every conv is followed by GroupNorm and ReLU.

    Args:
        in_channels: channels of each backbone level.
        strides: stride of each backbone level (increasing powers of two).
        num_classes: number of classes C (background included, as class 0 usually);
            ``None`` takes the number of ``class_names``.
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
    reads: ClassVar[str] = "backbone"

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int | None = None,
        channels: int = 128,
        aspp_rates: tuple[int, ...] = (3, 6, 9),
        low_level_index: int | None = None,
        low_level_channels: int = 48,
        ignore_index: int = IGNORE_PIXEL,
        dice_weight: float = 0.0,
        class_weights: list[float] | None = None,
        class_names: list[str] | None = None,
        boundary_weight: float = 0.0,
        boundary_width: int = 2,
    ) -> None:
        super().__init__()
        name = "deeplabv3plus"
        check_levels(name, in_channels, strides)
        num_classes = resolve_num_classes(name, num_classes, class_names)
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
