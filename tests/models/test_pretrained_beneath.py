"""``model.backbone.pretrained`` beside ``model.init_from`` and ``--resume``: the pretrained
weights are read only for the backbone tensors the checkpoint lacks, so a machine without
network access (or without the pretrained file any more) fine-tunes from a checkpoint and
resumes a run that started from ImageNet weights."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision

import visionkit
from tests.models.backbones.hub_fakes import (
    forbid_downloads,
    isolated_caches,
    serve_torchvision_file,
)
from visionkit.build import build_model
from visionkit.checkpoint import load_checkpoint
from visionkit.config import load_config
from visionkit.engine.runner import train
from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.backbones import BackboneError, create_backbone

TIMM = "test_convnext"  # a timm name whose pretrained weights are on the Hugging Face hub


def classifier(backbone: dict, num_classes: int = 3, init_from: str | None = None) -> dict:
    return {
        "model": {
            "backbone": backbone,
            "heads": {"cls": {"name": "linear", "num_classes": num_classes}},
            "init_from": init_from,
        }
    }


@pytest.mark.reliability
def test_init_from_a_whole_backbone_reads_no_pretrained_weights_offline(
    tmp_path, monkeypatch, caplog
):
    isolated_caches(monkeypatch, tmp_path / "cache")  # empty caches
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    forbid_downloads(monkeypatch)
    torch.manual_seed(0)
    trained = visionkit.create_model(classifier({"name": TIMM}, num_classes=2))
    checkpoint = tmp_path / "best.pth"
    torch.save(trained.state_dict(), checkpoint)

    # the recipes' pretrained: true stays set when a user adds init_from
    config = classifier({"name": TIMM, "pretrained": True}, 3, str(checkpoint))
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        model = visionkit.create_model(config)  # WeightsNotCachedError before
    for name, value in trained.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], value, msg=name)
    assert "model.backbone.pretrained: not read, model.init_from gave every tensor" in caplog.text
    assert model.meta["config"]["model"]["backbone"]["pretrained"] is True


def test_backbone_tensors_init_from_lacks_come_from_the_pretrained_file(tmp_path, caplog):
    """The same weights as reading the pretrained file first and init_from over it."""
    torch.manual_seed(1)
    pretrained = create_backbone("simple_cnn").state_dict()
    pretrained_file = tmp_path / "imagenet.pth"
    torch.save(pretrained, pretrained_file)
    torch.manual_seed(2)
    trained = visionkit.create_model(classifier({"name": "simple_cnn"})).state_dict()
    kept = [k for k in trained if not k.startswith("backbone.stages.0.")]  # a partial backbone
    partial = tmp_path / "partial.pth"
    torch.save({k: trained[k] for k in kept}, partial)

    config = classifier({"name": "simple_cnn", "pretrained": str(pretrained_file)}, 3, str(partial))
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        state = visionkit.create_model(config).state_dict()
    for name, value in state.items():
        if name in kept:
            torch.testing.assert_close(value, trained[name], msg=name)
        elif name.startswith("backbone."):
            torch.testing.assert_close(value, pretrained[name[len("backbone.") :]], msg=name)
    assert "backbone tensors model.init_from lacked come from the pretrained weights" in caplog.text


@pytest.mark.reliability
def test_a_resumed_run_does_not_read_its_pretrained_file_again(tiny_config, tmp_path):
    torch.manual_seed(3)
    weights = tmp_path / "imagenet.pth"
    torch.save(create_backbone("simple_cnn").state_dict(), weights)
    tiny_config["model"]["backbone"]["pretrained"] = str(weights)
    run_dir, _ = train(tiny_config, ["trainer.max_epochs=1"], output_dir=tmp_path / "run")
    weights.unlink()  # moved, or a machine without the cache: the checkpoint has every tensor

    ckpt = run_dir / "checkpoints" / "last.ckpt"
    train(tiny_config, ["trainer.max_epochs=2"], output_dir=run_dir, resume=ckpt)  # was an error

    saved = load_checkpoint(ckpt)["visionkit"]["config"]["model"]["backbone"]
    assert saved["pretrained"] == str(weights)  # the config still says where the run started


@pytest.mark.reliability
def test_googlenet_is_the_same_function_built_resumed_initialised_and_loaded(tmp_path, monkeypatch):
    """torchvision's googlenet takes ``transform_input=True`` with its weights: a model built
    without reading them (a resumed run, ``init_from``, ``visionkit.load``) was built without
    it, and computed another function of the same weights."""
    isolated_caches(monkeypatch, tmp_path / "cache")
    torch.manual_seed(4)
    published = torchvision.models.googlenet(aux_logits=True, init_weights=False).state_dict()
    serve_torchvision_file(monkeypatch, "googlenet", published, tmp_path / "served")
    config = classifier({"name": "torchvision/googlenet", "pretrained": True})
    built = visionkit.create_model(config).eval()  # reads (downloads) the published file
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    forbid_downloads(monkeypatch)
    weights = tmp_path / "best.pth"
    torch.save(built.state_dict(), weights)
    checkpoint = tmp_path / "best.ckpt"
    state = {f"model.{k}": v for k, v in built.state_dict().items()}
    torch.save({"state_dict": state, "visionkit": built.meta}, checkpoint)

    initialised = visionkit.create_model(classifier(config["model"]["backbone"], 3, str(weights)))
    resumed = build_model(load_config(config), {}, resume=True)
    resumed.load_state_dict(built.state_dict())
    loaded = visionkit.load(checkpoint)
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = built.backbone(images)
        for how, model in [("init_from", initialised), ("resume", resumed), ("load", loaded)]:
            for level, (got, want) in enumerate(
                zip(model.eval().backbone(images), expected, strict=True)
            ):
                torch.testing.assert_close(got, want, msg=f"{how}, level {level}")


@pytest.mark.reliability
def test_tensors_neither_file_holds_are_said_to_stay_as_initialised(tmp_path, caplog):
    """The pretrained file lacks ``stages.1`` too: its tensors stay random, and were said to
    "come from the pretrained weights"."""
    torch.manual_seed(1)
    pretrained = create_backbone("simple_cnn").state_dict()
    pretrained_file = tmp_path / "imagenet.pth"
    torch.save(
        {k: v for k, v in pretrained.items() if not k.startswith("stages.1.")}, pretrained_file
    )
    torch.manual_seed(2)
    trained = visionkit.create_model(classifier({"name": "simple_cnn"})).state_dict()
    lacking = ("backbone.stages.0.", "backbone.stages.1.")
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in trained.items() if not k.startswith(lacking)}, partial)

    config = classifier({"name": "simple_cnn", "pretrained": str(pretrained_file)}, 3, str(partial))
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        state = visionkit.create_model(config).state_dict()
    for name, value in pretrained.items():
        if name.startswith("stages.0."):
            torch.testing.assert_close(state["backbone." + name], value, msg=name)
    (record,) = [r for r in caplog.records if "model.backbone.pretrained:" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "come from the pretrained weights (backbone.stages.0.*)" in record.getMessage()
    assert "stay as initialised, in neither file (backbone.stages.1.*)" in record.getMessage()


@pytest.mark.reliability
def test_a_checkpoint_without_batch_counts_reads_no_pretrained_weights_offline(
    tmp_path, monkeypatch, caplog
):
    """torchvision's FrozenBatchNorm2d files keep no ``num_batches_tracked``: a checkpoint
    lacking only those holds the backbone (was a WeightsNotCachedError offline)."""
    isolated_caches(monkeypatch, tmp_path / "cache")
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    forbid_downloads(monkeypatch)
    trained = visionkit.create_model(classifier({"name": "test_resnet"}, num_classes=2))
    state = {k: v for k, v in trained.state_dict().items() if "num_batches_tracked" not in k}
    assert len(state) < len(trained.state_dict())
    torch.save(state, tmp_path / "frozen_bn.pth")
    config = classifier(
        {"name": "test_resnet", "pretrained": True}, 3, str(tmp_path / "frozen_bn.pth")
    )
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        visionkit.create_model(config)
    assert "model.backbone.pretrained: not read, model.init_from gave every tensor" in caplog.text


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("pretrained", "error", "match"),
    [
        ("true", ConfigError, "a string names a weights file; for the library's weights give True"),
        ("imagenet.pth", CheckpointError, "imagenet.pth: file does not exist"),
        (True, BackboneError, "'simple_cnn' has no published pretrained weights"),
    ],
)
def test_pretrained_beside_init_from_is_checked_though_never_read(
    tmp_path, monkeypatch, pretrained, error, match
):
    """init_from holds the whole backbone, so the pretrained file is not read; what it says
    was not checked either, and a typo stayed in the run's config unseen."""
    monkeypatch.chdir(tmp_path)
    torch.save(visionkit.create_model(classifier({"name": "simple_cnn"})).state_dict(), "run.pth")
    config = classifier({"name": "simple_cnn", "pretrained": pretrained}, 3, "run.pth")
    with pytest.raises(error, match=match):
        visionkit.create_model(config)
