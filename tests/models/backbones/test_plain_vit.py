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
from visionkit.build import create_model, optimizer_param_groups
from visionkit.config import load_config
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
    with pytest.raises(UnsupportedBackboneError, match="takes no dynamic_img_size"):
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


def test_a_file_of_other_patches_is_resized_by_timms_filter_not_reinitialised(tmp_path):
    """DINOv2's 14-pixel weights given by path with ``patch_size: 16`` (the fix the refusal
    names): loaded through timm's checkpoint filter, as ``pretrained: true`` is."""
    whole = timm.create_model("test_vit").state_dict()  # 16-pixel patches, a 10x10 grid
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in whole.items()}, str(path))
    backbone = create_backbone("test_vit", pretrained=str(path), out_indices=[-1], patch_size=8)
    report = backbone.load_report
    assert not report.mismatched and not report.with_layer, report.summary()
    assert "model.patch_embed.proj.weight" in report.loaded and "model.pos_embed" in report.loaded
    assert backbone.body.model.patch_embed.proj.weight.shape[-1] == 8


@pytest.mark.parametrize("name", ["vit_tiny_r_s16_p8_224", "vit_small_r26_s32_224"])
def test_a_hybrid_vit_takes_sizes_that_are_no_multiple_of_its_stride(name):
    backbone = create_backbone(name, out_indices=[-1])
    (stride,) = backbone.strides
    features = backbone(torch.zeros(1, 3, 100, 130))
    assert tuple(features[0].shape[-2:]) == (math.ceil(100 / stride), math.ceil(130 / stride))


def vit_model(tmp_path, **config):
    cfg = load_config(
        {
            "model": {
                "backbone": {"name": "test_vit", "out_indices": [-3, -2, -1]},
                "neck": {"name": "fpn", "out_channels": 16},
                "heads": {"det": {"name": "fcos", "num_classes": 2, "num_convs": 1}},
                **config.pop("model", {}),
            },
            **config,
        }
    )
    return cfg, create_model(cfg)


def test_freezing_the_backbone_leaves_the_new_pyramid_trainable(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="visionkit.models.model"):
        _, model = vit_model(tmp_path, model={"freeze": ["backbone"]})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n in trainable if n.startswith("backbone.")} == {
        "backbone.pyramid_norm.weight",
        "backbone.pyramid_norm.bias",
        "backbone.pyramid.0.weight",
        "backbone.pyramid.0.bias",
    }
    assert "freeze: backbone.pyramid.0, backbone.pyramid_norm stay trainable" in caplog.text
    model.freeze(["backbone.pyramid"])  # by name: frozen too
    assert not model.backbone.pyramid[0].weight.requires_grad


def test_a_lower_backbone_learning_rate_spares_the_new_pyramid(tmp_path):
    cfg, model = vit_model(
        tmp_path, optimizer={"name": "adamw", "param_groups": {"backbone": {"lr_mult": 0.1}}}
    )
    groups = optimizer_param_groups(model, cfg.optimizer)
    backbone_ids = {id(p) for g in groups if g["name"] == "backbone" for p in g["params"]}
    assert id(model.backbone.body.model.patch_embed.proj.weight) in backbone_ids
    assert id(model.backbone.pyramid[0].weight) not in backbone_ids
