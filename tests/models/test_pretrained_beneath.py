"""``model.backbone.pretrained`` beside ``model.init_from`` and ``--resume``: the pretrained
weights are read only for the backbone tensors the checkpoint lacks, so a machine without
network access (or without the pretrained file any more) fine-tunes from a checkpoint and
resumes a run that started from ImageNet weights."""

from __future__ import annotations

import logging

import pytest
import torch

import visionkit
from tests.models.backbones.hub_fakes import forbid_downloads, isolated_caches
from visionkit.checkpoint import load_checkpoint
from visionkit.engine.runner import train
from visionkit.models.backbones import create_backbone

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
