"""Feature Pyramid Network neck: backbone levels C3..C5 → P3..P5, plus extra levels P6, P7, ...

Level ``k`` means stride ``2**k``. The neck reads the backbone levels whose stride lies in
``2**min_level .. 2**max_level`` and runs :class:`torchvision.ops.FeaturePyramidNetwork` on
them; levels above the backbone's coarsest one (e.g. P6, P7 on a stride-32 backbone) are made
by :class:`ExtraLevels`, a generalisation of torchvision's ``LastLevelP6P7`` to any number of
levels. Everything is sized from the backbone's ``out_channels`` and ``strides``.

>>> import torch
>>> neck = FPN(in_channels=[16, 32, 64, 96, 128], strides=[2, 4, 8, 16, 32], max_level=7)
>>> neck.strides, neck.out_channels
([8, 16, 32, 64, 128], [128, 128, 128, 128, 128])
>>> feats = [torch.rand(1, c, 64 // s, 64 // s) for c, s in zip([16, 32, 64, 96, 128],
...                                                            [2, 4, 8, 16, 32])]
>>> [tuple(p.shape[-2:]) for p in neck(feats)]
[(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock

from visionkit.models.norm import NORMS, norm_layer
from visionkit.registry import NECKS

#: How levels above the backbone's coarsest one are made (``extra_blocks`` values).
EXTRA_BLOCKS = {
    "conv_from_p": "stride-2 3x3 convs, ReLU between, starting from the coarsest FPN output (FCOS)",
    "conv_from_c": "stride-2 3x3 convs, ReLU between, starting from the coarsest backbone map "
    "(RetinaNet)",
    "maxpool": "stride-2 subsampling of the previous level, no parameters (Mask R-CNN's P6)",
}


class ExtraLevels(ExtraFPNBlock):
    """``num_levels`` extra pyramid levels, each at twice the stride of the one before.

    Generalises ``torchvision.ops.feature_pyramid_network.LastLevelP6P7`` (same layers and
    initialisation for two conv levels) and ``LastLevelMaxPool`` to any number of levels.

    Args:
        num_levels: how many levels to add.
        in_channels: channels of the coarsest backbone map (used by ``"conv_from_c"``).
        out_channels: channels of the FPN outputs.
        mode: one of :data:`EXTRA_BLOCKS`.
    """

    def __init__(self, num_levels: int, in_channels: int, out_channels: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.num_levels = num_levels
        self.convs = nn.ModuleList()
        if mode != "maxpool":
            first = in_channels if mode == "conv_from_c" else out_channels
            for i in range(num_levels):
                conv = nn.Conv2d(first if i == 0 else out_channels, out_channels, 3, 2, 1)
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.constant_(conv.bias, 0)
                self.convs.append(conv)

    def forward(
        self, p: list[Tensor], c: list[Tensor], names: list[str]
    ) -> tuple[list[Tensor], list[str]]:
        x = c[-1] if self.mode == "conv_from_c" else p[-1]
        level = int(names[-1]) if names else 0
        for i in range(self.num_levels):
            if self.mode == "maxpool":
                x = F.max_pool2d(x, kernel_size=1, stride=2)
            else:
                x = strided_conv(self.convs[i], F.relu(x) if i > 0 else x)
            p.append(x)
            names.append(str(level + i + 1))
        return p, names


def strided_conv(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)``, but in float32 for a map one pixel wide in bfloat16 / float16 on the
    CPU: there the weight gradient of a stride-2 3x3 convolution (oneDNN's kernel, torch
    2.14) is now and then NaN or inf, which stopped training at a random step with a
    non-finite loss (P7 of images up to 64 px wide). Such a map is a handful of values, so
    float32 costs nothing measurable."""
    low = x.dtype in (torch.bfloat16, torch.float16) or torch.is_autocast_enabled("cpu")
    if x.device.type != "cpu" or not low or x.shape[-1] != 1:
        return conv(x)
    with torch.autocast("cpu", enabled=False):
        out = F.conv2d(x.float(), conv.weight.float(), conv.bias.float(), conv.stride, conv.padding)
    return out.to(x.dtype)


