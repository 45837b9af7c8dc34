"""RELIABILITY.md, table "Data": each row through ``visionkit check-data`` and/or
``visionkit train``, as a user runs them."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.helpers import SIZE, detection_config, make_coco, run, write_image
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.errors import DataError

pytestmark = pytest.mark.reliability


def check(capsys, root, *pairs, fast=False):
    return run(
        ["check-data", "--format", "coco", "--images", root, *pairs] + (["--fast"] if fast else []),
        capsys,
    )


def train(capsys, tmp_path, train_root, *overrides, val_root=None, **kw):
    config = detection_config(tmp_path / "config.yaml", train_root, val_root, **kw)
    return run(["train", "--config", config, "--output-dir", tmp_path / "run", *overrides], capsys)


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_truncated_png_and_jpeg_are_listed_by_check_data(tmp_path, capsys):
    root = make_coco(tmp_path)
    truncate(root / "images" / "2.png")
    write_image(root / "images" / "3.jpg", seed=3, quality=95)
    truncate(root / "images" / "3.jpg", 0.6)
    data = json.loads((root / "annotations.json").read_text())
    data["images"][2]["file_name"] = "images/3.jpg"
    (root / "annotations.json").write_text(json.dumps(data))
    code, out, _ = check(capsys, root)
    assert code == 1
    assert "unreadable image: images/2.png (image id 2): corrupt or truncated" in out
    assert "unreadable image: images/3.jpg (image id 3): corrupt or truncated" in out
    # the fast path (headers only, what training reads first) cannot see truncated pixels
    code, out, _ = check(capsys, root, fast=True)
    assert code == 0 and "no problems found" in out


def test_truncated_image_stops_training_naming_sample_and_file_from_a_worker(tmp_path, capsys):
    root = make_coco(tmp_path / "data")
    truncate(root / "images" / "2.png")
    code, _, err = train(capsys, tmp_path, root, "data.num_workers=1", val_root=root)
    assert code == 1
    assert "error: sample 1" in err and "2.png" in err and "corrupt or truncated" in err
    # the validation sanity check reads it first: its entry is named (it said data.train)
    assert "set on_bad_image: skip in its dataset's entry (data.val.on_bad_image=skip)" in err
    assert "run visionkit check-data --config CONFIG (a run's config.yaml too), which" in err


def test_a_truncated_validation_image_names_the_validation_entry(tmp_path):
    """eval's message said data.train.on_bad_image=skip for a data.val (or data.test) image."""
    from visionkit.build.data import build_dataset
    from visionkit.errors import ImageDecodeError

    root = make_coco(tmp_path / "data")
    truncate(root / "images" / "2.png")
    for split in ("val", "test"):
        dataset = build_dataset({"format": "coco", "images": str(root)}, split=split)
        with pytest.raises(ImageDecodeError) as info:
            dataset[1]
        assert f"its dataset's entry (data.{split}.on_bad_image=skip)" in str(info.value)


def test_on_bad_image_skip_counts_and_reports_skipped_images_at_epoch_end(tmp_path, capsys):
    root = make_coco(tmp_path / "data")
    truncate(root / "images" / "2.png")
    code, out, err = train(
        capsys,
        tmp_path,
        root,
        "data.train.on_bad_image=skip",
        "data.val.on_bad_image=skip",
        "data.batch_size=4",
        val_root=root,
    )
    assert code == 0, err[-2000:]
    assert "1 unreadable images were skipped this epoch" in err and "2.png" in err


def test_on_bad_image_skip_leaves_out_missing_and_unreadable_files_at_construction(tmp_path):
    root = make_coco(tmp_path)
    (root / "images" / "1.png").unlink()
    (root / "images" / "3.png").write_bytes(b"")
    ds = CocoDataset(root, on_bad_image="skip")
    assert [img["id"] for img in ds.images] == [2, 4]
    assert "left out 2 missing or unreadable images (on_bad_image: skip)" in ds.report.notes


