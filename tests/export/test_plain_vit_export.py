"""A model on a plain ViT backbone (timm's ``test_vit`` through the simple feature pyramid)
exports: ONNX keeps its input size dynamic (checked at two sizes against PyTorch); TorchScript,
whose trace would keep the patch grid as a constant, is refused before tracing with what to
use instead, and writes nothing."""

from __future__ import annotations

import pytest

from visionkit import create_model
from visionkit.errors import ExportError
from visionkit.export import export

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def vit_detector():
    return create_model(
        {
            "model": {
                "backbone": {"name": "test_vit", "out_indices": [-3, -2, -1]},
                "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
                "heads": {"det": {"name": "fcos", "num_classes": 2, "num_convs": 1}},
            }
        }
    )


@pytest.mark.slow
def test_onnx_export_of_a_plain_vit_runs_at_other_sizes(vit_detector, tmp_path):
    report = export(vit_detector, "onnx", tmp_path / "vit.onnx", image_size=64)
    assert report.check.ok and report.check.image_sizes == [(64, 64), (96, 128)]


@pytest.mark.parametrize("check", [True, False])
def test_torchscript_export_of_a_plain_vit_is_refused_before_tracing(vit_detector, tmp_path, check):
    with pytest.raises(ExportError, match=r"patch grid of one input size.*export --format onnx"):
        export(vit_detector, "torchscript", tmp_path / "vit.torchscript", check=check)
    assert not list(tmp_path.iterdir())  # nothing written, with or without the check
