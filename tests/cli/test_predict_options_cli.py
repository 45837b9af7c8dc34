"""``visionkit predict`` with the options users type first: --conf, --iou, --max-det,
--classes, --imgsz, --device, --half / --bf16, --save-txt, --no-save-json, a webcam index."""

from __future__ import annotations

import json

import cv2
import pytest
from PIL import Image

from tests.helpers import run
from tests.inference.detectors import FakeWebcam, detector, photo, save_checkpoint
from visionkit.inference import options


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_cli")
    ckpt = save_checkpoint(detector(), root / "det.ckpt")
    (root / "photos").mkdir()
    for i in range(2):
        Image.fromarray(photo(i)).save(root / "photos" / f"{i}.png")
    return ckpt, root / "photos"


def predict(capsys, setup, out, *extra):
    ckpt, photos = setup
    argv = ["predict", "--checkpoint", ckpt, "--input", photos, "--output-dir", out, *extra]
    code, printed, err = run([*argv, "--no-draw"], capsys)
    entries = json.loads((out / "predictions.json").read_text()) if code == 0 else None
    return code, printed + err, entries


def test_conf_default_is_025_and_higher_conf_keeps_fewer(setup, tmp_path, capsys):
    code, printed, default = predict(capsys, setup, tmp_path / "a", "--device", "cpu")
    assert code == 0 and f"wrote {tmp_path / 'a' / 'predictions.json'}" in printed
    assert default and min(e["score"] for e in default) >= 0.25
    _, _, high = predict(capsys, setup, tmp_path / "b", "--conf", "0.55")
    assert 0 < len(high) < len(default) and min(e["score"] for e in high) >= 0.55


def test_max_det_classes_and_iou(setup, tmp_path, capsys):
    _, _, capped = predict(capsys, setup, tmp_path / "a", "--max-det", "4")
    assert [sum(e["image_id"] == i for e in capped) for i in (1, 2)] == [4, 4]
    _, _, squares = predict(capsys, setup, tmp_path / "b", "--classes", "square")
    _, _, by_index = predict(capsys, setup, tmp_path / "c", "--classes", "1")
    assert squares and {e["name"] for e in squares} == {"square"}
    assert {e["category_id"] for e in squares} == {7} and squares == by_index
    _, _, loose = predict(capsys, setup, tmp_path / "d", "--iou", "0.9", "--max-det", "300")
    _, _, strict = predict(capsys, setup, tmp_path / "e", "--iou", "0.2", "--max-det", "300")
    assert len(strict) < len(loose)
    code, printed, _ = predict(capsys, setup, tmp_path / "f", "--classes", "dog")
    assert code == 2
    assert (
        "classes (--classes): no such class 'dog'; head 'det': 0..2 = circle, square, triangle"
        in printed
    )


def test_save_txt_and_no_save_json(setup, tmp_path, capsys):
    out = tmp_path / "out"
    code, printed, _ = run(
        ["predict", "--checkpoint", setup[0], "--input", setup[1] / "0.png", "--output-dir",
         out, "--save-txt", "--no-save-json", "--conf", "0.5"], capsys)  # fmt: skip
    assert code == 0 and f"wrote {out}\n" in printed
    assert not (out / "predictions.json").exists() and (out / "0.png_pred.png").is_file()
    lines = (out / "labels" / "0.txt").read_text().splitlines()
    assert lines and all(len(line.split()) == 5 for line in lines)  # no conf without --save-conf
    assert all(0 <= float(v) <= 1 for line in lines for v in line.split()[1:])


def test_imgsz_reaches_the_pipeline(setup, tmp_path, capsys, monkeypatch):
    sizes = []
    real = options.preprocess_at

    def spy(model, imgsz):
        preprocess = real(model, imgsz)
        sizes.append(tuple(preprocess(photo())["image"].shape[-2:]))
        return preprocess

    monkeypatch.setattr("visionkit.inference.predict.preprocess_at", spy)
    code, _, _ = predict(capsys, setup, tmp_path / "a", "--imgsz", "96,128")
    assert code == 0 and sizes == [(96, 128)]
    code, printed, _ = predict(capsys, setup, tmp_path / "b", "--imgsz", "0")
    assert code == 2 and "imgsz (--imgsz): one size (640) or height,width (480,640)" in printed