def test_missing_files_are_all_listed_before_the_model_is_built(tmp_path, capsys):
    root = make_coco(tmp_path / "data")
    for i in (1, 3, 4):
        (root / "images" / f"{i}.png").unlink()
    code, out, _ = check(capsys, root)
    assert code == 1
    for i in (1, 3, 4):
        assert f"missing file: images/{i}.png (image id {i}): file not found" in out
    code, _, err = train(capsys, tmp_path, root)
    assert code == 1
    assert "3 problems (missing file: 3)" in err
    assert all(f"images/{i}.png (image id {i})" in err for i in (1, 3, 4))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_training_reports_the_problems_of_train_and_val_at_once_naming_each_split(tmp_path, capsys):
    """A run that stops on bad data says which split each problem is in and reads both
    splits first, so that one run shows what to fix (not train's, then after a fix val's)."""
    train_root, val_root = make_coco(tmp_path / "train"), make_coco(tmp_path / "val")
    (train_root / "images" / "2.png").unlink()
    truncate(val_root / "images" / "3.png", keep=0.0)
    code, _, err = train(capsys, tmp_path, train_root, val_root=val_root)
    assert code == 1 and "Traceback" not in err
    message = err[err.index("error: ") :]
    assert message.startswith("error: data.train: ")
    assert "images/2.png (image id 2): file not found" in message
    assert "\ndata.val: " in message and "images/3.png (image id 3)" in message
    assert "hint: visionkit check-data with the same --config and overrides" in message
    assert "data.train.on_bad_image=skip" in message  # an unreadable image: the way past it
    good_val = make_coco(tmp_path / "good_val")
    code, _, err = train(capsys, tmp_path, tmp_path / "no_such_folder", val_root=good_val)
    assert code == 1 and "error: data.train: dataset root " in err and "data.val" not in err
    assert "check-data" in err and "on_bad_image" not in err  # no unreadable image here


def test_grey_palette_rgba_cmyk_and_16_bit_images_decode_to_rgb(tmp_path, capsys):
    root = make_coco(tmp_path / "data", num_images=5)
    images = root / "images"
    rgb = np.asarray(Image.open(images / "1.png"))
    Image.fromarray(rgb).convert("L").save(images / "1.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(images / "2.png")
    Image.fromarray(rgb).convert("RGBA").save(images / "3.png")
    Image.fromarray(rgb).convert("CMYK").save(images / "4.jpg")
    Image.fromarray(np.full((SIZE, SIZE), 32768, np.uint16)).save(images / "5.png")
    data = json.loads((root / "annotations.json").read_text())
    data["images"][3]["file_name"] = "images/4.jpg"
    (root / "annotations.json").write_text(json.dumps(data))
    code, out, _ = check(capsys, root)
    assert code == 0, out
    ds = CocoDataset(root)
    for i in range(5):
        image = ds[i]["image"]
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert (ds[4]["image"] == 128).all()  # 16-bit 32768 rescaled (round(v * 255 / 65535))


def test_exif_rotated_jpeg_keeps_its_box_on_the_object(tmp_path, capsys):
    root = make_coco(tmp_path)
    # stored 48 wide x 32 high, with orientation 6 (rotate 90 degrees clockwise): upright it is
    # 32 wide x 48 high. The bright block is stored at x 4..12, y 20..28 (bottom-left); upright
    # it is at x 4..12, y 4..12 (top-left).
    stored = np.zeros((32, 48, 3), np.uint8)
    stored[20:28, 4:12] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(root / "images" / "r.jpg", exif=exif, quality=100)
    data = json.loads((root / "annotations.json").read_text())
    data["images"].append({"id": 9, "file_name": "images/r.jpg", "width": 32, "height": 48})
    data["annotations"].append(
        {"id": 9, "image_id": 9, "category_id": 1, "bbox": [4, 4, 8, 8], "area": 64, "iscrowd": 0}
    )
    (root / "annotations.json").write_text(json.dumps(data))
    code, out, _ = check(capsys, root)
    assert code == 0, out
    sample = CocoDataset(root)[4]
    assert sample["image"].shape == (48, 32, 3)
    x1, y1, x2, y2 = sample["boxes"][0].astype(int)
    assert sample["image"][y1:y2, x1:x2].mean() > 200  # the box is on the bright block
    # annotations made on the stored (un-rotated) pixels are a size mismatch, with a hint;
    # its boxes are not also checked against the size the file is wrong about
    data["images"][-1].update(width=48, height=32)
    data["annotations"].append(
        {"id": 10, "image_id": 9, "category_id": 1, "bbox": [4, 36, 8, 8], "area": 64}
    )
    (root / "annotations.json").write_text(json.dumps(data))
    code, out, _ = check(capsys, root)
    assert code == 1
    assert "size mismatch: images/r.jpg (image id 9)" in out and "EXIF orientation 6" in out
    assert "box dropped" not in out and "box clipped" not in out


def test_declared_size_differs_from_the_image(tmp_path, capsys):
    root = make_coco(tmp_path / "data")
    write_image(root / "images" / "3.png", size=(SIZE, SIZE + 8))
    code, out, _ = check(capsys, root)
    assert code == 1
    expected = "images/3.png (image id 3): the annotation file says 32x32 (height x width)"
    assert f"size mismatch: {expected}, the image is 32x40" in out
    assert "EXIF" not in out  # no orientation to blame
    code, _, err = train(capsys, tmp_path, root)
    assert code == 1 and expected in err
    write_image(root / "images" / "3.png", size=(SIZE + 8, SIZE))
    data = json.loads((root / "annotations.json").read_text())
    data["images"][2].update(width=SIZE + 8, height=SIZE)  # the json's own swap, no EXIF tag
    (root / "annotations.json").write_text(json.dumps(data))
    code, out, _ = check(capsys, root)
    assert "(width and height swapped in the annotation file)" in out and "EXIF" not in out


def huge_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares ``width`` x ``height`` (and almost no pixel data)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
    )
    return path


