"""A Hugging Face hub cache copied from another machine without its ``refs/main`` file held
the weights and was not found offline (huggingface_hub's rule reads the commit hash from
``refs/main``): its only snapshot is read now, and with several the error says what to
write."""

from __future__ import annotations

import logging
import socket

import pytest
import timm
import torch
from safetensors.torch import save_file

from visionkit.models.backbones import WeightsNotCachedError, create_backbone


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """Empty caches, the offline switch on, and no sockets."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hf" / "hub"))
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("a backbone tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    return cache


def copied_without_refs(cache, commits):
    """resnet18's repo folder with a snapshot per commit and no refs/ folder; its state."""
    torch.manual_seed(4)
    state = timm.create_model("resnet18").state_dict()
    repo = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    root = cache / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    for commit in commits:
        (root / "snapshots" / commit).mkdir(parents=True)
        save_file(state, str(root / "snapshots" / commit / "model.safetensors"))
    return root, state


def test_the_only_snapshot_of_a_cache_without_refs_main_is_read(offline, caplog):
    root, state = copied_without_refs(offline, ["a" * 40])
    with caplog.at_level(logging.INFO, logger="visionkit.models.backbones"):
        backbone = create_backbone("resnet18", pretrained=True)
    own = backbone.state_dict()
    loaded = [k for k in own if k.removeprefix("body.") in state]
    assert loaded
    for key in loaded:
        torch.testing.assert_close(own[key], state[key.removeprefix("body.")])
    assert "no refs/main" in caplog.text and "its only snapshot" in caplog.text


def test_several_snapshots_without_refs_main_say_what_to_write(offline):
    root, _ = copied_without_refs(offline, ["a" * 40, "b" * 40])
    with pytest.raises(WeightsNotCachedError) as info:
        create_backbone("resnet18", pretrained=True)
    message = str(info.value)
    assert f"{root} has no refs/main and 2 snapshots ({'a' * 40}, {'b' * 40})" in message
    assert f"write the commit hash of the one to read into {root / 'refs' / 'main'}" in message
