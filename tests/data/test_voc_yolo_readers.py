"""``format: voc`` and ``format: yolo`` read datasets as they are published: VOC XML in any
folder names, a YOLO folder, and an Ultralytics ``data.yaml``; a full config trains on them."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.data.test_convert import voc_object, voc_xml
from visionkit.build.data import build_dataset, build_datasets
from visionkit.cli import main
from visionkit.config import load_config
from visionkit.errors import ConfigError, DataError
from visionkit.evaluation.tasks import TASKS


def make_published_voc(root: Path) -> Path:
    """``xml/`` + ``photos/`` (names VOC never used), two images, one with a zero-area box."""
    (root / "xml").mkdir(parents=True)
    (root / "photos").mkdir()
    objects = {
        "a": [voc_object("raccoon", (11, 21, 40, 45)), voc_object("dog", (1, 1, 10, 20))],
        "b": [voc_object("raccoon", (100, 100, 120, 120))],  # outside: left out, logged
    }
    for stem, objs in objects.items():
        Image.new("RGB", (64, 48), (40, 80, 120)).save(root / "photos" / f"{stem}.jpg")
        (root / "xml" / f"{stem}.xml").write_text(voc_xml(objs, f"{stem}.jpg", (64, 48)))
    return root


def test_voc_reads_any_folder_names_directly(tmp_path, caplog):
    root = make_published_voc(tmp_path / "voc")
    spec = {"format": "voc", "root": str(root), "annotations": "xml", "images": "photos"}
    with caplog.at_level(logging.INFO):
        ds = build_dataset(spec, split="train", needs=["boxes"])
    assert ds.label_names == {"instances": ["dog", "raccoon"]}
    assert len(ds) == 2
    first = ds[0]
    # VOC is 1-based and inclusive: xmin 11 → 10.0, xmax 40 → 40.0
    np.testing.assert_allclose(first["boxes"], [[10, 20, 40, 45], [0, 0, 10, 20]])
    assert first["labels"].tolist() == [1, 0]
    assert first["image"].shape == (48, 64, 3)
    assert ds[1]["boxes"].shape == (0, 4)  # the box outside left out, the image kept
    (dropped,) = ds.report.warnings  # as the COCO reader reports a box it drops
    assert (dropped.kind, dropped.where) == ("box dropped", "xml/b.xml object 1")
    assert "lies outside the image" in dropped.detail and "b.xml" in caplog.text
    assert ds.report.format == "voc"


@pytest.mark.reliability
def test_a_voc_folder_of_bad_xml_files_says_none_was_read_not_images_0(tmp_path, capsys):
    # check-data printed "images: 0" beside the errors, as if the folder held no image
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for stem in ("a", "b"):
        Image.new("RGB", (16, 16)).save(root / "JPEGImages" / f"{stem}.jpg")
        (root / "Annotations" / f"{stem}.xml").write_text("<annotation><object>")
    assert main(["check-data", "--format", "voc", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "  images: none read: every annotation file has errors (below)\n" in out
    assert "images: 0" not in out and out.count("malformed XML") == 2
    (root / "Annotations" / "a.xml").write_text(voc_xml([], "a.jpg", (16, 16)))
    assert main(["check-data", "--format", "voc", "--root", str(root)]) == 1
    assert "  images: 1\n" in capsys.readouterr().out  # one read: counted as before


def test_boxes_clipped_or_dropped_by_the_voc_and_yolo_readers_are_warnings(tmp_path, capsys):
    """check-data said "no problems found" for VOC boxes crossing the image's border and a
    YOLO line of zero width (logged at INFO only), where a COCO file's were warnings."""
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    Image.new("RGB", (64, 48), (40, 80, 120)).save(root / "JPEGImages" / "a.jpg")
    objects = [voc_object("cat", (-9, 5, 30, 40)), voc_object("cat", (10, 10, 20, 20))]
    (root / "Annotations" / "a.xml").write_text(voc_xml(objects, "a.jpg", (64, 48)))
    ds = build_dataset({"format": "voc", "root": str(root)}, split="train", needs=["boxes"])
    (clipped,) = ds.report.warnings
    assert (clipped.kind, clipped.where) == ("box clipped", "Annotations/a.xml object 1")
    assert "reaches outside the 64x48 image; clipped to it" in clipped.detail
    np.testing.assert_allclose(ds[0]["boxes"][0], [0, 4, 30, 40])

    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    Image.new("RGB", (80, 40), (9, 9, 9)).save(yolo / "images" / "x.png")
    (yolo / "labels" / "x.txt").write_text("0 0.5 0.5 0.0 0.5\n0 0.5 0.5 0.5 0.5\n")
    (yolo / "classes.txt").write_text("cat\n")
    code = main(["check-data", "--format", "yolo", "--root", str(yolo), "--strict"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "box dropped: labels/x.txt line 1: box of zero area" in out


def test_voc_default_folder_names_and_class_list(tmp_path):
    root = make_published_voc(tmp_path / "voc")
    (root / "xml").rename(root / "annotations")
    (root / "photos").rename(root / "images")
    ds = build_dataset(
        {"format": "voc", "root": str(root), "class_names": ["raccoon", "dog"]}, split="val"
    )
    assert ds.label_names == {"instances": ["raccoon", "dog"]}
    assert ds[0]["labels"].tolist() == [0, 1]


def test_voc_missing_folder_is_a_clear_error(tmp_path):
    root = make_published_voc(tmp_path / "voc")
    with pytest.raises(DataError, match=r"no XML folder \(labels/ not found\)"):
        build_dataset({"format": "voc", "root": str(root), "annotations": "labels"})


def test_yolo_data_given_to_the_voc_recipe_is_named_as_yolo(tmp_path):
    """The detection recipe reads VOC: ``data.train.root=data.yaml`` said "does not exist
    or is not a folder", and a folder of images/ + labels/ "no XML folder"."""
    data_yaml = make_ultralytics(tmp_path)
    with pytest.raises(DataError, match=r"is a file, not a folder; an Ultralytics data.yaml is"):
        build_dataset({"format": "voc", "root": str(data_yaml)})
    folder = data_yaml.parent / "datasets" / "toy"
    with pytest.raises(DataError, match=r"its images/ \+ labels/ are a YOLO folder: format: yolo"):
        build_dataset({"format": "voc", "root": str(folder)})


def make_ultralytics(root: Path) -> Path:
    """An Ultralytics dataset: data.yaml beside a dataset folder named by ``path``."""
    ds = root / "datasets" / "toy"
    for split, boxes in (("train", "0 0.5 0.5 0.5 0.25\n1 0.25 0.25 0.1 0.1\n"), ("val", "")):
        (ds / "images" / split).mkdir(parents=True)
        (ds / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (80, 40), (9, 9, 9)).save(ds / "images" / split / "x.png")
        (ds / "labels" / split / "x.txt").write_text(boxes)
    data = {
        "path": "datasets/toy",
        "train": "images/train",
        "val": "images/val",
        "names": {0: "cat", 1: "dog"},
    }
    (root / "toy.yaml").write_text(yaml.safe_dump(data))
    return root / "toy.yaml"


def test_yolo_reads_an_ultralytics_data_yaml(tmp_path):
    data_yaml = make_ultralytics(tmp_path)
    train = build_dataset({"format": "yolo", "root": str(data_yaml), "split": "train"})
    assert train.label_names == {"instances": ["cat", "dog"]}
    sample = train[0]
    np.testing.assert_allclose(sample["boxes"], [[20, 15, 60, 25], [16, 8, 24, 12]], atol=1e-4)
    assert sample["labels"].tolist() == [0, 1]
    val = build_dataset({"format": "yolo", "root": str(data_yaml), "split": "val"}, split="val")
    assert len(val) == 1 and val[0]["boxes"].shape == (0, 4)


def test_yolo_data_yaml_without_the_split_names_the_entries(tmp_path):
    data_yaml = make_ultralytics(tmp_path)
    with pytest.raises(DataError, match=r"no 'test' entry; the file lists \['train', 'val'\]"):
        build_dataset({"format": "yolo", "root": str(data_yaml), "split": "test"})
    with pytest.raises(
        DataError, match=r"give the split to read, one of \['train', 'val'\] \(a dataset "
    ):
        build_dataset({"format": "yolo", "root": str(data_yaml)})  # was "no None entry"


def test_convert_reads_an_ultralytics_data_yaml_and_prints_the_entry_to_read_it(tmp_path, capsys):
    data_yaml = make_ultralytics(tmp_path)
    out = tmp_path / "out" / "toy_train.json"
    out.parent.mkdir()
    assert main(["convert", "--from", "yolo", "--split", "train", str(data_yaml), str(out)]) == 0
    printed = capsys.readouterr().out
    folder = (tmp_path / "datasets" / "toy").resolve()
    assert "2 annotations" in printed
    assert f"data.train='{{format: coco, images: {folder}, annotations: {out.resolve()}}}'" in (
        printed
    )
    train = build_dataset({"format": "coco", "images": str(folder), "annotations": str(out)})
    np.testing.assert_allclose(train[0]["boxes"], [[20, 15, 60, 25], [16, 8, 24, 12]], atol=1e-4)

    val = tmp_path / "out" / "toy_val.json"
    assert main(["convert", "--from", "yolo", "--split", "val", str(data_yaml), str(val)]) == 0
    assert f"read it with: data.val='{{format: coco, images: {folder}, " in capsys.readouterr().out
    assert main(["convert", "--from", "yolo", str(data_yaml), str(tmp_path / "o.json")]) == 1
    assert "or convert's --split train" in capsys.readouterr().err
    assert main(["convert", "--from", "yolo", str(tmp_path / "nope.yaml"), "o.json"]) == 1
    assert "Ultralytics dataset file" in capsys.readouterr().err
    # The dataset folder its path: names is only read, wherever the data.yaml lies.
    elsewhere = tmp_path / "configs" / "toy.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(data_yaml.read_text().replace("datasets/toy", str(folder)))
    inside_json = folder / "old.json"
    inside_json.write_text("{}")
    argv = ["convert", "--from", "yolo", "--split", "train", "--overwrite"]
    assert main([*argv, str(elsewhere), str(inside_json)]) == 1
    assert "inside the source folder" in capsys.readouterr().err
    assert inside_json.read_text() == "{}"


def test_a_roboflow_data_yaml_is_read_as_ultralytics_reads_it(tmp_path):
    """Roboflow's exports say ``train: ../train/images`` beside the yaml file, no ``path``:
    Ultralytics looks for the folder without the ``../`` when it is not there."""
    for split in ("train", "valid"):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "labels").mkdir(parents=True)
        Image.new("RGB", (80, 40)).save(tmp_path / split / "images" / "a.jpg")
        (tmp_path / split / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.25\n")
    data = {"train": "../train/images", "val": "../valid/images", "nc": 1, "names": ["cat"]}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(data))
    for split in ("train", "val"):
        ds = build_dataset({"format": "yolo", "root": str(tmp_path / "data.yaml"), "split": split})
        assert len(ds) == 1 and ds[0]["labels"].tolist() == [0]


@pytest.mark.reliability
def test_a_yolo_split_without_any_label_file_is_an_error_naming_where_they_belong(tmp_path):
    """labels/ missing (or misplaced) read as a set of negatives: check-data said "no problems
    found" and training ran to mAP 0."""
    data_yaml = make_ultralytics(tmp_path)
    labels = data_yaml.parent / "datasets" / "toy" / "labels"
    (labels / "train").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError) as info:
        build_dataset({"format": "yolo", "root": str(data_yaml), "split": "train"})
    assert info.value.problems == [
        "bad annotation file: labels/train: no label files (for 1 image): the label file of "
        "images/train/x.png is labels/train/x.txt (the last images/ folder of the path becomes "
        "labels/, the suffix .txt)"
    ]
    # an empty label file is an image without boxes, as before
    val = build_dataset({"format": "yolo", "root": str(data_yaml), "split": "val"}, split="val")
    assert val[0]["boxes"].shape == (0, 4)