def test_decompression_bomb_is_rejected_from_its_header(tmp_path, capsys):
    root = make_coco(tmp_path)
    huge_png(root / "images" / "2.png", 60000, 60000)
    code, out, _ = check(capsys, root)
    assert code == 1
    assert (
        "unreadable image: images/2.png (image id 2): rejected as a possible decompression bomb"
        in out
    )


def test_empty_dataset_and_empty_after_filtering_give_the_breakdown(tmp_path, capsys):
    empty = make_coco(tmp_path / "empty", edit=lambda d: d.update(images=[], annotations=[]))
    code, out, _ = check(capsys, empty)
    assert code == 1 and "empty dataset" in out and "the file lists no images" in out

    def no_boxes_for_3_and_4(data):
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] < 3]

    root = make_coco(tmp_path / "data", edit=no_boxes_for_3_and_4)
    for i in (1, 2):
        (root / "images" / f"{i}.png").write_bytes(b"not an image")
    code, _, err = train(
        capsys,
        tmp_path,
        root,
        "data.train.on_bad_image=skip",
        "data.train.keep_negatives=false",
    )
    assert code == 1
    assert (
        "0 of 4 images kept: 2 missing or unreadable (on_bad_image: skip), "
        "2 without boxes (keep_negatives: false)" in err
    )


def test_images_without_boxes_are_kept_by_default_and_left_out_with_keep_negatives_false(
    tmp_path, capsys
):
    root = make_coco(tmp_path / "data", 5, edit=lambda d: d["annotations"].pop(0))
    code, out, _ = check(capsys, root)
    assert code == 0 and "images without boxes: 1: images/1.png (image id 1)" in out
    assert len(CocoDataset(root)) == 5
    config = detection_config(tmp_path / "c.yaml", root, root)
    argv = ["check-data", "--config", config, "data.train.keep_negatives=false",
            "data.val.keep_negatives=false"]  # fmt: skip
    code, out, err = run(argv, capsys)
    assert code == 0, out
    assert "left out 1 images without boxes (keep_negatives: false)" in err  # training set
    assert "data.val.keep_negatives: ignored; validation sets keep every image" in err
    assert "images: 5 (4 kept)" in out and "images: 5\n" in out  # train, then val


def test_duplicate_image_ids_annotation_ids_and_file_names_are_listed(tmp_path, capsys):
    def duplicates(data):
        data["images"][1]["id"] = 1
        data["images"][3]["file_name"] = "images/3.png"
        data["annotations"][2]["id"] = 101
        data["images"][4]["file_name"] = "images\\2.png"  # a Windows tool's spelling

    code, out, _ = check(capsys, make_coco(tmp_path, num_images=5, edit=duplicates))
    assert code == 1
    assert "duplicate id: image id 1: appears 2 times" in out
    assert "duplicate id: image file_name 'images/3.png': appears 2 times\n" in out
    assert (
        "duplicate id: image file_name 'images/2.png': appears 2 times "
        "(as 'images/2.png', 'images\\\\2.png')" in out
    )
    assert "duplicate id: annotation id 101: appears 2 times" in out


@pytest.mark.parametrize("key", ["id", "image_id", "category_id"])
def test_an_annotation_id_that_is_a_list_is_named_not_a_type_error(tmp_path, capsys, key):
    def listed(data):
        data["annotations"][0][key] = [data["annotations"][0][key]]  # unhashable: a TypeError

    code, out, _ = check(capsys, make_coco(tmp_path / "data", edit=listed))
    assert code == 1
    assert f"bad id: annotations[0]: {key} [" in out and "expected a number or text" in out


