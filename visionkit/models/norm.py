"""The normalisation layers a neck or dense head can put after its convolutions.

``norm`` values, one meaning everywhere (:func:`norm_layer`):

- ``"group"``: GroupNorm with 32 groups, or the largest of 16/8/4/2/1 dividing the channels
  (FCOS's, RetinaNet v2's head; independent of the batch size).
- ``"batch"``: BatchNorm2d (statistics of the batch; cheaper than GroupNorm on the CPU).
- ``"none"``: no normalisation (torchvision's FPN, RetinaNet's original head).

>>> norm_layer("group", 48).num_groups  # 48 channels: 16 groups of 3
16
>>> norm_layer("none", 48) is None
True
"""

from __future__ import annotations

from torch import nn

#: The ``norm`` values of necks and dense heads.
NORMS = ("group", "batch", "none")


def norm_layer(norm: str, channels: int) -> nn.Module | None:
    """The normalisation layer ``norm`` (one of :data:`NORMS`) over ``channels``, or ``None``
    for ``"none"``."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {list(NORMS)}, got {norm!r}")
    if norm == "group":
        return nn.GroupNorm(next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0), channels)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return None
