"""`visionkit predict` output names: inputs with the same file name in different folders, or
the same stem with another suffix, get distinct and stable outputs whose json entries point at
their own files; an output folder inside an input folder is never read back as input."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import visionkit
from tests.helpers import run, write_image
from visionkit.checkpoint import holds_files, numbered_folders, run_folder_of, unused_folder
from visionkit.data.io import read_image
from visionkit.errors import DataError, VisionkitError
from visionkit.inference.draw import colour_of
from visionkit.inference.predict import named_inputs, predict_files

pytestmark = pytest.mark.reliability

# input name -> (H, W): distinct sizes, so each label PNG shows which image it was made from
PHOTOS = {"a/001.jpg": (32, 48), "b/001.jpg": (40, 40), "001.png": (24, 56)}


def make_photos(root: Path) -> Path:
    for seed, (name, size) in enumerate(PHOTOS.items()):
        write_image(root / name, size=size, seed=seed)
    return root


def seg_model() -> visionkit.VisionModel:
    torch.manual_seed(0)
    config = {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 8, "min_level": 3, "max_level": 5},
            "heads": {
                "cls": {"name": "linear", "num_classes": 2},
                "seg": {"name": "semantic_fpn", "channels": 8, "num_classes": 3},
            },
        },
        "data": {"image_size": 64},
    }
    names = {"class": ["x", "y"], "semantic": ["background", "a", "b"]}
    return visionkit.create_model(config, label_names=names)


def outputs(out: Path, pattern: str) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob(pattern))


def test_same_file_names_in_different_folders_and_suffixes_get_distinct_outputs(tmp_path):
    photos = make_photos(tmp_path / "photos")
    model = seg_model()
    out = tmp_path / "out"
    written = predict_files(model, [photos], out, progress=False)
    # no head predicts boxes: no predictions.json (it was an empty list, read as "found
    # nothing"); what was written is images.json, the label maps and the drawn images
    assert written == out / "images.json" and not (out / "predictions.json").exists()
    assert outputs(out, "*_pred.png") == [
        "001.png_pred.png",
        "a/001.jpg_pred.png",
        "b/001.jpg_pred.png",
    ]
    assert outputs(out, "*_seg.png") == [
        "001.png_seg.png",
        "a/001.jpg_seg.png",
        "b/001.jpg_seg.png",
    ]
    records = json.loads((out / "images.json").read_text())
    assert len(records) == 3
    for record in records:
        name = Path(record["file_name"]).relative_to(photos).as_posix()
        assert record["seg"]["label_png"] == f"{name}_seg.png"
        assert (record["height"], record["width"]) == PHOTOS[name]
        png = Image.open(out / record["seg"]["label_png"])
        label_map = np.asarray(png)  # class indices, shown in colour (a palette PNG, as VOC's)
        assert png.mode == "P"  # background black, the classes in their drawing colours
        assert png.getpalette()[:9] == [0, 0, 0, *colour_of(1), *colour_of(2)]
        (expected,) = model.predict([read_image(photos / name)])
        assert label_map.shape == PHOTOS[name]
        assert (label_map == expected["seg"]["mask"].numpy()).all()
        # the names read the PNG's values; each class present has its share of the pixels
        names = record["seg"]["names"]
        assert names == expected["seg"]["names"]
        values, counts = np.unique(label_map, return_counts=True)
        pixels = record["seg"]["pixels"]
        assert pixels == {
            names[v]: round(c / label_map.size, 4) for v, c in zip(values, counts, strict=True)
        }
        assert list(pixels.values()) == sorted(pixels.values(), reverse=True)
        assert Image.open(out / f"{name}_pred.png").width == PHOTOS[name][1]


def test_an_earlier_runs_predictions_json_is_kept_and_named(tmp_path, caplog):
    """A model without box heads writes no predictions.json: one left by an earlier run in the
    same folder stays (nothing on disk is lost) and the log says it is not this run's."""
    photos = make_photos(tmp_path / "photos")
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.json").write_text("[]")
    with caplog.at_level("WARNING"):
        predict_files(seg_model(), [photos], out, progress=False, draw=False)
    assert (out / "predictions.json").read_text() == "[]"
    assert f"{out / 'predictions.json'} is an earlier run's" in caplog.text


