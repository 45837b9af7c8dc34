"""Plain (non-hierarchical) vision transformers as backbones, through a simple feature pyramid.

A plain ViT (``vit_*``, ``deit*``, ``eva*``, DINOv2, SigLIP, ...) keeps one map at its patch
stride (16) from the first block to the last, where the backbone contract needs levels of
increasing stride. As ViTDet does (Li et al. 2022, "Exploring Plain Vision Transformer
Backbones for Object Detection"), the last block's map is normalised and rescaled into a
pyramid: strides ``s / 4`` and ``s / 2`` by 2x2 transposed convolutions (channels ``C / 4`` and
``C / 2``), ``s`` as it is, ``2s`` by 2x2 max pooling. The ``out_indices`` of such a backbone pick
levels of that pyramid (patch 16: strides 4, 8, 16, 32; ``[-3, -2, -1]``: 8, 16, 32), and only
the picked levels' layers are built. The transformer is timm's, built with
``dynamic_img_size`` and ``dynamic_img_pad`` so that it takes any input size (the position
table is interpolated, the input padded to whole patches); its pretrained weights load as
timm loads them, and the pyramid's layers (``pyramid_norm.*``, ``pyramid.*``) start from their initialisation.

>>> import torch
>>> backbone = create_plain_vit_backbone("test_vit", out_indices=[-3, -2, -1])
>>> backbone.strides, backbone.out_channels
([8, 16, 32], [32, 64, 64])
>>> [tuple(f.shape) for f in backbone(torch.zeros(1, 3, 100, 130))]
[(1, 32, 13, 17), (1, 64, 7, 9), (1, 64, 4, 5)]
"""

from __future__ import annotations

import fnmatch
import logging
import sys
from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import Tensor, nn

from visionkit.models.backbones.base import BackboneError, FeatureBackbone, select_levels

logger = logging.getLogger(__name__)

#: Name patterns (fnmatch) of the plain ViTs served so: every timm model they match builds with
#: ``features_only=True, dynamic_img_size=True, dynamic_img_pad=True`` and runs on 64x64,
#: 128x96 and 100x130 inputs (measured over all 285 of timm 1.0.31, as
#: :data:`~visionkit.models.backbones.timm_backbones.EXCLUDED` was), less
#: :data:`NOT_PLAIN_VITS`.
PLAIN_VITS = ("aimv2*", "beit3*", "deit*", "eva*", "flexivit*", "test_vit", "test_vit?", "vit*")

#: Of :data:`PLAIN_VITS`, the ones whose timm class takes no ``dynamic_img_size`` (relative
#: position tables of one grid) or whose hybrid stem fails at other sizes.
NOT_PLAIN_VITS = ("vit_relpos*", "vit_srelpos*", "vit_large_r50_s32*")

#: Pyramid levels as multiples of the patch stride (ViTDet's scale factors 4, 2, 1, 1/2).
SCALES = (0.25, 0.5, 1.0, 2.0)


def is_plain_vit(model_name: str) -> bool:
    """Whether the timm architecture ``model_name`` (no tag) is served as a plain ViT."""
    matches = lambda patterns: any(fnmatch.fnmatchcase(model_name, p) for p in patterns)  # noqa: E731
    return matches(PLAIN_VITS) and not matches(NOT_PLAIN_VITS)


