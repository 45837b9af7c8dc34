"""The one predict loop (visionkit/inference/loop.py): eager ``VisionModel.predict``, flip TTA
and the ONNX predictor all run through it and give the same predictions on the same images."""

from __future__ import annotations

import copy
import importlib
import importlib.util
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import visionkit
import visionkit.inference.loop as loop
from tests.helpers import predict_at_score_thresh
from visionkit.inference import tta
from visionkit.inference.loop import as_rgb_uint8, predict_loop, predict_model

HEADS = {
    "cls": {"name": "linear", "num_classes": 4},
    "det": {"name": "fcos", "num_classes": 3, "num_convs": 1, "detections_per_img": 20},
    "seg": {"name": "semantic_fpn", "channels": 16, "num_classes": 4},
}


@pytest.fixture(scope="module")
def model() -> visionkit.VisionModel:
    """simple_cnn → FPN → classification, FCOS and semantic heads; head weights drawn wide so
    that scores are far apart (no ties that float noise could reorder)."""
    config = {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 32, "min_level": 3, "max_level": 5},
            "heads": HEADS,
        },
        "data": {"image_size": 64},
    }
    torch.manual_seed(0)
    model = visionkit.create_model(config, label_names={"class": list("abcd")}).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.heads.named_parameters():
            if name.endswith("weight") and param.dim() > 1:
                param.copy_(
                    torch.randn(param.shape, generator=generator) / math.sqrt(param[0].numel())
                )
    return predict_at_score_thresh(model)


def images(count: int = 3) -> list[np.ndarray]:
    """RGB images of other sizes and aspect ratios than the model's 64 px."""
    rng = np.random.default_rng(0)
    sizes = [(64, 64), (80, 50), (45, 100)]
    return [rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8) for i in range(count)]


@pytest.fixture
def loop_calls(monkeypatch) -> list[int]:
    """The batch sizes the one loop collated, recorded on its way."""
    calls: list[int] = []
    real_collate = loop.collate

    def counting_collate(samples, *args, **kwargs):
        calls.append(len(samples))
        return real_collate(samples, *args, **kwargs)

    monkeypatch.setattr(loop, "collate", counting_collate)
    return calls


def flips_off(monkeypatch) -> None:
    """Make flip TTA's mirror the identity (the images, and the way back of its merge)."""
    modules = [tta]
    if importlib.util.find_spec("visionkit.inference.flip") is not None:
        modules.append(importlib.import_module("visionkit.inference.flip"))
    identities = {
        "hflip_images": lambda images, image_sizes: images,
        "hflip_back_map": lambda maps, image_sizes, stride: maps,
        "hflip_detections": lambda prediction, width, keypoint_flip=None: prediction,
    }
    for module in modules:
        for name, identity in identities.items():
            if hasattr(module, name):
                monkeypatch.setattr(module, name, identity)


def assert_same(got: list[dict], want: list[dict], atol: float = 0.0) -> None:
    """Equal predictions: exactly with ``atol=0``, else float values within ``atol``."""
    assert len(got) == len(want)
    for g_image, w_image in zip(got, want, strict=True):
        assert g_image.keys() == w_image.keys() == HEADS.keys()
        for head, w in w_image.items():
            g = g_image[head]
            assert g.keys() == w.keys(), head
            for key, value in w.items():
                if isinstance(value, torch.Tensor) and value.is_floating_point():
                    torch.testing.assert_close(g[key], value, atol=atol, rtol=0, msg=key)
                elif isinstance(value, torch.Tensor):
                    assert torch.equal(g[key], value), (head, key)
                elif key == "score":  # a classifier's floats
                    assert g[key] == pytest.approx(value, abs=atol, rel=0), (head, key)
                elif key == "top5":
                    assert [c["label"] for c in g[key]] == [c["label"] for c in value]
                    for g_class, w_class in zip(g[key], value, strict=True):
                        assert g_class["score"] == pytest.approx(w_class["score"], abs=atol, rel=0)
                else:
                    assert g[key] == value, (head, key)


def test_eager_predict_goes_through_the_loop_in_batches(model, loop_calls):
    predictions = model.predict(images(5), batch_size=2)
    assert loop_calls == [2, 2, 1]
    assert len(predictions) == 5
    assert predictions[1]["seg"]["mask"].shape == (80, 50)  # the original size
    assert predictions[2]["cls"]["name"] in list("abcd")


def test_flip_tta_with_the_flip_off_is_the_eager_prediction(model, loop_calls, monkeypatch):
    want = model.predict(images())
    assert loop_calls == [3]
    flips_off(monkeypatch)
    got = tta.predict_hflip(model, images())
    assert loop_calls == [3, 3]  # the same loop, with the TTA raw-output step
    assert all(len(p["det"]["boxes"]) > 0 for p in want)
    assert_same(got, want)


