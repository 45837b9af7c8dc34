"""A small built-in CNN in the classic conv(3x3) -> BN -> ReLU -> max-pool pattern.

It has no published weights and exists so that tests, examples and CPU smoke runs need no
download and finish in seconds (about 470k parameters with the default widths).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import Tensor, nn

from visionkit.models.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneError,
    select_levels,
)
from visionkit.registry import BACKBONES

# Inputs are expected in 0..1 and normalised to roughly zero mean / unit variance. The
# network is trained from scratch, so any fixed affine map works; it uses the ImageNet
# statistics, which suit natural RGB images and keep it interchangeable with pretrained
# backbones in a pipeline.


class SimpleCNN(nn.Module):
    """VGG-style stages: ``convs_per_stage`` x (conv3x3 -> BN -> ReLU), then 2x2 max-pool.

    Stage ``i`` ends with a pool, so its output has stride ``2 ** (i + 1)`` and spatial size
    ``ceil(H / stride)`` (the pools use ``ceil_mode``, like stride-2 convs with padding 1).

    Args:
        widths: Output channels of each stage; one stage per entry.
        convs_per_stage: 3x3 convolutions per stage.
        batch_norm: Put a BatchNorm after each convolution.
        out_indices: Stages to return (default: all).
        name: Registry name recorded on the module.

    Example:
        >>> import torch
        >>> net = SimpleCNN()
        >>> [tuple(f.shape) for f in net(torch.zeros(1, 3, 64, 64))][-1]
        (1, 128, 2, 2)
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64, 96, 128),
        convs_per_stage: int = 2,
        batch_norm: bool = True,
        out_indices: Sequence[int] | None = None,
        name: str = "simple_cnn",
    ) -> None:
        super().__init__()
        if not widths or convs_per_stage < 1:
            raise BackboneError("simple_cnn needs at least one stage and one conv per stage")
        stages = []
        in_ch = 3
        for width in widths:
            layers: list[nn.Module] = []
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(in_ch, width, 3, padding=1, bias=not batch_norm)]
                layers += [nn.BatchNorm2d(width)] if batch_norm else []
                layers += [nn.ReLU(inplace=True)]
                in_ch = width
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.out_indices = select_levels(len(widths), out_indices, name)
        self.name = name
        self.out_channels = [int(widths[i]) for i in self.out_indices]
        self.strides = [2 ** (i + 1) for i in self.out_indices]
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Map images ``[B, 3, H, W]`` to ``[B, out_channels[i], ceil(H / s_i), ceil(W / s_i)]``."""
        feats = []
        last = self.out_indices[-1]
        for i, stage in enumerate(self.stages[: last + 1]):
            x = stage(x)
            if i in self.out_indices:
                feats.append(x)
        return feats


def _create_simple_cnn(name: str, pretrained: bool, **kwargs: object) -> SimpleCNN:
    if pretrained:
        _no_published_weights(name)
    return SimpleCNN(name=name, **kwargs)  # type: ignore[arg-type]


def _no_published_weights(name: str) -> dict[str, object]:
    """What ``pretrained=True`` implies (``create_backbone``'s ``pretrained_arguments``): an
    error, there are no such weights."""
    raise BackboneError(
        f"{name!r} has no published pretrained weights; use pretrained=False, or pass a "
        "checkpoint file of your own: pretrained='/path/to/weights.safetensors'"
    )


@BACKBONES.register
def simple_cnn(
    pretrained: bool = False,
    out_indices: Sequence[int] | None = None,
    widths: Sequence[int] = (16, 32, 64, 96, 128),
    batch_norm: bool = True,
) -> SimpleCNN:
    """Five VGG-style stages (strides 2..32, 16-128 channels, ~470k parameters)."""
    return _create_simple_cnn(
        "simple_cnn", pretrained, out_indices=out_indices, widths=widths, batch_norm=batch_norm
    )


simple_cnn.pretrained_arguments = functools.partial(  # type: ignore[attr-defined]
    _no_published_weights, "simple_cnn"
)
