"""An ONNX export run by onnxruntime alone at a height or width that is not a multiple of 32
(the backbone's largest stride) ran without a word and gave the outputs of shifted feature
maps; the graph now pads its input with zeros at the bottom / right to multiples of 32, as
visionkit's collate pads a batch (and torchvision's detection models theirs), so any size
gives what visionkit gives for that image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.export.test_end_to_end import HEADS, LABELS, tiny_model
from visionkit.export import export
from visionkit.export.graph import ExportModule, flatten_outputs
from visionkit.export.onnx import onnx_session

ODD = (70, 90)  # padded to 96 x 96


@pytest.fixture(scope="module")
def model():
    return tiny_model(HEADS, LABELS)


def padded(images: np.ndarray) -> np.ndarray:
    """``images`` zero-padded at the bottom / right to multiples of 32, as collate pads."""
    h, w = images.shape[-2:]
    out = np.zeros((*images.shape[:2], -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    out[..., :h, :w] = images
    return out


@pytest.mark.parametrize(
    "exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)]
)
def test_any_size_gives_the_outputs_of_the_padded_image(model, exporter, tmp_path):
    path = tmp_path / "model.onnx"
    report = export(model, "onnx", path, exporter=exporter, check=False)
    session = onnx_session(path)
    images = np.random.default_rng(0).normal(size=(2, 3, *ODD)).astype(np.float32)
    got = session.run(None, {"images": images})
    want = session.run(None, {"images": padded(images)})
    with torch.no_grad():
        module = ExportModule(
            model, [tuple(p) for p, _ in flatten_outputs(model(torch.zeros(1, 3, 64, 64)))]
        )
        reference = module(torch.from_numpy(padded(images)))
    assert [g.shape for g in got] == [w.shape for w in want]
    for name, g, w, r in zip(report.output_names, got, want, reference, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(g, r.numpy(), atol=1e-4, err_msg=name)
    entry = json.loads(session.get_modelmeta().custom_metadata_map["visionkit.input"])
    assert entry["padded_in_graph"] is True and entry["size_divisor"] == 32
    dims = session.get_inputs()[0].shape
    assert dims[2:] == ["height", "width"]


def test_an_end_to_end_graph_pads_too(model, tmp_path):
    path = tmp_path / "e2e.onnx"
    export(model, "onnx", path, nms=True, exporter="torchscript", check=False)
    session = onnx_session(path)
    images = np.random.default_rng(1).normal(size=(1, 3, *ODD)).astype(np.float32)
    sizes = np.array([ODD], np.int64)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"images": images, "image_sizes": sizes}), strict=True))
    want = dict(
        zip(names, session.run(None, {"images": padded(images), "image_sizes": sizes}), strict=True)
    )
    for name in names:  # the mask: the padded input's, less the padding
        cut = want[name][:, : ODD[0], : ODD[1]] if name == "seg.mask" else want[name]
        np.testing.assert_allclose(got[name], cut, atol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    "exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)]
)
def test_an_end_to_end_mask_is_the_size_of_the_input(model, exporter, tmp_path):
    """With ``--nms`` a 70 x 90 input gave a 96 x 96 ``seg.mask`` (the padded size), while the
    metadata and the declared dims said ``[B, H, W]`` of the input; the graph cuts it back."""
    path = tmp_path / "e2e.onnx"
    export(model, "onnx", path, nms=True, exporter=exporter, check=False)
    session = onnx_session(path)
    images = np.random.default_rng(2).normal(size=(2, 3, *ODD)).astype(np.float32)
    feed = {"images": images, "image_sizes": np.array([ODD] * 2, np.int64)}
    names = [o.name for o in session.get_outputs()]
    mask = dict(zip(names, session.run(None, feed), strict=True))["seg.mask"]
    assert mask.shape == (2, *ODD)
    full = dict(zip(names, session.run(None, {**feed, "images": padded(images)}), strict=True))
    np.testing.assert_array_equal(mask, full["seg.mask"][:, : ODD[0], : ODD[1]])
    declared = {o.name: o.shape for o in session.get_outputs()}["seg.mask"]
    assert declared[1:] == ["height", "width"]
    layout = json.loads(session.get_modelmeta().custom_metadata_map["visionkit.end_to_end"])
    assert next(o for o in layout["outputs"] if o["name"] == "seg.mask")["shape"] == ["B", "H", "W"]


def test_an_opset_without_dynamic_padding_says_the_sizes_it_takes(tmp_path):
    """Below opset 11 ``Pad`` takes fixed amounts: the graph cannot pad, and the report and
    the metadata say which sizes it takes."""
    model = tiny_model({"cls": HEADS["cls"]}, {"class": LABELS["class"]})
    path = tmp_path / "old.onnx"
    report = export(model, "onnx", path, opset=10, exporter="torchscript", check=False)
    assert any(
        "cannot pad its input" in note and "multiples of 32" in note for note in report.notes
    )
    entry = json.loads(onnx_session(path).get_modelmeta().custom_metadata_map["visionkit.input"])
    assert entry["padded_in_graph"] is False and "multiples of 32" in entry["sizes"]