def test_flip_tta_with_the_flip_on_differs(model):
    want, got = model.predict(images()), tta.predict_hflip(model, images())
    assert not torch.equal(got[0]["cls"]["scores"], want[0]["cls"]["scores"])


def test_the_onnx_predictor_runs_the_same_loop_and_matches_eager(model, loop_calls, tmp_path):
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        pytest.skip("onnx / onnxruntime are not installed")
    from visionkit.export import export
    from visionkit.inference.onnx_runtime import OnnxPredictor

    report = export(model, "onnx", tmp_path / "model.onnx", check=False)
    predictor = OnnxPredictor(report.path)
    want = model.predict(images(), batch_size=2)
    got = predictor.predict(images(), batch_size=2)
    assert loop_calls == [2, 1, 2, 1]
    # onnxruntime's float arithmetic is not PyTorch's: equal up to float noise
    assert_same(got, want, atol=1e-4)
    # what model.predict takes, with its options: one image, a path, a tensor; conf, classes
    image = images()[0]
    Image.fromarray(image).save(tmp_path / "a.png")
    as_tensor = torch.from_numpy(image).permute(2, 0, 1)
    for one in (image, tmp_path / "a.png", str(tmp_path / "a.png"), as_tensor):
        assert_same(predictor.predict(one), want[:1], atol=1e-4)
    options = {"conf": 0.1, "max_det": 2, "classes": 1}
    (few,) = model.predict(image, **options)
    assert few["det"]["labels"].tolist() == [1, 1]  # filtered, then capped
    assert_same(predictor.predict(image, **options), [few], atol=1e-4)


def test_predict_files_takes_an_onnx_file_as_its_model(model, tmp_path, monkeypatch):
    """``visionkit predict --checkpoint model.onnx`` (Ultralytics' predict takes its exports):
    the same files as the PyTorch model, up to onnxruntime's float noise."""
    import json

    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        pytest.skip("onnx / onnxruntime are not installed")
    from visionkit.errors import ConfigError
    from visionkit.export import export
    from visionkit.inference.predict import predict_files

    onnx = export(model, "onnx", tmp_path / "model.onnx", check=False).path
    (tmp_path / "in").mkdir()
    for i, image in enumerate(images()):
        Image.fromarray(image).save(tmp_path / "in" / f"{i}.png")
    runs = {
        name: predict_files(source, tmp_path / "in", tmp_path / name, progress=False)
        for name, source in (("eager", model), ("onnx", onnx))
    }
    want, got = (json.loads(runs[name].read_text()) for name in ("eager", "onnx"))
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-3)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    records = [json.loads((tmp_path / n / "images.json").read_text()) for n in ("eager", "onnx")]
    assert [r["cls"]["name"] for r in records[0]] == [r["cls"]["name"] for r in records[1]]
    drawn = [sorted(p.name for p in (tmp_path / n).glob("*_pred.png")) for n in ("eager", "onnx")]
    assert drawn[0] == drawn[1] == ["0.png_pred.png", "1.png_pred.png", "2.png_pred.png"]
    with pytest.raises(
        ConfigError, match=r"tta and bf16 \(--tta, --bf16\): an ONNX file runs on the CPU"
    ):
        predict_files(onnx, tmp_path / "in", tmp_path / "no", tta="flip", bf16=True)
    # the command line's default, auto, is the CPU for an ONNX file, with a GPU or without
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    predict_files(onnx, tmp_path / "in", tmp_path / "auto", device="auto", progress=False)


def test_tensors_go_through_the_pipeline_floats_read_in_0_to_1(model, loop_calls):
    """As torchvision and Ultralytics read them: a uint8 tensor in 0..255, a float tensor
    in 0..1 (both through the evaluation pipeline, so imgsz applies); one image [3, H, W] is a
    batch of one. A float tensor outside 0..1 (normalised already) is refused, not mistaken."""
    for image in images():
        (expected,) = predict_model(model, [image])
        as_uint8 = torch.from_numpy(image).permute(2, 0, 1)
        for given in (as_uint8, as_uint8[None], as_uint8.float() / 255, as_uint8.double() / 255):
            (got,) = predict_model(model, given)
            assert_same([got], [expected])
    assert loop_calls == [1] * 15
    as_tensors = [torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image in images()]
    assert_same(model.predict(as_tensors, batch_size=1), model.predict(images(), batch_size=1))
    assert model.predict(torch.zeros(0, 3, 8, 8)) == []  # an empty batch: nothing, no error
    loop_calls.clear()
    assert len(predict_model(model, torch.rand(5, 3, 40, 60), batch_size=2)) == 5
    assert loop_calls == [2, 2, 1]
    normalised = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"float tensor as RGB in 0\.\.1 .* got values in \[-"):
        predict_model(model, normalised)
    for shape in [(2, 3), (1, 4, 8, 8), (1, 1, 3, 8, 8)]:
        with pytest.raises(ValueError, match=r"tensor image \[3, H, W\] or batch \[B, 3, H, W\]"):
            predict_model(model, torch.zeros(shape, dtype=torch.uint8))
    # an H×W×3 tensor (from NumPy or PIL) is named with the shape given and the permute
    for shape, hint in [((8, 10, 3), r"\(8, 10, 3\) \(channels last: x.permute\(2, 0, 1\)"),
                        ((2, 8, 10, 3), r"x.permute\(0, 3, 1, 2\)")]:  # fmt: skip
        with pytest.raises(ValueError, match=hint):
            predict_model(model, torch.zeros(shape, dtype=torch.uint8))


