"""Loading backbone weights: local files, safety, reports, and the offline pretrained caches."""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import socket
import time

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.backbones import BackboneError, WeightsNotCachedError, create_backbone
from visionkit.registry import UnknownNameError


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pathlib.Path:
    """Empty caches and no sockets: any download attempt fails loudly instead of hanging."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hf" / "hub"))

    def no_network(*args, **kwargs):
        raise AssertionError("a backbone tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return cache


@pytest.fixture(scope="module")
def resnet18_full() -> dict[str, torch.Tensor]:
    """A full timm resnet18 classification state dict (with fc.*), random init."""
    torch.manual_seed(1)
    return {k: v.clone() for k, v in timm.create_model("resnet18").state_dict().items()}


def _assert_loaded(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = backbone.body.state_dict()
    assert set(own) <= set(state)
    for key, value in own.items():
        torch.testing.assert_close(value, state[key], msg=key)


def test_full_classifier_safetensors_loads_into_backbone(resnet18_full, tmp_path, caplog) -> None:
    path = tmp_path / "resnet18.safetensors"
    save_file(resnet18_full, str(path))
    with caplog.at_level(logging.INFO, logger="visionkit.models.backbones"):
        backbone = create_backbone("resnet18", pretrained=path)
    _assert_loaded(backbone, resnet18_full)
    report = backbone.load_report
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.mismatched == []
    assert len(report.loaded) == len(backbone.state_dict())
    (line,) = [r.getMessage() for r in caplog.records if r.name == "visionkit.models.backbones"]
    assert line.startswith(f"pretrained {path}: loaded {len(report.loaded)} of ")
    assert "ignored 2 of layers the backbone does not use (fc.*)" in line
    assert sorted(report.unused) == ["fc.bias", "fc.weight"]


def test_a_deeper_models_weights_are_a_warning_though_every_tensor_fits(tmp_path, caplog):
    """resnet34's file fills every tensor of a resnet18 (its first blocks have the same
    shapes) and leaves 100 of its own unused: a wrong file, not a classifier left over."""
    torch.manual_seed(4)
    path = tmp_path / "resnet34.safetensors"
    save_file(timm.create_model("resnet34").state_dict(), str(path))
    with caplog.at_level(logging.INFO, logger="visionkit.models.backbones"):
        backbone = create_backbone("resnet18", pretrained=path)
    assert backbone.load_report.ok and len(backbone.load_report.unexpected) > 16
    (record,) = [r for r in caplog.records if r.name == "visionkit.models.backbones"]
    assert record.levelname == "WARNING" and "the model lacks" in record.getMessage()


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "state_dict_ema"])
def test_wrapped_pth_with_module_prefix(resnet18_full, tmp_path, wrapper: str) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save({wrapper: {f"module.{k}": v for k, v in resnet18_full.items()}, "epoch": 3}, path)
    backbone = create_backbone("timm/resnet18", pretrained=str(path))
    _assert_loaded(backbone, resnet18_full)
    assert sorted(backbone.load_report.unexpected) == ["fc.bias", "fc.weight"]


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["test_convnext", "test_mambaout", "cspnext_tiny"])
def test_a_timm_file_loads_whole_where_features_only_renames_modules(tmp_path, name, caplog):
    """timm's ``features_only`` wrappers name ``stem.0`` ``stem_0`` (ConvNeXt, Swin, DenseNet,
    RegNet: 451 of the 819 timm backbones) or keep the model as ``model`` (CSPNeXt): a file
    saved from the timm model loaded none of its tensors, or the stem's only, before."""
    torch.manual_seed(0)
    state = timm.create_model(name).state_dict()
    save_file(state, str(tmp_path / "weights.safetensors"))
    with caplog.at_level(logging.INFO, logger="visionkit.models.backbones"):
        backbone = create_backbone(name, pretrained=tmp_path / "weights.safetensors")
    report = backbone.load_report
    assert report.ok and len(report.loaded) == len(backbone.body.state_dict())
    assert all(k.startswith(("head", "norm", "final_conv")) for k in report.unexpected)
    assert [r.levelname for r in caplog.records] == ["INFO"]
    reference = timm.create_model(  # timm's own load of the same tensors
        name, features_only=True, pretrained=True, pretrained_cfg_overlay={"state_dict": state}
    ).state_dict()
    assert set(reference) == set(backbone.body.state_dict())
    for key, value in backbone.body.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=key)


def test_torchvision_classifier_checkpoint(tmp_path) -> None:
    torch.manual_seed(2)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path / "tv_resnet18.bin"
    torch.save(state, path)
    backbone = create_backbone("torchvision/resnet18", pretrained=path)
    assert sorted(backbone.load_report.unexpected) == ["fc.bias", "fc.weight"]
    assert backbone.load_report.missing == []
    _assert_loaded(backbone, state)


