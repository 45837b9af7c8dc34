"""``model.predict`` options (conf, iou, max_det, classes, imgsz), the inputs it takes, and
the device / precision choice of :mod:`visionkit.inference.device`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from tests.helpers import run
from tests.inference.detectors import CLASSES, detector, photo, save_checkpoint
from visionkit.errors import ConfigError
from visionkit.inference import device as devices
from visionkit.inference.options import (
    detection_settings,
    parse_imgsz,
    prediction_conf,
    prediction_conf_note,
    preprocess_at,
    resize_steps,
)


@pytest.fixture(scope="module")
def model():
    return detector()


def det(prediction):
    return prediction[0]["det"]


def test_conf_keeps_fewer_boxes_all_above_it_and_the_head_is_left_as_it_was(model):
    image = photo()
    low, high = det(model.predict(image, conf=0.45)), det(model.predict(image, conf=0.55))
    assert 0 < len(high["scores"]) < len(low["scores"])
    assert float(high["scores"].min()) >= 0.55 and float(low["scores"].min()) >= 0.45
    head = model.heads["det"]
    assert (head.score_thresh, head.nms_thresh, head.detections_per_img) == (0.05, 0.6, 100)
    with pytest.raises(
        ConfigError, match=r"conf \(--conf\): a score threshold in \[0, 1\), got 1.5"
    ):
        model.predict(image, conf=1.5)
    assert len(model.predict(image, batch_size=np.int64(2))) == 1  # a numpy int is an int
    for size in (0, -1, True, 2.0):  # 0 returned nothing, -1 gave islice's own ValueError
        with pytest.raises(
            ConfigError, match=rf"batch_size \(--batch-size\): at least 1 .*, got {size}"
        ):
            model.predict(image, batch_size=size)
    settings = detection_settings(model, conf=0.9, iou=0.1, max_det=2)
    with pytest.raises(RuntimeError, match="inside"), settings:
        assert (head.score_thresh, head.nms_thresh, head.detections_per_img) == (0.9, 0.1, 2)
        raise RuntimeError("inside")
    assert (head.score_thresh, head.nms_thresh, head.detections_per_img) == (0.05, 0.6, 100)


def test_without_conf_predictions_keep_the_threshold_training_kept_else_0_25(model):
    from visionkit.inference.tta import predict_hflip

    image = photo()
    assert prediction_conf(model) == {"det": 0.25}  # never validated: Ultralytics' default
    assert prediction_conf_note(model) == "det 0.25 (the default: no F1 kept)"
    default = det(model.predict(image))
    assert torch.equal(default["boxes"], det(model.predict(image, conf=0.25))["boxes"])
    assert len(default["scores"]) > 0 and float(default["scores"].min()) > 0.25
    model.meta["predict_conf"] = {"det": 0.5}  # what training keeps: the best F1's threshold
    try:
        kept = det(model.predict(image))
        assert torch.equal(kept["boxes"], det(model.predict(image, conf=0.5))["boxes"])
        assert 0 < len(kept["scores"]) < len(default["scores"])
        assert float(kept["scores"].min()) > 0.5
        assert prediction_conf_note(model) == "det 0.5 (its best F1 on the validation set)"
        # a conf given wins; the flip TTA and the stream take the same default
        assert len(det(model.predict(image, conf=0.3))["scores"]) > len(kept["scores"])
        (flipped,) = predict_hflip(model, [image])
        assert float(flipped["det"]["scores"].min()) > 0.5
        (streamed,) = list(model.predict(image, stream=True))
        assert torch.equal(streamed["det"]["boxes"], kept["boxes"])
        # the head's own threshold, which evaluation scores at, is left as it was
        assert model.heads["det"].score_thresh == 0.05
        # ... and a head configured to keep less is never predicted under it
        model.heads["det"].score_thresh = 0.55
        assert prediction_conf(model) == {"det": 0.55}
        assert prediction_conf_note(model) == "det 0.55 (the head's score_thresh)"
        assert float(det(model.predict(image))["scores"].min()) > 0.55
    finally:
        del model.meta["predict_conf"]
        model.heads["det"].score_thresh = 0.05


def test_detection_settings_take_one_threshold_per_head(model):
    head = model.heads["det"]
    with detection_settings(model, conf={"det": 0.7}, iou=0.3):
        assert (head.score_thresh, head.nms_thresh) == (0.7, 0.3)
    with detection_settings(model, conf={"other": 0.7}):  # a head not named keeps its own
        assert head.score_thresh == 0.05
    assert (head.score_thresh, head.nms_thresh) == (0.05, 0.6)
    refused = pytest.raises(ConfigError, match=r"conf \(--conf\): a score threshold in \[0, 1\)")
    with refused, detection_settings(model, conf={"det": 1.5}):
        pass
    assert head.score_thresh == 0.05


def test_visionkit_predict_says_which_threshold_it_kept(tmp_path, capsys):
    model = detector()
    model.meta["predict_conf"] = {"det": 0.5}
    checkpoint = save_checkpoint(model, tmp_path / "best.ckpt")
    (tmp_path / "in").mkdir()
    Image.fromarray(photo()).save(tmp_path / "in" / "a.png")
    argv = ["predict", "--checkpoint", checkpoint, "--input", tmp_path / "in", "--no-draw"]
    code, _, err = run([*argv, "--output-dir", tmp_path / "out"], capsys)
    assert code == 0
    assert "conf (--conf) not given: det 0.5 (its best F1 on the validation set)" in err
    scores = [p["score"] for p in json.loads((tmp_path / "out" / "predictions.json").read_text())]
    assert scores and min(scores) > 0.5
    code, _, err = run([*argv, "--output-dir", tmp_path / "low", "--conf", "0.3"], capsys)
    assert code == 0 and "not given" not in err
    low = json.loads((tmp_path / "low" / "predictions.json").read_text())
    assert len(low) > len(scores) and min(p["score"] for p in low) > 0.3


def test_max_det_caps_and_iou_sets_the_nms_overlap(model):
    image = photo(1)
    full = det(model.predict(image, conf=0.4, max_det=1000))
    capped = det(model.predict(image, conf=0.4, max_det=5))
    assert len(full["scores"]) > 5 and len(capped["scores"]) == 5
    assert torch.equal(capped["boxes"], full["boxes"][:5])
    strict = det(model.predict(image, conf=0.4, iou=0.2, max_det=1000))
    assert len(strict["scores"]) < len(full["scores"])
    for label in strict["labels"].unique():
        boxes = strict["boxes"][strict["labels"] == label]
        overlap = box_iou(boxes, boxes).fill_diagonal_(0)
        assert float(overlap.max()) <= 0.2 + 1e-6


def test_classes_by_index_or_name_keep_only_those_then_cap(model):
    image = photo(2)
    everything = det(model.predict(image, conf=0.4, max_det=1000))
    squares = det(model.predict(image, conf=0.4, max_det=1000, classes=[1]))
    assert set(squares["labels"].tolist()) == {1} and set(squares["names"]) == {"square"}
    assert torch.equal(squares["boxes"], everything["boxes"][everything["labels"] == 1])
    named = det(model.predict(image, conf=0.4, max_det=1000, classes=["triangle", "0"]))
    assert set(named["labels"].tolist()) == {0, 2}
    few = det(model.predict(image, conf=0.4, max_det=3, classes=["triangle"]))
    assert few["labels"].tolist() == [2, 2, 2]  # capped after filtering, not before
    for one in (1, "square"):  # one class alone, not a list (a name is not its letters)
        alone = det(model.predict(image, conf=0.4, max_det=1000, classes=one))
        assert torch.equal(alone["boxes"], squares["boxes"])
    with pytest.raises(ConfigError) as info:
        model.predict(image, classes=["dog", 7])
    assert info.value.problems == [
        "classes (--classes): no such class 'dog', '7'; head 'det': 0..2 = " + ", ".join(CLASSES)
    ]


def test_predict_takes_paths_pil_images_arrays_and_lists(model, tmp_path):
    image = photo(3)
    Image.fromarray(image).save(tmp_path / "a.png")
    pil = Image.fromarray(image).convert("RGBA")
    want = det(model.predict([image]))
    for given in (tmp_path / "a.png", str(tmp_path / "a.png"), pil, image, image[None]):
        (got,) = model.predict(given)
        assert torch.equal(got["det"]["boxes"], want["boxes"]), type(given)
    mixed = model.predict([tmp_path / "a.png", pil, image], batch_size=2)
    assert len(mixed) == 3
    assert all(torch.allclose(p["det"]["scores"], want["scores"], atol=1e-5) for p in mixed)
    with pytest.raises(ValueError, match="expects uint8 RGB arrays"):
        model.predict(np.full((10, 10), 100.0, np.float32))  # 0..1 floats are read; these not


def test_a_transparent_picture_gives_the_same_predictions_as_a_file_or_an_array(model, tmp_path):
    """Transparency is composited on black when a file is read; an RGBA array or PIL image
    in memory is composited the same way (its alpha was dropped: other pixels, other
    predictions for the same picture)."""
    rgba = np.dstack([photo(5), np.full(photo(5).shape[:2], 255, np.uint8)])
    rgba[:, : rgba.shape[1] // 2, 3] = 60  # the left half mostly transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    (from_file,) = model.predict(tmp_path / "t.png")
    for given in (rgba, Image.fromarray(rgba, "RGBA")):
        (got,) = model.predict(given)
        assert torch.equal(got["det"]["boxes"], from_file["det"]["boxes"]), type(given)
        assert torch.equal(got["det"]["scores"], from_file["det"]["scores"]), type(given)
    (opaque,) = model.predict(rgba[:, :, :3])
    assert not torch.equal(opaque["det"]["scores"], from_file["det"]["scores"])


def test_an_exif_rotated_photo_by_path_is_upright_a_pil_image_as_its_pixels_are(model, tmp_path):
    """A path is decoded upright (EXIF orientation 6 and 8): boxes in the upright photo's
    pixels, those of ``ImageOps.exif_transpose``. A PIL image is taken as it is (as
    Ultralytics takes it), so its boxes fall on the pixels the caller holds (docs/predict.md)."""
    from PIL import ImageOps

    upright = Image.fromarray(photo(7, (48, 80)))
    stored = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    for orientation, turn in stored.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = tmp_path / f"exif{orientation}.jpg"
        upright.transpose(turn).save(path, quality=95, exif=exif)
        (by_path,) = model.predict(path)
        (turned,) = model.predict(ImageOps.exif_transpose(Image.open(path)))
        assert torch.equal(by_path["det"]["boxes"], turned["det"]["boxes"]), orientation
        (as_held,) = model.predict(Image.open(path))
        (pixels,) = model.predict(np.asarray(Image.open(path).convert("RGB")))
        assert torch.equal(as_held["det"]["boxes"], pixels["det"]["boxes"]), orientation


def test_imgsz_replaces_the_sizes_of_the_evaluation_pipeline(model):
    image = photo(4)
    assert tuple(model.preprocess(image)["image"].shape) == (3, 64, 64)
    assert tuple(preprocess_at(model, 96)(image)["image"].shape) == (3, 96, 96)
    assert tuple(preprocess_at(model, "32,128")(image)["image"].shape) == (3, 32, 128)
    assert tuple(model.preprocess(image)["image"].shape) == (3, 64, 64)  # the model's own
    default, large = det(model.predict(image)), det(model.predict(image, imgsz=128))
    assert not torch.equal(default["boxes"], large["boxes"])
    assert float(large["boxes"][:, 2].max()) <= 80 and float(large["boxes"][:, 3].max()) <= 48
    steps = [
        {"name": "LongestMaxSize", "max_size": 64},
        {"name": "PadIfNeeded", "min_height": 64, "min_width": 64, "position": "top_left"},
    ]
    assert resize_steps(steps, (96, 128)) == [
        {"name": "LongestMaxSize", "max_size": 128},
        {"name": "PadIfNeeded", "min_height": 96, "min_width": 128, "position": "top_left"},
    ]
    assert parse_imgsz(["480", "640"]) == (480, 640) and parse_imgsz(320) == (320, 320)
    with pytest.raises(ConfigError, match=r"imgsz \(--imgsz\): one size .* got 'big'"):
        parse_imgsz("big")


def test_device_names_and_precisions(monkeypatch):
    assert devices.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(
        ConfigError, match=r"device \(--device\) cuda:1: no CUDA GPU 1 on this machine"
    ):
        devices.resolve_device("cuda:1")
    with pytest.raises(ConfigError, match=r"device \(--device\) 'tpu': unknown device"):
        devices.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.resolve_device("1") == torch.device("cuda", 1)
    assert devices.resolve_device("auto") == torch.device("cuda", 0)
    with pytest.raises(ConfigError) as info:
        devices.autocast_dtype(torch.device("cpu"), half=True)
    assert info.value.problems[0].startswith(
        "half (--half): float16 inference needs a CUDA GPU or MPS; the device is the CPU"
    )
    assert devices.autocast_dtype(torch.device("cpu"), bf16=True) is torch.bfloat16
    assert devices.autocast_dtype(torch.device("cuda", 0), half=True) is torch.float16
    assert devices.lightning_device(torch.device("cuda", 1)) == {
        "accelerator": "gpu",
        "devices": [1],
        "num_nodes": 1,
        "strategy": "auto",  # one device: the checkpoint's distributed strategy left out
    }
    assert devices.lightning_precision(torch.bfloat16) == "bf16-mixed"


def test_bf16_autocast_on_the_cpu_predicts_like_float32(model):
    from visionkit.inference.options import predict_images

    image = photo(5)
    full = det(model.predict(image, conf=0.5))
    half = det(predict_images(model, image, conf=0.5, autocast=torch.bfloat16))
    assert half["boxes"].dtype == torch.float32  # decoded in float32
    assert abs(len(half["scores"]) - len(full["scores"])) <= max(3, len(full["scores"]) // 5)
    assert float(half["scores"][0]) == pytest.approx(float(full["scores"][0]), abs=0.02)


def test_every_prediction_entry_point_has_the_one_default_batch_size():
    """model.predict / embed, predict_files, the TTA helpers, Gallery, OnnxPredictor and
    ``visionkit predict --batch-size`` (and the standalone ONNX script, which imports nothing of
    visionkit) agree: a user's memory use does not change with the door they came in by."""
    import inspect

    from visionkit.choices import DEFAULT_PREDICT_BATCH_SIZE
    from visionkit.cli import build_parser
    from visionkit.export.standalone import Predictor
    from visionkit.gallery import Gallery
    from visionkit.inference import loop, onnx_runtime, options, predict, tta
    from visionkit.models.model import VisionModel

    functions = [
        VisionModel.predict, VisionModel.embed, predict.predict_files, tta.predict_tta,
        tta.predict_hflip, options.predict_images, options.stream_predictions,
        loop.predict_loop, loop.predict_model, onnx_runtime.OnnxPredictor.predict,
        Gallery.from_folder, Gallery.add, Gallery.search, Gallery.nearest, Predictor.predict,
    ]  # fmt: skip
    defaults = {f.__qualname__: inspect.signature(f).parameters["batch_size"].default
                for f in functions}  # fmt: skip
    assert defaults == dict.fromkeys(defaults, DEFAULT_PREDICT_BATCH_SIZE)
    args = build_parser().parse_args(["predict", "--checkpoint", "x.ckpt", "--input", "y.jpg"])
    assert args.batch_size == DEFAULT_PREDICT_BATCH_SIZE
