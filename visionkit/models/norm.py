"""The normalisation layers a neck or dense head can put after its convolutions.

``norm`` values, one meaning everywhere (:func:`norm_layer`):

- ``"group"``: GroupNorm with 32 groups, or the largest of 16/8/4/2/1 dividing the channels
  (FCOS's, RetinaNet v2's head; independent of the batch size): :class:`GroupNorm`.
- ``"batch"``: BatchNorm2d (statistics of the batch; cheaper than GroupNorm on the CPU).
- ``"none"``: no normalisation (torchvision's FPN, RetinaNet's original head).

>>> norm_layer("group", 48).num_groups  # 48 channels: 16 groups of 3
16
>>> norm_layer("none", 48) is None
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The ``norm`` values of necks and dense heads.
NORMS = ("group", "batch", "none")


def group_count(channels: int) -> int:
    """GroupNorm groups: 32, or the largest of 16/8/4/2/1 that divides ``channels``."""
    return next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (the same parameters and state dict) that normalises a channels-last
    map (``trainer.channels_last``) in channels-first memory and gives it back channels-last:
    PyTorch's CPU kernel for channels-last input is several times slower (a
    ``[8, 128, 24, 24]`` bf16 map on 2 cores, forward and backward: 4.7 ms, against 1.7 ms
    with the two copies; fp32 2.0 ms against 0.3 ms before the copies).

    >>> x = torch.randn(2, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    >>> norm = GroupNorm(4, 8)
    >>> y = norm(x)
    >>> y.is_contiguous(memory_format=torch.channels_last)
    True
    >>> torch.allclose(y, nn.functional.group_norm(x, 4, norm.weight, norm.bias), atol=1e-6)
    True
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.is_contiguous():
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        y = F.group_norm(x.contiguous(), self.num_groups, self.weight, self.bias, self.eps)
        return y.contiguous(memory_format=torch.channels_last)


def norm_layer(norm: str, channels: int) -> nn.Module | None:
    """The normalisation layer ``norm`` (one of :data:`NORMS`) over ``channels``, or ``None``
    for ``"none"``."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
    if norm == "group":
        return GroupNorm(group_count(channels), channels)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return None
