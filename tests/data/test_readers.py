"""COCO and ImageFolder readers, the pipeline and the collate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import make_coco
from visionkit.data.batch import collate
from visionkit.data.datasets import MixedDataset, TransformedDataset
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.readers.folder import ImageFolderDataset
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.data.transforms import apply_pipeline, build_pipeline
from visionkit.errors import AnnotationError, ConfigError, DataError


def write_coco(root, images, annotations, categories, **extra):
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    for img in images:
        Image.new("RGB", (img["width"], img["height"]), (10, 20, 30)).save(root / img["file_name"])
    data = {"images": images, "annotations": annotations, "categories": categories, **extra}
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def test_shapes_coco_reader_yields_sample_contract(shapes_root):
    ds = CocoDataset(shapes_root / "train", class_field="background")
    assert len(ds) == 48
    assert ds.label_names["class"] == ["plain", "gradient", "noise", "stripes"]
    assert ds.label_names["instances"] == ["circle", "square", "triangle"]
    sample = ds[0]
    assert sample["image"].shape == (64, 64, 3) and sample["image"].dtype == np.uint8
    assert sample["image_id"] == ds.images[0]["id"]
    assert sample["boxes"].dtype == np.float32 and sample["boxes"].shape[1] == 4
    assert (sample["boxes"][:, 2:] > sample["boxes"][:, :2]).all()
    assert 0 <= sample["class"] < 4


def test_non_contiguous_category_ids_map_to_contiguous_labels(tmp_path):
    images = [{"id": 5, "file_name": "images/a.png", "width": 40, "height": 30}]
    anns = [
        {
            "id": 1,
            "image_id": 5,
            "category_id": 42,
            "bbox": [1, 2, 10, 5],
            "area": 50,
            "iscrowd": 0,
        },
        {"id": 2, "image_id": 5, "category_id": 3, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 0},
        {"id": 3, "image_id": 5, "category_id": 7, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 1},
        {
            "id": 4,
            "image_id": 5,
            "category_id": 7,
            "bbox": [35, 25, 20, 20],
            "area": 400,
            "iscrowd": 0,
        },
    ]
    cats = [{"id": 42, "name": "c"}, {"id": 3, "name": "a"}, {"id": 7, "name": "b"}]
    ds = CocoDataset(write_coco(tmp_path, images, anns, cats))
    assert ds.category_ids == [3, 7, 42]
    assert ds.label_names["instances"] == ["a", "b", "c"]
    sample = ds[0]
    assert sample["image_id"] == 5
    # the crowd box is excluded from training targets; the last box is clipped to the image
    np.testing.assert_allclose(sample["boxes"], [[1, 2, 11, 7], [0, 0, 4, 4], [35, 25, 40, 30]])
    assert "1 crowd region (iscrowd: 1): not boxes to learn" in " ".join(ds.report.notes)
    assert sample["labels"].tolist() == [2, 0, 1]


def test_unknown_category_and_duplicate_ids_are_reported(tmp_path):
    images = [
        {"id": 1, "file_name": "images/a.png", "width": 8, "height": 8},
        {"id": 1, "file_name": "images/b.png", "width": 8, "height": 8},
    ]
    with pytest.raises(AnnotationError, match="duplicate id: image id 1: appears 2 times"):
        CocoDataset(write_coco(tmp_path / "dup", images, [], [{"id": 1, "name": "x"}]))
    anns = [{"id": 9, "image_id": 1, "category_id": 77, "bbox": [0, 0, 2, 2]}]
    with pytest.raises(
        AnnotationError,
        match=r"annotation id 9 \(image id 1\): category_id 77 is not in categories \[1\]",
    ):
        CocoDataset(write_coco(tmp_path / "cat", images[:1], anns, [{"id": 1, "name": "x"}]))


def test_missing_images_are_listed_together(tmp_path):
    images = [{"id": i, "file_name": f"images/{i}.png", "width": 8, "height": 8} for i in range(3)]
    root = write_coco(tmp_path, images, [], [])
    (root / "images" / "0.png").unlink()
    (root / "images" / "2.png").unlink()
    with pytest.raises(DataError, match=r"2 problems \(missing file: 2\)") as info:
        CocoDataset(root)
    assert len(info.value.problems) == 2


def test_paths_escaping_the_root_are_refused(tmp_path):
    images = [{"id": 1, "file_name": "images/a.png", "width": 8, "height": 8}]
    root = write_coco(tmp_path / "ds", images, [], [])
    data = json.loads((root / "annotations.json").read_text())
    data["images"][0]["file_name"] = "../outside.png"
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match="outside the dataset root"):
        CocoDataset(root)


def test_image_folder_reads_classes_and_converts_modes(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    Image.new("L", (20, 10), 200).save(tmp_path / "cat" / "gray.png")
    Image.new("RGBA", (12, 12), (255, 0, 0, 128)).save(tmp_path / "dog" / "rgba.png")
    ds = ImageFolderDataset(tmp_path)
    assert ds.label_names == {"class": ["cat", "dog"]}
    assert [ds[i]["class"] for i in range(2)] == [0, 1]
    assert ds[0]["image"].shape == (10, 20, 3) and ds[1]["image"].shape == (12, 12, 3)
    with pytest.raises(DataError, match="class folders not in the class list"):
        ImageFolderDataset(tmp_path, class_names=["cat"])
    with pytest.raises(DataError) as info:  # a validation folder spelt otherwise
        ImageFolderDataset(tmp_path, class_names=["Cat", "dog"])
    assert info.value.problems == ["cat (did you mean Cat? names differ in case)"]


def test_empty_image_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no images found"):
        ImageFolderDataset(tmp_path)


def test_class_folders_that_cannot_train_a_classifier_are_refused_saying_why(tmp_path):
    """What torchvision's ImageFolder refuses and more: a root one level too high (its
    folders are the splits), a class folder without images; images outside the class
    folders are left out with a warning. (One class is refused by the classification head:
    a part of a mix may hold one.)"""
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / split / name / "a.png")
    (tmp_path / "test").mkdir()  # Ultralytics' classify layout: train/ val/ test/
    with pytest.raises(DataError) as info:
        ImageFolderDataset(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: its folders test/, train/, val/ are splits, not classes: give each "
        f"split's own folder as its root: {tmp_path / 'test'}, {tmp_path / 'train'}, "
        f"{tmp_path / 'val'}"
    )
    (tmp_path / "test").rmdir()
    train = tmp_path / "train"
    (train / "empty").mkdir()
    with pytest.raises(DataError, match="class folders without images") as info:
        ImageFolderDataset(train)
    assert info.value.problems == ["empty/"]
    (train / "empty").rmdir()
    Image.new("RGB", (8, 8)).save(train / "loose.jpg")
    ds = ImageFolderDataset(train)
    assert len(ds) == 2 and ds.report.warnings[0].kind == "image in no sub-folder"
    assert "1 image directly in the root (e.g. loose.jpg) left out" in ds.report.warnings[0].detail
    (tmp_path / "val" / "dog" / "a.png").unlink()  # a validation set given the classes: fine
    assert len(ImageFolderDataset(tmp_path / "val", class_names=["cat", "dog"])) == 1


def test_pipeline_keeps_boxes_and_labels_together_and_crop_may_empty_them():
    pipe = build_pipeline(
        [{"name": "Crop", "x_min": 0, "y_min": 0, "x_max": 20, "y_max": 20}], (0.5,) * 3, (0.5,) * 3
    )
    sample = {
        "image": np.zeros((40, 40, 3), np.uint8),
        "image_id": 3,
        "orig_size": (40, 40),
        "boxes": np.array([[2, 2, 10, 10], [25, 25, 35, 35]], np.float32),
        "labels": np.array([4, 7]),
    }
    out = apply_pipeline(pipe, sample)
    assert out["boxes"].tolist() == [[2, 2, 10, 10]] and out["labels"].tolist() == [4]
    sample["boxes"] = sample["boxes"][1:]
    sample["labels"] = sample["labels"][1:]
    out = apply_pipeline(pipe, sample)
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)


def test_unknown_augmentation_parameter_fails_at_build():
    with pytest.raises(
        ConfigError, match="scal: unknown parameter of RandomResizedCrop; did you mean 'scale'"
    ):
        build_pipeline(
            [{"name": "RandomResizedCrop", "size": [8, 8], "scal": [0.5, 1]}], (0,) * 3, (1,) * 3
        )


def test_collate_pads_and_marks_missing_labels():
    a = {
        "image": torch.ones(3, 30, 40),
        "image_id": 1,
        "orig_size": (30, 40),
        "image_size": (30, 40),
        "class": 2,
    }
    b = {
        "image": torch.ones(3, 20, 20),
        "image_id": 2,
        "orig_size": (20, 20),
        "image_size": (20, 20),
    }
    batch = collate([a, b])
    assert batch["images"].shape == (2, 3, 32, 64)
    assert batch["images"][1, :, 20:, :].abs().sum() == 0
    assert batch["class"].tolist() == [2, -1]
    assert batch["image_sizes"].tolist() == [[30, 40], [20, 20]]


def test_a_missing_relative_path_says_which_folder_it_was_read_from(tmp_path, monkeypatch):
    """Paths in configs are relative to the folder the command runs in, not to the config
    file: the error names that folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as info:
        ImageFolderDataset("raccoons")
    assert str(info.value) == (
        f"dataset root raccoons does not exist or is not a folder (read from the current "
        f"folder {tmp_path})"
    )
    with pytest.raises(DataError) as info:
        ImageFolderDataset(tmp_path / "raccoons")
    assert (
        str(info.value) == f"dataset root {tmp_path / 'raccoons'} does not exist or is not a folder"
    )
    (tmp_path / "raccoon").mkdir()  # a misspelt name beside the folder meant
    with pytest.raises(DataError, match=r"folder \(read from .*\); did you mean raccoon\?$"):
        ImageFolderDataset("raccoons")
    (tmp_path / "images").mkdir()
    with pytest.raises(AnnotationError, match=r"annotation file train\.json does not exist, read "
                       f"from the current folder {tmp_path}"):  # fmt: skip
        CocoDataset("images", "train.json")