def test_a_16_bit_array_is_refused_saying_how_to_convert_it(model):
    """A 16-bit array (``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` of a 16-bit PNG) was told
    that floats in 0..1 are read: the way for its values is said instead."""
    image = np.full((8, 10, 3), 60000, np.uint16)
    with pytest.raises(ValueError, match=r"\(x / 257\).round\(\).astype\(np.uint8\)"):
        predict_model(model, [image])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_a_model_in_another_dtype_predicts_its_batch_cast_to_it(model, dtype):
    """``model.to(torch.bfloat16).predict(image)`` stopped with "expected scalar type Float"."""
    cast = copy.deepcopy(model).to(dtype)
    want = predict_model(model, images())
    got = predict_model(cast, images())
    for a, b in zip(got, want, strict=True):
        assert a["cls"]["label"] == b["cls"]["label"]
        torch.testing.assert_close(
            a["cls"]["scores"].float(), b["cls"]["scores"], atol=0.02, rtol=0
        )
        assert a["seg"]["mask"].shape == b["seg"]["mask"].shape


def test_the_loop_hands_each_step_the_batch_and_both_sizes():
    seen = []

    def preprocess(image):
        size = (32, 48)
        return {"image": torch.zeros(3, *size), "image_id": 0, "image_size": size,
                "orig_size": image.shape[:2]}  # fmt: skip

    def run(batch, image_sizes):
        seen.append((tuple(batch.shape), image_sizes))
        return "raw"

    def decode(outputs, image_sizes, orig_sizes):
        assert outputs == "raw"
        return [{"sizes": (s, o)} for s, o in zip(image_sizes, orig_sizes, strict=True)]

    frames = [np.zeros((10, 20, 3), np.uint8), np.zeros((30, 40, 3), np.uint8)]
    out = predict_loop(frames, preprocess, run, decode, batch_size=8)
    assert seen == [((2, 3, 32, 64), [(32, 48), (32, 48)])]  # padded to a multiple of 32
    assert [p["sizes"] for p in out] == [((32, 48), (10, 20)), ((32, 48), (30, 40))]


def test_grey_and_rgba_arrays_become_rgb_and_others_are_refused():
    """Grey repeated into three channels; alpha composited on black, as a file is read."""
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    assert as_rgb_uint8(rgb) is rgb
    grey = rgb[:, :, 0]
    for given in (grey, grey[:, :, None]):
        assert (as_rgb_uint8(given) == np.dstack([grey] * 3)).all()
    opaque = np.full_like(grey, 255)
    assert (as_rgb_uint8(np.dstack([rgb, opaque])) == rgb).all()
    half = np.full_like(grey, 128)
    want = np.rint(rgb.astype(np.float64) * 128 / 255).astype(np.uint8)
    assert (as_rgb_uint8(np.dstack([rgb, half])) == want).all()
    with pytest.raises(ValueError, match=r"uint8 RGB arrays \(H×W×3, .* got shape \(4, 5, 2\)"):
        as_rgb_uint8(np.zeros((4, 5, 2), np.uint8))
    # a float array in 0..1 is read as a float tensor is (it was refused; tensors were not)
    assert (as_rgb_uint8(rgb.astype(np.float32) / 255) == rgb).all()
    with pytest.raises(
        ValueError, match=r"dtype float32 .* in \[4, 248\]; values in 0\.\.255 become"
    ):
        as_rgb_uint8(rgb.astype(np.float32))  # 0..255 floats: not guessed, told
    with pytest.raises(ValueError, match=r"empty image or no image: an array of shape \(0, 5, 3\)"):
        as_rgb_uint8(np.zeros((0, 5, 3), np.uint8))  # OpenCV's assertion, before


def test_none_and_encoded_bytes_are_told_what_predict_takes(model):
    for given, what in ((None, "None"), (b"\x89PNG", "bytes (an encoded file")):
        with pytest.raises(ValueError, match=rf"predict got {re.escape(what)}.*expected a path"):
            model.predict(given)