def test_annotation_id_0_is_warned_of_as_pycocotools_never_matches_it(tmp_path, capsys):
    def from_zero(data):
        for i, ann in enumerate(data["annotations"]):
            ann["id"] = i  # as generic converter scripts number them

    code, out, _ = check(capsys, make_coco(tmp_path / "data", edit=from_zero))
    assert code == 0  # a warning: the run trains, and evaluation matches pycocotools by hand
    assert (
        "annotation id 0: annotation id 0: COCO evaluation (pycocotools) reads id 0 as 'no "
        "match': a detection that finds this object counts as a false positive; number the "
        "annotations from 1" in out
    )
    code, out, _ = check(capsys, make_coco(tmp_path / "ones"))
    assert "annotation id 0" not in out

    def float_zero(data):
        data["annotations"][0]["id"] = 0.0  # pycocotools' truth test: 0.0 is "no match" too

    code, out, _ = check(capsys, make_coco(tmp_path / "float", edit=float_zero))
    assert code == 0 and "annotation id 0: annotation id 0: COCO evaluation" in out


def test_annotation_of_a_missing_image_warns_and_is_an_error_when_strict(tmp_path, capsys, caplog):
    def orphan(data):
        data["annotations"][0]["image_id"] = 77

    root = make_coco(tmp_path / "data", edit=orphan)
    code, out, err = check(capsys, root)
    assert code == 0  # a warning: training leaves the annotation out
    assert "orphan annotation: annotation id 101: image_id 77 is not an image of the file" in out
    assert "warnings (training goes on): 1" in out
    CocoDataset(root)  # as training builds it
    assert ": orphan annotation: annotation id 101" in caplog.text  # the warning training logs
    code, _, err = train(capsys, tmp_path, root, "data.train.strict=true")
    assert code == 1 and "orphan annotation: annotation id 101" in err


def test_unknown_category_id_names_the_annotation_and_the_id(tmp_path, capsys):
    def unknown(data):
        data["annotations"][1]["category_id"] = 77

    code, out, _ = check(capsys, make_coco(tmp_path, edit=unknown))
    assert code == 1
    assert "unknown category: annotation id 102 (image id 2): category_id 77 is not in" in out


def test_a_head_with_fewer_classes_than_the_data_is_a_config_error(tmp_path, capsys):
    root = make_coco(tmp_path / "data")
    code, _, err = train(capsys, tmp_path, root, "model.heads.det.num_classes=1")
    assert code == 2
    assert "model.heads.det.num_classes: 1, but the data has 2 classes (square, disc)" in err
    assert not (tmp_path / "run").exists()  # no empty run folder left behind


def test_a_run_that_stops_on_bad_data_leaves_no_run_folder(tmp_path, capsys):
    root = make_coco(tmp_path / "data")
    (root / "images" / "2.png").unlink()
    code, _, err = train(capsys, tmp_path, root)
    assert code == 1 and "2.png" in err
    assert not (tmp_path / "run").exists()
    code, _, err = train(capsys, tmp_path, make_coco(tmp_path / "good"))
    assert code == 0, err[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()  # the name is free


def test_non_contiguous_category_ids_are_stored_and_predictions_mapped_back(tmp_path, capsys):
    cats = [{"id": 42, "name": "c"}, {"id": 3, "name": "a"}, {"id": 7, "name": "b"}]

    def spread(data):
        for ann, cid in zip(data["annotations"], [3, 7, 42, 7], strict=True):
            ann["category_id"] = cid

    root = make_coco(tmp_path / "data", edit=spread, categories=cats)
    code, _, err = train(capsys, tmp_path, root, val_root=root)
    assert code == 0, err[-2000:]
    ckpt_path = tmp_path / "run" / "checkpoints" / "best.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu")
    assert ckpt["visionkit"]["category_ids"] == [3, 7, 42]
    assert ckpt["visionkit"]["label_names"]["instances"] == ["a", "b", "c"]
    # --conf 0: a model after one step scores below 0.25; keep every candidate, so that
    # predictions of each class are there to be mapped back
    code, _, err = run(
        ["predict", "--checkpoint", ckpt_path, "--input", root / "images", "--output-dir",
         tmp_path / "pred", "--no-draw", "--conf", "0"],
        capsys,
    )  # fmt: skip
    assert code == 0, err[-2000:]
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert {p["category_id"] for p in predictions} == {3, 7, 42}


def test_unusable_polygons_keep_their_boxes_and_leave_the_image_without_masks(tmp_path, capsys):
    def bad_polygons(data):
        data["annotations"][0]["segmentation"] = [[1, 2, 3, 4]]  # 2 points
        data["annotations"][1]["segmentation"] = [[1, 2, 3, 4, 5, 6, 7]]  # odd length
        data["annotations"][2]["segmentation"] = []  # empty

    root = make_coco(tmp_path, edit=bad_polygons)
    code, out, _ = check(capsys, root, "masks=true")
    assert code == 0  # warnings: training uses the boxes, not masks, of those images
    for image_id, why in ((1, "only polygons of < 3 points"), (2, "only polygons"), (3, "no")):
        assert (
            f"boxes without masks: images/{image_id}.png (image id {image_id}): annotation id "
            f"{100 + image_id}: {why}"
        ) in out
    assert "boxes kept; no masks or label map for this image" in out
    ds = CocoDataset(root, masks=True)
    samples = [ds[i] for i in range(4)]
    assert [(len(s["boxes"]), len(s["labels"])) for s in samples] == [(1, 1)] * 4
    assert ["masks" in s for s in samples] == [False, False, False, True]
    assert len(samples[3]["masks"]) == 1