def test_output_names_are_stable_whatever_else_the_folder_holds(tmp_path):
    photos = make_photos(tmp_path / "photos")
    model = seg_model()
    predict_files(model, [photos], tmp_path / "first", progress=False, draw=False)
    write_image(photos / "c" / "002.jpg", seed=9)
    write_image(photos / "001.jpeg", seed=10)  # the same stem once more
    predict_files(model, [photos], tmp_path / "second", progress=False, draw=False)
    first = outputs(tmp_path / "first", "*.png")
    second = outputs(tmp_path / "second", "*.png")
    assert first == ["001.png_seg.png", "a/001.jpg_seg.png", "b/001.jpg_seg.png"]
    assert second == sorted([*first, "001.jpeg_seg.png", "c/002.jpg_seg.png"])
    for name in first:
        before = np.asarray(Image.open(tmp_path / "first" / name))
        assert (before == np.asarray(Image.open(tmp_path / "second" / name))).all()


def test_names_are_relative_to_the_common_folder_of_files_folders_and_globs(tmp_path):
    photos = make_photos(tmp_path / "photos")
    files = [photos / "a" / "001.jpg", photos / "b" / "001.jpg"]
    assert [name for _, name in named_inputs(files)] == ["a/001.jpg", "b/001.jpg"]
    assert [name for _, name in named_inputs([photos / "a" / "001.jpg"])] == ["001.jpg"]
    for one in (photos / "a" / "001.jpg", str(photos / "a")):  # one input, not in a list
        assert [name for _, name in named_inputs(one)] == ["001.jpg"]
    globbed = named_inputs([str(photos / "*" / "001.jpg")])
    assert [name for _, name in globbed] == ["a/001.jpg", "b/001.jpg"]
    twice = named_inputs([photos, photos / "001.png", str(photos / "a" / "*.jpg")])
    assert [name for _, name in twice] == ["001.png", "a/001.jpg", "b/001.jpg"]  # each once
    other = write_image(tmp_path / "elsewhere" / "001.png")
    mixed = named_inputs([photos / "001.png", other])
    assert [name for _, name in mixed] == ["photos/001.png", "elsewhere/001.png"]


def test_an_output_folder_inside_the_input_folder_is_never_read_back(tmp_path, caplog):
    photos = make_photos(tmp_path / "photos")
    model = seg_model()
    out = photos / "preds"
    for _ in range(2):
        predict_files(model, [photos], out, progress=False)
        records = json.loads((out / "images.json").read_text())
        names = sorted(Path(r["file_name"]).relative_to(photos).as_posix() for r in records)
        assert names == sorted(PHOTOS)
    assert outputs(out, "*_pred.png") == [
        "001.png_pred.png",
        "a/001.jpg_pred.png",
        "b/001.jpg_pred.png",
    ]
    with caplog.at_level(logging.WARNING, logger="visionkit.inference.predict"):
        globbed = named_inputs([str(photos / "**" / "*.png")], out)
    assert [name for _, name in globbed] == ["001.png"]
    assert "skipped 6 file(s) matched inside the output folder" in caplog.text
    link = tmp_path / "link"
    os.symlink(out, link)  # the same output folder under another name
    assert [name for _, name in named_inputs([photos], link)] == sorted(PHOTOS)


def test_inputs_inside_the_output_folder_are_refused(tmp_path):
    photos = make_photos(tmp_path / "photos")
    drawn = write_image(photos / "preds" / "001.png_pred.png")
    with pytest.raises(DataError) as info:
        named_inputs([photos / "001.png", drawn], photos / "preds")
    assert str(info.value) == (
        f"inputs inside the output folder {photos / 'preds'}, where predictions are written "
        "(they would be read back as inputs); choose another --output-dir:\n"
        f"  {drawn}"
    )
    with pytest.raises(DataError, match="inputs inside the output folder"):
        named_inputs([photos], photos)


