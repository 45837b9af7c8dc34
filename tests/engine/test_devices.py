"""Training on each device and precision: a detection + segmentation + classification model
trains a few steps, validates, and its checkpoint is read back on the CPU (where a GPU run's
checkpoint usually goes: a laptop, a CPU server). The CPU case runs everywhere; the CUDA cases
where a GPU is (the tests of the CUDA paths; CI has none)."""

from __future__ import annotations

import pytest
import torch

import visionkit
from visionkit.engine.runner import train

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
NEEDS_BF16 = pytest.mark.skipif(
    not (torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)),
    reason="needs a CUDA GPU with native bf16",
)


@pytest.mark.parametrize(
    ("accelerator", "precision"),
    [
        ("cpu", "32-true"),
        pytest.param("gpu", "32-true", marks=NEEDS_CUDA),
        pytest.param("gpu", "16-mixed", marks=NEEDS_CUDA),
        pytest.param("gpu", "bf16-mixed", marks=NEEDS_BF16),
    ],
)
def test_a_run_on_each_device_validates_and_reloads_on_the_cpu(
    pyramid_config, matmul_precision, accelerator, precision
):
    heads = {
        "cls": {"name": "linear", "num_classes": 4},
        "det": {"name": "fcos", "num_classes": 3, "num_convs": 1},
        "seg": {"name": "semantic_fpn", "num_classes": 4, "channels": 16},
    }
    cfg = pyramid_config(f"{accelerator}-{precision}", heads)
    cfg["data"]["train"]["class_field"] = cfg["data"]["val"]["class_field"] = "background"
    cfg["trainer"].update(
        accelerator=accelerator, devices=1, precision=precision, max_epochs=1, limit_train_batches=4
    )
    run_dir, metrics = train(cfg)
    for name in ("cls/top1", "det/mAP", "seg/mIoU", "val/loss"):
        assert name in metrics and metrics[name] == metrics[name], name  # present, not NaN
    assert (run_dir / "plots" / "curves.png").is_file()

    model = visionkit.load(run_dir / "checkpoints" / "best.ckpt")
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    with torch.inference_mode():
        outputs = model.eval()(torch.zeros(1, 3, 64, 64))
        (prediction,) = model.postprocess(outputs, [(64, 64)])
    assert prediction["seg"]["mask"].shape == (64, 64)
    assert prediction["det"]["boxes"].shape[1:] == (4,)
    assert prediction["cls"]["scores"].shape == (4,)