def test_degenerate_and_out_of_image_boxes_are_clipped_or_dropped_with_a_count(tmp_path, capsys):
    def boxes(data):
        data["annotations"][0]["bbox"] = [4, 4, 0, 6]  # zero width
        data["annotations"][1]["bbox"] = [4, 4, -3, 6]  # negative width
        for ann in data["annotations"][:2]:  # nothing to take a box from
            del ann["segmentation"]
        data["annotations"][2]["bbox"] = [20, 20, 30, 30]  # reaches outside: clipped
        data["annotations"][3]["bbox"] = [40, 40, 5, 5]  # entirely outside: dropped

    root = make_coco(tmp_path / "data", edit=boxes)
    before = digest(root)
    code, out, _ = check(capsys, root)
    assert code == 0  # warnings: training clips or drops the boxes
    assert out.count("box dropped: annotation id") == 3
    assert "box clipped: annotation id 103 (image id 3, images/3.png)" in out
    ds = CocoDataset(root)
    kept = np.concatenate([ds[i]["boxes"] for i in range(4)])
    np.testing.assert_allclose(kept, [[20, 20, SIZE, SIZE]])
    code, _, err = train(capsys, tmp_path, root, val_root=root)
    assert code == 0, err[-2000:]
    assert "3 x box dropped" in err and ": box clipped" in err
    assert digest(root) == before  # check-data and training never modify the dataset


def test_paths_escaping_the_root_are_refused(tmp_path, capsys):
    outside = write_image(tmp_path / "outside.png")

    def escape(data):
        data["images"][0]["file_name"] = "../outside.png"
        data["images"][1]["file_name"] = str(outside)
        data["images"][2]["file_name"] = "..\\outside.png"  # a Windows path escapes too

    code, out, _ = check(capsys, make_coco(tmp_path / "data", edit=escape))
    assert code == 1
    assert "path outside root: image id 1: file_name '../outside.png'" in out
    assert f"path outside root: image id 2: file_name '{outside}'" in out
    assert "path outside root: image id 3: file_name '..\\\\outside.png'" in out


def test_windows_paths_of_annotation_tools_are_read(tmp_path, capsys):
    """LabelMe and CVAT on Windows write ``images\\1.png``: "file not found" before."""

    def windows(data):
        for image in data["images"]:
            image["file_name"] = image["file_name"].replace("/", "\\")

    root = make_coco(tmp_path / "data", edit=windows)
    code, out, _ = check(capsys, root)
    assert code == 0, out
    assert CocoDataset(root)[0]["image"].shape == (SIZE, SIZE, 3)


def test_non_ascii_paths_work(tmp_path, capsys):
    root = make_coco(tmp_path / "données ü")
    (root / "images" / "1.png").rename(root / "images" / "ímage 1.png")
    data = json.loads((root / "annotations.json").read_text())
    data["images"][0]["file_name"] = "images/ímage 1.png"
    (root / "annotations.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    code, out, _ = check(capsys, root)
    assert code == 0, out
    assert CocoDataset(root)[0]["image"].shape == (SIZE, SIZE, 3)


def test_check_data_of_a_config_checks_every_split_and_mix_entry(tmp_path, capsys):
    good = make_coco(tmp_path / "good")
    bad = make_coco(tmp_path / "bad")
    (bad / "images" / "4.png").unlink()
    config = detection_config(tmp_path / "c.yaml", good, bad)
    code, out, _ = run(["check-data", "--config", config], capsys)
    assert code == 1
    assert "data.train: coco dataset" in out and "no problems found" in out
    assert "data.val: coco dataset" in out and "missing file: images/4.png (image id 4)" in out
    code, out, _ = run(["check-data", "--config", config, "--split", "train"], capsys)
    assert code == 0 and "check-data: no problems found in 1 dataset" in out


def test_check_data_reports_every_splits_unset_location_at_once(tmp_path, capsys):
    """As training does: the user fixes both, not one and then the next."""
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {backbone: {name: simple_cnn}, heads: {det: {name: fcos, num_classes: 1}}}\n"
        "data: {train: {format: voc, root: null}, val: {format: voc, root: null}}\n"
    )
    code, out, err = run(["check-data", "--config", config], capsys)
    assert code == 2 and not out.strip()
    assert "data.train.root: not set; give the dataset folder, e.g. data.train.root=PATH" in err
    assert "data.val.root: not set; give the dataset folder, e.g. data.val.root=PATH" in err