def test_cli_predict_writes_distinct_outputs_and_skips_its_output_folders(
    trained, tmp_path, capsys, caplog
):
    photos = make_photos(tmp_path / "photos")
    out = photos / "preds"
    argv = ["predict", "--checkpoint", trained["ckpt"], "--input", photos, "--output-dir", out]
    drawn = ["001.png_pred.png", "a/001.jpg_pred.png", "b/001.jpg_pred.png"]
    code, printed, _ = run(argv, capsys)
    assert code == 0 and f"wrote {out / 'predictions.json'}" in printed
    assert f"{out}: 3 drawn images (*_pred.png), images.json, predictions.json\n" in printed
    first = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # a second run never writes into the first one's folder, nor reads its drawn images
    for n in (2, 3):
        code, printed, _ = run(argv, capsys)
        again = photos / f"preds-{n}"
        assert code == 0 and f"wrote {again / 'predictions.json'}" in printed
        assert f"{out} holds the files of an earlier run; wrote to {again} instead" in caplog.text
        records = json.loads((again / "images.json").read_text())
        assert [Path(r["file_name"]).relative_to(photos).as_posix() for r in records] == [
            "001.png",
            "a/001.jpg",
            "b/001.jpg",
        ]
        assert outputs(again, "*_pred.png") == drawn
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == first
    # --exist-ok writes into the folder named; an input inside it is refused
    code, printed, _ = run([*argv, "--exist-ok"], capsys)
    assert code == 0 and f"wrote {out / 'predictions.json'}" in printed
    assert outputs(out, "*_pred.png") == drawn and not (photos / "preds-4").exists()
    code, _, err = run([*argv[:4], out / "a", "--output-dir", out, "--exist-ok"], capsys)
    assert code == 1
    assert f"error: inputs inside the output folder {out}" in err and str(out / "a") in err
    # an earlier output folder named as the input is read (it is not this run's output)
    code, printed, _ = run([*argv[:4], photos / "preds-2", "--output-dir", out], capsys)
    assert code == 0 and f"wrote {photos / 'preds-4' / 'predictions.json'}" in printed
    assert len(json.loads((photos / "preds-4" / "images.json").read_text())) == 3
    # a bad option is the only message: no word of a folder that nothing was written to
    caplog.clear()
    code, _, err = run([*argv, "--conf", "2"], capsys)
    assert code == 2 and "conf (--conf): a score threshold in [0, 1), got 2.0" in err
    assert "earlier run" not in caplog.text + err and not (photos / "preds-5").exists()


def test_cli_predict_writes_into_the_runs_predict_folder_by_default(trained, tmp_path, capsys):
    photos = make_photos(tmp_path / "photos")
    ckpt = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(trained["ckpt"], ckpt)
    run_dir = run_folder_of(ckpt)
    assert run_dir == tmp_path / "run"
    argv = ["predict", "--checkpoint", ckpt, "--input", photos, "--no-draw"]
    for folder in ("predict", "predict-2"):
        code, printed, err = run(argv, capsys)
        assert code == 0, err
        assert f"wrote {run_dir / folder / 'predictions.json'}" in printed
    assert numbered_folders(run_dir / "predict") == [run_dir / "predict", run_dir / "predict-2"]


def test_output_folders_are_numbered_beside_the_named_one(tmp_path, monkeypatch):
    for name in ("preds", "preds-0", "preds-02", "preds-2", "preds-10", "preds-2x"):
        (tmp_path / name).mkdir()
    assert numbered_folders(tmp_path / "preds") == [
        tmp_path / n for n in ("preds", "preds-2", "preds-10")
    ]
    work = tmp_path / "work"
    work.mkdir()
    (work / "photo.png").write_bytes(b"")
    monkeypatch.chdir(work)  # "." has no name: its next folder is its sibling work-2
    assert unused_folder(".", holds_files) == tmp_path / "work-2"
    assert unused_folder(tmp_path / "preds", holds_files) == tmp_path / "preds"  # empty


def test_globs_skip_earlier_output_folders_and_say_which(tmp_path, caplog):
    photos = make_photos(tmp_path / "photos")
    write_image(photos / "preds" / "001.png_pred.png")
    with caplog.at_level(logging.WARNING):
        named = named_inputs([str(photos / "**" / "*.png")], photos / "preds-2", [photos / "preds"])
    assert [name for _, name in named] == ["001.png"]
    assert f"inside the output folder(s) {photos / 'preds-2'}, {photos / 'preds'}" in caplog.text


@pytest.mark.reliability
def test_an_output_folder_that_cannot_be_made_is_a_message_naming_it(tmp_path, capsys):
    photos = make_photos(tmp_path / "photos")
    (tmp_path / "models").write_text("a file where the run folder would be")
    out = tmp_path / "models" / "predict"
    with pytest.raises(
        VisionkitError, match=f"cannot make the output folder {out}: .*--output-dir"
    ):
        predict_files(seg_model(), [photos], out, progress=False)


