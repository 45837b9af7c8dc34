"""Shared fixtures: small shapes datasets generated once per test session."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from tests.helpers import detection_config, make_coco
from visionkit.cli import main

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network


class _CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is at the time of each write."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture(autouse=True)
def lightning_logs_to_the_current_stderr():
    """Lightning's log handlers keep the ``sys.stderr`` of the moment Lightning was imported,
    which may be the capture of a test that pytest has closed since ("--- Logging error ---
    ValueError: I/O operation on closed file" in the output), or a capture that a later
    ``capsys`` replaces: they write to the current one at each message instead. The stream is
    assigned, not ``setStream``, which would flush the closed one."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = _CurrentStderr()
    yield


@pytest.fixture()
def matmul_precision():
    """Restores PyTorch's float32 matmul precision after the test (training on a GPU sets it)."""
    import torch

    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """A tiny shapes dataset: ``train`` (48 images) and ``val`` (24 images), 64×64 pixels."""
    from visionkit.data.synthetic import make_shapes

    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root / "train", num_images=48, size=64, seed=0)
    make_shapes(root / "val", num_images=24, size=64, seed=1)
    return root


@pytest.fixture()
def tiny_config(shapes_root, tmp_path):
    """A classification config on the tiny shapes data with the built-in CNN."""
    return {
        "name": "tiny",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"cls": {"name": "linear", "num_classes": None}},
        },
        "data": {
            "train": {
                "format": "coco",
                "images": str(shapes_root / "train"),
                "class_field": "background",
            },
            "val": {
                "format": "coco",
                "images": str(shapes_root / "val"),
                "class_field": "background",
            },
            "image_size": 64,
            "batch_size": 16,
            "num_workers": 0,
        },
        "optimizer": {"name": "adamw", "lr": 0.003},
        "scheduler": {"name": "cosine"},
        "trainer": {
            "max_epochs": 2,
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
    }


@pytest.fixture()
def pyramid_config(shapes_root, tmp_path):
    """A factory of tiny ``simple_cnn`` → FPN configs on the tiny shapes data:
    ``pyramid_config(name, heads, **data)`` (``data`` replaces entries of the data section)."""

    def make(name, heads, **data):
        return {
            "name": name,
            "output_dir": str(tmp_path / "runs"),
            "model": {
                "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
                "neck": {"name": "fpn", "out_channels": 32, "min_level": 3, "max_level": 5},
                "heads": heads,
            },
            "data": {
                "train": {"format": "coco", "images": str(shapes_root / "train")},
                "val": {"format": "coco", "images": str(shapes_root / "val")},
                "image_size": 64,
                "batch_size": 8,
                "num_workers": 0,
                **data,
            },
            "optimizer": {"name": "adamw", "lr": 0.003},
            "trainer": {
                "max_epochs": 3,
                "accelerator": "cpu",
                "enable_progress_bar": False,
                "log_every_n_steps": 1,
            },
        }

    return make


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One tiny detection run (one step): its config, data and ``best.ckpt``."""
    root = tmp_path_factory.mktemp("trained")
    data = make_coco(root / "data")
    config = detection_config(root / "config.yaml", data, data)
    assert main(["train", "--config", str(config), "--output-dir", str(root / "run")]) == 0
    return {
        "root": root,
        "data": data,
        "config": config,
        "ckpt": root / "run/checkpoints/best.ckpt",
    }
