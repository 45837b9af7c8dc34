"""``pretrained: <file>`` builds the architecture the library's weights imply, as
``pretrained: true`` does: torchvision's googlenet takes ``transform_input=True`` with its
weights, and a file of those weights given by path built the model without it (another
function of the same weights)."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision

import visionkit
from visionkit.checkpoint import load_checkpoint
from visionkit.config import load_config
from visionkit.engine.runner import train
from visionkit.models.backbones import create_backbone


def googlenet_file(tmp_path):
    torch.manual_seed(0)
    weights = torchvision.models.googlenet(aux_logits=True, init_weights=False).state_dict()
    path = tmp_path / "googlenet.pth"
    torch.save(weights, path)
    return path, weights


def test_googlenet_weights_by_path_get_the_architecture_pretrained_true_builds(tmp_path, caplog):
    path, weights = googlenet_file(tmp_path)
    with caplog.at_level(logging.INFO, logger="visionkit.models.backbones"):
        from_file = create_backbone("torchvision/googlenet", pretrained=str(path)).eval()
    as_published = create_backbone("torchvision/googlenet", pretrained=True, read_pretrained=False)
    as_published.load_state_dict(from_file.state_dict())
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for got, want in zip(from_file(images), as_published.eval()(images), strict=True):
            torch.testing.assert_close(got, want)
    assert "transform_input=True" in caplog.text  # said, with the way to leave it out
    assert "model.backbone.kwargs" in caplog.text


def test_a_file_of_weights_trained_without_it_can_say_so(tmp_path):
    path, _ = googlenet_file(tmp_path)
    plain = create_backbone(
        "torchvision/googlenet", pretrained=str(path), transform_input=False
    ).eval()
    built = create_backbone("torchvision/googlenet", transform_input=False)
    built.load_state_dict(plain.state_dict())
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for got, want in zip(plain(images), built.eval()(images), strict=True):
            torch.testing.assert_close(got, want)


def same_function(a, b):
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for got, want in zip(a.eval()(images), b.eval()(images), strict=True):
            torch.testing.assert_close(got, want)


def test_the_way_out_names_the_argument_that_changes_what_the_weights_compute(tmp_path, caplog):
    """googlenet's implied arguments are aux_logits, init_weights and transform_input: the log
    said "e.g. {aux_logits: false}", which changes nothing the weights compute."""
    path, _ = googlenet_file(tmp_path)
    with caplog.at_level(logging.INFO, logger="visionkit.models.backbones"):
        create_backbone("torchvision/googlenet", pretrained=str(path))
    assert "built with transform_input=True for" in caplog.text  # once, and it alone
    assert "set model.backbone.kwargs: {transform_input: false}" in caplog.text
    assert "aux_logits" not in caplog.text and "init_weights" not in caplog.text


def test_a_path_not_read_adds_nothing_its_checkpoints_config_says(tmp_path):
    """``read_pretrained=False`` with a path (a checkpoint's config): the arguments a run that
    read the file added are in the config's kwargs; without them it was built without."""
    path, _ = googlenet_file(tmp_path)
    plain = create_backbone("torchvision/googlenet")
    rebuilt = create_backbone("torchvision/googlenet", pretrained=str(path), read_pretrained=False)
    rebuilt.load_state_dict(plain.state_dict())
    same_function(rebuilt, plain)


def test_a_checkpoint_written_before_loads_as_it_was_built(tmp_path):
    """A checkpoint of a run with ``pretrained: <file>`` from before the arguments were
    implied (built with transform_input=False, its config without the kwarg) was rebuilt
    with transform_input=True by visionkit.load (eval, predict, export): another function."""
    path, _ = googlenet_file(tmp_path)
    backbone = {"name": "torchvision/googlenet", "pretrained": False}
    heads = {"cls": {"name": "linear", "num_classes": 2}}
    old = visionkit.create_model({"model": {"backbone": backbone, "heads": heads}})
    old.meta["config"]["model"]["backbone"]["pretrained"] = str(path)  # as the run wrote it
    assert "transform_input" not in old.meta["config"]["model"]["backbone"]["kwargs"]
    state = {f"model.{k}": v for k, v in old.state_dict().items()}
    torch.save({"state_dict": state, "visionkit": old.meta}, tmp_path / "best.ckpt")
    same_function(visionkit.load(tmp_path / "best.ckpt").backbone, old.backbone)


@pytest.mark.reliability
def test_a_run_that_reads_a_weights_file_writes_what_it_implied_into_its_config(
    tiny_config, tmp_path, caplog
):
    """config.yaml and the checkpoints hold transform_input: true, so that a checkpoint
    describes itself; a run resumed with the config that did not say it keeps it."""
    path, _ = googlenet_file(tmp_path)
    tiny_config["model"]["backbone"] = {"name": "torchvision/googlenet", "pretrained": str(path)}
    steps = ["trainer.max_epochs=1", "trainer.max_steps=1", "data.batch_size=4"]
    with caplog.at_level(logging.INFO, logger="visionkit.models.backbones"):
        run_dir, _ = train(tiny_config, steps, output_dir=tmp_path / "run")
    assert caplog.text.count("googlenet: built with") == 1  # the added arguments said once
    saved = load_config(run_dir / "config.yaml").model.backbone.kwargs
    assert saved["transform_input"] is True
    last = run_dir / "checkpoints" / "last.ckpt"
    loaded = visionkit.load(last).backbone
    built = create_backbone("torchvision/googlenet", transform_input=True, aux_logits=True)
    built.load_state_dict(loaded.state_dict())
    same_function(loaded, built)

    train(tiny_config, [*steps[:1], "trainer.max_steps=2", steps[2]], run_dir, resume=last)
    resumed = load_checkpoint(last)["visionkit"]["config"]["model"]["backbone"]["kwargs"]
    assert resumed["transform_input"] is True
    assert load_config(run_dir / "config.yaml").model.backbone.kwargs["transform_input"] is True