def test_a_data_yaml_whose_path_does_not_exist_says_so(tmp_path):
    """Colab / Roboflow files say ``path: /content/datasets/...``: the error was "images/train
    is neither a folder of images nor a .txt list of them"."""
    data_yaml = make_ultralytics(tmp_path)
    data = yaml.safe_load(data_yaml.read_text())
    moved = tmp_path / "toy.yaml"
    moved.write_text(yaml.safe_dump({**data, "path": "/content/datasets/toy"}))
    with pytest.raises(DataError, match=r"path: /content/datasets/toy does not exist \(the "):
        build_dataset({"format": "yolo", "root": str(moved), "split": "train"})
    # the entries lie beside the file: the message says to delete the path: line
    beside = data_yaml.parent / "datasets" / "toy" / "data.yaml"
    beside.write_text(yaml.safe_dump({**data, "path": "/content/datasets/toy"}))
    with pytest.raises(DataError, match=r"delete the path: line \(the train, val entries are"):
        build_dataset({"format": "yolo", "root": str(beside), "split": "train"})


def test_yolo_folder_with_split_subfolders(tmp_path):
    data_yaml = make_ultralytics(tmp_path)
    folder = data_yaml.parent / "datasets" / "toy"
    (folder / "classes.txt").write_text("cat\ndog\n")
    ds = build_dataset({"format": "yolo", "root": str(folder), "split": "train"})
    assert len(ds) == 1 and ds[0]["labels"].tolist() == [0, 1]


