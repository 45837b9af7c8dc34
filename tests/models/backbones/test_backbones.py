"""Backbone registry and contract: forward/backward shapes over a sample of every family."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import timm
import torch

from visionkit.config import load_config
from visionkit.errors import ConfigError
from visionkit.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    BackboneError,
    UnsupportedBackboneError,
    create_backbone,
    list_backbones,
)
from visionkit.models.backbones.base import count_parameters
from visionkit.registry import BACKBONES, UnknownNameError

# Cheap representatives of each family; all give exactly ceil(size / stride) maps.
FORWARD_CASES = [
    "simple_cnn",
    "resnet18",
    "timm/efficientnet_b0",
    "convnext_atto",
    "mobilenetv3_small_100",
    "regnetx_002",
    "resnet10t",
    "ghostnet_100",
    "test_mambaout",  # timm returns NHWC maps for this family; must come back NCHW
    "torchvision/resnet18",
    "torchvision/mobilenet_v3_small",
    "torchvision/mobilenet_v3_large",
    "torchvision/efficientnet_b0",
    "torchvision/regnet_x_400mf",
    "torchvision/shufflenet_v2_x0_5",
]

# Wider coverage at no compute cost: built and run on the meta device (shapes only).
META_CASES = [
    "dla34", "hrnet_w18_small", "nf_regnet_b0", "focalnet_tiny_srf", "davit_tiny", "pvt_v2_b0",
    "twins_svt_small", "mvitv2_tiny", "fastvit_t8", "efficientvit_b0", "hgnetv2_b0",
    "cspresnet50", "densenet121", "mobilevitv2_050", "repvgg_a0", "vovnet39a",
    "mambaout_femto", "torchvision/densenet121", "torchvision/googlenet", "torchvision/vgg11",
    "torchvision/convnext_tiny",
]  # fmt: skip


def _check_contract(backbone: torch.nn.Module, name: str, x: torch.Tensor, exact: bool) -> list:
    feats = backbone(x)
    assert isinstance(feats, list)
    assert len(feats) == len(backbone.out_channels) == len(backbone.strides) > 0
    assert all(a < b for a, b in pairwise(backbone.strides)), backbone.strides
    height, width = x.shape[2:]
    for f, channels, stride in zip(feats, backbone.out_channels, backbone.strides, strict=True):
        assert f.ndim == 4 and f.shape[0] == x.shape[0]
        assert f.shape[1] == channels, (name, tuple(f.shape), channels)
        if exact:
            assert tuple(f.shape[2:]) == (math.ceil(height / stride), math.ceil(width / stride))
        else:  # valid-padding models (inception) lose a few pixels
            assert abs(f.shape[2] - height / stride) <= 4 and abs(f.shape[3] - width / stride) <= 4
    assert backbone.name == name
    assert len(backbone.mean) == len(backbone.std) == 3
    assert all(0 <= m <= 1 for m in backbone.mean) and all(0 < s <= 1 for s in backbone.std)
    assert isinstance(backbone, Backbone)
    return feats


@pytest.mark.parametrize("name", FORWARD_CASES)
def test_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    backbone = create_backbone(name)
    x = torch.randn(2, 3, 64, 96)  # non-square catches H/W mix-ups and NHWC leaks
    feats = _check_contract(backbone, name, x, exact=True)
    sum(f.float().square().mean() for f in feats).backward()
    named = [(n, p) for n, p in backbone.named_parameters() if p.requires_grad]
    assert [n for n, p in named if p.grad is None] == []  # every parameter feeds the output
    assert all(torch.isfinite(p.grad).all() for _, p in named)
    # The stem reaches every level, so its gradient is non-zero. (Many others are zero at
    # init: timm zero-initialises the last norm of each residual block.)
    assert named[0][1].grad.abs().sum() > 0, named[0][0]


@pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning")
@pytest.mark.parametrize("name", META_CASES)
def test_declared_shapes_match_forward_on_meta(name: str) -> None:
    with torch.device("meta"):
        backbone = create_backbone(name)
        _check_contract(backbone.eval(), name, torch.zeros(1, 3, 160, 224), exact=False)


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("torchvision/resnet50", [64, 256, 512, 1024, 2048]),
        ("torchvision/efficientnet_b0", [16, 24, 40, 112, 1280]),  # stage ends, not expansions
        ("torchvision/mobilenet_v3_large", [16, 24, 40, 112, 960]),
        ("torchvision/densenet121", [64, 256, 512, 1024, 1024]),  # same levels as timm's
        ("torchvision/vgg11", [128, 256, 512, 512, 512]),
    ],
)
def test_torchvision_levels_are_stage_outputs(name: str, channels: list[int]) -> None:
    with torch.device("meta"):
        backbone = create_backbone(name)
    assert backbone.out_channels == channels
    assert backbone.strides == [2, 4, 8, 16, 32]


def test_list_backbones_counts_and_filters() -> None:
    names = list_backbones()
    plain = [n for n in names if "/" not in n]
    assert len(plain) >= 500
    assert len(names) >= 1000
    assert {"simple_cnn", "resnet18", "timm/resnet18", "torchvision/resnet18"} <= set(names)
    resnets = list_backbones("resnet*")
    assert "resnet18" in resnets and "resnet50" in resnets
    assert all(n.startswith("resnet") for n in resnets)
    tv = list_backbones("torchvision/*")
    assert {"torchvision/mobilenet_v3_large", "torchvision/efficientnet_b0"} <= set(tv)
    assert not [n for n in tv if n.startswith(("torchvision/vit_", "torchvision/swin_"))]
    for excluded in ("vit_relpos_small_patch16_224", "maxvit_tiny_tf_224", "levit_128s"):
        assert excluded not in names


def test_explicit_registrations_are_exactly_the_builtin_ones() -> None:
    served = set(timm.list_models()) | {n for n in list_backbones() if "/" in n}
    assert [n for n in list_backbones() if n not in served] == ["simple_cnn"]


def test_timm_prefix_is_the_same_model() -> None:
    torch.manual_seed(0)
    plain = create_backbone("resnet18").eval()
    torch.manual_seed(0)
    prefixed = create_backbone("timm/resnet18").eval()
    assert prefixed.name == "timm/resnet18" and plain.name == "resnet18"
    assert plain.out_channels == prefixed.out_channels == [64, 64, 128, 256, 512]
    assert plain.strides == prefixed.strides == [2, 4, 8, 16, 32]
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(plain(x), prefixed(x), strict=True):
        torch.testing.assert_close(a, b)


SMALL_SWIN = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}


@pytest.mark.parametrize(
    "name",
    ["swin_tiny_patch4_window7_224", "swinv2_tiny_window8_256", "timm/swinv2_cr_tiny_ns_224"],
)
def test_swin_takes_any_input_size(name: str) -> None:
    """Swin was left out as "fixed input size"; timm's dynamic_img_size=True pads its windows,
    so detection and segmentation sizes (64x96 here, 224 for its weights) both work."""
    assert name in list_backbones("*swin*")
    backbone = create_backbone(name, **SMALL_SWIN)
    assert backbone.strides == [4, 8, 16, 32]
    feats = _check_contract(backbone, name, torch.randn(2, 3, 64, 96), exact=True)
    sum(f.square().mean() for f in feats).backward()
    assert all(p.grad is not None for p in backbone.parameters() if p.requires_grad)
    with torch.device("meta"):
        fixed = create_backbone(name, dynamic_img_size=False, **SMALL_SWIN)  # a config's choice
        with pytest.raises(AssertionError):  # timm's own check of its fixed size
            fixed(torch.zeros(1, 3, 64, 96))


@pytest.mark.parametrize(
    ("name", "strides"),
    [("simple_cnn", [4, 16]), ("resnet18", [4, 16]), ("torchvision/resnet18", [4, 16])],
)
def test_out_indices(name: str, strides: list[int]) -> None:
    backbone = create_backbone(name, out_indices=(1, 3))
    assert backbone.strides == strides
    feats = backbone(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [64 // s for s in strides]
    assert create_backbone(name, out_indices=[-1]).strides == [32]
    # any order and mixed signs pick the same levels, returned in level order (timm's
    # (3, 1) was refused as "strides [16, 4], not increasing"; the others sorted them)
    for order in ((3, 1), (-2, 1), (-1, 0, 2)):
        picked = create_backbone(name, out_indices=order)
        assert picked.strides == sorted(picked.strides), (name, order)
        assert [f.shape[-1] for f in picked(torch.zeros(1, 3, 64, 64))] == [
            64 // s for s in picked.strides
        ]
    assert create_backbone(name, out_indices=(-1, 1)).strides == [4, 32]
    with pytest.raises(BackboneError, match="out_indices"):
        create_backbone(name, out_indices=(9,))
    with pytest.raises(BackboneError, match=r"\[2, 2\] picks level 2 twice"):
        create_backbone(name, out_indices=(2, 2))
    with pytest.raises(BackboneError, match="picks level 4 twice"):  # the same level twice
        create_backbone(name, out_indices=(-1, 4))
    with pytest.raises(BackboneError, match="picks no level"):
        create_backbone(name, out_indices=())


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match="resnet18"):
        create_backbone("resnet19")
    with pytest.raises(UnknownNameError, match="torchvision/resnet18"):
        create_backbone("torchvision/resnet19")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("vit_relpos_small_patch16_224", "one stride"),  # plain ViTs: test_plain_vit.py
        ("mixer_b16_224", "one stride"),
        ("torchvision/swin_t", "NHWC"),
        ("inception_v3", "not at their strides"),
        ("torchvision/squeezenet1_0", "ceil_mode"),
        ("torchvision/alexnet", "64 px gives 15, 7, 3 and 1"),  # batch-1 predict failed
    ],
)
def test_existing_but_unsupported_model_says_why(name: str, reason: str) -> None:
    with pytest.raises(UnsupportedBackboneError, match=reason):
        create_backbone(name)


def test_a_config_naming_an_unsupported_model_says_why_not_unknown() -> None:
    """An MLP-Mixer in a config was "unknown backbone; did you mean ..."."""
    with pytest.raises(ConfigError) as info:
        load_config(
            {
                "model": {
                    "backbone": {"name": "mixer_s16_224"},
                    "heads": {"c": {"name": "linear"}},
                }
            }
        )
    assert "'mixer_s16_224' cannot be used as a backbone: all features at one stride" in str(
        info.value
    )
    assert "unknown" not in str(info.value)


def test_out_indices_past_a_models_levels_says_which_levels_it_has() -> None:
    """The shipped configs' [2, 3, 4] on a 4-level model (ConvNeXt) failed with "list index
    out of range" alone; output_stride made strides repeat without saying which to pick."""
    with pytest.raises(BackboneError) as info:
        create_backbone("convnext_atto", out_indices=(2, 3, 4))
    assert (
        "'convnext_atto' has 4 feature levels, 0..3 (or -4..-1, counted from the last), at "
        "strides [4, 8, 16, 32]; pick levels of increasing stride: e.g. [1, 2, 3] for "
        "strides 8, 16, 32"
    ) in str(info.value)
    with pytest.raises(BackboneError, match=r"e.g. \[1, 2, 3\] for strides 4, 8, 16"):
        create_backbone("resnet18", out_indices=(2, 3, 4), output_stride=16)


