"""Streamed prediction: ``model.predict(..., stream=True)``, folders / globs / videos as
``model.predict`` inputs, and ``predictions.json`` / ``images.json`` written batch by batch
(:class:`visionkit.inference.outputs.JsonArrayStream`)."""

from __future__ import annotations

import errno
import inspect
import json
from pathlib import Path

import cv2
import pytest
import torch
from PIL import Image

from tests.inference.detectors import detector, photo
from visionkit.errors import DataError, DiskFullError
from visionkit.inference import predict as predict_module
from visionkit.inference import sources
from visionkit.inference.outputs import JsonArrayStream, write_json
from visionkit.inference.predict import predict_files
from visionkit.inference.sources import read_video


@pytest.fixture(scope="module")
def model():
    return detector()


def write_video(path, frames=4, size=(32, 40)):
    """A small mp4 (mp4v) of :func:`photo` frames; returns ``path``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size[::-1])
    for i in range(frames):
        writer.write(photo(i, size)[:, :, ::-1].copy())
    writer.release()
    return path


class FailingFile:
    """Stands in for a stream's open file: ``write`` runs ``fail(file, data)``."""

    def __init__(self, file, fail):
        self.file, self.fail = file, fail

    def write(self, data):
        return self.fail(self.file, data)

    def __getattr__(self, name):
        return getattr(self.file, name)


def same(a, b):
    """Two predictions of the ``det`` head hold the same boxes and scores (to the float
    rounding that another batch composition gives)."""
    a, b = a["det"], b["det"]
    return a["boxes"].shape == b["boxes"].shape and (
        torch.allclose(a["boxes"], b["boxes"], atol=1e-3)
        and torch.allclose(a["scores"], b["scores"], atol=1e-5)
    )


def test_stream_yields_one_prediction_per_image_a_batch_at_a_time(model, monkeypatch, tmp_path):
    for i in range(5):
        Image.fromarray(photo(i, (32, 40))).save(tmp_path / f"{i}.png")
    paths = sorted(tmp_path.glob("*.png"))
    want = model.predict(paths, batch_size=2, conf=0.5)
    decoded = []
    real_read = sources.read_image
    monkeypatch.setattr(sources, "read_image", lambda p: decoded.append(p) or real_read(p))
    stream = model.predict(paths, batch_size=2, conf=0.5, stream=True)
    assert inspect.isgenerator(stream) and decoded == []  # nothing read before next()
    first = next(stream)
    assert len(decoded) == 2  # one batch decoded, not the whole list
    assert model.heads["det"].score_thresh == 0.05  # conf holds inside the forward pass only
    got = [first, *stream]
    assert len(got) == 5 and all(same(g, w) for g, w in zip(got, want, strict=True))
    assert all(float(s) > 0.5 for g in got for s in g["det"]["scores"])
    with pytest.raises(Exception, match=r"classes \(--classes\): no such class 'dog'"):
        model.predict(paths, classes=["dog"], stream=True)  # checked at the call


def test_predict_takes_a_folder_a_glob_and_a_video_frame_by_frame(model, tmp_path):
    for i in range(3):
        Image.fromarray(photo(i, (32, 40))).save(tmp_path / f"{i}.png")
    (tmp_path / "sub").mkdir()
    video = write_video(tmp_path / "sub" / "clip.mp4")
    frames = [frame for _, frame in read_video(video)]
    assert len(frames) == 4
    by_frame = model.predict(frames)
    from_video = model.predict(video)
    assert len(from_video) == 4 and all(map(same, from_video, by_frame))
    streamed = list(model.predict(str(video), batch_size=3, stream=True))
    assert len(streamed) == 4 and all(map(same, streamed, by_frame))
    images = model.predict(sorted(tmp_path.glob("*.png")))
    folder = model.predict(tmp_path)  # 0.png, 1.png, 2.png, then sub/clip.mp4's frames
    assert len(folder) == 7 and all(map(same, folder, images + by_frame))
    globbed = model.predict(str(tmp_path / "*.png"))
    assert len(globbed) == 3 and all(map(same, globbed, images))
    with pytest.raises(DataError, match="inputs not found"):
        model.predict(tmp_path / "missing.png")