def test_a_config_validates_voc_and_yolo_sections(tmp_path, capsys):
    root = make_published_voc(tmp_path / "voc")
    data_yaml = make_ultralytics(tmp_path)
    config = {
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"det": {"name": "fcos", "num_classes": 2}},
        },
        "data": {
            "train": {"format": "voc", "root": str(root), "annotations": "xml", "images": "photos"},
            "val": {"format": "yolo", "root": str(data_yaml), "split": "val"},
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_config(path)
    assert cfg.data.train["format"] == "voc" and cfg.data.val["split"] == "val"
    # each section reads; their classes differ (dog, raccoon / cat, dog): training would
    # refuse the pair, and check-data says so
    assert main(["check-data", "--config", str(path)]) == 1
    assert "the classes of data.val do not match those of data.train" in capsys.readouterr().out
    config["data"]["train"]["xml_folder"] = "xml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(Exception, match=r"data\.train\.xml_folder"):
        load_config(path)


@pytest.mark.reliability
def test_check_data_lists_a_malformed_xml_with_the_problems_of_the_images(tmp_path, capsys):
    """A malformed XML does not hide the other files' problems: check-data lists it with a
    truncated image, and training stops on both at once (one report, not one at a time)."""
    root = make_published_voc(tmp_path / "voc")
    Image.new("RGB", (64, 48), (9, 9, 9)).save(root / "photos" / "c.jpg")
    (root / "xml" / "c.xml").write_text("<annotation><object>")  # unclosed
    data = (root / "photos" / "a.jpg").read_bytes()
    (root / "photos" / "a.jpg").write_bytes(data[: len(data) // 2])  # header intact
    argv = ["check-data", "--format", "voc", "--root", str(root), "annotations=xml"]
    code = main([*argv, "images=photos"])
    out = capsys.readouterr().out
    assert code == 1
    assert "bad annotation file: xml/c.xml: malformed XML" in out
    assert "unreadable image: photos/a.jpg (image id 1)" in out
    assert "check-data: 3 problems (2 errors, 1 warning) in 1 dataset" in out  # b.xml: a box
    spec = {"format": "voc", "root": str(root), "annotations": "xml", "images": "photos"}
    with pytest.raises(DataError) as info:  # training stops on both at once
        build_dataset(spec, split="train", needs=["boxes"])
    assert "bad annotation file: xml/c.xml: malformed XML" in str(info.value)
    assert "unreadable image: photos/a.jpg" in str(info.value)
    for stem in ("a", "b"):  # every file unusable: the same report, no other error
        (root / "xml" / f"{stem}.xml").write_text("not xml")
    with pytest.raises(DataError, match=r"3 problems \(bad annotation file: 3\)"):
        build_dataset(spec, split="train", needs=["boxes"])


def test_voc_difficult_objects_are_neither_targets_nor_counted_by_the_evaluation(tmp_path):
    """As in the VOC protocol: a ``<difficult>1`` object is left out of the training targets,
    and a detection of it is neither a hit nor a false positive (COCO's ``iscrowd``), while a
    detection of nothing at the same score is a false positive."""
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    Image.new("RGB", (64, 48), (40, 80, 120)).save(root / "JPEGImages" / "a.jpg")
    objects = [voc_object("dog", (1, 1, 20, 20)), voc_object("dog", (31, 11, 60, 40), difficult=1)]
    (root / "Annotations" / "a.xml").write_text(voc_xml(objects, "a.jpg", (64, 48)))
    ds = build_dataset({"format": "voc", "root": str(root)}, split="val", needs=["boxes"])
    sample = ds[0]
    assert sample["boxes"].tolist() == [[0.0, 0.0, 20.0, 20.0]]

    def map50(boxes: list[list[float]]) -> float:
        evaluator = TASKS["detection"].evaluator("det", None, ds, None)
        evaluator.process(
            {"image_ids": torch.tensor([sample["image_id"]])},
            [
                {
                    "boxes": torch.tensor(boxes, dtype=torch.float32),
                    "scores": torch.tensor([0.95, 0.9][: len(boxes)]),
                    "labels": torch.zeros(len(boxes), dtype=torch.long),
                }
            ],
        )
        return evaluator.evaluate()["det/mAP50"]

    assert map50([[0, 0, 20, 20]]) == pytest.approx(1.0)
    assert map50([[30, 10, 60, 40], [0, 0, 20, 20]]) == pytest.approx(1.0)  # the difficult one
    assert map50([[2, 30, 12, 46], [0, 0, 20, 20]]) < 0.9  # a false positive ranked first


def test_object_names_differing_only_in_case_are_logged_with_their_files(tmp_path, caplog):
    """``Raccoon`` in one XML beside ``raccoon`` everywhere else: two classes, and the splits'
    class lists then differ; the log names the file that writes the odd one."""
    root = make_published_voc(tmp_path / "voc")
    xml = root / "xml" / "b.xml"
    xml.write_text(xml.read_text().replace("<name>raccoon</name>", "<name>Raccoon </name>"))
    spec = {"format": "voc", "root": str(root), "annotations": "xml", "images": "photos"}
    with caplog.at_level(logging.WARNING):
        ds = build_dataset(spec, split="train", needs=["boxes"])
    assert ds.label_names == {"instances": ["Raccoon", "dog", "raccoon"]}
    assert (
        "object names that differ only in case or spaces are separate classes: "
        "'Raccoon' in 1 file (xml/b.xml); 'raccoon' in 1 file (xml/a.xml)" in caplog.text
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_dataset({**spec, "class_names": ["raccoon", "dog", "Raccoon"]}, split="train")
    assert "differ only in case" not in caplog.text  # the user's own list: taken as it is


def test_check_data_with_format_reads_the_split_given_and_names_unknown_options(tmp_path, capsys):
    """``--split train`` with ``--format`` was accepted and ignored (a data.yaml then asked for
    its split); an option the reader does not take was pydantic's "Extra inputs are not
    permitted"."""
    data_yaml = make_ultralytics(tmp_path)
    code = main(["check-data", "--format", "yolo", "--root", str(data_yaml), "--split", "train"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "check-data: no problems found" in out
    code = main(["check-data", "--format", "yolo", "--root", str(data_yaml), "classes=a.txt"])
    err = capsys.readouterr().err
    assert code == 2 and "classes: format yolo takes no classes (it takes: " in err
    assert "class_names" in err


def test_on_bad_label_skip_leaves_out_bad_voc_files_with_their_images(tmp_path, capsys):
    """As Ultralytics ignores a corrupt label file: the usable files train, each left-out
    file is counted, logged and listed by check-data as a warning, not an error."""
    root = make_published_voc(tmp_path / "voc")
    for stem in ("c", "d"):
        Image.new("RGB", (64, 48), (9, 9, 9)).save(root / "photos" / f"{stem}.jpg")
    (root / "xml" / "c.xml").write_text("<annotation><object>")  # unclosed
    (root / "xml" / "d.xml").write_text(voc_xml([voc_object("cat", (1, 1, 9, 9))], "d.jpg"))
    (root / "xml" / "e.xml").write_text(voc_xml([voc_object("dog", (1, 1, 9, 9))], "e.jpg"))
    spec = {"format": "voc", "root": str(root), "annotations": "xml", "images": "photos"}
    spec["class_names"] = ["raccoon", "dog"]
    with pytest.raises(DataError, match="3 problems") as info:
        build_dataset(spec, split="train", needs=["boxes"])
    assert "unknown class 'cat'" in str(info.value) and "image not found" in str(info.value)
    ds = build_dataset({**spec, "on_bad_label": "skip"}, split="train", needs=["boxes"])
    assert sorted(Path(ds.path_of(i)).stem for i in range(len(ds))) == ["a", "b"]
    assert ds.report.notes == ["left out 3 annotation files with problems (on_bad_label: skip)"]
    assert not ds.report.errors
    assert any("xml/c.xml: malformed XML" in line for line in ds.report.problem_lines("warning"))
    argv = ["check-data", "--format", "voc", "--root", str(root), "annotations=xml"]
    code = main([*argv, "images=photos", "class_names=[raccoon, dog]", "on_bad_label=skip"])
    out = capsys.readouterr().out
    assert code == 0 and "4 problems (0 errors, 4 warnings) in 1 dataset" in out  # b.xml: a box
    assert "xml/d.xml object 1: unknown class 'cat'" in out and "(left out)" in out
    with pytest.raises(ConfigError, match="on_bad_label: 'drop' is not one of error, skip"):
        build_dataset({**spec, "on_bad_label": "drop"}, split="train", needs=["boxes"])


def test_a_bad_yolo_label_file_stops_training_with_the_skip_hint_then_skip_trains(tmp_path):
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("cat\n")
    for i in range(3):
        Image.new("RGB", (64, 48), (9, 9, 9)).save(root / "images" / f"{i}.jpg")
        (root / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "labels" / "1.txt").write_text("0 0.5 0.5 0.25\n")  # 4 fields
    (root / "labels" / "7.txt").write_text("0 0.5 0.5 0.25 0.25\n")  # no image
    entry = {"format": "yolo", "root": str(root)}
    cfg = {
        "model": {"backbone": {"name": "simple_cnn"}, "heads": {"det": {"name": "fcos"}}},
        "data": {"train": entry, "val": entry},
    }
    with pytest.raises(DataError) as info:
        build_datasets(load_config(cfg).data, needs=["boxes"])
    text = str(info.value)
    assert "labels/1.txt line 1: 4 fields" in text and "labels/7.txt: no image" in text
    assert text.splitlines()[-1].endswith(
        "on_bad_label: skip (e.g. data.train.on_bad_label=skip data.val.on_bad_label=skip) "
        "trains without the images "
        "whose label files are bad"
    )
    entry["on_bad_label"] = "skip"
    datasets = build_datasets(load_config(cfg).data, needs=["boxes"])
    assert len(datasets["train"]) == len(datasets["val"]) == 2
    assert datasets["train"].report.notes == [
        "left out 2 annotation files with problems (on_bad_label: skip)"
    ]


def test_images_without_a_label_file_are_told_apart_from_empty_label_files(tmp_path):
    """Both are images without objects (as Ultralytics reads them), but a missing file may be a
    label of another name: the report names those images."""
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("cat\n")
    for i in range(4):
        Image.new("RGB", (64, 48)).save(root / "images" / f"{i}.jpg")
    (root / "labels" / "0.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "labels" / "1.txt").write_text("")  # an empty file: a negative on purpose
    report = build_dataset({"format": "yolo", "root": str(root)}, split="train").report
    assert report.notes == [
        "2 images without a label file, read as images without objects: images/2.jpg, images/3.jpg"
    ]


def test_only_yolo_lines_repeating_every_number_are_removed_as_the_docs_say(tmp_path):
    # datasets.md said lines were removed "as Ultralytics removes duplicate labels", but
    # Ultralytics compares float32 rows and a polygon by its class and box, removing more
    from tests.data.test_convert import make_yolo

    square = "0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n"
    diamond = "0 0.5 0.25 0.75 0.5 0.5 0.75 0.25 0.5\n"  # another polygon, the same box
    text = square + diamond + square + "1 0.5 0.5 0.2 0.2\n1 0.500000001 0.5 0.2 0.2\n"
    root = make_yolo(tmp_path / "yolo", {"a.jpg": (64, 64)}, {"a.txt": text}, classes_txt="a\nb\n")
    ds = build_dataset({"format": "yolo", "root": str(root)}, split="train", needs=["boxes"])
    assert ds[0]["labels"].tolist() == [0, 0, 1, 1]  # the square's repeat (line 3) removed
    assert "1 duplicate label removed (line 3" in str(ds.report.warnings[0])
    docs = (Path(__file__).parents[2] / "docs" / "datasets.md").read_text(encoding="utf-8")
    rule = " ".join(docs.split("- A line that repeats an earlier line")[1].split("\n- ")[0].split())
    assert "as Ultralytics removes duplicate labels" not in rule
    for said in ("every one of them", "float32", "class and bounding box", "Changed in session 37"):
        assert said in rule
