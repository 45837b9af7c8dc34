"""``visionkit split``: a VOC folder as published (annotations/ + images/, no ImageSets), a
YOLO folder or a COCO json split at random into the files the readers take, the same split for the same seed,
existing split files kept, and every bad input a plain message."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.data.test_convert import make_yolo, voc_object, voc_xml
from tests.helpers import make_coco, run
from visionkit.build.data import build_dataset
from visionkit.data.split import assign, split_counts, split_dataset
from visionkit.errors import ConfigError, DataError


def published_voc(root: Path, n: int = 10) -> Path:
    """``annotations/`` + ``images/`` as many sets are published: no ImageSets."""
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    for i in range(n):
        name = f"raccoon-{i}"
        Image.new("RGB", (64, 48), (40, 80, 120)).save(root / "images" / f"{name}.jpg")
        xml = voc_xml([voc_object("raccoon", (5, 5, 30 + i, 40))], f"{name}.jpg", (64, 48))
        (root / "annotations" / f"{name}.xml").write_text(xml)
    return root


def test_a_published_voc_folder_is_split_into_lists_the_voc_reader_takes(tmp_path, capsys):
    root = published_voc(tmp_path / "raccoon", n=10)
    with pytest.raises(DataError, match=r"visionkit split .*raccoon --val 0\.2"):
        build_dataset({"format": "voc", "root": str(root), "split": "train"}, split="train")
    code, out, err = run(["split", root, "--val", "0.2", "--test", "0.1", "--seed", "3"], capsys)
    assert code == 0, err
    folder = root / "ImageSets" / "Main"
    assert f"wrote {folder / 'train.txt'} (7 images)" in out
    assert f"wrote {folder / 'val.txt'} (2 images)" in out
    assert f"wrote {folder / 'test.txt'} (1 image)" in out
    assert (  # the command that scores the test split, not every image of the folder
        "score the test split once, at the end: visionkit eval --checkpoint "
        f"runs/NAME/checkpoints/best.ckpt --split test data.test.root={root}" in out
    )
    parts = {s: (folder / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert sorted(sum(parts.values(), [])) == sorted(f"raccoon-{i}" for i in range(10))
    for split, ids in parts.items():
        data = build_dataset({"format": "voc", "root": str(root), "split": split}, split=split)
        assert len(data) == len(ids)
    # the same seed gives the same split; another seed another one
    assert assign([f"raccoon-{i}" for i in range(10)], 0.2, 0.1, seed=3) == parts
    assert assign([f"raccoon-{i}" for i in range(10)], 0.2, 0.1, seed=4) != parts


@pytest.mark.reliability
def test_existing_split_files_are_kept_unless_overwrite(tmp_path, capsys):
    root = published_voc(tmp_path / "voc", n=6)
    split_dataset(root, val=0.5, seed=0)
    train = root / "ImageSets" / "Main" / "train.txt"
    before = train.read_bytes()
    code, out, err = run(["split", root, "--seed", "1"], capsys)
    assert code == 1 and not out and "invalid configuration" not in err
    assert f"split files exist: {train}" in err and "give --overwrite to replace them" in err
    assert train.read_bytes() == before
    code, _, err = run(["split", root, "--seed", "1", "--val", "0.5", "--overwrite"], capsys)
    assert code == 0, err
    assert (
        sorted(train.read_text().split())
        == assign([f"raccoon-{i}" for i in range(6)], 0.5, seed=1)["train"]
    )


def test_a_coco_json_is_split_into_jsons_with_their_annotations(tmp_path):
    root = make_coco(tmp_path / "coco", num_images=10)
    source = root / "annotations.json"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    report = split_dataset(source, val=0.3, seed=0)
    assert report.counts == {"train": 7, "val": 3}
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest  # only read
    whole = json.loads(source.read_text())
    seen = []
    for split in ("train", "val"):
        part = json.loads((root / f"annotations_{split}.json").read_text())
        ids = {im["id"] for im in part["images"]}
        seen += sorted(ids)
        assert {a["image_id"] for a in part["annotations"]} == ids
        assert len(part["annotations"]) == sum(a["image_id"] in ids for a in whole["annotations"])
        assert part["categories"] == whole["categories"]
        spec = {"format": "coco", "images": str(root), "annotations": str(report.files[split])}
        assert len(build_dataset(spec, split=split)) == len(ids)
    assert sorted(seen) == list(range(1, 11))


def test_a_yolo_folder_gets_ultralytics_autosplit_lists_and_a_dataset_file(tmp_path, capsys):
    images = {f"{i}.jpg": (40, 30) for i in range(8)}
    labels = {f"{i}.txt": f"{i % 2} 0.5 0.5 0.4 0.4\n" for i in range(7)}  # one negative
    root = make_yolo(tmp_path / "yolo", images, labels, classes_txt="cat\ndog\n")
    code, out, err = run(["split", root, "--val", "0.25"], capsys)
    assert code == 0, err
    assert f"wrote {root / 'autosplit_train.txt'} (6 images)" in out
    assert f"wrote {root / 'autosplit_val.txt'} (2 images)" in out
    listed = []
    for split in ("train", "val"):
        lines = (root / f"autosplit_{split}.txt").read_text().split()
        assert all(line.startswith("./images/") for line in lines)
        listed += lines
        spec = {"format": "yolo", "root": str(root / "autosplit.yaml"), "split": split}
        data = build_dataset(spec, split=split)
        assert len(data) == len(lines)
        assert data.label_names["instances"] == ["cat", "dog"]
    assert sorted(listed) == sorted(f"./images/{name}" for name in images)
    code, _, err = run(["split", root, "--val", "0.25"], capsys)
    assert code == 1 and "autosplit.yaml" in err and "--overwrite" in err


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("val", "test", "problems"),
    [
        (0.0, 0.0, ["--val 0: the fraction of the images for val must be above 0 and below 1"]),
        (0.6, 0.5, ["--val 0.6 --test 0.5: val and test take 1.1 of the images, leaving none"]),
        (1.2, 1.0, ["--val 1.2: the fraction", "--test 1: the fraction of the images for test"]),
    ],
)
def test_bad_fractions_are_a_config_error(val, test, problems):
    with pytest.raises(ConfigError) as info:
        split_counts(10, val, test)
    assert len(info.value.problems) == len(problems)
    assert all(p.startswith(q) for p, q in zip(info.value.problems, problems, strict=True))


@pytest.mark.reliability
def test_split_with_no_val_fraction_says_what_value_is_allowed(tmp_path, capsys):
    # was "invalid configuration: --val 0.0 --test 0.0: fractions in (0, 1) for val and [0, 1)
    # for test, adding up to less than 1", naming both options for the one at fault
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / name / f"{i}.png")
    code, out, err = run(["split", tmp_path, "--val", "0"], capsys)
    assert code == 2 and not out
    assert err.startswith(
        "error: invalid command-line option:\n  --val 0: the fraction of the images for val "
        "must be above 0 and below 1, e.g. --val 0.2"
    )


@pytest.mark.reliability
def test_bad_sources_are_plain_messages(tmp_path, capsys):
    code, _, err = run(["split", tmp_path / "nothing"], capsys)
    assert code == 1 and "expected a VOC folder" in err and "(it does not exist)" in err
    assert "a YOLO folder (images/ + labels/)" in err
    code, _, err = run(["split", tmp_path], capsys)
    assert code == 1 and "expected a VOC folder" in err and "; it holds no folders" in err
    (tmp_path / "images").mkdir()  # images/ without annotations/: a VOC folder missing its XML
    code, _, err = run(["split", tmp_path, "--annotations", "xml"], capsys)
    assert code == 1 and "no XML folder (xml/ not found)" in err
    camvid = tmp_path / "camvid"
    for folder in ("train", "trainannot", "val", "valannot"):
        (camvid / folder).mkdir(parents=True)
    code, _, err = run(["split", camvid], capsys)
    assert code == 1 and "it holds train/, trainannot/, val/, valannot/ (split already: " in err
    assert f"data.train='{{format: mask_folder, root: {camvid}, images: train, masks: " in err
    roboflow = tmp_path / "roboflow"  # a YOLO export: train/ valid/ test/ and data.yaml
    for folder in ("train", "valid", "test"):
        (roboflow / folder).mkdir(parents=True)
    (roboflow / "data.yaml").write_text("names: [a]\n")
    code, _, err = run(["split", roboflow], capsys)
    assert code == 1 and "(split already, with data.yaml: read it as format: yolo, root: " in err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code, _, err = run(["split", bad], capsys)
    assert code == 1 and "not a COCO json with images[].id" in err
    with pytest.raises(DataError, match="1 image\\(s\\) cannot be split into 2 non-empty splits"):
        split_counts(1, 0.2)
    assert split_counts(3, 0.5, 0.4) == {"train": 1, "val": 1, "test": 1}


def mask_folder(root: Path, n: int = 10, images: str = "images", masks: str = "masks") -> Path:
    """Images with their label PNGs (``<images>/<sub>/i.jpg`` → ``<masks>/<sub>/i.png``)."""
    for i in range(n):
        sub = "a" if i % 2 else "b"
        (root / images / sub).mkdir(parents=True, exist_ok=True)
        (root / masks / sub).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (24, 16), (10 * i, 0, 0)).save(root / images / sub / f"{i}.jpg")
        Image.new("L", (24, 16), i % 2).save(root / masks / sub / f"{i}.png")
    (root / "classes.txt").write_text("background\nobject\n")
    return root


def test_a_mask_folder_is_split_into_lists_the_mask_reader_takes(tmp_path, capsys):
    root = mask_folder(tmp_path / "streets")
    spec = {"format": "mask_folder", "root": str(root), "split": "train"}
    with pytest.raises(DataError, match=r"splits/train\.txt does not exist.*visionkit split"):
        build_dataset(spec, split="train")
    code, out, err = run(["split", root, "--val", "0.3", "--seed", "2"], capsys)
    assert code == 0, err
    assert f"wrote {root / 'splits' / 'train.txt'} (7 images)" in out
    assert f"format: mask_folder, root: {root}, split: train" in out
    parts = {s: (root / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val")}
    every = sorted(f"{'a' if i % 2 else 'b'}/{i}.jpg" for i in range(10))
    assert (
        sorted(parts["train"] + parts["val"]) == every and not (root / "splits/test.txt").exists()
    )
    for split, names in parts.items():
        data = build_dataset({**spec, "split": split}, split=split)
        read = [
            Path(data.path_of(i)).relative_to(root / "images").as_posix() for i in range(len(data))
        ]
        assert read == sorted(names)
        assert data[0]["semantic"].shape == (16, 24)
    assert "no label file" not in out
    (root / "masks" / "a" / "1.png").unlink()  # an image whose label is missing: listed, warned
    code, out, _ = run(["split", root, "--val", "0.3", "--overwrite"], capsys)
    assert code == 0 and out.splitlines()[-1] == (
        "warning: 1 image of images/ has no label file in masks/ (a/1.jpg): training stops on "
        "them unless on_bad_label: skip leaves them out"
    )


def test_a_mask_folder_with_other_folder_names_and_stem_lists(tmp_path, capsys):
    root = mask_folder(tmp_path / "camvid", n=6, images="train", masks="trainannot")
    code, out, err = run(["split", root, "--images", "train", "--masks", "trainannot"], capsys)
    assert code == 0, err
    assert "images: train, masks: trainannot, split: train" in out
    spec = {"format": "mask_folder", "root": str(root), "images": "train", "masks": "trainannot"}
    assert len(build_dataset({**spec, "split": "val"}, split="val")) == 1
    # mmsegmentation's lists of stems, in a file named by path, read as they are
    (root / "mine.txt").write_text("# my picks\nb/0\n./a/3.jpg\n\n")
    data = build_dataset({**spec, "split": "mine.txt"}, split="train")
    assert [Path(data.path_of(i)).name for i in range(len(data))] == ["3.jpg", "0.jpg"]


def test_camvid_colour_labels_as_published_get_an_entry_that_reads_them(tmp_path, capsys):
    """``images/`` + ``labels/<stem>_L.png`` (RGB) + ``label_colors.txt``: the entry split
    prints names the suffix and the palette, and reads the split as it is (it printed neither,
    and the entry it gave stopped on "no class names")."""
    from tests.data.test_mask_folder_formats import write_camvid

    root = write_camvid(tmp_path / "camvid", n=4)
    code, out, err = run(["split", root, "--val", "0.25", "--masks", "labels"], capsys)
    assert code == 0, err
    keys = "masks: labels, mask_suffix: _L, palette: label_colors.txt"
    assert f"data.train='{{format: mask_folder, root: {root}, {keys}, split: train}}'" in out
    spec = {"format": "mask_folder", "root": str(root), "masks": "labels", "mask_suffix": "_L"}
    data = build_dataset({**spec, "palette": "label_colors.txt", "split": "train"}, split="train")
    assert len(data) == 3 and data.label_names["semantic"] == ["Sky", "Building", "Car"]
    # without the palette key, the missing class names point at the palette file beside them
    with pytest.raises(DataError, match=r"no class names; .* palette: label_colors\.txt"):
        build_dataset({**spec, "split": "train"}, split="train")


@pytest.mark.reliability
def test_a_mask_split_list_naming_missing_images_is_a_plain_message(tmp_path):
    root = mask_folder(tmp_path / "m", n=4)
    spec = {"format": "mask_folder", "root": str(root)}
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("b/0.jpg\nb/7.jpg\nc/9\n")
    with pytest.raises(DataError, match=r"2 of 3 listed images are not in .*images: b/7\.jpg, c/9"):
        build_dataset({**spec, "split": "train"}, split="train")
    with pytest.raises(
        DataError, match=r"splits/val\.txt does not exist \(splits in .*\['train'\]"
    ):
        build_dataset({**spec, "split": "val"}, split="val")
    (root / "splits" / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(DataError, match="lists no images"):
        build_dataset({**spec, "split": "empty"}, split="train")


def test_mask_split_lists_as_other_tools_write_them(tmp_path):
    root = tmp_path / "city"
    for name in ("aachen_0_leftImg8bit", "aachen_1_leftImg8bit", "x_leftImg8bit"):
        (root / "images" / "aachen").mkdir(parents=True, exist_ok=True)
        (root / "masks" / "aachen").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(root / "images" / "aachen" / f"{name}.png")
        stem = name.removesuffix("_leftImg8bit")
        Image.new("L", (8, 8), 1).save(root / "masks" / "aachen" / f"{stem}_gtFine.png")
    Image.new("RGB", (8, 8)).save(root / "images" / "aachen" / "x_leftImg8bit.jpg")
    (root / "classes.txt").write_text("a\nb\n")
    spec = {
        "format": "mask_folder",
        "root": str(root),
        "image_suffix": "_leftImg8bit",
        "mask_suffix": "_gtFine",
    }
    # mmsegmentation's lists: names without image_suffix, in a file named by its path, with a BOM
    (root / "lists").mkdir()
    (root / "lists" / "train").write_text("\ufeffaachen/aachen_0\naachen/aachen_0\n", "utf-8")
    data = build_dataset({**spec, "split": "lists/train"}, split="train")
    assert [Path(data.path_of(i)).name for i in range(len(data))] == ["aachen_0_leftImg8bit.png"]
    # a name two images answer to is refused, naming both
    (root / "lists" / "val.txt").write_text("aachen/x\n")
    with pytest.raises(DataError, match=r"'aachen/x' names 2 images \(x_leftImg8bit.jpg, x_lef"):
        build_dataset({**spec, "split": "lists/val.txt"}, split="val")


def test_split_overwrite_removes_a_stale_test_list_and_mask_folders_are_told_apart(tmp_path):
    root = mask_folder(tmp_path / "m", n=10)
    split_dataset(root, val=0.2, test=0.2)
    assert (root / "splits" / "test.txt").exists()
    split_dataset(root, val=0.2, overwrite=True)  # no test split now: the old list goes
    assert sorted(p.name for p in (root / "splits").iterdir()) == ["train.txt", "val.txt"]
    # another images folder given with --images alone; masks/ beside XML is a VOC folder
    photos = mask_folder(tmp_path / "p", n=4, images="photos")
    assert split_dataset(photos, val=0.25, images="photos").kind == "masks"
    voc = published_voc(tmp_path / "voc", n=4)
    (voc / "masks").mkdir()
    assert split_dataset(voc, val=0.25).kind == "voc"


def class_folders(root: Path, counts: dict[str, int]) -> Path:
    """``root/<class>/<i>.jpg``: ``counts[class]`` photos of each class."""
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (20, 16), (20 * i, 0, 0)).save(root / name / f"{i}.jpg")
    return root


def test_class_folders_are_split_per_class_into_lists_the_folder_reader_takes(tmp_path, capsys):
    """One folder per class and no train / val (how most photo collections start): each
    class is split alike, and ``format: folder`` reads a split by its list."""
    root = class_folders(tmp_path / "pets", {"cat": 10, "dog": 5, "rare": 1})
    code, out, err = run(["split", root, "--val", "0.2", "--seed", "3"], capsys)
    assert code == 0, err
    assert f"wrote {root / 'splits' / 'train.txt'} (13 images)" in out  # 8 + 4 + the 1 rare
    assert f"wrote {root / 'splits' / 'val.txt'} (3 images)" in out  # 2 + 1
    assert f"data.train.root={root} data.train.split=train data.val.root={root}" in out
    parts = {s: (root / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val")}
    assert sum(n.startswith("cat/") for n in parts["val"]) == 2
    assert sum(n.startswith("dog/") for n in parts["val"]) == 1
    assert "rare/0.jpg" in parts["train"]  # too few to split: all of it trains
    train = build_dataset({"format": "folder", "root": str(root), "split": "train"})
    assert train.label_names == {"class": ["cat", "dog", "rare"]}  # splits/ is no class
    assert sorted(Path(train.path_of(i)).relative_to(root).as_posix() for i in range(13)) == (
        sorted(parts["train"])
    )
    val = build_dataset(
        {
            "format": "folder",
            "root": str(root),
            "split": "val",
            "class_names": ["cat", "dog", "rare"],
        },
        split="val",
    )
    assert len(val) == 3 and {val[i]["class"] for i in range(3)} == {0, 1}
    (root / "splits" / "val.txt").write_text("cat/0.jpg\ncat/gone.jpg\n")
    with pytest.raises(DataError, match=r"val\.txt names images that are not in a class folder"):
        build_dataset({"format": "folder", "root": str(root), "split": "val"})
    code, _, err = run(["split", tmp_path / "pets"], capsys)
    assert code == 1 and "split files exist" in err
    (root / "empty").mkdir()  # refused as the reader refuses it, before anything is written
    code, _, err = run(["split", root, "--overwrite"], capsys)
    assert code == 1 and "class folders without images" in err and "empty/" in err
    assert (root / "splits" / "val.txt").read_text() == "cat/0.jpg\ncat/gone.jpg\n"


def test_validating_on_the_training_images_is_warned_of(tmp_path):
    """The parent folder given as both roots, or one dataset for both splits: validation
    would score the training photos, which is said; a split of one folder is not."""
    from visionkit.config import load_config
    from visionkit.data.datasets import shared_images_note

    root = class_folders(tmp_path / "pets", {"cat": 4, "dog": 4})

    def note(train: dict, val: dict) -> str | None:
        heads = {"cls": {"name": "linear", "num_classes": None}}
        config = {"model": {"backbone": {"name": "simple_cnn"}, "heads": heads}}
        return shared_images_note(
            load_config({**config, "data": {"train": train, "val": val}}).data
        )

    entry = {"format": "folder", "root": str(root)}
    said = note(entry, {"format": "folder", "root": f"{tmp_path}/./pets"})
    assert said == (
        f"data.val reads the same images as data.train (folder {root}): validation would score "
        "the photos the model trains on; give held-out photos, or split the dataset "
        "(visionkit split)"
    )
    assert note({**entry, "split": "train"}, {**entry, "split": "val"}) is None
    assert note(entry, {"format": "folder", "root": str(tmp_path)}) is None
    unset = {"format": "folder", "root": None}  # a recipe's: build_datasets asks for it
    assert note(unset, unset) is None


def test_validation_images_listed_in_the_training_split_too_are_warned_of(tmp_path):
    """A VOC val.txt that lists training ids (or two COCO files of the same photos) is no
    same-entry case: the built datasets' image files are compared."""
    from tests.data.test_convert import voc_object, voc_xml
    from visionkit.build.data import build_datasets
    from visionkit.config import load_config
    from visionkit.data.datasets import shared_images_note

    root = tmp_path / "voc"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for stem in "abcd":
        Image.new("RGB", (32, 24)).save(root / "JPEGImages" / f"{stem}.jpg")
        xml = voc_xml([voc_object("cat", (2, 2, 12, 12))], f"{stem}.jpg", (32, 24))
        (root / "Annotations" / f"{stem}.xml").write_text(xml)
    (root / "ImageSets/Main/train.txt").write_text("a\nb\nc\n")
    (root / "ImageSets/Main/val.txt").write_text("c\nd\n")
    heads = {"det": {"name": "fcos", "num_classes": None}}
    entry = {"format": "voc", "root": str(root)}
    data = {"train": {**entry, "split": "train"}, "val": {**entry, "split": "val"}}
    config = load_config(
        {"model": {"backbone": {"name": "simple_cnn"}, "heads": heads}, "data": data}
    )
    datasets = build_datasets(config.data, needs=["boxes"])
    assert shared_images_note(config.data) is None  # other entries: the config cannot tell
    assert shared_images_note(config.data, datasets) == (
        f"data.val: 1 of its 2 images is a training image too (e.g. {root / 'JPEGImages' / 'c.jpg'}): "
        "validation would score photos the model trains on; give held-out photos, or split the "
        "dataset (visionkit split)"
    )
    (root / "ImageSets/Main/val.txt").write_text("d\n")
    config = load_config({**config.model_dump(), "data": data})
    assert shared_images_note(config.data, build_datasets(config.data, needs=["boxes"])) is None


def test_a_folder_without_split_lists_says_how_to_read_all_of_it(tmp_path):
    """eval of a model trained with split: val, pointed at another (held-out) folder, was told
    only to write split lists with visionkit split: the fix it needed is split=null."""
    for name in ("cat", "dog"):
        (tmp_path / "held_out" / name).mkdir(parents=True)
        Image.new("RGB", (16, 16)).save(tmp_path / "held_out" / name / "0.png")
    spec = {"format": "folder", "root": str(tmp_path / "held_out"), "split": "val"}
    with pytest.raises(DataError) as info:
        build_dataset(spec, split="val")
    assert "visionkit split" in str(info.value)
    assert "leave split out of its entry (data.val.split=null on the command line" in str(
        info.value
    )
    assert len(build_dataset({**spec, "split": None}, split="val")) == 2