def test_backbone_state_dict_round_trip(tmp_path) -> None:
    for name in ("simple_cnn", "convnext_atto"):
        torch.manual_seed(3)
        source = create_backbone(name)
        path = tmp_path / f"{name}.pt"
        torch.save(source.state_dict(), path)
        loaded = create_backbone(name, pretrained=path)
        assert loaded.load_report.ok and loaded.load_report.unexpected == []
        for (k, a), b in zip(
            source.state_dict().items(), loaded.state_dict().values(), strict=True
        ):
            torch.testing.assert_close(a, b, msg=k)


def test_shape_mismatch_is_reported_not_raised(resnet18_full, tmp_path, caplog) -> None:
    state = dict(resnet18_full)
    state["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    path = tmp_path / "odd.safetensors"
    save_file(state, str(path))
    with caplog.at_level(logging.WARNING, logger="visionkit.models.backbones"):
        backbone = create_backbone("resnet18", pretrained=path)
    report = backbone.load_report
    assert report.mismatched == ["layer1.0.conv1.weight"]
    assert report.shapes["layer1.0.conv1.weight"] == ((32, 64, 3, 3), (64, 64, 3, 3))
    assert not report.ok
    assert backbone.body.state_dict()["layer1.0.conv1.weight"].abs().sum() > 0  # kept its init
    torch.testing.assert_close(backbone.body.state_dict()["conv1.weight"], state["conv1.weight"])
    assert any(
        r.levelname == "WARNING"
        and "re-initialised 1 of another shape (layer1.0.conv1.weight [32, 64, 3, 3] in the file"
        in r.getMessage()
        for r in caplog.records
    )


def test_unrelated_checkpoint_is_an_error(tmp_path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="none of its 1 tensors matches"):
        create_backbone("simple_cnn", pretrained=path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_corrupted_or_missing_file_names_the_path(tmp_path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00\x01 definitely not a checkpoint" * 10)
    with pytest.raises(CheckpointError) as info:
        create_backbone("simple_cnn", pretrained=path)
    assert str(path) in str(info.value)
    missing = tmp_path / f"absent{suffix}"
    with pytest.raises(CheckpointError, match="does not exist") as info:
        create_backbone("simple_cnn", pretrained=missing)
    assert str(missing) in str(info.value)


class _Payload:
    """Unpickling this creates a file: the classic malicious-checkpoint pattern."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def __reduce__(self):
        return (pathlib.Path.touch, (self.target,))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}, "hook": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="evil.pth"):
        create_backbone("simple_cnn", pretrained=path)
    assert not marker.exists()
    # The payload is live: an unsafe load would have created the file.
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("name", ["resnet18", "timm/convnext_atto", "torchvision/resnet18"])
def test_pretrained_true_without_cache_fails_fast(offline, name: str) -> None:
    start = time.perf_counter()
    with pytest.raises(WeightsNotCachedError) as info:
        create_backbone(name, pretrained=True)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert (
        "not in the local cache" in message
        and "pretrained='/path/to/weights.safetensors'" in message
    )
    assert str(offline) in message  # says where it looked
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_pretrained_true_reads_the_hf_cache(offline) -> None:
    torch.manual_seed(4)
    state = timm.create_model("resnet18").state_dict()
    repo = timm.models.get_pretrained_cfg("resnet18").hf_hub_id  # e.g. timm/resnet18.a1_in1k
    commit = "0" * 40
    root = offline / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    (root / "snapshots" / commit).mkdir(parents=True)
    save_file(state, str(root / "snapshots" / commit / "model.safetensors"))
    backbone = create_backbone("resnet18", pretrained=True)
    _assert_loaded(backbone, state)


def test_pretrained_true_for_builtin_without_weights() -> None:
    with pytest.raises(BackboneError, match="no published pretrained weights"):
        create_backbone("simple_cnn", pretrained=True)


@pytest.mark.parametrize("pretrained", [False, True])
def test_an_unknown_timm_tag_is_an_unknown_name_listing_the_tags(offline, pretrained) -> None:
    with pytest.raises(UnknownNameError) as info:  # timm's RuntimeError before
        create_backbone("resnet18.a1_in1kk", pretrained=pretrained)
    message = str(info.value)
    assert "'resnet18.a1_in1kk': timm has no pretrained tag 'a1_in1kk' for resnet18" in message
    assert "its tags: resnet18.a1_in1k, " in message  # the closest first


@pytest.mark.reliability
def test_a_model_saved_whole_is_refused_with_how_to_save_its_weights(tmp_path) -> None:
    torch.save(torchvision.models.resnet18(), tmp_path / "resnet18.pth")  # torch.save(model)
    with pytest.raises(CheckpointError) as info:
        create_backbone("resnet18", pretrained=tmp_path / "resnet18.pth")
    message = str(info.value)
    assert "(a pickled torchvision.models.resnet.ResNet), and is never unpickled" in message
    assert "torch.save(model.state_dict(), 'weights.pth'), then give weights.pth" in message


def test_torchvisions_weights_name_as_pretrained_says_what_to_write(offline) -> None:
    with pytest.raises(ConfigError) as info:  # was "file does not exist"
        create_backbone("resnet50", pretrained="ResNet50_Weights.IMAGENET1K_V1")
    message = str(info.value)
    path = offline / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert "`visionkit weights pull ResNet50_Weights.IMAGENET1K_V1` downloads it to " in message
    assert f"then `pretrained: {path}`" in message
    assert "takes its DEFAULT (ResNet50_Weights.IMAGENET1K_V2)" in message


@pytest.mark.reliability
def test_timms_hf_hub_spelling_as_a_backbone_name_names_the_name_to_write() -> None:
    with pytest.raises(UnknownNameError, match="write 'resnet18.a1_in1k' \\(or 'timm/"):
        create_backbone("hf-hub:timm/resnet18.a1_in1k")


def test_torchvision_cached_file_is_used_and_checked(offline) -> None:
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    cached = offline / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"truncated download")
    with pytest.raises(CheckpointError) as info:  # found in TORCH_HOME, read, and rejected
        create_backbone("torchvision/resnet18", pretrained=True)
    assert str(cached) in str(info.value)
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_a_whole_visionkit_model_as_backbone_weights_names_init_from(tmp_path) -> None:
    """A run's best.ckpt given as ``pretrained``: its backbone.* prefix matches nothing, and
    the message says to give it as model.init_from."""
    path = tmp_path / "best.safetensors"
    save_file(
        {"backbone.stages.9.weight": torch.zeros(3), "heads.cls.weight": torch.zeros(2)}, str(path)
    )
    with pytest.raises(CheckpointError, match="give it as model.init_from"):
        create_backbone("simple_cnn", pretrained=path)


@pytest.mark.parametrize("word", ["true", "False", "yes"])
def test_pretrained_given_as_a_word_is_not_read_as_a_file_name(word):
    """``pretrained="true"`` said "cannot load checkpoint true" (a string names a file)."""
    with pytest.raises(ConfigError, match=rf"pretrained='{word}': a string names a weights file"):
        create_backbone("simple_cnn", pretrained=word)


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["ghostnet_050", "fastvit_t8"])
def test_a_timm_file_whose_late_blocks_features_only_drops_is_no_warning(tmp_path, name, caplog):
    """GhostNet's (and RepGhostNet's) ``features_only`` model ends before its last blocks,
    FastViT's before its final conv: their tensors in the model's own file were "ignored 114 of
    the file the model lacks (blocks.*, ...)" at WARNING, as a wrong file's would be."""
    torch.manual_seed(0)
    save_file(timm.create_model(name).state_dict(), str(tmp_path / "own.safetensors"))
    with caplog.at_level(logging.INFO, logger="visionkit.models.backbones"):
        backbone = create_backbone(name, pretrained=tmp_path / "own.safetensors")
    report = backbone.load_report
    assert report.ok and report.unused == report.unexpected and len(report.unused) > 16
    (record,) = [r for r in caplog.records if r.name == "visionkit.models.backbones"]
    assert record.levelname == "INFO"
    assert f"ignored {len(report.unused)} of layers the backbone does not use (" in (
        record.getMessage()
    )
    assert "the model lacks" not in record.getMessage()


@pytest.mark.reliability
def test_a_training_checkpoint_with_pickled_arguments_says_how_to_take_its_weights(tmp_path):
    """timm's train.py pickles its ``argparse.Namespace`` beside the state dict: not a model
    saved whole, whose advice (``model.state_dict()``) does not apply."""
    path = tmp_path / "checkpoint-9.pth.tar"
    state = torchvision.models.resnet18().state_dict()
    torch.save({"epoch": 9, "state_dict": state, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError) as info:
        create_backbone("torchvision/resnet18", pretrained=path)
    message = str(info.value)
    assert "(a pickled argparse.Namespace), and is never unpickled" in message
    assert "a training checkpoint with pickled extras" in message
    assert "torch.save(checkpoint['state_dict'], 'weights.pth'), then give weights.pth" in message
    assert "weights_only=False" not in message  # torch's unsafe advice is not passed on
    assert "a model saved whole" not in message


@pytest.mark.reliability
@pytest.mark.parametrize("text", ["ImageNetWeights.pth", "MyWeights.safetensors"])
def test_a_missing_file_named_like_a_weights_enum_is_a_missing_file(tmp_path, monkeypatch, text):
    """Was "torchvision has no weights enum ImageNetWeights": read as torchvision's spelling."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="file does not exist"):
        create_backbone("simple_cnn", pretrained=text)


@pytest.mark.parametrize(
    ("text", "said", "not_said"),
    [
        (
            "FCOS_ResNet50_FPN_Weights.COCO_V1",
            "a model to start from, not a backbone's weights: write `model.init_from: "
            "torchvision:fcos_resnet50_fpn`",
            "torchvision/fcos_resnet50_fpn",  # no such backbone
        ),
        (
            "Swin_T_Weights.IMAGENET1K_V1",
            "which is not a backbone (stages are NHWC",
            "torchvision/swin_t",  # excluded
        ),
    ],
)
def test_torchvision_weights_of_a_model_that_is_no_backbone_as_pretrained(text, said, not_said):
    with pytest.raises(ConfigError) as info:
        create_backbone("torchvision/resnet50", pretrained=text)
    assert said in str(info.value)
    assert not_said not in str(info.value)