def test_readers_index_like_a_list_so_a_for_loop_ends(tmp_path):
    """``for sample in dataset`` (the sequence protocol) stops at the first ``IndexError``:
    a reader that wrapped every index round never ended. Negative indices count from the end."""
    for i, name in enumerate(["a", "b", "c"]):
        (tmp_path / "folder" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tmp_path / "folder" / name / f"{i}.png")
    (tmp_path / "masks" / "images").mkdir(parents=True)
    (tmp_path / "masks" / "masks").mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8)).save(tmp_path / "masks" / "images" / f"{i}.png")
        Image.new("L", (8, 8), i).save(tmp_path / "masks" / "masks" / f"{i}.png")
    images = [{"id": i, "file_name": f"images/{i}.png", "width": 8, "height": 8} for i in (1, 2)]
    root = write_coco(tmp_path / "coco", images, [], [{"id": 1, "name": "x"}])
    readers = [
        CocoDataset(root),
        ImageFolderDataset(tmp_path / "folder"),
        MaskFolderDataset(tmp_path / "masks", class_names=["a", "b"]),
    ]
    mixed = MixedDataset({"a": readers[0], "b": readers[0]}, {})  # the wrappers follow
    readers += [mixed, TransformedDataset(readers[0], build_pipeline([], (0, 0, 0), (1, 1, 1)))]
    for ds in readers:
        samples = list(ds)
        assert len(samples) == len(ds) and len(ds) in (2, 3, 4)
        assert ds[-1]["image_id"] == ds[len(ds) - 1]["image_id"] == samples[-1]["image_id"]
        for index in (len(ds), -len(ds) - 1):
            with pytest.raises(IndexError, match=f"sample {index} of a dataset of {len(ds)}"):
                ds[index]


