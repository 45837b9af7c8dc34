"""The ``precision: auto`` log line describes the device the run uses: which CUDA GPU (its
name and compute capability) for ``trainer.accelerator`` ``auto`` / ``gpu`` with CUDA present,
Apple's MPS GPU where Lightning picks it, and the device a command's override gives
(``visionkit eval --device cuda:1`` of a checkpoint trained on the CPU was described, and
resolved, as "CPU without native bf16" first)."""

from __future__ import annotations

import logging

import pytest

from visionkit.build import trainer as precision
from visionkit.config import load_config


@pytest.fixture()
def gpus(monkeypatch):
    """Two CUDA GPUs: 0 a V100 (no native bf16), 1 an H100."""
    names = {0: "Tesla V100-SXM2-16GB", 1: "NVIDIA H100 80GB HBM3"}
    capability = {0: (7, 0), 1: (9, 0)}
    current = [0]

    class Device:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            self.before, current[0] = current[0], self.index

        def __exit__(self, *exc):
            current[0] = self.before

    cuda = precision.torch.cuda
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "get_device_name", lambda i=None: names[i or 0])
    monkeypatch.setattr(cuda, "get_device_capability", lambda i=None: capability[i or 0])
    monkeypatch.setattr(cuda, "device", Device)
    monkeypatch.setattr(
        cuda,
        "is_bf16_supported",
        lambda including_emulation=True: capability[current[0]] >= (8, 0) or including_emulation,
    )
    precision._say_precision.cache_clear()
    yield
    precision._say_precision.cache_clear()


def said(caplog) -> str:
    return " ".join(r.getMessage() for r in caplog.records if "precision: auto" in r.getMessage())


@pytest.mark.parametrize("accelerator", ["auto", "gpu", "cuda"])
def test_a_gpu_run_is_described_by_its_gpu(tiny_config, gpus, caplog, accelerator):
    tiny_config["trainer"].update(accelerator=accelerator, devices=1, precision="auto")
    with caplog.at_level(logging.INFO, logger="visionkit.build.trainer"):
        kwargs = precision.trainer_kwargs(load_config(tiny_config), "run")
    assert kwargs["precision"] == "16-mixed"
    assert "CUDA GPU 0, Tesla V100-SXM2-16GB, compute capability 7.0: no native bf16" in said(
        caplog
    )
    assert "CPU" not in said(caplog)


def test_the_gpu_devices_names_is_the_one_described(tiny_config, gpus, caplog):
    tiny_config["trainer"].update(accelerator="gpu", devices=[1], precision="auto")
    with caplog.at_level(logging.INFO, logger="visionkit.build.trainer"):
        kwargs = precision.trainer_kwargs(load_config(tiny_config), "run")
    assert kwargs["precision"] == "bf16-mixed"
    assert "CUDA GPU 1, NVIDIA H100 80GB HBM3, compute capability 9.0: native bf16" in said(caplog)


def test_an_override_of_the_device_is_what_is_resolved_and_described(tiny_config, gpus, caplog):
    """``evaluate(device="cuda:1")`` gives the trainer ``accelerator: gpu`` over a checkpoint's
    ``accelerator: cpu``: precision auto was resolved (and logged) for the CPU first."""
    tiny_config["trainer"].update(accelerator="cpu", precision="auto")
    with caplog.at_level(logging.INFO, logger="visionkit.build.trainer"):
        kwargs = precision.trainer_kwargs(
            load_config(tiny_config), "run", accelerator="gpu", devices=[1]
        )
    assert kwargs["precision"] == "bf16-mixed"
    assert "CPU" not in said(caplog)
    assert "NVIDIA H100" in said(caplog)


def test_an_mps_run_is_not_described_as_a_cpu_one(tiny_config, monkeypatch, caplog):
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision.torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    precision._say_precision.cache_clear()
    tiny_config["trainer"].update(accelerator="auto", precision="auto")
    with caplog.at_level(logging.INFO, logger="visionkit.build.trainer"):
        kwargs = precision.trainer_kwargs(load_config(tiny_config), "run")
    assert kwargs["precision"] == "32-true"
    assert "Apple MPS GPU" in said(caplog)
    assert "CPU" not in said(caplog)
    precision._say_precision.cache_clear()


def test_a_cpu_run_stays_a_cpu_run_on_a_gpu_machine(tiny_config, gpus, monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    tiny_config["trainer"].update(accelerator="cpu", precision="auto")
    with caplog.at_level(logging.INFO, logger="visionkit.build.trainer"):
        kwargs = precision.trainer_kwargs(load_config(tiny_config), "run")
    assert kwargs["precision"] == "32-true"
    assert "CPU without native bf16" in said(caplog)
