"""``predict_files`` sources and streaming: webcams (a fake ``cv2.VideoCapture(0)``),
``max_frames``, Ctrl-C, batch-by-batch decoding, ``--save-txt`` lines and ``--no-save-json``."""

from __future__ import annotations

import json
import os

import cv2
import pytest
from PIL import Image

from tests.inference.detectors import FakeWebcam, detector, photo
from visionkit.errors import DataError
from visionkit.inference import predict as predict_module
from visionkit.inference import sources
from visionkit.inference.predict import PredictInterrupted, predict_files


def write_clip(path, frames=6):
    """An mp4v video of ``frames`` 40×32 photos at 10 fps."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (40, 32))
    for i in range(frames):
        writer.write(photo(i, (32, 40)))
    writer.release()


def fake_cameras(monkeypatch, **camera):
    """``cv2.VideoCapture(int)`` opens a :class:`FakeWebcam`; files open as usual."""
    real = cv2.VideoCapture
    FakeWebcam.opened = []
    monkeypatch.setattr(
        cv2, "VideoCapture", lambda s: FakeWebcam(s, **camera) if isinstance(s, int) else real(s)
    )


def test_a_webcam_index_is_read_until_max_frames_and_drawn_as_a_video(monkeypatch, tmp_path):
    fake_cameras(monkeypatch)
    assert sources.named_inputs(["0"]) == [(sources.Webcam(0), "webcam0")]
    out = predict_files(
        detector(), ["0"], tmp_path, max_frames=5, every=2, conf=0.5, progress=False
    )
    records = json.loads((tmp_path / "images.json").read_text())
    assert [r["frame"] for r in records] == [0, 2, 4, 6, 8]
    assert {r["file_name"] for r in records} == {"webcam 0"}
    assert {e["frame"] for e in json.loads(out.read_text())} <= {0, 2, 4, 6, 8}
    assert FakeWebcam.opened == [0]  # opened once: not again for its frame rate
    video = cv2.VideoCapture(str(tmp_path / "webcam0_pred.mp4"))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 5
    assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(15.0)  # 30 fps, every 2nd frame
    video.release()
    with pytest.raises(DataError, match=r"cannot open webcam 3 \(cv2.VideoCapture\(3\) found"):
        predict_files(detector(), ["3"], tmp_path / "none", progress=False)


def test_ctrl_c_stops_cleanly_and_writes_what_was_predicted(monkeypatch, tmp_path):
    fake_cameras(monkeypatch, interrupt_at=6)  # the 6th read is interrupted
    with pytest.raises(PredictInterrupted) as info:
        predict_files(detector(), [0], tmp_path, batch_size=2, conf=0.5, progress=False)
    assert info.value.exit_code == 130 and info.value.count == 4  # two whole batches
    assert str(info.value) == (
        "stopped by Ctrl-C after 4 image(s) or frame(s); the predictions made until then "
        f"are written in {tmp_path / 'predictions.json'}"
    )
    assert len(json.loads((tmp_path / "images.json").read_text())) == 4
    assert (tmp_path / "webcam0_pred.mp4").stat().st_size > 0  # the video was closed


def test_images_are_decoded_one_batch_at_a_time(monkeypatch, tmp_path):
    for i in range(7):
        Image.fromarray(photo(i, (32, 40))).save(tmp_path / f"{i}.png")
    decoded, seen = [], []
    real_read, real_predict = sources.read_image, predict_module.predict_images

    def read(path):
        decoded.append(path)
        return real_read(path)

    def predict(model, images, *args, **kwargs):
        seen.append((len(decoded), len(images)))
        return real_predict(model, images, *args, **kwargs)

    monkeypatch.setattr(sources, "read_image", read)
    monkeypatch.setattr(predict_module, "predict_images", predict)
    predict_files(detector(), [tmp_path], tmp_path / "out", batch_size=3, progress=False)
    assert seen == [(3, 3), (6, 3), (7, 1)]  # never more than one batch decoded ahead


def test_save_txt_writes_yolo_lines_matching_predictions_json(tmp_path):
    Image.fromarray(photo(1)).save(tmp_path / "a.png")
    Image.fromarray(photo(2)).save(tmp_path / "a.jpg")  # the same stem: suffix kept
    Image.fromarray(photo(3)).save(tmp_path / "b.png")
    out = tmp_path / "out"
    path = predict_files(
        detector(), [tmp_path], out, conf=0.55, save_txt=True, save_conf=True, progress=False
    )
    entries = json.loads(path.read_text())
    records = json.loads((out / "images.json").read_text())
    label_files = {"a.jpg": "a.jpg.txt", "a.png": "a.png.txt", "b.png": "b.txt"}
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(label_files.values())
    for record in records:
        image_id, name = record["id"], record["file_name"].rsplit("/", 1)[-1]
        lines = (out / "labels" / label_files[name]).read_text().splitlines()
        mine = [e for e in entries if e["image_id"] == image_id]
        assert len(lines) == len(mine) > 0
        for line, entry in zip(lines, mine, strict=True):
            label, cx, cy, w, h, conf = (float(v) for v in line.split())
            x, y, bw, bh = entry["bbox"]
            assert [3, 7, 42][int(label)] == entry["category_id"]
            assert (cx * 80, cy * 48, w * 80, h * 48) == pytest.approx(
                (x + bw / 2, y + bh / 2, bw, bh), abs=0.02
            )
            assert conf == pytest.approx(entry["score"], abs=1e-5) and conf >= 0.55


def test_no_save_json_writes_neither_json_and_max_frames_cuts_videos(tmp_path):
    write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    got = predict_files(
        detector(), [tmp_path / "clip.mp4"], out, max_frames=2, save_json=False, progress=False
    )
    assert got == out and not (out / "predictions.json").exists()
    assert not (out / "images.json").exists()
    video = cv2.VideoCapture(str(out / "clip.mp4_pred.mp4"))
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 2
    video.release()
    assert sources.video_frames(tmp_path / "clip.mp4", every=1, max_frames=2) == 2


@pytest.mark.reliability
def test_an_error_mid_video_keeps_the_earlier_video_and_leaves_no_partial_file(
    monkeypatch, tmp_path
):
    write_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    predict_files(detector(), [tmp_path / "clip.mp4"], out, batch_size=2, progress=False)
    earlier = (out / "clip.mp4_pred.mp4").read_bytes()
    real_predict, calls = predict_module.predict_images, []

    def failing(model, images, *args, **kwargs):
        calls.append(len(images))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real_predict(model, images, *args, **kwargs)

    monkeypatch.setattr(predict_module, "predict_images", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        predict_files(detector(), [tmp_path / "clip.mp4"], out, batch_size=2, progress=False)
    assert (out / "clip.mp4_pred.mp4").read_bytes() == earlier  # a whole video, the earlier one
    assert sorted(p.name for p in out.glob("*.mp4")) == ["clip.mp4_pred.mp4"]


@pytest.mark.reliability
def test_a_video_encoder_that_cannot_open_names_the_video_it_could_not_write(monkeypatch, tmp_path):
    write_clip(tmp_path / "clip.mp4")

    class Unopened:
        def __init__(self, *args):
            pass

        def isOpened(self):  # noqa: N802 (OpenCV's name)
            return False

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoWriter", Unopened)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="mp4v encoder") as info:
        predict_files(detector(), [tmp_path / "clip.mp4"], out, progress=False)
    assert str(out / "clip.mp4_pred.mp4") in str(info.value)
    assert not list(out.glob("*.mp4"))


def test_a_txt_file_lists_inputs_read_from_here_or_beside_it(monkeypatch, tmp_path):
    """As Ultralytics' ``source="list.txt"``: one input a line (file, folder or glob; blank
    lines and comments skipped), relative ones found from the current folder or the list's.
    It was read as an image, and skipped as unreadable."""
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ["a.png", "sub/b.png", "sub/c.png", "d.jpg"]:
        Image.fromarray(photo(len(name))).save(photos / name)
    listing = tmp_path / "lists" / "mine.txt"
    listing.parent.mkdir()
    listing.write_text("# picked\nphotos/a.png\n\n../photos/sub\n" + str(photos / "*.jpg") + "\n")
    monkeypatch.chdir(tmp_path)
    named = sources.named_inputs([str(listing)])
    assert [name for _, name in named] == ["a.png", "sub/b.png", "sub/c.png", "d.jpg"]
    assert len(detector().predict(listing)) == 4  # model.predict reads it as --input does
    listing.write_text("photos/a.png\nnope.png\n")
    with pytest.raises(DataError, match=r"inputs listed in .*mine.txt not found:\n  line 2: nope"):
        sources.named_inputs([listing])


def test_a_url_is_told_that_only_local_files_are_read(tmp_path):
    """Ultralytics reads URLs and streams; here a URL said only 'inputs not found'."""
    url = "https://ultralytics.com/images/bus.jpg"
    with pytest.raises(DataError) as info:
        sources.named_inputs([url, "rtsp://camera/stream"])
    assert str(info.value).startswith(
        "URLs and streams are not read, only local files, folders, globs, .txt lists and "
        "webcam indices: download the file first (e.g. curl -LO URL) and give its path:"
    )
    assert url in str(info.value) and "rtsp://camera/stream" in str(info.value)
    (tmp_path / "list.txt").write_text(f"{url}\n")  # in a .txt list too
    with pytest.raises(DataError, match="URLs and streams are not read"):
        sources.named_inputs([tmp_path / "list.txt"])


def test_no_images_says_why_for_each_folder_and_pattern(tmp_path):
    """An empty folder, a folder of other files and a glob that matches nothing all said
    "no images found in X", leaving the user to guess which and what is read."""
    from tests.helpers import write_image
    from visionkit.inference.sources import named_inputs

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("x")
    write_image(tmp_path / "run" / "predict" / "a.png", size=(8, 8))
    inputs = [tmp_path / "empty", tmp_path / "notes", str(tmp_path / "*.jpeg")]
    with pytest.raises(DataError) as info:
        named_inputs(inputs)
    said = str(info.value)
    assert f"{tmp_path / 'empty'} (an empty folder)" in said
    assert f"{tmp_path / 'notes'} (other suffixes, e.g. {tmp_path / 'notes' / 'a.md'})" in said
    assert f"{tmp_path / '*.jpeg'} (no file)" in said
    assert "read are the suffixes .jpg .jpeg .png" in said and ".mp4" in said
    with pytest.raises(DataError) as info:
        named_inputs([tmp_path / "run"], exclude=[tmp_path / "run" / "predict"])
    out = os.path.realpath(tmp_path / "run" / "predict")
    assert f"(inside output folder {out}, e.g. {tmp_path / 'run' / 'predict' / 'a.png'})" in str(
        info.value
    )


def test_no_images_names_what_the_scan_left_out(tmp_path):
    """The reasons came from their own ``rglob`` walk, not the scanner's: a folder of macOS /
    Jupyter leftovers was "its images are in output folders", ``data/*`` matching only
    folders "only files of output folders", a linked folder of notes "an empty folder"."""
    from tests.helpers import write_image
    from visionkit.inference.sources import named_inputs

    def reason(*inputs) -> str:
        with pytest.raises(DataError) as info:
            named_inputs(list(inputs))
        return str(info.value)

    junk = tmp_path / "junk"
    write_image(junk / "._a.jpg", size=(8, 8))
    write_image(junk / "__MACOSX" / "b.jpg", size=(8, 8))
    write_image(junk / ".ipynb_checkpoints" / "c.png", size=(8, 8))
    assert f"{junk} (hidden/system files, e.g. {junk / '._a.jpg'});" in reason(junk)
    (junk / "._a.jpg").unlink()  # only in folders the scan does not enter
    assert f"(hidden/system files, e.g. {junk / '.ipynb_checkpoints' / 'c.png'})" in reason(junk)
    write_image(tmp_path / "data" / "train" / "x.png", size=(8, 8))
    pattern = str(tmp_path / "data" / "*")
    assert (
        f"{pattern} (only folders, e.g. {tmp_path / 'data' / 'train'}: give a folder, or "
        f"'{pattern}/**' for its files)" in reason(pattern)
    )
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.md").write_text("x")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "notes").symlink_to(tmp_path / "notes", target_is_directory=True)
    said = reason(tmp_path / "linked")
    assert f"(other suffixes, e.g. {tmp_path / 'linked' / 'notes' / 'notes.md'})" in said


def test_a_videos_label_files_and_crops_number_its_frames_from_1_as_ultralytics(tmp_path):
    """labels/clip_0.txt was the first frame, where Ultralytics writes clip_1.txt (its loader
    counts the frames read from 1); the crops follow the label files' names."""
    write_clip(tmp_path / "clip.mp4", frames=3)
    out = tmp_path / "out"
    predict_files(
        detector(), [tmp_path / "clip.mp4"], out, conf=0.45, save_txt=True, save_crop=True,
        progress=False,
    )  # fmt: skip
    frames = [r["frame"] for r in json.loads((out / "images.json").read_text())]
    assert frames == [0, 1, 2]
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert labels == ["clip_1.txt", "clip_2.txt", "clip_3.txt"]  # frame + 1
    crops = {p.stem.rsplit("_", 1)[0] for p in (out / "crops").rglob("*.jpg")}
    assert crops == {"clip_1", "clip_2", "clip_3"}
    # --every 2: frames 0 and 2, the frames' own numbers
    predict_files(
        detector(), [tmp_path / "clip.mp4"], tmp_path / "every", conf=0.45, every=2,
        save_txt=True, progress=False,
    )  # fmt: skip
    labels = sorted(p.name for p in (tmp_path / "every" / "labels").iterdir())
    assert labels == ["clip_1.txt", "clip_3.txt"]


def test_a_globs_image_suffix_matches_in_any_case_as_folders_are_read(tmp_path):
    """photos/*.jpg missed a camera's IMG_1.JPG (glob is case-sensitive), where the folder
    photos/ reads it: the suffix of a glob is matched in any case, the rest as written."""
    for name in ("IMG_1.JPG", "b.jpg", "c.Jpg", "d.png", "E.JPEG"):
        Image.fromarray(photo(0, (8, 8))).save(tmp_path / name)
    found = [p.name for p in sources.expand_inputs([f"{tmp_path}/*.jpg"])]
    assert found == ["IMG_1.JPG", "b.jpg", "c.Jpg"]
    assert [p.name for p in sources.expand_inputs([f"{tmp_path}/*.JPG"])] == found
    with pytest.raises(DataError, match=r"img_\*\.jpg \(no file\)"):  # the name as written
        sources.expand_inputs([f"{tmp_path}/img_*.jpg"])
    assert sources.suffix_any_case("a/*.mp4") == "a/*.[mM][pP]4"
    assert sources.suffix_any_case("a/*.jp*") == "a/*.jp*"  # not a suffix spelled out
    with pytest.raises(DataError, match=r"\*\.webp \(no file\)"):
        sources.expand_inputs([f"{tmp_path}/*.webp"])


def test_label_masks_beside_their_photos_are_not_predicted_on(tmp_path, caplog):
    """A Roboflow segmentation export keeps train/a.jpg beside train/a_mask.png: predict on
    the folder read the masks as photos. They are left out of folders and globs, said once;
    a mask given by name, or by a glob spelling out _mask, is read."""
    photos = tmp_path / "train"
    photos.mkdir()
    for i, name in enumerate(["a", "b", "c"]):
        Image.fromarray(photo(i, (16, 16))).save(photos / f"{name}.jpg")
        Image.fromarray(photo(0, (16, 16))[:, :, 0] // 128).save(photos / f"{name}_mask.png")
    Image.fromarray(photo(4, (16, 16))).save(photos / "d_mask.png")  # no d.jpg: a photo
    (tmp_path / "train" / "_classes.csv").write_text("Pixel Value, Class\n0, bg\n1, cat\n")
    with caplog.at_level("WARNING", logger="visionkit.inference.sources"):
        found = [p.name for p in sources.expand_inputs([photos])]
    assert found == ["a.jpg", "b.jpg", "c.jpg", "d_mask.png"]
    said = [r.getMessage() for r in caplog.records if "label mask" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("left out 3 label masks beside their image")
    assert [p.name for p in sources.expand_inputs([f"{photos}/[a-d]*"])] == found
    assert [p.name for p in sources.expand_inputs([f"{photos}/*_mask.png"])] == [
        "a_mask.png", "b_mask.png", "c_mask.png", "d_mask.png"
    ]  # fmt: skip
    assert [p.name for p in sources.expand_inputs([photos / "a_mask.png"])] == ["a_mask.png"]
    with pytest.raises(DataError, match=r"label masks beside their images, e.g. .*a_mask.png"):
        sources.expand_inputs([f"{photos}/[abc]*.png"])  # nothing but masks
    out = predict_files(detector(), [photos], tmp_path / "out", progress=False)
    records = json.loads((out.parent / "images.json").read_text())
    assert [r["file_name"].rsplit("/", 1)[-1] for r in records] == found


def test_the_masks_said_left_out_are_those_not_read_each_once(tmp_path, caplog):
    """``[train, train/a_mask.png]`` warned that a_mask.png was "not predicted on" though it was
    read; ``[train, "train/"]`` said "left out 4 label masks" of 2."""
    photos = tmp_path / "train"
    photos.mkdir()
    for i, name in enumerate(["a", "b"]):
        Image.fromarray(photo(i, (16, 16))).save(photos / f"{name}.jpg")
        Image.fromarray(photo(0, (16, 16))[:, :, 0] // 128).save(photos / f"{name}_mask.png")

    def said(inputs: list) -> list[str]:
        caplog.clear()
        with caplog.at_level("WARNING", logger="visionkit.inference.sources"):
            sources.expand_inputs(inputs)
        return [r.getMessage() for r in caplog.records if "label mask" in r.getMessage()]

    warned = said([photos, photos / "a_mask.png"])
    assert len(warned) == 1 and warned[0].startswith("left out 1 label mask beside its image")
    assert "b_mask.png" in warned[0] and "a_mask.png" not in warned[0]
    warned = said([photos, f"{photos}/"])
    assert len(warned) == 1 and warned[0].startswith("left out 2 label masks beside their")
    assert said([photos, photos / "a_mask.png", photos / "b_mask.png"]) == []


def test_a_glob_naming_mask_without_its_underscore_reads_the_masks(tmp_path):
    """``'train/*mask.png'`` was refused "no images found ... (label masks beside their
    images, ...)": ``mask`` in a glob's file-name part asks for masks; where masks are left
    out, the reason says how to read them."""
    photos = tmp_path / "train"
    photos.mkdir()
    Image.fromarray(photo(0, (16, 16))).save(photos / "a.jpg")
    Image.fromarray(photo(0, (16, 16))[:, :, 0] // 128).save(photos / "a_mask.png")
    found = sources.expand_inputs([f"{photos}/*mask.png"])
    assert [p.name for p in found] == ["a_mask.png"]
    with pytest.raises(DataError, match=r"a_mask.png \(spell out _mask in the glob to read them\)"):
        sources.expand_inputs([f"{photos}/a_*.png"])
    (photos / "a.jpg").rename(tmp_path / "a.jpg")  # a folder of nothing but a mask: read
    assert [p.name for p in sources.expand_inputs([photos])] == ["a_mask.png"]