def test_the_summary_counts_what_this_run_wrote_by_kind(tmp_path):
    import os

    from visionkit.cli.predict import file_states, files_written

    out = tmp_path / "predict"
    (out / "old.jpg_pred.png").parent.mkdir(parents=True)
    (out / "old.jpg_pred.png").write_bytes(b"x")  # an earlier run's (--exist-ok)
    (out / "images.json").write_bytes(b"[]")
    os.utime(out / "images.json", (1, 1))
    before = file_states(out)
    for name in ["a.jpg_pred.png", "b.jpg_pred.png", "a.jpg_seg.png", "clip.mp4_pred.mp4",
                 "labels/a.txt", "a.jpg_emb.npy", "images.json", "predictions.json"]:  # fmt: skip
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"x")
    assert files_written(out, before) == (
        "2 drawn images (*_pred.png), 1 drawn video (*_pred.mp4), 1 YOLO label file "
        "(labels/*.txt), 1 embedding file (*.npy), 1 label map (*_<head>.png), images.json, "
        "predictions.json"
    )
    assert files_written(out, file_states(out)) == ""
    assert file_states(tmp_path / "not yet") == {}


def test_the_summary_counts_the_files_of_sub_folders(tmp_path):
    # inputs from nested folders (photos/a/001.jpg) write labels/a/001.txt; several heads
    # labels/<head>/<stem>.txt: every one is counted, as the drawn images of sub-folders are
    from visionkit.cli.predict import file_states, files_written

    out = tmp_path / "predict"
    before = file_states(out)
    for name in ["a/001.jpg_pred.png", "b.jpg_pred.png", "labels/a/001.txt", "labels/b.txt",
                 "labels/det/c.txt", "a/001.jpg_emb.npy"]:  # fmt: skip
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"x")
    assert files_written(out, before) == (
        "2 drawn images (*_pred.png), 3 YOLO label files (labels/*.txt), 1 embedding file (*.npy)"
    )


def test_save_txt_writes_a_classifiers_top_classes_as_ultralytics_does(tmp_path):
    """--save-txt wrote nothing for a classifier, and said nothing."""
    photos = make_photos(tmp_path / "photos")
    out = tmp_path / "out"
    predict_files(seg_model(), [photos], out, save_txt=True, progress=False)
    records = json.loads((out / "images.json").read_text())
    for record in records:
        stem = Path(record["file_name"]).relative_to(photos).with_suffix("").as_posix()
        lines = (out / "labels" / f"{stem}.txt").read_text().splitlines()
        top = record["cls"]["top5"]  # the two classes, best first
        assert lines == [f"{c['score']:.2f} {c['name']}" for c in top]
        assert [line.split()[1] for line in lines] in (["x", "y"], ["y", "x"])