def test_check_data_summarises_the_splits_it_checked_before_the_unset_one(tmp_path, capsys):
    bad = make_coco(tmp_path / "bad")
    (bad / "images" / "4.png").unlink()
    config = tmp_path / "c.yaml"
    config.write_text(
        "model: {backbone: {name: simple_cnn}, heads: {det: {name: fcos, num_classes: 2}}}\n"
        f"data: {{train: {{format: coco, images: '{bad}'}}, val: {{format: voc, root: null}}}}\n"
    )
    code, out, err = run(["check-data", "--config", config], capsys)
    assert code == 2
    assert "missing file: images/4.png (image id 4)" in out
    assert out.strip().endswith("check-data: 1 problem in 1 dataset checked")
    assert "data.val.root: not set; give the dataset folder, e.g. data.val.root=PATH" in err


def test_check_data_reports_counts_sizes_and_other_formats(tmp_path, capsys):
    code, out, _ = check(capsys, make_coco(tmp_path / "coco"))
    assert code == 0
    assert "images: 4" in out and "boxes: 4 (per image: min 1, median 1, max 1)" in out
    assert "image sizes (HxW): 32x32: 4" in out
    assert "instances per class (instances): square 2, disc 2" in out
    for name in ("cat", "dog"):
        write_image(tmp_path / "folder" / name / "a.png")
    (tmp_path / "folder" / "dog" / "b.png").write_bytes(b"")
    code, out, _ = run(["check-data", "--format", "folder", "--root", tmp_path / "folder"], capsys)
    assert code == 1
    assert "unreadable image: dog/b.png: empty file (0 bytes)" in out
    code, _, err = run(["check-data", "--format", "folder", "--images", tmp_path], capsys)
    assert code == 2 and "--images" in err


