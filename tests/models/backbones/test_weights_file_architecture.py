"""``pretrained: <file>`` builds the architecture the library's weights imply, as
``pretrained: true`` does: torchvision's googlenet takes ``transform_input=True`` with its
weights, and a file of those weights given by path built the model without it (another
function of the same weights)."""

from __future__ import annotations

import logging

import torch
import torchvision

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


def test_a_run_resumed_from_a_path_builds_the_same_architecture(tmp_path):
    """``read_pretrained=False`` (resume, ``visionkit.load``) with a path: as when it was read."""
    path, _ = googlenet_file(tmp_path)
    read = create_backbone("torchvision/googlenet", pretrained=str(path)).eval()
    rebuilt = create_backbone("torchvision/googlenet", pretrained=str(path), read_pretrained=False)
    rebuilt.load_state_dict(read.state_dict())
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for got, want in zip(read(images), rebuilt.eval()(images), strict=True):
            torch.testing.assert_close(got, want)
