"""FPN neck: declared channels and strides match what it returns, on real backbones."""

from __future__ import annotations

import math

import pytest
import torch

from visionkit.models.backbones import create_backbone
from visionkit.models.necks import FPN, list_necks
from visionkit.models.necks.fpn import strided_conv
from visionkit.registry import NECKS


@pytest.fixture(scope="module")
def simple_cnn():
    torch.manual_seed(0)
    return create_backbone("simple_cnn")


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return create_backbone("resnet18")


def check_pyramid(neck, backbone, size=(64, 96)):
    """Run backbone + neck; the outputs match ``neck.out_channels`` / ``neck.strides``."""
    feats = backbone(torch.rand(2, 3, *size))
    out = neck(feats)
    assert len(out) == len(neck.strides) == len(neck.out_channels)
    expected = size
    for p, c, s in zip(out, neck.out_channels, neck.strides, strict=True):
        if s in backbone.strides:
            expected = tuple(feats[backbone.strides.index(s)].shape[-2:])
        else:  # an extra level: a stride-2 step from the previous level
            expected = tuple(math.ceil(x / 2) for x in expected)
        assert tuple(p.shape) == (2, c, *expected), (s, p.shape)
        expected = tuple(p.shape[-2:])
    return out


def test_registered():
    assert "fpn" in list_necks()
    assert NECKS.get("fpn") is FPN and NECKS.component_class("fpn") is FPN


@pytest.mark.parametrize("backbone_name", ["simple_cnn", "resnet18"])
@pytest.mark.parametrize(
    ("min_level", "max_level", "extra"),
    [(3, 5, "conv_from_p"), (3, 7, "conv_from_p"), (3, 7, "conv_from_c"), (2, 6, "maxpool")],
)
def test_shapes_strides_channels(request, backbone_name, min_level, max_level, extra):
    backbone = request.getfixturevalue(backbone_name)
    neck = FPN(
        backbone.out_channels,
        backbone.strides,
        out_channels=32,
        min_level=min_level,
        max_level=max_level,
        extra_blocks=extra,
    )
    assert isinstance(neck, FPN)
    assert neck.strides == [2**k for k in range(min_level, max_level + 1)]
    assert neck.out_channels == [32] * (max_level - min_level + 1)
    check_pyramid(neck, backbone)


def test_default_is_p3_p5_128_channels(simple_cnn):
    neck = NECKS.build("fpn", in_channels=simple_cnn.out_channels, strides=simple_cnn.strides)
    assert neck.strides == [8, 16, 32] and neck.out_channels == [128] * 3
    out = check_pyramid(neck, simple_cnn, size=(64, 64))
    assert [tuple(p.shape[-2:]) for p in out] == [(8, 8), (4, 4), (2, 2)]


def test_max_level_below_backbone_top_ignores_coarser_maps(simple_cnn):
    neck = FPN(simple_cnn.out_channels, simple_cnn.strides, out_channels=16, max_level=4)
    assert neck.strides == [8, 16]
    check_pyramid(neck, simple_cnn)


def test_every_parameter_gets_a_gradient(simple_cnn):
    neck = FPN(simple_cnn.out_channels, simple_cnn.strides, out_channels=16, max_level=7)
    feats = [f.detach() for f in simple_cnn(torch.rand(1, 3, 64, 64))]
    sum(p.sum() for p in neck(feats)).backward()
    assert all(p.grad is not None for p in neck.parameters())