def test_json_files_grow_batch_by_batch_and_are_renamed_at_the_end(monkeypatch, tmp_path):
    for i in range(5):
        Image.fromarray(photo(i, (32, 40))).save(tmp_path / f"{i}.png")
    out = tmp_path / "out"
    seen = []
    real_predict = predict_module.predict_images

    def predict(model, images, *args, **kwargs):
        temporary = sorted(p.name for p in out.glob(".images.json.*.tmp"))
        assert len(temporary) == 1 and not (out / "images.json").exists()
        text = (out / temporary[0]).read_text()
        seen.append([r["id"] for r in json.loads(text + "\n]")] if text else [])
        return real_predict(model, images, *args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_images", predict)
    path = predict_files(detector(), [tmp_path], out, batch_size=2, conf=0.5, progress=False)
    assert seen == [[], [1, 2], [1, 2, 3, 4]]  # the earlier batches are on disk, not in memory
    records = json.loads((out / "images.json").read_text())
    assert [r["id"] for r in records] == [1, 2, 3, 4, 5]
    assert {e["image_id"] for e in json.loads(path.read_text())} <= {1, 2, 3, 4, 5}
    assert not list(out.glob(".*.tmp"))


def test_an_error_midway_leaves_no_json_and_no_temporary_file(monkeypatch, tmp_path):
    for name in ("a", "b"):
        Image.fromarray(photo(1, (32, 40))).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    real_predict, calls = predict_module.predict_images, []

    def predict(*args, **kwargs):  # the second batch fails
        calls.append(1)
        if len(calls) == 2:
            raise DataError("failed midway")
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_images", predict)
    with pytest.raises(DataError, match="failed midway"):
        predict_files(detector(), [tmp_path], out, batch_size=1, progress=False)
    assert not (out / "images.json").exists() and not (out / "predictions.json").exists()
    assert not list(out.glob(".*.tmp"))


@pytest.mark.reliability
def test_an_unreadable_image_in_a_folder_is_skipped_warned_and_counted(tmp_path, caplog):
    """As Ultralytics does: one broken file does not stop the folder; the skip is logged with
    the file and the reason, and counted at the end. Nothing readable at all is an error, and
    leaves no empty output folder."""
    Image.fromarray(photo(1, (32, 40))).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(photo(2, (32, 40))).save(tmp_path / "c.png")
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        path = predict_files(detector(), [tmp_path], out, batch_size=2, progress=False)
    records = json.loads((out / "images.json").read_text())
    assert [Path(r["file_name"]).name for r in records] == ["a.png", "c.png"]
    assert path == out / "predictions.json" and sorted(p.name for p in out.glob("*_pred.png"))
    warned = caplog.text
    assert f"skipping an unreadable image: cannot read image {tmp_path / 'b.jpg'}" in warned
    assert (
        f"predict: skipped 1 unreadable image of 3 (warned above): {tmp_path / 'b.jpg'}" in warned
    )
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"no input could be read: 1 unreadable image, e\.g\. "):
        predict_files(detector(), [broken], tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2").exists()  # the folder it made for nothing is gone
    (tmp_path / "mine").mkdir()  # a folder the user made is kept
    with pytest.raises(DataError, match="no input could be read"):
        predict_files(detector(), [broken], tmp_path / "mine", progress=False)
    assert (tmp_path / "mine").is_dir()


def test_json_array_stream_matches_write_json_and_survives_a_cut_write(tmp_path):
    items = [{"id": i, "box": [1.5, 2.0], "name": None} for i in range(5)]
    stream = JsonArrayStream(tmp_path / "a.json")
    stream.extend(items[:2])
    stream.extend([])
    stream.extend(items[2:])
    assert stream.close().read_bytes() == write_json(tmp_path / "b.json", items).read_bytes()
    assert JsonArrayStream(tmp_path / "e.json").close().read_text() == "[]"

    stream = JsonArrayStream(tmp_path / "c.json")
    stream.extend(items[:2])
    file = stream.file

    def cut(file, data):  # Ctrl-C after half of the batch's bytes reached the file
        file.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    stream.file = FailingFile(file, cut)
    with pytest.raises(KeyboardInterrupt):
        stream.extend(items[2:])
    stream.file = file
    stream.extend(items[2:3])  # written over the cut batch's bytes
    assert json.loads(stream.close().read_text()) == items[:3]

    stream = JsonArrayStream(tmp_path / "d.json")
    stream.abort()
    assert not (tmp_path / "d.json").exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_full_disk_while_streaming_keeps_the_previous_file(tmp_path):
    write_json(tmp_path / "p.json", [{"old": True}])
    stream = JsonArrayStream(tmp_path / "p.json")
    stream.extend([{"id": 1}])

    def full(file, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    stream.file = FailingFile(stream.file, full)
    with pytest.raises(DiskFullError, match="no space left on device") as info:
        stream.extend([{"id": 2}])
    assert info.value.kept and json.loads((tmp_path / "p.json").read_text()) == [{"old": True}]
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("make", [lambda a: a, lambda a: [Image.fromarray(a)], torch.from_numpy])
def test_predict_files_refuses_an_image_in_memory_and_names_model_predict(model, tmp_path, make):
    """It reads files: an array was read as a list of rows, each a "file name" (OSError:
    File name too long); a PIL image was "not found"."""
    pixels = torch.zeros(16, 16, 3, dtype=torch.uint8).numpy()
    with pytest.raises(TypeError, match=r"an image in memory goes to model.predict\(image\)"):
        predict_files(model, make(pixels), tmp_path / "out")
    assert not (tmp_path / "out").exists()