def test_images_without_the_class_field_have_no_class_and_a_misspelt_field_is_an_error(tmp_path):
    """Partial labels: an image without its image-level class field was a "bad class" error,
    so a COCO file whose classes cover some images could not be read."""
    (tmp_path / "images").mkdir()
    images = []
    for i in range(4):
        Image.new("RGB", (32, 32), (60 * i, 0, 0)).save(tmp_path / "images" / f"{i}.png")
        entry = {"id": i + 1, "file_name": f"images/{i}.png", "width": 32, "height": 32}
        if i % 2 == 0:
            entry["scene"] = ["day", "night"][i // 2]
        images.append(entry)
    data = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    ds = CocoDataset(tmp_path, class_field="scene")
    assert [ds[i].get("class") for i in range(4)] == [0, None, 1, None]
    assert ds.label_names["class"] == ["day", "night"]
    assert "2 images without a 'scene' field: no image-level class" in ds.report.notes[0]
    with pytest.raises(AnnotationError, match="no image has a 'sceen' field"):
        CocoDataset(tmp_path, class_field="sceen")
    assert not any("no boxes" in note for note in ds.report.notes)  # a file without boxes


def test_images_with_a_class_and_no_boxes_beside_boxed_ones_are_noted_as_box_negatives(
    tmp_path,
):
    """One COCO file cannot say "no box label": an image with only an image-level class is
    a negative for the detector, which check-data said nowhere."""

    def classes_on_all_boxes_on_two(data):
        for image in data["images"]:
            image["scene"] = "day"
        data["annotations"] = data["annotations"][:2]

    ds = CocoDataset(make_coco(tmp_path, edit=classes_on_all_boxes_on_two), class_field="scene")
    assert [len(ds[i]["boxes"]) for i in range(4)] == [1, 1, 0, 0]
    (note,) = [n for n in ds.report.notes if "no boxes" in n]
    assert note.startswith("2 images with a 'scene' class and no boxes: box heads learn them")
    assert "instances: false" in note


def test_a_validation_class_folder_in_the_other_unicode_form_is_the_same_class(tmp_path):
    """macOS writes "café" decomposed (e + combining accent), Linux and Windows composed: a
    validation folder copied from another system names the same class, and both look alike."""
    import unicodedata

    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    for root, names in (("train", (composed, "cat")), ("val", (decomposed, "cat"))):
        for name in names:
            (tmp_path / root / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / root / name / "a.jpg")
    train = ImageFolderDataset(tmp_path / "train")
    assert train.label_names == {"class": [composed, "cat"]}
    val = ImageFolderDataset(tmp_path / "val", class_names=train.label_names["class"])
    assert [(Path(val.path_of(i)).parent.name, val[i]["class"]) for i in range(2)] == [
        (decomposed, 0),
        ("cat", 1),
    ]
    assert dict(val.report.class_counts["class"]) == {composed: 1, "cat": 1}


def test_two_class_folders_of_one_name_in_two_unicode_forms_are_refused(tmp_path):
    """A training root holding "café" in both Unicode forms read as two classes, and a
    validation folder "café" answered to both: each of its images listed twice, once per
    label."""
    import unicodedata

    composed, decomposed = "café", unicodedata.normalize("NFD", "café")
    for root, names in (("train", (composed, decomposed, "tea")), ("val", (composed, "tea"))):
        for name in names:
            (tmp_path / root / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / root / name / f"{len(name)}.jpg")
    with pytest.raises(DataError) as info:
        ImageFolderDataset(tmp_path / "train")
    assert (
        "class folders whose names differ in their Unicode form only (one written with composed "
        "letters, 'é', one decomposed, 'e' + a combining accent, as macOS writes them; they look "
        "the same): move each one's images into the other:\n  'cafe\\u0301' and 'caf\\xe9'"
    ) in str(info.value)
    # class names of both forms (given): the folder of one's own name is its, none the other's
    val = ImageFolderDataset(tmp_path / "val", class_names=[decomposed, composed, "tea"])
    assert [val[i]["class"] for i in range(len(val))] == [1, 2]


def test_photos_in_a_linked_sub_folder_of_a_class_are_read(tmp_path):
    """``dog/batch2 -> /elsewhere/dogs``: torchvision's ImageFolder follows the link; the
    reader left its photos out without a word (Python 3.11's rglob does not follow it). A
    link back up (a loop) lists each real folder once and ends."""
    elsewhere = tmp_path / "elsewhere"
    for name in ("a.jpg", "b.jpg"):
        elsewhere.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(elsewhere / name)
    root = tmp_path / "train"
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / name / "0.jpg")
    (root / "dog" / "batch2").symlink_to(elsewhere, target_is_directory=True)
    (root / "cat" / "loop").symlink_to(root / "cat", target_is_directory=True)
    ds = ImageFolderDataset(root)
    assert dict(ds.report.class_counts["class"]) == {"cat": 1, "dog": 3}
    assert [Path(ds.path_of(i)).relative_to(root).as_posix() for i in range(len(ds))] == [
        "cat/0.jpg",
        "dog/0.jpg",
        "dog/batch2/a.jpg",
        "dog/batch2/b.jpg",
    ]
