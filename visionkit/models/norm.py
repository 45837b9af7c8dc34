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


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (the same parameters and state dict) that normalises a small
    half-precision channels-last map on the CPU (``trainer.channels_last`` under bf16
    autocast) in channels-first memory and gives it back channels-last: there PyTorch's
    channels-last kernel is slow when a group has few channels. Forward and backward on 2
    cores of an AMD EPYC with AVX-512 BF16, bf16, 32 groups, the kernel against the two
    copies and the channels-first kernel: ``[8, 128, 24, 24]`` 6.3 ms / 3.0 ms (FCOS's
    towers at stride 8 of a 192 px batch), ``[8, 128, 6, 6]`` 0.45 / 0.30, ``[8, 64, 64,
    64]`` 21.2 / 13.5, ``[8, 96, 64, 64]`` 19.0 / 18.9. Everything else keeps the kernel,
    which is as fast or faster there: fp32 (``[8, 128, 24, 24]`` 3.3 / 3.3 ms, ``[8, 256, 48,
    48]`` 14.3 / 32.3), more than :attr:`copy_max_group_channels` channels a group (bf16
    ``[8, 256, 48, 48]``: 14.5 / 24.9), maps over :attr:`copy_max_elements` elements (bf16
    ``[8, 128, 96, 96]``: 51.6 / 56.0), and other devices.

    >>> x = torch.randn(2, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    >>> norm = GroupNorm(4, 8)
    >>> y = norm(x.bfloat16())
    >>> y.dtype, y.is_contiguous(memory_format=torch.channels_last)
    (torch.bfloat16, True)
    """

    __constants__ = ["copy_max_elements", "copy_max_group_channels"]
    copy_max_elements: int = 2**22  # the largest map copied (elements)
    copy_max_group_channels: int = 4  # the most channels a group of a copied map has

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._copies(x):
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        y = F.group_norm(x.contiguous(), self.num_groups, self.weight, self.bias, self.eps)
        return y.contiguous(memory_format=torch.channels_last)

    def _copies(self, x: torch.Tensor) -> bool:
        """Whether ``x`` is normalised in channels-first memory (class docstring)."""
        return (
            x.dim() == 4
            and x.device.type == "cpu"
            and x.dtype in (torch.bfloat16, torch.float16)
            and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)
            and self.num_channels // self.num_groups <= self.copy_max_group_channels
            and x.numel() <= self.copy_max_elements
        )


def norm_layer(norm: str, channels: int) -> nn.Module | None:
    """The normalisation layer ``norm`` (one of :data:`NORMS`) over ``channels``, or ``None``
    for ``"none"``."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
    if norm == "group":
        return GroupNorm(next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0), channels)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return None