def test_construction_reads_image_headers_only(tmp_path, monkeypatch):
    from PIL import ImageFile

    root = make_coco(tmp_path, num_images=70)  # enough for the threaded path

    def load(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    ds = CocoDataset(root)
    assert ds.report.image_sizes == {(SIZE, SIZE): 70} and not ds.report.problems


def test_predict_on_a_corrupt_image_names_the_file(trained, tmp_path, capsys):
    bad = truncate(write_image(tmp_path / "in" / "bad.png", seed=5))
    argv = [
        "predict",
        "--checkpoint",
        trained["ckpt"],
        "--input",
        bad,
        "--output-dir",
        tmp_path / "o",
    ]
    code, _, err = run(argv, capsys)
    assert code == 1 and f"cannot read image {bad}: corrupt or truncated" in err


def test_a_validation_set_under_skip_is_decoded_at_construction(tmp_path, capsys):
    root = make_coco(tmp_path / "data")
    truncate(root / "images" / "2.png")  # only a full decode finds it
    config = detection_config(tmp_path / "c.yaml", root, root)
    argv = ["check-data", "--config", config, "--fast", "data.train.on_bad_image=skip",
            "data.val.on_bad_image=skip"]  # fmt: skip
    code, out, _ = run(argv, capsys)
    train_report, val_report = out.split("data.val:")
    assert "images: 4\n" in train_report and "no problems found" in train_report
    # each validation image is read exactly once: the truncated one is left out up front
    # instead of being replaced by (and so evaluated as) another image later
    assert "images: 4 (3 kept)" in val_report
    assert "unreadable image: images/2.png (image id 2): corrupt or truncated" in val_report
    assert code == 0  # left out under on_bad_image: skip, a warning


def test_image_entries_without_required_fields_are_listed(tmp_path, capsys):
    def broken(data):
        data["images"][0]["file_name"] = "images/gone.png"
        del data["images"][0]["width"]
        data["images"][1]["height"] = "32"
        data["images"][2]["width"] = 32.0  # an integral float is accepted
        del data["images"][3]["width"], data["images"][3]["height"]  # LabelMe's exports
        del data["images"][4]["height"]
        data["images"][4]["width"] = 99  # the one given is still checked

    code, out, _ = check(capsys, make_coco(tmp_path, num_images=5, edit=broken))
    assert code == 1
    assert "size from the image: images[3] (id 4): no width / height in the file: 32x32" in out
    assert (  # and no image to read it from, which is said
        "bad entry: images[0] (id 1): missing width; its image cannot be read for them: "
        "cannot read image "
        in out
        and "gone.png: file not found" in out
    )
    assert "size from the image: images[4] (id 5): no height in the file" in out
    assert "size mismatch: images/5.png (image id 5): the annotation file says 32x99" in out
    assert "bad entry: images[1] (id 2): height='32' (expected a positive integer)" in out
    assert "images[2]" not in out
    assert "orphan annotation" not in out  # their annotations point at listed images


def test_a_folder_symlinked_into_the_dataset_is_followed(tmp_path, capsys):
    elsewhere = make_coco(tmp_path / "disk")
    root = tmp_path / "data"
    root.mkdir()
    (root / "images").symlink_to(elsewhere / "images")
    (root / "annotations.json").write_text((elsewhere / "annotations.json").read_text())
    code, out, _ = check(capsys, root)
    assert code == 0, out


def test_check_data_never_generates_a_synthetic_dataset(tmp_path, capsys):
    config = detection_config(tmp_path / "c.yaml", tmp_path / "not_yet")
    text = config.read_text().replace(
        "format: coco", "format: coco\n    synthetic: {num_images: 4, size: 32}", 1
    )
    config.write_text(text)
    code, out, _ = run(["check-data", "--config", config], capsys)
    assert code == 1 and "generated by the first 'visionkit train'" in out
    assert not (tmp_path / "not_yet").exists()


def test_a_square_photo_with_an_orientation_tag_is_a_counted_warning(tmp_path, capsys):
    """Issue 18, item 10: turning a square image upright keeps its size, so the size check
    cannot catch annotations drawn on the stored pixels; check-data says so, with a count."""
    root = make_coco(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 6
    for i in (1, 2):
        pixels = np.asarray(Image.open(root / "images" / f"{i}.png").convert("RGB"))
        Image.fromarray(pixels).save(root / "images" / f"{i}.png", exif=exif)
    code, out, _ = check(capsys, root)  # warnings: reported, not a failure unless --strict
    assert code == 0 and "2 problems (0 errors, 2 warnings) in 1 dataset" in out
    assert "no errors: training repairs the warnings or leaves their images out" in out
    code, out, _ = check(capsys, root, "--strict")
    assert code == 1 and "(exit status 1: --strict)" in out
    assert "square image with an EXIF orientation: images/1.png" in out and "orientation 6" in out
    kinds = [p.kind for p in CocoDataset(root).report.warnings]
    assert kinds.count("square image with an EXIF orientation") == 2


def test_a_mask_folder_photo_with_an_orientation_tag_is_an_error(tmp_path):
    """Its label PNG has no orientation: a half turn keeps the photo's size, so nothing
    tells whether the label was drawn on the upright photo."""
    (tmp_path / "masks").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 degrees: the size stays, the pixels move
    write_image(tmp_path / "images" / "a.jpg", exif=exif)
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8), "L").save(tmp_path / "masks" / "a.png")
    (tmp_path / "classes.txt").write_text("background\nthing\n")
    with pytest.raises(DataError, match="image with an EXIF orientation"):
        MaskFolderDataset(tmp_path)


def test_a_mask_folder_photo_turned_a_quarter_reads_with_a_label_of_its_upright_size(tmp_path):
    """A phone photo stored 40 x 60 with orientation 6 is 60 x 40 upright: a label of the
    upright size was refused as "would no longer line up"; one of the stored size is a size
    mismatch that says why."""
    (tmp_path / "masks").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise when read
    write_image(tmp_path / "images" / "a.jpg", size=(40, 60), exif=exif)
    upright = np.zeros((60, 40), np.uint8)
    upright[:30] = 1
    Image.fromarray(upright, "L").save(tmp_path / "masks" / "a.png")
    (tmp_path / "classes.txt").write_text("background\nthing\n")
    sample = MaskFolderDataset(tmp_path)[0]
    assert sample["image"].shape == (60, 40, 3) and (sample["semantic"] == upright).all()
    Image.fromarray(upright.T.copy(), "L").save(tmp_path / "masks" / "a.png")  # stored size
    with pytest.raises(DataError) as info:
        MaskFolderDataset(tmp_path)
    assert "label PNG is 40x60 but its image a.jpg is 60x40 (height x width; swapped: if " in str(
        info.value
    )