def test_device_and_precision_errors_are_plain_messages(setup, tmp_path, capsys, monkeypatch):
    code, printed, _ = predict(capsys, setup, tmp_path / "a", "--device", "cpu", "--half")
    assert code == 2 and "half (--half): float16 inference needs a CUDA GPU or MPS" in printed
    assert (
        "invalid command-line option:\n  half (--half)" in printed
    )  # said where raised, not guessed
    code, _, bf16 = predict(capsys, setup, tmp_path / "b", "--device", "cpu", "--bf16")
    assert code == 0 and bf16
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, printed, _ = predict(capsys, setup, tmp_path / "c", "--device", "cuda")
    assert code == 2 and "device (--device) cuda: no CUDA GPU 0 on this machine" in printed
    assert not (tmp_path / "c").exists()  # refused before anything is written


def test_webcam_index_with_max_frames(setup, tmp_path, capsys, monkeypatch):
    real = cv2.VideoCapture
    monkeypatch.setattr(
        cv2, "VideoCapture", lambda s: FakeWebcam(s) if isinstance(s, int) else real(s)
    )
    out = tmp_path / "cam"
    code, _, _ = run(
        ["predict", "--checkpoint", setup[0], "--input", "0", "--output-dir", out,
         "--max-frames", "3", "--device", "cpu"], capsys)  # fmt: skip
    assert code == 0
    assert [r["frame"] for r in json.loads((out / "images.json").read_text())] == [0, 1, 2]
    assert (out / "webcam0_pred.mp4").is_file()


def test_the_terminal_says_what_each_image_holds_and_a_tally_per_box_head(setup, tmp_path, capsys):
    """Like Ultralytics' "0.png: 2 circles, 1 square": each image's detections counted by
    class, then the head's tally (it printed classifiers' classes only)."""
    from collections import Counter

    code, printed, entries = predict(capsys, setup, tmp_path / "a", "--conf", "0.55")
    assert code == 0
    records = json.loads((tmp_path / "a" / "images.json").read_text())
    for record in records:
        found = Counter(e["name"] for e in entries if e["image_id"] == record["id"])
        counts = ", ".join(f"{c} {n}" for n, c in found.most_common()) or "none"
        assert f"{record['file_name']}: det {counts}\n" in printed
    total = Counter(e["name"] for e in entries)
    name, count = total.most_common(1)[0]
    assert f"\ndet: {name} {count} in " in printed and " of 2 images" in printed
    code, printed, entries = predict(capsys, setup, tmp_path / "b", "--conf", "0.99")
    assert code == 0 and entries == [] and "no detections (at --conf)" in printed


def test_save_crop_writes_each_detections_box_cut_out_as_ultralytics(setup, tmp_path, capsys):
    """Ultralytics users' --save-crop was 'unrecognized arguments': there was no way to get
    the detected objects as image files. Each detection is cut out of its image into
    crops/<class>/<stem>_<k>.jpg, k its line in labels/<stem>.txt."""
    import io

    import numpy as np

    ckpt, photos = setup
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", ckpt, "--input", photos, "--output-dir", out]
    code, printed, _ = run([*argv, "--conf", "0.5", "--save-crop", "--save-txt"], capsys)
    assert code == 0
    entries = json.loads((out / "predictions.json").read_text())
    crops = sorted(out.glob("crops/*/*.jpg"))
    assert entries and len(crops) == len(entries)
    assert f"{len(crops)} crops (crops/*.jpg)" in printed
    source = np.asarray(Image.open(photos / "0.png"))
    first = [e for e in entries if e["image_id"] == 1]
    for k, (entry, line) in enumerate(
        zip(first, (out / "labels" / "0.txt").read_text().splitlines(), strict=True), 1
    ):
        crop = Image.open(out / "crops" / entry["name"] / f"0_{k}.jpg")
        assert int(line.split()[0]) == ["circle", "square", "triangle"].index(entry["name"])
        x, y, w, h = entry["bbox"]
        x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
        x1, y1 = min(int(np.ceil(x + w)), 80), min(int(np.ceil(y + h)), 48)
        assert crop.size == (x1 - x0, y1 - y0)
        cut = io.BytesIO()  # the photo is noise, which JPEG changes: the cut, as JPEG
        Image.fromarray(source[y0:y1, x0:x1]).save(cut, format="JPEG", quality=95)
        assert np.array_equal(np.asarray(crop), np.asarray(Image.open(cut)))
