"""LabelMe folders as LabelMe saves them (one json file per image, beside it or elsewhere below
the folder): read directly with ``format: labelme``, converted with ``visionkit convert --from
labelme``, split with ``visionkit split``, and trained on with an instance head."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run
from visionkit.build.data import build_dataset
from visionkit.data.convert.labelme import labelme_to_coco
from visionkit.data.convert.to_coco import convert
from visionkit.errors import AnnotationError, DataError, VisionkitError

H, W = 48, 64


def shape(label, points, kind="polygon", group=None, **extra):
    return {
        "label": label,
        "points": points,
        "group_id": group,
        "description": "",
        "shape_type": kind,
        "flags": {},
        "mask": None,
        **extra,
    }


def mask_png(mask: np.ndarray) -> str:
    """A mask as LabelMe stores it: a base64 PNG of uint8 0 / 1 (mode L)."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def labelme_image(
    folder: Path, stem: str, shapes: list, image_path: str | None = None, json_dir: Path = None
) -> Path:
    """``folder/<stem>.jpg`` and its LabelMe file (in ``json_dir``, default beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(stem)).integers(0, 60, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"{stem}.jpg")
    json_dir = json_dir or folder
    json_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path or f"{stem}.jpg",
        "imageData": None,
        "imageHeight": H,
        "imageWidth": W,
    }
    path = json_dir / f"{stem}.json"
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def photos(root: Path, n: int = 4) -> Path:
    """``n`` photos, each with a polygon cat, a rectangle dog, a cat of two polygons joined by
    ``group_id``, a circle ball and a point ``nose`` (no area)."""
    for i in range(n):
        labelme_image(
            root,
            f"IMG_{i}",
            [
                shape("cat", [[10, 10], [30, 10], [30, 30], [10, 30]]),
                shape("dog", [[60, 20], [40, 5]], "rectangle"),
                shape("cat", [[40, 30], [50, 30], [50, 40]], group=1),
                shape("cat", [[52, 30], [60, 30], [60, 40]], group=1),
                shape("ball", [[20, 40], [24, 40]], "circle"),
                shape("nose", [[5, 5]], "point"),
            ],
        )
    return root


def read(entry: dict) -> object:
    return build_dataset({"format": "labelme", **entry}, split="train", needs=["boxes", "masks"])


def test_a_labelme_folder_is_read_directly_with_masks_and_groups(tmp_path):
    ds = read({"root": str(photos(tmp_path / "photos"))})
    assert ds.label_names["instances"] == ["ball", "cat", "dog"]  # sorted labels
    sample = ds[0]
    assert sample["boxes"].tolist() == [
        [10.0, 10.0, 30.0, 30.0],
        [40.0, 5.0, 60.0, 20.0],  # a rectangle's corners in any order
        [40.0, 30.0, 60.0, 40.0],  # two polygons of group 1: one cat
        [16.0, 36.0, 24.0, 44.0],
    ]
    assert sample["labels"].tolist() == [1, 2, 1, 0]
    masks = sample["masks"]
    assert masks.shape == (4, H, W)
    assert masks[0].sum() == 400 and masks[1].sum() == 300
    assert masks[2][35, 48] and masks[2][35, 58] and not masks[2][35, 51]  # both parts, apart
    assert 40 < masks[3].sum() < 60  # a circle of radius 4 (pi r^2 = 50)
    gt = ds.coco_ground_truth()
    assert len(gt["annotations"]) == 16 and gt["annotations"][2]["area"] == masks[2].sum()


def test_shapes_without_area_are_counted_and_named_with_their_file(tmp_path, capsys):
    root = photos(tmp_path / "photos", n=2)
    labelme_image(root, "IMG_9", [shape("crack", [[1, 1], [9, 9], [9, 1]], "linestrip")])
    code, out, err = run(["check-data", "--format", "labelme", "--root", str(root)], capsys)
    assert code == 0, out + err
    assert (
        "shape left out: IMG_0.json: 1 shape left out (not a polygon, rectangle, "
        "oriented_rectangle, circle or mask): point 'nose' (shape 5)"
    ) in out
    assert "IMG_9.json: 1 shape left out (not a" in out and "linestrip 'crack' (shape 0)" in out
    assert "crack" not in read({"root": str(root)}).label_names["instances"]


def test_a_mask_shape_is_placed_at_its_box(tmp_path):
    crop = np.zeros((6, 11), np.uint8)  # rows y1..y2, columns x1..x2 inclusive (LabelMe's)
    crop[1:5, 2:9] = 1
    root = tmp_path / "photos"
    labelme_image(root, "a", [shape("blob", [[20, 10], [30, 15]], "mask", mask=mask_png(crop))])
    sample = read({"root": str(root)})[0]
    expected = np.zeros((H, W), np.uint8)
    expected[10:16, 20:31] = crop
    assert (sample["masks"][0] == expected).all()
    assert sample["boxes"].tolist() == [[22.0, 11.0, 29.0, 15.0]]


def test_a_bad_mask_shape_is_a_clear_error(tmp_path):
    root = tmp_path / "photos"
    labelme_image(root, "a", [shape("blob", [[20, 10], [30, 15]], "mask", mask="not base64!")])
    with pytest.raises(AnnotationError, match=r"a\.json shape 0 \(mask 'blob'\): 'mask' is not"):
        read({"root": str(root)})


def test_windows_image_paths_and_json_files_in_their_own_folder(tmp_path):
    """LabelMe on Windows with an output folder: ``..\\images\\a.jpg``."""
    root = tmp_path / "photos"
    for stem in ("a", "b"):
        labelme_image(
            root / "images",
            stem,
            [shape("cat", [[10, 10], [30, 10], [30, 30]])],
            image_path=f"..\\images\\{stem}.jpg",
            json_dir=root / "labels",
        )
    ds = read({"root": str(root)})
    assert sorted(img["file_name"] for img in ds.images) == ["images/a.jpg", "images/b.jpg"]


def test_an_image_path_of_another_machine_reads_the_image_beside_the_json(tmp_path, capsys):
    root = tmp_path / "photos"
    labelme_image(root, "a", [shape("cat", [[10, 10], [30, 10], [30, 30]])], "C:\\me\\x\\a.jpg")
    code, out, err = run(["check-data", "--format", "labelme", "--root", str(root)], capsys)
    assert code == 0, out + err
    assert "image by its name: a.json: imagePath 'C:\\\\me\\\\x\\\\a.jpg' names no file" in out
    assert "read a.jpg, beside the json file" in out


def test_missing_images_are_one_error_naming_each_file(tmp_path, capsys):
    root = photos(tmp_path / "photos", n=3)
    (root / "IMG_1.jpg").unlink()
    doc = json.loads((root / "IMG_2.json").read_text())
    doc["imageData"] = "aGVsbG8="  # the image kept in the json, as LabelMe can save it
    (root / "IMG_2.json").write_text(json.dumps(doc))
    (root / "IMG_2.jpg").unlink()
    code, out, err = run(["check-data", "--format", "labelme", "--root", str(root)], capsys)
    assert code == 1
    assert "IMG_1.json: image not found (looked for IMG_1.jpg" in out
    assert "IMG_2.json: image not found" in out and "imageData), which is not read" in out
    assert "Traceback" not in out + err


def test_an_image_path_outside_the_root_says_which_root_to_give(tmp_path):
    labelme_image(
        tmp_path / "images",
        "a",
        [shape("cat", [[10, 10], [30, 10], [30, 30]])],
        "../images/a.jpg",
        json_dir=tmp_path / "labels",
    )
    with pytest.raises(AnnotationError, match="give as root the folder that holds both"):
        read({"root": str(tmp_path / "labels")})


def test_bad_shapes_are_errors_naming_file_and_shape_and_tiny_polygons_are_skipped(tmp_path):
    root = tmp_path / "photos"
    labelme_image(root, "a", [shape("cat", [[10, "x"], [30, 10], [30, 30]])])
    labelme_image(root, "b", [shape("cat", [[10, 10], [30, 10]]), shape("", [[1, 1]], "point")])
    with pytest.raises(AnnotationError) as info:
        read({"root": str(root)})
    text = str(info.value)
    assert "a.json shape 0 (polygon 'cat'): points[0] is [10, 'x']: expected [x, y]" in text
    assert "b.json shape 1 (point ''): label '': expected a class name" in text
    labelme_image(root, "c", [shape("cat", [[10, 10], [30, 10], [30, 30]])])
    ds = read({"root": str(root), "on_bad_label": "skip"})  # a and b left out, counted
    assert [img["file_name"] for img in ds.images] == ["c.jpg"]
    assert [p.kind for p in ds.report.problems].count("bad annotation file") == 2


def test_a_polygon_of_two_points_is_skipped_with_a_warning(tmp_path):
    root = tmp_path / "photos"
    labelme_image(
        root,
        "a",
        [shape("cat", [[10, 10], [30, 10]]), shape("cat", [[10, 10], [30, 10], [30, 30]])],
    )
    ds = read({"root": str(root)})
    assert len(ds[0]["boxes"]) == 1
    dropped = [p for p in ds.report.problems if p.kind == "box dropped"]
    assert dropped and "a.json shape 0 (polygon 'cat')" in dropped[0].where


def test_given_classes_set_the_order_and_an_unknown_label_is_an_error(tmp_path):
    root = photos(tmp_path / "photos", n=1)
    ds = read({"root": str(root), "class_names": ["dog", "cat", "ball"]})
    assert ds[0]["labels"].tolist() == [1, 0, 1, 2]
    with pytest.raises(AnnotationError, match="label 'ball' is not one of the classes"):
        read({"root": str(root), "class_names": ["dog", "cat"]})


def test_convert_writes_the_coco_file_the_direct_reader_reads(tmp_path, capsys):
    root = photos(tmp_path / "photos")
    out = tmp_path / "photos_all.json"
    code, text, err = run(["convert", "--from", "labelme", str(root), str(out)], capsys)
    assert code == 0, text + err
    assert "warnings: 4" in text and "point 'nose'" in text
    assert f"data.train='{{format: coco, images: {root.resolve()}" in text
    coco = build_dataset(
        {"format": "coco", "images": str(root), "annotations": str(out)},
        split="train",
        needs=["boxes", "masks"],
    )
    direct = read({"root": str(root)})
    for i in range(len(direct)):
        assert (coco[i]["masks"] == direct[i]["masks"]).all()
        assert (coco[i]["boxes"] == direct[i]["boxes"]).all()
    before = out.read_bytes()
    code, text, err = run(["convert", "--from", "labelme", str(root), str(out)], capsys)
    assert code != 0 and "already exists" in text + err and out.read_bytes() == before
    # the json file written into the folder is no LabelMe file: left out, with a warning
    code, text, err = run(
        ["convert", "--from", "labelme", str(root), str(root / "all.json")], capsys
    )
    assert code == 0
    assert "not a LabelMe file" in str(read({"root": str(root)}).report.problems)


def test_split_writes_lists_the_reader_takes(tmp_path, capsys):
    root = photos(tmp_path / "photos", n=5)
    code, out, err = run(["split", str(root), "--val", "0.2"], capsys)
    assert code == 0, out + err
    assert "format: labelme, root:" in out
    val = read({"root": str(root), "split": "val", "class_names": ["ball", "cat", "dog"]})
    train = read({"root": str(root), "split": "train"})
    assert (len(train), len(val)) == (4, 1)
    (root / "splits" / "val.txt").write_text("IMG_7.json\n")
    with pytest.raises(DataError, match="1 line name no json file"):
        read({"root": str(root), "split": "val"})


def test_the_coco_reader_given_labelme_files_names_the_labelme_format(tmp_path):
    root = photos(tmp_path / "photos", n=1)
    with pytest.raises(
        VisionkitError, match="LabelMe files, IMG_0.json, ...: read them with format"
    ):
        build_dataset({"format": "coco", "images": str(root)}, split="train", needs=["boxes"])
    with pytest.raises(VisionkitError, match="a LabelMe file, one per image"):
        build_dataset(
            {"format": "coco", "images": str(root), "annotations": str(root / "IMG_0.json")},
            split="train",
            needs=["boxes"],
        )


def test_a_folder_without_labelme_files_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .json files"):
        labelme_to_coco(tmp_path / "empty")
    (tmp_path / "empty" / "a.json").write_text('{"images": []}')
    with pytest.raises(DataError, match="no LabelMe json file"):
        labelme_to_coco(tmp_path / "empty")


def test_an_instance_head_trains_on_a_labelme_folder(tmp_path):
    from visionkit.engine.runner import train

    data = {"format": "labelme", "root": str(photos(tmp_path / "photos"))}
    config = {
        "name": "labelme_inst",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"inst": {"name": "fcos_mask", "num_classes": None, "num_convs": 1}},
        },
        "data": {"train": data, "val": data, "image_size": 64, "batch_size": 2, "num_workers": 0},
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 2,
            "limit_val_batches": 1,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
    }
    _, metrics = train(config)
    assert "inst/mask_mAP" in metrics


def test_convert_refuses_a_split_list_that_is_missing(tmp_path):
    root = photos(tmp_path / "photos", n=1)
    with pytest.raises(DataError, match="split file .*val.txt does not exist"):
        convert(root, tmp_path / "out.json", "labelme", split="val")