@pytest.mark.reliability
def test_check_data_reports_validation_classes_that_training_would_refuse(tmp_path, capsys):
    """A class name that differs between the splits (Disc / disc) stops training at its
    start; check-data says so too, instead of "no problems found"."""
    train_root = make_coco(tmp_path / "train")
    renamed = [{"id": 1, "name": "square"}, {"id": 2, "name": "Disc"}]
    val_root = make_coco(tmp_path / "val", categories=renamed)
    config = detection_config(tmp_path / "c.yaml", train_root, val_root)
    code, out, _ = run(["check-data", "--config", config, "--fast"], capsys)
    assert code == 1, out
    assert out.startswith("data.train: ")
    assert "data.val: " in out and "do not match" in out and "'Disc'" in out
    assert "check-data: 1 problem in 2 datasets" in out
    code, _, err = run(["train", "--config", config], capsys)  # what check-data foresaw
    assert code == 1 and "do not match" in err
    same = detection_config(tmp_path / "same.yaml", train_root, make_coco(tmp_path / "v2"))
    code, out, _ = run(["check-data", "--config", same, "--fast"], capsys)
    assert code == 0 and "check-data: no problems found in 2 datasets" in out
    mix = yaml.safe_load(config.read_text())  # a training mix: its merged classes
    mix["data"]["train"] = {
        "one": {"format": "coco", "images": str(train_root)},
        "two": {"format": "coco", "images": str(make_coco(tmp_path / "t2")), "weight": 2.0},
    }
    config.write_text(yaml.safe_dump(mix))
    code, out, _ = run(["check-data", "--config", config, "--fast"], capsys)
    assert code == 1 and "check-data: 1 problem in 3 datasets" in out
    assert "data.val: the classes of data.val do not match those of data.train (one: " in out


def test_a_misspelt_path_on_a_shapes_recipe_is_refused_not_filled_with_shapes(tmp_path, capsys):
    """The shapes recipes generate their data where the entry points: a typo next to the user's
    own data (kp/trian beside kp/train) wrote 2,400 shapes there and trained on them."""
    own = make_coco(tmp_path / "kp" / "train")
    config = detection_config(tmp_path / "c.yaml", own, own)
    data = yaml.safe_load(config.read_text())
    data["data"]["train"] = {
        "format": "coco",
        "images": str(tmp_path / "kp" / "trian"),
        "synthetic": {"num_images": 8, "size": 32},
    }
    config.write_text(yaml.safe_dump(data))
    code, _, err = run(["train", "--config", config], capsys)
    assert code == 1 and not (tmp_path / "kp" / "trian").exists()
    assert f"does not exist; did you mean {tmp_path / 'kp' / 'train'}?" in err
    assert "the entry's synthetic: would generate the shapes dataset there" in err


def test_the_skip_hint_names_the_entry_that_holds_the_unreadable_image(tmp_path, capsys):
    """A photo that is no image in the validation folder: the hint's override is data.val's
    (it said data.train.on_bad_image=skip, which changes nothing there)."""
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            write_image(tmp_path / split / name / "a.jpg", seed=1)
    (tmp_path / "val" / "dog" / "saved_page.jpg").write_text("<html>404</html>")
    recipe = Path(__file__).parents[2] / "configs" / "custom" / "classify_r18.yaml"
    overrides = [f"data.{s}.root={tmp_path / s}" for s in ("train", "val")]
    code, _, err = run(["train", "--config", recipe, *overrides], capsys)
    assert code == 1 and "dog/saved_page.jpg: not an image" in err
    hint = err.strip().splitlines()[-1]
    assert "on_bad_image: skip (e.g. data.val.on_bad_image=skip) trains without" in hint
    assert "data.train.on_bad_image" not in hint


def test_the_skip_hint_names_the_part_of_a_mix_that_holds_the_unreadable_image(tmp_path, capsys):
    """An unreadable photo in part ``b`` of a mixed ``data.train``: the hint said
    ``data.train.on_bad_image=skip``, an override the config then refuses."""
    for split in ("a", "b", "val"):
        for name in ("cat", "dog"):
            write_image(tmp_path / split / name / "a.jpg", seed=1)
    (tmp_path / "b" / "dog" / "saved_page.jpg").write_text("<html>404</html>")
    recipe = Path(__file__).parents[2] / "configs" / "custom" / "classify_r18.yaml"
    config = yaml.safe_load(recipe.read_text())
    config["data"]["train"] = {
        part: {"format": "folder", "root": str(tmp_path / part)} for part in ("a", "b")
    }
    config["data"]["val"] = {"format": "folder", "root": str(tmp_path / "val")}
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(config))
    code, _, err = run(["train", "--config", tmp_path / "mix.yaml"], capsys)
    assert code == 1 and "data.train.b: " in err and "dog/saved_page.jpg: not an image" in err
    hint = err.strip().splitlines()[-1]
    assert "on_bad_image: skip (e.g. data.train.b.on_bad_image=skip) trains without" in hint
