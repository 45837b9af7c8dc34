"""The backbone contract, and the small wrapper that library feature extractors share.

A backbone is any ``nn.Module`` that satisfies :class:`Backbone`; no base class is required.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor, nn

from visionkit.errors import VisionkitError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneError(VisionkitError):
    """A backbone cannot be built as asked (bad ``out_indices``, no published weights, ...)."""


#: Builder arguments a config or a checkpoint may never pass: they make timm or torchvision
#: read a file or fetch weights themselves (timm < 1.0.26 unpickles ``checkpoint_path`` with
#: ``weights_only=False``). Weights come in only through ``pretrained`` (checked loaders).
REFUSED_KWARGS = ("checkpoint_path", "pretrained", "weights", "weights_backbone", "cache_dir")
_REFUSED_SUFFIXES = ("path", "file", "files", "url", "dir", "checkpoint", "weights")


def refuse_unsafe_kwargs(kwargs: dict[str, object]) -> None:
    """Raise :class:`BackboneError` when a backbone builder argument could load a file: a
    key in :data:`REFUSED_KWARGS`, ``pretrained_cfg*``, or ending in ``path``, ``file``,
    ``url``, ``dir``, ``checkpoint`` or ``weights`` (``drop_path_rate`` is fine), or any string
    value that looks like a path or URL."""
    problems = []
    for key, value in kwargs.items():
        lowered = key.lower()
        if (
            lowered in REFUSED_KWARGS
            or lowered.startswith("pretrained_cfg")
            or lowered.endswith(_REFUSED_SUFFIXES)
        ):
            problems.append(
                f"model.backbone.kwargs.{key}: refused (it could make the library load a file)"
            )
        elif isinstance(value, str) and ("/" in value or "\\" in value or "://" in value):
            problems.append(
                f"model.backbone.kwargs.{key}: {value!r} looks like a path or URL; refused "
                "(architecture arguments only)"
            )
    if problems:
        raise BackboneError(
            "; ".join(problems)
            + ". Load weights with model.backbone.pretrained (true, or a .safetensors / .pth "
            "file read with weights_only=True) or model.init_from."
        )


@runtime_checkable
class Backbone(Protocol):
    """What every backbone provides.

    ``forward`` maps images ``[B, 3, H, W]`` (RGB scaled to 0..1, then normalised with
    ``mean``/``std``) to a list of NCHW feature maps ``[B, out_channels[i], ~H/strides[i],
    ~W/strides[i]]`` with strictly increasing strides. ``out_channels`` and ``strides`` are
    declared once and match exactly what ``forward`` returns, so necks and heads size
    themselves from them.

    Attributes:
        name: The registry name the backbone was built from.
        out_channels: Channels of each returned feature map.
        strides: Input-to-feature downsampling factor of each returned map (e.g. 4, 8, 16, 32).
        mean: Per-channel mean for inputs scaled to 0..1 (from the pretrained config).
        std: Per-channel std for inputs scaled to 0..1.
    """

    name: str
    out_channels: list[int]
    strides: list[int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, x: Tensor) -> list[Tensor]: ...

    def forward(self, x: Tensor) -> list[Tensor]: ...


def select_levels(num_levels: int, out_indices: Sequence[int] | None, name: str) -> list[int]:
    """Normalise ``out_indices`` (negative allowed, ``None`` = all) to sorted level indices.

    Raises:
        BackboneError: An index is out of range or repeated.
    """
    if out_indices is None:
        return list(range(num_levels))
    picked = []
    for i in out_indices:
        if not -num_levels <= int(i) < num_levels:
            raise BackboneError(
                f"out_indices {tuple(out_indices)} out of range for backbone {name!r}, "
                f"which has {num_levels} feature levels (0..{num_levels - 1})"
            )
        picked.append(int(i) % num_levels)
    if len(set(picked)) != len(picked) or not picked:
        raise BackboneError(f"out_indices {tuple(out_indices)} must be distinct and non-empty")
    return sorted(picked)


class FeatureBackbone(nn.Module):
    """Wraps a library feature extractor (timm ``features_only``, torchvision FX) as a backbone.

    Args:
        body: Module mapping ``[B, 3, H, W]`` to a list (or dict, in level order) of maps.
        name: Registry name.
        out_channels: Channels per returned map.
        strides: Stride per returned map.
        mean: Normalisation mean for 0..1 inputs.
        std: Normalisation std for 0..1 inputs.
        channels_last: ``body`` returns NHWC maps ``[B, H, W, C]``; they are permuted to NCHW.
    """

    def __init__(
        self,
        body: nn.Module,
        name: str,
        out_channels: Sequence[int],
        strides: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.body = body
        self.name = name
        self.out_channels = [int(c) for c in out_channels]
        self.strides = [int(s) for s in strides]
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.channels_last = channels_last

    def forward(self, x: Tensor) -> list[Tensor]:
        """Map images ``[B, 3, H, W]`` to feature maps ``[B, C_i, H / s_i, W / s_i]``."""
        feats = self.body(x)
        if isinstance(feats, dict):
            feats = list(feats.values())
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2) for f in feats]  # [B, H, W, C] -> [B, C, H, W]
        return list(feats)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, out_channels={self.out_channels}, strides={self.strides}"


def to_rgb_stats(
    values: Sequence[float] | None, default: tuple[float, float, float]
) -> tuple[float, float, float]:
    """Three floats from a pretrained config entry (grayscale ``(m,)`` is repeated)."""
    if not values:
        return default
    vals = [float(v) for v in values]
    if len(vals) == 1:
        vals = vals * 3
    return (vals[0], vals[1], vals[2])


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "BackboneError",
    "FeatureBackbone",
    "count_parameters",
    "select_levels",
    "to_rgb_stats",
]
