"""Plain ViTs as backbones through ViTDet's simple feature pyramid
(:mod:`visionkit.models.backbones.plain_vit`): levels of increasing stride from one map, any
input size, only the picked levels built, weights loaded as timm loads them, refusals that say
what to write. ``test_vit`` is timm's 306k-parameter ViT (patch 16, 64 channels)."""

from __future__ import annotations

import logging
import math

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.models.backbones.hub_fakes import fake_hf_hub, isolated_caches
from visionkit.models.backbones import (
    BackboneError,
    OutIndicesError,
    UnsupportedBackboneError,
    create_backbone,
    list_backbones,
)
from visionkit.models.backbones.plain_vit import SimplePyramid


@pytest.mark.parametrize("size", [(64, 64), (100, 130), (97, 33)])
def test_levels_have_increasing_strides_and_the_sizes_a_cnn_gives(size):
    backbone = create_backbone("test_vit")
    assert isinstance(backbone, SimplePyramid)
    assert backbone.strides == [4, 8, 16, 32]
    assert backbone.out_channels == [16, 32, 64, 64]  # ViTDet: C/4, C/2, C, C
    features = backbone(torch.zeros(2, 3, *size))
    expected = [
        (2, c, math.ceil(size[0] / s), math.ceil(size[1] / s))
        for c, s in zip(backbone.out_channels, backbone.strides, strict=True)
    ]
    assert [tuple(f.shape) for f in features] == expected


def test_out_indices_pick_pyramid_levels_and_only_theirs_are_built():
    backbone = create_backbone("test_vit", out_indices=[-3, -2, -1])
    assert backbone.strides == [8, 16, 32] and backbone.out_channels == [32, 64, 64]
    assert len(backbone.pyramid) == 3
    names = [n for n, _ in backbone.named_parameters() if n.startswith("pyramid.")]
    assert names == ["pyramid.0.weight", "pyramid.0.bias"]  # stride 8: one transposed conv
    with pytest.raises(OutIndicesError, match=r"has 4 feature levels.*strides \[4, 8, 16, 32\]"):
        create_backbone("test_vit", out_indices=[4])


def test_the_pyramid_learns_and_passes_gradients_to_the_transformer():
    backbone = create_backbone("test_vit", out_indices=[0, 3])
    loss = sum(f.square().mean() for f in backbone(torch.randn(1, 3, 48, 64)))
    loss.backward()
    grads = {n: p.grad for n, p in backbone.named_parameters()}
    assert grads["body.model.patch_embed.proj.weight"].abs().sum() > 0
    assert all(grads[n].abs().sum() > 0 for n in grads if n.startswith("pyramid."))


def test_a_patch_stride_that_is_no_power_of_two_says_how_to_build_it_with_16():
    with pytest.raises(BackboneError, match=r"14-pixel patches.*kwargs: \{patch_size: 16\}"):
        create_backbone("eva02_tiny_patch14_224")
    backbone = create_backbone("eva02_tiny_patch14_224", out_indices=[-1], patch_size=16)
    assert backbone.strides == [32]
    assert tuple(backbone(torch.zeros(1, 3, 64, 96))[0].shape) == (1, 192, 2, 3)


def test_the_families_served_are_listed_and_the_others_still_refused_with_the_reason():
    names = set(list_backbones("*vit*"))
    assert {"vit_small_patch16_224", "vit_small_patch14_dinov2", "test_vit"} <= names
    assert "deit3_small_patch16_224" in list_backbones("deit*")
    assert not {"vit_relpos_small_patch16_224", "mixer_b16_224"} & set(list_backbones())
    with pytest.raises(UnsupportedBackboneError, match="cannot take other input sizes"):
        create_backbone("vit_relpos_small_patch16_224")


def test_a_weights_file_fills_the_transformer_and_says_the_pyramid_is_new(tmp_path, caplog):
    torch.manual_seed(0)
    whole = timm.create_model("test_vit").state_dict()
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in whole.items()}, str(path))
    with caplog.at_level(logging.INFO, logger="visionkit.models.backbones"):
        backbone = create_backbone("test_vit", pretrained=str(path), out_indices=[-3, -2, -1])
    torch.testing.assert_close(
        backbone.body.model.blocks[0].attn.qkv.weight, whole["blocks.0.attn.qkv.weight"]
    )
    report = backbone.load_report
    assert not [n for n in report.missing if not n.startswith(("pyramid.", "pyramid_norm."))]
    summary = [r for r in caplog.records if r.getMessage().startswith("pretrained ")]
    assert summary and summary[0].levelno == logging.INFO  # the new pyramid is no warning
    assert "initialised 4 not in the file (pyramid_norm.*, pyramid.*)" in summary[0].getMessage()


def test_pretrained_true_downloads_timm_weights_and_resamples_them_for_other_patches(
    monkeypatch, tmp_path
):
    isolated_caches(monkeypatch, tmp_path / "cache")
    torch.manual_seed(0)
    whole = timm.create_model("test_vit").state_dict()
    served = tmp_path / "served.safetensors"
    save_file({k: v.contiguous() for k, v in whole.items()}, str(served))
    fake_hf_hub(monkeypatch, {"timm/test_vit.r160_in1k/model.safetensors": served})
    backbone = create_backbone("test_vit", pretrained=True)
    torch.testing.assert_close(backbone.body.model.pos_embed, whole["pos_embed"])
    # 8-pixel patches from the 16-pixel weights: timm resizes the patch embedding
    finer = create_backbone("test_vit", pretrained=True, out_indices=[-1], patch_size=8)
    assert finer.strides == [16] and finer.body.model.patch_embed.proj.weight.shape[-1] == 8