def test_levels_one_pixel_wide_train_in_bfloat16_without_nan_gradients(simple_cnn):
    """torch's bf16 CPU convolution gave the P7 conv (stride 2, on P6 of 1x1) a NaN or inf
    weight gradient now and then (a non-finite loss at a random step of a 64-px run)."""
    torch.manual_seed(0)
    neck = FPN(simple_cnn.out_channels, simple_cnn.strides, out_channels=96, max_level=7)
    neck = neck.to(memory_format=torch.channels_last)
    conv = neck.fpn.extra_blocks.convs[-1]
    for _ in range(60):
        feats = [
            torch.randn(8, c, 64 // s, 32 // s).contiguous(memory_format=torch.channels_last)
            for c, s in zip(simple_cnn.out_channels, simple_cnn.strides, strict=True)
        ]
        neck.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = neck(feats)
        assert out[-1].shape[-1] == 1 and out[-2].shape[-1] == 1
        sum(p.float().sum() for p in out).backward()
        assert all(torch.isfinite(p.grad).all() for p in neck.parameters())
    # the same numbers as the convolution itself, at bf16's precision
    x = torch.randn(8, 96, 1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast, exact = conv(x), strided_conv(conv, x)
    torch.testing.assert_close(exact.float(), fast.float(), atol=0.05, rtol=0.02)


def test_backbone_with_out_indices(simple_cnn):
    backbone = create_backbone("simple_cnn", out_indices=(2, 3, 4))
    neck = FPN(backbone.out_channels, backbone.strides, max_level=7)
    assert neck.strides == [8, 16, 32, 64, 128]
    check_pyramid(neck, backbone)


def test_error_when_min_level_below_backbone_smallest_stride():
    backbone = create_backbone("simple_cnn", out_indices=(2, 3, 4))  # strides 8, 16, 32
    with pytest.raises(ValueError, match=r"strides \[4\]"):
        FPN(backbone.out_channels, backbone.strides, min_level=2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": [8, 16], "strides": [8, 32]}, r"strides \[16\]"),
        ({"in_channels": [8, 16], "strides": [8, 12]}, "powers of two"),
        ({"in_channels": [8, 16], "strides": [16, 8]}, "increase"),
        ({"in_channels": [8], "strides": [8, 16]}, "same length"),
        ({"in_channels": [8, 16], "strides": [8, 16], "max_level": 2}, "below min_level"),
        ({"in_channels": [8, 16], "strides": [8, 16], "min_level": 6, "max_level": 7}, "coarser"),
        ({"in_channels": [8, 16], "strides": [8, 16], "extra_blocks": "p6"}, "extra_blocks"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FPN(**kwargs)


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_fpn_norm_normalises_each_pyramid_convolution(norm):
    """``norm: batch`` / ``group`` puts the layer after each of the pyramid's 1x1 and 3x3
    convolutions (torchvision's norm_layer), the convolutions then without bias; the outputs
    keep their shapes, and in training mode every output level is normalised."""
    torch.manual_seed(0)
    neck = FPN([16, 32], [8, 16], out_channels=16, max_level=5, norm=norm)
    kind = torch.nn.BatchNorm2d if norm == "batch" else torch.nn.GroupNorm
    norms = [m for m in neck.modules() if isinstance(m, kind)]
    assert len(norms) == 4  # two inner (1x1) and two layer (3x3) convolutions
    assert all(b.bias is None for b in neck.fpn.inner_blocks[0] if isinstance(b, torch.nn.Conv2d))
    out = neck([torch.rand(4, 16, 8, 8) * 50, torch.rand(4, 32, 4, 4) * 50])
    assert [tuple(p.shape) for p in out] == [(4, 16, 8, 8), (4, 16, 4, 4), (4, 16, 2, 2)]
    if norm == "batch":  # the 3x3 outputs are batch-normalised: per channel mean 0, std 1
        for p in out[:2]:
            assert p.mean(dim=(0, 2, 3)).abs().max() < 1e-4
            assert (p.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-2


def test_fpn_default_has_no_norm_and_torchvision_keys():
    """The default (``norm: none``) is torchvision's FPN: convolutions with bias, the same
    state-dict keys (what init_from torchvision:... maps onto)."""
    neck = FPN([16, 32], [8, 16], out_channels=16, max_level=4)
    keys = set(neck.state_dict())
    assert "fpn.inner_blocks.0.0.bias" in keys and "fpn.layer_blocks.1.0.bias" in keys
    assert {k.split(".")[3] for k in keys if k.startswith("fpn.")} == {"0"}  # conv only


def test_fpn_unknown_norm_is_named():
    with pytest.raises(
        ValueError, match=r"fpn: unknown norm 'layer'; choose one of \['group', 'batch', 'none'\]"
    ):
        FPN([16, 32], [8, 16], norm="layer")