@NECKS.register("fpn")
class FPN(nn.Module):
    """FPN: a top-down feature pyramid on the backbone levels ``min_level``.., plus extra
    coarser levels up to ``max_level``.

    Args:
        in_channels: channels of each backbone map (the backbone's ``out_channels``).
        strides: stride of each backbone map (the backbone's ``strides``); powers of two.
        out_channels: channels of every output level.
        min_level: finest output level (stride ``2**min_level``); the backbone must have it.
        max_level: coarsest output level; levels above the backbone's are extra levels.
        extra_blocks: how extra levels are made, one of :data:`EXTRA_BLOCKS`.
        norm: normalisation after the pyramid's 1x1 and 3x3 convolutions (not the extra
            levels'), one of :data:`visionkit.models.norm.NORMS`: ``"none"`` (torchvision's
            and the FPN paper's), ``"batch"`` or ``"group"``; detectors trained from scratch
            want every layer normalised (He et al. 2019, *Rethinking ImageNet
            Pre-training*).

    Attributes:
        out_channels: channels of each returned map.
        strides: stride of each returned map, ``2**min_level .. 2**max_level``.

    Backbone maps finer than ``min_level`` or coarser than ``max_level`` are not read (pick
    the backbone's ``out_indices`` so that it does not compute them, or a DDP run will see
    unused backbone parameters).

    Raises:
        ValueError: a needed backbone level is missing, a stride is not a power of two, the
            levels are out of order, or ``extra_blocks`` is unknown.

    Example:
        >>> import torch
        >>> neck = FPN([64, 128, 256], [8, 16, 32], out_channels=32, max_level=6)
        >>> [tuple(p.shape) for p in neck([torch.rand(2, 64, 8, 8), torch.rand(2, 128, 4, 4),
        ...                                torch.rand(2, 256, 2, 2)])]
        [(2, 32, 8, 8), (2, 32, 4, 4), (2, 32, 2, 2), (2, 32, 1, 1)]
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        strides: Sequence[int],
        out_channels: int = 128,
        min_level: int = 3,
        max_level: int = 5,
        extra_blocks: str = "conv_from_p",
        norm: str = "none",
    ) -> None:
        super().__init__()
        if len(in_channels) != len(strides) or not strides:
            raise ValueError(
                f"fpn: in_channels {list(in_channels)} and strides {list(strides)} must be "
                "non-empty lists of the same length"
            )
        if max_level < min_level:
            raise ValueError(f"fpn: max_level ({max_level}) is below min_level ({min_level})")
        if extra_blocks not in EXTRA_BLOCKS:
            raise ValueError(
                f"fpn: unknown extra_blocks {extra_blocks!r}; choose one of {list(EXTRA_BLOCKS)}"
            )
        if norm not in NORMS:
            raise ValueError(f"fpn: unknown norm {norm!r}; choose one of {list(NORMS)}")
        levels = []
        for s in strides:
            level = round(math.log2(s)) if s > 0 else -1
            if s <= 0 or 2**level != s:
                raise ValueError(
                    f"fpn: backbone strides must be powers of two, got {list(strides)}"
                )
            levels.append(level)
        if levels != sorted(set(levels)):
            raise ValueError(f"fpn: backbone strides must increase, got {list(strides)}")
        top = min(max(levels), max_level)  # coarsest level taken from the backbone
        if min_level > max(levels):
            raise ValueError(
                f"fpn: min_level {min_level} (stride {2**min_level}) is coarser than the "
                f"backbone's coarsest map (strides {list(strides)}); extra levels start above "
                "a backbone level"
            )
        missing = [2**k for k in range(min_level, top + 1) if k not in levels]
        if missing:
            raise ValueError(
                f"fpn: min_level={min_level}..max_level={max_level} needs backbone maps at "
                f"strides {missing}, but the backbone has strides {list(strides)} (check its "
                "out_indices, or raise min_level)"
            )
        self.indices = [levels.index(k) for k in range(min_level, top + 1)]
        num_extra = max_level - top
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=[int(in_channels[i]) for i in self.indices],
            out_channels=out_channels,
            extra_blocks=(
                ExtraLevels(
                    num_extra, int(in_channels[self.indices[-1]]), out_channels, extra_blocks
                )
                if num_extra > 0
                else None
            ),
            norm_layer=None if norm == "none" else partial(norm_layer, norm),
        )
        self.min_level = min_level
        self.max_level = max_level
        self.out_channels = [int(out_channels)] * (max_level - min_level + 1)
        self.strides = [2**k for k in range(min_level, max_level + 1)]

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Map the backbone's maps to ``[B, out_channels, ~H / s, ~W / s]`` for each stride
        ``s`` in :attr:`strides` (an extra level has ``ceil`` of half the previous size)."""
        inputs = OrderedDict(
            (str(self.min_level + j), features[i]) for j, i in enumerate(self.indices)
        )
        return list(self.fpn(inputs).values())