def test_save_txt_lines_of_a_keypoint_head_carry_its_keypoints_as_ultralytics_pose():
    """--save-txt of a keypoint head wrote box-only lines: its keypoints were lost."""
    from visionkit.inference.outputs import yolo_lines

    result = {
        "boxes": torch.tensor([[20.0, 4.0, 80.0, 36.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([0]),
        "keypoints": torch.tensor([[[50.0, 20.0, 0.95], [25.0, 10.0, 0.25]]]),
    }
    (line,) = yolo_lines({"pose": result}, (40, 100), save_conf=True)["pose"]
    assert line.split() == [
        "0",
        "0.5",
        "0.5",
        "0.6",
        "0.8",
        "0.5",
        "0.5",
        "0.95",
        "0.25",
        "0.25",
        "0.25",
        "0.9",
    ]


def test_save_txt_keypoints_beyond_the_image_are_clipped_to_its_edge_as_ultralytics_does():
    """A keypoint predicted past the image's edge (a foot cut off by the frame) was written as
    -0.05 or 1.24: Ultralytics' label check refuses such a file ('non-normalized or out of
    bounds coordinates'), and Ultralytics' own predictions are clipped to the image."""
    from visionkit.inference.outputs import yolo_lines

    result = {
        "boxes": torch.tensor([[0.0, 4.0, 100.0, 40.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([0]),
        "keypoints": torch.tensor([[[-5.0, 20.0, 0.95], [124.0, 50.0, 0.25]]]),
    }
    (line,) = yolo_lines({"pose": result}, (40, 100))["pose"]
    assert line.split()[5:] == ["0", "0.5", "0.95", "1", "1", "0.25"]


def test_save_txt_lines_of_an_instance_head_are_its_mask_outlines_as_ultralytics_segment():
    """--save-txt of an instance head wrote box lines: its masks were lost, and the files
    could not be trained on again as a YOLO segment set, as Ultralytics' are."""
    from visionkit.inference.outputs import yolo_lines

    masks = torch.zeros(3, 40, 100, dtype=torch.bool)
    masks[0, 10:30, 20:60] = True  # a rectangle: its outline is 4 corner pixels
    masks[1, 2:4, 5:6] = True  # 2 pixels: an outline of 2 points is no polygon
    masks[2, 20:25, 70:80] = True  # two parts: the larger one is written
    masks[2, 5:7, 90:92] = True
    result = {
        "boxes": torch.tensor([[20.0, 10.0, 60.0, 30.0], [5, 2, 6, 4], [70, 5, 92, 25]]),
        "scores": torch.tensor([0.9, 0.8, 0.7]),
        "labels": torch.tensor([1, 0, 0]),
        "masks": masks,
    }
    rectangle, tiny, parts = yolo_lines({"inst": result}, (40, 100), save_conf=True)["inst"]
    values = [float(v) for v in rectangle.split()]
    assert values[0] == 1 and values[-1] == pytest.approx(0.9)
    corners = np.array(values[1:-1]).reshape(-1, 2) * [100, 40]
    assert sorted(map(tuple, corners.round().astype(int).tolist())) == [
        (20, 10), (20, 29), (59, 10), (59, 29)
    ]  # fmt: skip
    # its box's four corners instead: a box line among polygons would be read (by
    # Ultralytics, by visionkit's YOLO reader) as a polygon of two points, or a maskless box
    assert tiny.split() == [
        "0",
        "0.05",
        "0.05",
        "0.06",
        "0.05",
        "0.06",
        "0.1",
        "0.05",
        "0.1",
        "0.8",
    ]
    outline = np.array([float(v) for v in parts.split()[1:-1]]).reshape(-1, 2) * [100, 40]
    assert outline.min(0).tolist() == [70, 20] and outline.max(0).tolist() == [79, 24]


def test_model_predict_gives_a_classifiers_score_and_top5_as_images_json_does(tmp_path):
    """model.predict() gave a classifier's label, name and scores, but no score nor top5,
    which images.json of visionkit predict has: the library and the command disagreed, and a
    script moving from one to the other had to redo the top-k. Both now give the same
    ``score`` and ``top5`` (the json's rounded), with flip TTA too."""
    photos = make_photos(tmp_path / "photos")
    model = seg_model()
    out = tmp_path / "out"
    predict_files(model, [photos], out, progress=False)
    records = {r["file_name"]: r for r in json.loads((out / "images.json").read_text())}
    for record in records.values():
        (result,) = model.predict(record["file_name"])
        cls = result["cls"]
        assert set(record["cls"]) <= set(cls)
        assert cls["score"] == pytest.approx(record["cls"]["score"], abs=1e-5)
        assert [c["label"] for c in cls["top5"]] == [c["label"] for c in record["cls"]["top5"]]
        assert [c["name"] for c in cls["top5"]] == [c["name"] for c in record["cls"]["top5"]]
        for ours, written in zip(cls["top5"], record["cls"]["top5"], strict=True):
            assert ours["score"] == pytest.approx(written["score"], abs=1e-5)
        assert cls["top5"][0]["label"] == cls["label"] and cls["top5"][0]["name"] == cls["name"]
        assert cls["score"] == pytest.approx(float(cls["scores"][cls["label"]]))
    from visionkit.inference.tta import predict_hflip

    (flipped,) = predict_hflip(model, [read_image(photos / "001.png")])
    top = flipped["cls"]["top5"]
    assert top[0]["label"] == flipped["cls"]["label"]
    assert top[0]["score"] == pytest.approx(float(flipped["cls"]["scores"].max()))


def test_save_crop_of_a_model_without_box_heads_is_refused_as_classes_is(tmp_path):
    """--save-crop of a classifier / semantic model wrote nothing and said nothing."""
    from visionkit.errors import ConfigError

    photos = make_photos(tmp_path / "photos")
    with pytest.raises(ConfigError, match=r"save_crop \(--save-crop\): the model has no head "
                       r"that predicts boxes \(its heads: cls, seg\)"):  # fmt: skip
        predict_files(seg_model(), [photos], tmp_path / "out", save_crop=True, progress=False)
    assert not (tmp_path / "out").exists()