def test_out_indices_levels_count_a_level_timm_hides_by_default() -> None:
    """dla34's default out_indices leave out its stride-1 level 0, which timm counts indices
    over: [6] was told "5 feature levels, 0..4" while [5] (stride 32) works."""
    with pytest.raises(BackboneError) as info:
        create_backbone("dla34", pretrained=False, out_indices=[6])
    assert (
        "'dla34' has 6 feature levels, 0..5 (or -6..-1, counted from the last), at "
        "strides [1, 2, 4, 8, 16, 32]"
    ) in str(info.value)
    assert create_backbone("dla34", pretrained=False, out_indices=[5]).strides == [32]


def test_simple_cnn_size_and_none_kwargs() -> None:
    backbone = create_backbone("simple_cnn", widths=None, batch_norm=None)  # None -> defaults
    assert 100_000 < count_parameters(backbone) < 1_000_000
    assert backbone.strides == [2, 4, 8, 16, 32]
    assert backbone.out_channels == [16, 32, 64, 96, 128]
    narrow = create_backbone("simple_cnn", widths=(8, 16, 32))
    assert narrow.out_channels == [8, 16, 32] and narrow.strides == [2, 4, 8]


def test_mean_std_from_timm_pretrained_cfg() -> None:
    name = "tf_mobilenetv3_small_100"  # TF-ported weights normalise with 0.5 / 0.5
    expected = timm.create_model(name, pretrained=False).pretrained_cfg
    backbone = create_backbone(name)
    assert backbone.mean == tuple(expected["mean"]) == (0.5, 0.5, 0.5)
    assert backbone.std == tuple(expected["std"])
    assert create_backbone("resnet18").mean == IMAGENET_MEAN
    tv = create_backbone("torchvision/mobilenet_v3_small")
    assert (tv.mean, tv.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_custom_registration_and_duplicate(caplog) -> None:
    name = "vk_test_custom_backbone_7f3a"

    def vk_test_custom_backbone_7f3a(out_indices=None, widths=(4, 8)):
        return create_backbone("simple_cnn", widths=widths, out_indices=out_indices)

    BACKBONES.register(vk_test_custom_backbone_7f3a)
    try:
        assert name in list_backbones("vk_test_*")
        backbone = create_backbone(name, widths=(4, 8, 12))  # pretrained=False is not passed on
        assert backbone.out_channels == [4, 8, 12]
        with caplog.at_level("WARNING"):  # the same definition again: a notebook cell re-run
            BACKBONES.register(vk_test_custom_backbone_7f3a)
        assert f"backbone '{name}' registered again by " in caplog.text

        def other(out_indices=None):  # another definition under the name: refused
            return create_backbone("simple_cnn", out_indices=out_indices)

        with pytest.raises(ValueError, match=f"'{name}' is already registered \\(by .*7f3a\\)"):
            BACKBONES.register(name)(other)
    finally:
        BACKBONES._builders.pop(name, None)
    assert name not in list_backbones()