class SimplePyramid(FeatureBackbone):
    """A plain ViT (``body``: timm's ``features_only`` model giving one map at stride ``stride``
    with ``channels`` channels) and ViTDet's rescaling of its map into ``levels`` (indices into
    :data:`SCALES`). Other arguments are :class:`FeatureBackbone`'s. Maps are cropped to
    ``ceil(H / s)`` x ``ceil(W / s)``, the size a convolutional backbone gives."""

    def __init__(
        self,
        body: nn.Module,
        name: str,
        stride: int,
        channels: int,
        levels: Sequence[int],
        **kwargs: Any,
    ) -> None:
        strides = [int(stride * SCALES[i]) for i in levels]
        widths = [max(1, int(channels * min(SCALES[i], 1.0))) for i in levels]
        super().__init__(body, name=name, out_channels=widths, strides=strides, **kwargs)
        self.patch_stride = stride
        self.pyramid_norm = LayerNorm2d(channels)  # the last block's map (the final norm is pruned)
        self.pyramid = nn.ModuleList(rescale(SCALES[i], channels) for i in levels)
        #: parameter-name prefixes no weights file of the library model holds
        self.new_layers = ("pyramid_norm.", "pyramid.")

    #: ``torch.jit.trace`` keeps the patch grid of the traced input size as a constant
    #: (timm's position-table interpolation): a TorchScript export would run at that size only.
    traced_size_fixed = True

    def file_names(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """A weights file of the whole timm model through timm's own ``checkpoint_filter_fn``
        first, as ``pretrained: true`` loads it: the patch embedding and position table resized
        to this model's patches and grid (``patch_size: 16`` for DINOv2's 14), other
        checkpoints' names (the original DINOv2, CLIP) converted; then the wrapper's names."""
        vit = self.body.model
        timm_filter = getattr(sys.modules[type(vit).__module__], "checkpoint_filter_fn", None)
        if timm_filter is not None:
            try:
                tensors = timm_filter(dict(tensors), vit)
            except Exception as err:  # names the filter does not expect: loaded as they are
                logger.debug("timm's checkpoint filter left the file as it is: %s", err)
        return super().file_names(tensors)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Map images ``[B, 3, H, W]`` to ``[B, C_i, ceil(H / s_i), ceil(W / s_i)]``."""
        height, width = x.shape[-2:]
        stride = self.patch_stride  # padded here: a hybrid's CNN stem does not pad as timm does
        x = F.pad(
            x, (0, (stride - width % stride) % stride, 0, (stride - height % stride) % stride)
        )
        feature = self.pyramid_norm(super().forward(x)[-1])
        return [  # ceil(size / s) in integers: traced (TorchScript) as the input's size
            level(feature)[..., : (height + s - 1) // s, : (width + s - 1) // s]
            for level, s in zip(self.pyramid, self.strides, strict=True)
        ]


def rescale(scale: float, channels: int) -> nn.Module:
    """ViTDet's layers taking a ``channels``-wide map to ``scale`` times its stride."""
    if scale == 0.25:
        return nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, 2, stride=2),
            LayerNorm2d(channels // 2),
            nn.GELU(),
            nn.ConvTranspose2d(channels // 2, channels // 4, 2, stride=2),
        )
    if scale == 0.5:
        return nn.ConvTranspose2d(channels, channels // 2, 2, stride=2)
    if scale == 2.0:
        return nn.MaxPool2d(2, ceil_mode=True)
    return nn.Identity()


def create_plain_vit_backbone(
    model_name: str,
    pretrained: bool = False,
    out_indices: Sequence[int] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> SimplePyramid:
    """Build the plain ViT ``model_name`` (timm name, tag allowed) with a simple feature pyramid.

    Args:
        model_name: timm name, optionally with a pretrained tag.
        pretrained: timm's pretrained weights (as
            :func:`~visionkit.models.backbones.timm_backbones.create_timm_backbone`).
        out_indices: levels of the pyramid (strides ``s/4, s/2, s, 2s`` for patch stride
            ``s``); default all four.
        name: registry name recorded on the backbone (default ``model_name``).
        **kwargs: passed to ``timm.create_model`` (``patch_size``, ``drop_path_rate``, ...);
            ``dynamic_img_size`` and ``dynamic_img_pad`` default to true.

    Raises:
        BackboneError: the patch stride is not a power of two (DINOv2's 14: the message says
            how to build it with 16-pixel patches), or timm rejects the arguments.
        OutIndicesError: ``out_indices`` pick a level the pyramid does not have, or one twice.
    """
    from visionkit.models.backbones.timm_backbones import create_timm_backbone

    name = name or model_name
    kwargs.setdefault("dynamic_img_size", True)
    kwargs.setdefault("dynamic_img_pad", True)
    vit = create_timm_backbone(model_name, pretrained, out_indices=(-1,), name=name, **kwargs)
    (stride,), (channels,) = vit.strides, vit.out_channels
    if stride < 4 or stride & (stride - 1):
        raise BackboneError(
            f"{name!r} cuts images into {stride}-pixel patches: its feature pyramid needs a "
            "patch stride that is a power of two from 4 (the level of s / 4 is a pixel at "
            "least); build it with 16-pixel patches, "
            "model.backbone.kwargs: {patch_size: 16} (timm resizes the pretrained patch "
            "embedding and position table to them, as FlexiViT does)"
        )
    strides = [int(stride * s) for s in SCALES]
    levels = select_levels(len(SCALES), out_indices, name, strides)
    backbone = SimplePyramid(
        vit.body,
        name=name,
        stride=stride,
        channels=channels,
        levels=levels,
        mean=vit.mean,
        std=vit.std,
        library_names=vit.library_names,
    )
    logger.info(
        "%s: a plain ViT (one map at stride %d) given a simple feature pyramid (ViTDet) at "
        "strides %s; its layers (pyramid_norm.*, pyramid.*) start from their initialisation",
        name,
        stride,
        backbone.strides,
    )
    return backbone


__all__ = ["PLAIN_VITS", "SimplePyramid", "create_plain_vit_backbone", "is_plain_vit"]
