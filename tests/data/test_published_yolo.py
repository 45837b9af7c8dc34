"""YOLO labels as annotation tools publish them: CVAT's "YOLO 1.1" export (Darknet's
``obj.data`` layout) read and split directly, and the hints for a Roboflow export given by
its folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionkit.build.data import build_dataset
from visionkit.data.split import split_dataset
from visionkit.errors import DataError


def cvat_yolo_export(root: Path, n: int = 4, subset: str = "train", inner: str = "") -> Path:
    """CVAT's YOLO 1.1 export as unzipped: obj.data and train.txt name paths under ``data/``
    (the folder Darknet runs from); labels beside the images; the last image a negative.
    ``inner``: the images' own folder inside the subset's (CVAT keeps uploaded folders)."""
    folder = root / f"obj_{subset}_data" / inner
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (80, 40), (9, 9, 9)).save(folder / f"frame_{i:06d}.jpg")
        if i < n - 1:
            (folder / f"frame_{i:06d}.txt").write_text(f"{i % 2} 0.5 0.5 0.5 0.25\n")
    listed = [
        (Path("data", f"obj_{subset}_data", inner) / f"frame_{i:06d}.jpg").as_posix()
        for i in range(n)
    ]
    (root / f"{subset}.txt").write_text("\n".join(listed) + "\n")
    (root / "obj.names").write_text("raccoon\nsquirrel\n")
    (root / "obj.data").write_text(
        f"classes = 2\n{subset} = data/{subset}.txt\nnames = data/obj.names\nbackup = backup/\n"
    )
    return root


def test_a_cvat_yolo_export_is_read_directly(tmp_path):
    root = cvat_yolo_export(tmp_path / "cvat")
    for split in (None, "train"):
        ds = build_dataset({"format": "yolo", "root": str(root), "split": split})
        assert ds.label_names == {"instances": ["raccoon", "squirrel"]}
        assert len(ds) == 4
        np.testing.assert_allclose(ds[1]["boxes"], [[20, 15, 60, 25]], atol=1e-4)
        assert ds[1]["labels"].tolist() == [1] and ds[3]["boxes"].shape == (0, 4)
    with pytest.raises(DataError, match=r"obj.data: no 'val' subset; it lists \['train'\]"):
        build_dataset({"format": "yolo", "root": str(root), "split": "val"})


def test_a_cvat_yolo_export_reads_labels_beside_images_in_a_folder_named_images(tmp_path):
    """Darknet's rule, not Ultralytics' (which turns the last images/ into labels/)."""
    root = cvat_yolo_export(tmp_path / "cvat", inner="images")
    ds = build_dataset({"format": "yolo", "root": str(root), "split": "train"})
    assert len(ds) == 4 and ds[1]["labels"].tolist() == [1]


def test_a_cvat_yolo_validation_subset_is_read_as_split_val(tmp_path):
    root = cvat_yolo_export(tmp_path / "cvat", n=2, subset="valid")
    assert len(build_dataset({"format": "yolo", "root": str(root), "split": "val"})) == 2


def test_a_cvat_yolo_export_whose_names_disagree_with_its_class_count_is_refused(tmp_path):
    root = cvat_yolo_export(tmp_path / "cvat")
    (root / "obj.names").write_text("raccoon\n")
    with pytest.raises(DataError, match=r"classes = 2, but its names file lists \['raccoon'\]"):
        build_dataset({"format": "yolo", "root": str(root)})


def test_a_cvat_yolo_export_is_split_into_lists_the_yolo_reader_takes(tmp_path):
    root = cvat_yolo_export(tmp_path / "cvat", n=8)
    report = split_dataset(root, val=0.25)
    assert report.kind == "yolo" and report.counts == {"train": 6, "val": 2}
    assert (root / "autosplit_val.txt").read_text().startswith("./obj_train_data/frame_")
    entry = {"format": "yolo", "root": str(root / "autosplit.yaml")}
    train = build_dataset({**entry, "split": "train"})
    val = build_dataset({**entry, "split": "val"}, split="val")
    assert len(train) == 6 and len(val) == 2
    assert train.label_names == {"instances": ["raccoon", "squirrel"]}
    boxes = sum(len(train[i]["boxes"]) for i in range(6)) + sum(
        len(val[i]["boxes"]) for i in (0, 1)
    )
    assert boxes == 7  # every label file beside its image was read


def roboflow_yolo_export(root: Path) -> Path:
    """Roboflow's YOLOv8 export: data.yaml beside train/ valid/, each images/ + labels/."""
    for split in ("train", "valid"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        Image.new("RGB", (80, 40)).save(root / split / "images" / "a.jpg")
        (root / split / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.25\n")
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\n\nnc: 1\nnames: ['raccoon']\n"
    )
    return root


@pytest.mark.parametrize(
    ("folder", "split", "entry"),
    [("", "train", "train"), ("", None, "train"), ("valid", None, "val"), ("train", None, "train")],
)
def test_a_roboflow_export_given_by_a_folder_names_its_data_yaml(tmp_path, folder, split, entry):
    """The export's folder, or one of its split folders, is no YOLO folder (images/train/ is
    train/images/ there, the class names are in data.yaml above): the error says how to read it."""
    root = roboflow_yolo_export(tmp_path / "export")
    with pytest.raises(DataError) as info:
        build_dataset({"format": "yolo", "root": str(root / folder), "split": split})
    data_yaml = root / "data.yaml"
    assert str(info.value).endswith(
        f"; {data_yaml} is the dataset file of this export: read it with format: yolo, "
        f"root: {data_yaml}, split: {entry}"
    )
    read = build_dataset({"format": "yolo", "root": str(data_yaml), "split": entry})
    assert read.label_names == {"instances": ["raccoon"]} and len(read) == 1


def test_a_cvat_yolo_list_naming_images_elsewhere_is_refused_by_split(tmp_path, monkeypatch):
    """Absolute paths in train.txt, the folder given relative: a raw ValueError before."""
    root = cvat_yolo_export(tmp_path / "cvat", n=2)
    elsewhere = tmp_path / "elsewhere.jpg"
    Image.new("RGB", (8, 8)).save(elsewhere)
    (root / "train.txt").write_text(f"data/obj_train_data/frame_000000.jpg\n{elsewhere}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="images listed outside the dataset folder") as info:
        split_dataset("cvat")
    assert str(elsewhere) in str(info.value)
