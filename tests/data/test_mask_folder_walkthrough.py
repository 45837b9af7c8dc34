"""A walkthrough of mask-folder / VOC-segmentation datasets as users meet them: an ignore_index
that is also a class, ignore_index beside colour labels, split lists under other names (CVAT's
default.txt), JPEG labels, Cityscapes' suffixes, what on_bad_label: skip covers, and
classes.txt lines numbered ``0 sky``. Each test makes its own data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.data.test_mask_folder_formats import CITYSCAPES, write_camvid, write_cityscapes
from tests.data.test_masks import write_void_folder
from tests.helpers import run
from visionkit.build.data import build_dataset
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.errors import ConfigError, DataError

pytestmark = pytest.mark.reliability


def check_data(root, capsys, *pairs):
    return run(["check-data", "--format", "mask_folder", "--root", root, *pairs], capsys)


# ---- 1: an ignore_index that is a class -------------------------------------------------------
def test_an_ignore_index_that_is_a_class_is_an_error_naming_it(tmp_path, capsys):
    """``ignore_index=0`` on a folder whose class 0 is 'sky' was accepted: check-data printed
    'no problems found' and training never learnt class 0 nor scored it."""
    root = write_void_folder(tmp_path / "streets", void=255)
    code, out, _ = check_data(root, capsys, "ignore_index=0")
    assert code == 1 and "no problems found" not in out
    assert f"ignore_index 0 is class 0 'sky' of {root / 'classes.txt'}: a class that is " in out
    assert "is never learnt and scores nothing" in out
    assert "its name cannot be dropped from classes.txt without shifting the classes" in out


def test_camvids_unlabelled_class_named_last_says_to_drop_it(tmp_path, capsys):
    """CamVid's 12-name classes.txt ends with 'Unlabelled', the void label 11 (here 3)."""
    root = write_void_folder(tmp_path / "camvid", void=3)
    (root / "classes.txt").write_text("sky\nroad\ncar\nUnlabelled\n")
    spec = {"format": "mask_folder", "root": str(root), "ignore_index": 3}
    with pytest.raises(DataError) as info:  # for training
        build_dataset(spec)
    assert str(info.value).startswith(
        f"data.train: ignore_index 3 is class 3 'Unlabelled' of {root}"
    )
    assert "drop it from classes.txt (the void label then is no class) or give another" in str(
        info.value
    )
    # read for evaluation (an earlier version's run, trained so), a warning of its report
    val = build_dataset(spec, split="val")
    assert val.report.warnings and val.ignored_class in str(info.value)
    # given as class_names, the message says so; out of the classes it is read as before
    with pytest.raises(DataError, match="drop it from class_names"):
        build_dataset({**spec, "class_names": ["a", "b", "c", "void"]})
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    assert not MaskFolderDataset(root, ignore_index=3, image_check="decode").report.errors


def test_training_stops_on_it_naming_the_entry(tmp_path, capsys):
    from tests.data.test_semantic_label_range import segmentation_config

    root = write_void_folder(tmp_path / "data", void=255)
    config = segmentation_config(tmp_path, root, root)
    # both splits: with data.train's alone, the label settings compared between splits stop it
    overrides = ["data.train.ignore_index=2", "data.val.ignore_index=2"]
    code, _, err = run(["train", "--config", config, *overrides], capsys)
    assert code == 1
    assert "data.train: ignore_index 2 is class 2 'car' of" in err


# ---- 2: ignore_index beside colour labels -----------------------------------------------------
def palette_config(tmp_path, root):
    entry = {
        "format": "mask_folder",
        "root": str(root),
        "masks": "labels",
        "mask_suffix": "_L",
        "palette": "label_colors.txt",
        "ignore_index": 11,  # kept from the CamVid recipe
    }
    config = {
        "name": "seg",
        "model": {
            "backbone": {"name": "simple_cnn"},
            "neck": {"name": "fpn", "out_channels": 16},
            "heads": {"seg": {"name": "semantic_fpn", "num_classes": None}},
        },
        "data": {"train": entry, "val": entry, "image_size": 32, "batch_size": 2},
        "output_dir": str(tmp_path / "runs"),
    }
    path = tmp_path / "seg.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_ignore_index_with_a_palette_names_the_entry_and_null_is_the_default(tmp_path, capsys):
    config = palette_config(tmp_path, write_camvid(tmp_path / "camvid"))
    code, _, err = run(["check-data", "--config", config, "--split", "all"], capsys)
    assert code == 2
    assert "data.train.ignore_index: 11 is not used with a palette (RGB colour labels)" in err
    assert "data.val.ignore_index: 11 is not used with a palette" in err
    assert "leave ignore_index out of this entry, or set it to null (the default, 255)" in err
    nulls = ["data.train.ignore_index=null", "data.val.ignore_index=null"]
    code, out, err = run(["check-data", "--config", config, "--split", "all", *nulls], capsys)
    assert code == 0, out + err
    assert out.count("  no problems found") == 2  # (and the warning: val reads train's images)


# ---- 3: split lists under other names ---------------------------------------------------------
def voc_layout(root, lists):
    """A VOC-layout mask folder (``JPEGImages/`` + ``SegmentationClass/``) with the given
    ``ImageSets/Segmentation/<name>.txt`` lists (name → listed stems)."""
    write_void_folder(root, void=255)
    (root / "images").rename(root / "JPEGImages")
    (root / "masks").rename(root / "SegmentationClass")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for name, stems in lists.items():
        (root / "ImageSets" / "Segmentation" / f"{name}.txt").write_text("\n".join(stems) + "\n")
    return root


def test_cvats_default_list_is_named_by_the_missing_split_and_by_split(tmp_path, capsys):
    """CVAT's export lists its images in default.txt: check-data --split train advised
    'visionkit split', which refused advising split: train, which was missing: a loop."""
    root = voc_layout(tmp_path / "cvat", {"default": ["0", "1", "2", "3"]})
    code, out, _ = check_data(root, capsys, "--split", "train")
    assert code == 1
    assert f"split file {root / 'splits' / 'train.txt'} does not exist (nor " in out
    assert "ImageSets/Segmentation/ holds default.txt (4 images): split: default" in out
    assert f"visionkit split {root} --val 0.2 --overwrite" in out
    code, _, err = run(["split", root, "--val", "0.25"], capsys)
    assert code == 1 and "(default.txt (4 images)): read them with format: mask_folder" in err
    assert f"root: {root}, split: default; --overwrite writes" in err
    assert "split: train" not in err and "split: val" not in err
    # the advice works: default reads, and --overwrite writes train / val lists beside it
    code, out, _ = check_data(root, capsys, "--split", "default")
    assert code == 0 and "images: 4\n" in out
    assert run(["split", root, "--val", "0.25", "--overwrite"], capsys)[0] == 0
    assert (root / "ImageSets" / "Segmentation" / "default.txt").is_file()
    assert len(MaskFolderDataset(root, split="train")) == 3


def test_a_voc_folder_with_a_train_list_only_is_not_advised_split_val(tmp_path, capsys):
    root = voc_layout(tmp_path / "voc", {"train": ["0", "1"]})
    code, _, err = run(["split", root, "--val", "0.25"], capsys)
    assert code == 1 and f"root: {root}, split: train; --overwrite" in err
    assert "split: val" not in err
    with pytest.raises(DataError) as info:
        MaskFolderDataset(root, split="val")
    assert "ImageSets/Segmentation/ holds train.txt (2 images): split: train" in str(info.value)


# ---- 4: labels saved as JPEG ------------------------------------------------------------------
def test_jpeg_labels_beside_the_images_are_named_and_why_they_are_refused(tmp_path, capsys):
    root = write_void_folder(tmp_path / "jpg", void=255)
    for png in sorted((root / "masks").glob("*.png")):
        Image.open(png).convert("L").save(png.with_suffix(".jpg"))
        png.unlink()
    code, out, _ = check_data(root, capsys)
    assert code == 1
    assert "masks/0.png: no label PNG for 0.png (masks/0.jpg is there, but JPEG labels are " in out
    assert "lossy: compression changes the class values" in out and "save the labels as PNG" in out
    with pytest.raises(ConfigError) as info:
        MaskFolderDataset(root, mask_ext=".JPG")
    assert "mask_ext: '.JPG' is not one of .png, .tif, .tiff: JPEG labels are lossy" in str(
        info.value
    )


# ---- 5: Cityscapes' suffixes ------------------------------------------------------------------
def test_a_misspelt_suffix_gets_the_closest_label_file_not_the_first(tmp_path):
    """With _gtFine_labelIds (the 34 raw ids) and _gtFine_color beside _gtFine_labelTrainIds,
    the typo _gtFine_labelTrainId was told to use _gtFine_color / _gtFine_labelIds."""
    root = write_cityscapes(tmp_path / "cs")
    for label in sorted((root / "gtFine").rglob("*_labelTrainIds.png")):
        for other in ("_labelIds", "_color", "_instanceIds"):
            shutil.copy(label, str(label).replace("_labelTrainIds", other))
    typo = {**CITYSCAPES, "mask_suffix": "_gtFine_labelTrainId"}
    with pytest.raises(DataError) as info:
        MaskFolderDataset(root, **typo)
    assert (
        "(gtFine/aachen/aachen_000000_000000_gtFine_labelTrainIds.png is there: set "
        "mask_suffix: _gtFine_labelTrainIds in the dataset's entry)"
    ) in str(info.value)
    # no mask_suffix at all: the file training takes, not the first name in the folder
    with pytest.raises(DataError, match="set mask_suffix: _gtFine_labelTrainIds in"):
        MaskFolderDataset(root, **{**CITYSCAPES, "mask_suffix": ""})


def test_a_forgotten_image_suffix_is_hinted_at(tmp_path):
    root = write_cityscapes(tmp_path / "cs")
    with pytest.raises(DataError) as info:
        MaskFolderDataset(root, **{**CITYSCAPES, "image_suffix": ""})
    assert (
        "aachen_000000_000000_leftImg8bit_gtFine_labelTrainIds.png: no label PNG for "
        "aachen_000000_000000_leftImg8bit.png (gtFine/aachen/aachen_000000_000000_gtFine_"
        "labelTrainIds.png is there: the image names carry a suffix the label files lack; set "
        "image_suffix: _leftImg8bit in the dataset's entry)"
    ) in str(info.value)
    # a label missing for good gets no hint from another image's label
    (root / "gtFine" / "aachen" / "aachen_000000_000000_gtFine_labelTrainIds.png").unlink()
    with pytest.raises(DataError) as info:
        MaskFolderDataset(root, **CITYSCAPES)
    assert str(info.value).endswith("no label PNG for aachen_000000_000000_leftImg8bit.png")


# ---- 6: what on_bad_label: skip covers --------------------------------------------------------
def test_the_skip_hint_says_label_values_are_not_covered_and_names_check_data(tmp_path):
    """The hint promised that on_bad_label: skip trains without every image of a bad label
    file; a file of values that are no class is found only when read, and stops training."""
    from visionkit.build.data import build_datasets
    from visionkit.config import load_config

    root = write_void_folder(tmp_path / "data", void=255)
    (root / "masks" / "1.png").unlink()
    bad = np.zeros((32, 32), np.uint8)
    bad[:4, :4] = 7  # no class: not seen by the header check
    Image.fromarray(bad).save(root / "masks" / "2.png")
    entry = {"format": "mask_folder", "root": str(root)}
    cfg = {
        "model": {"backbone": {"name": "simple_cnn"}, "heads": {"seg": {"name": "semantic_fpn"}}},
        "data": {"train": entry},
    }
    with pytest.raises(DataError) as info:
        build_datasets(load_config(cfg).data, needs=["semantic"])
    last = str(info.value).splitlines()[-1]
    assert "trains without the images whose label files are bad (a mask folder's missing, " in last
    assert "not those of label values that are no class, which training finds only when it " in last
    assert last.endswith("visionkit check-data decodes every label file and lists them all)")
    # as the hint says: skip leaves out the missing one, and the bad values stop on reading
    entry["on_bad_label"] = "skip"
    train = build_datasets(load_config(cfg).data, needs=["semantic"])["train"]
    assert [p.name for p in train.paths] == ["0.png", "2.png", "3.png"]
    with pytest.raises(DataError, match=r"2\.png: label values \[7\] are not classes 0\.\.2"):
        train[1]


# ---- 7: numbered classes.txt lines, and one colour ----------------------------------------------
def test_numbered_classes_txt_lines_are_read_by_their_index(tmp_path):
    """``0 sky`` lines became the class name '0 sky'."""
    root = write_void_folder(tmp_path / "data", void=255)
    (root / "classes.txt").write_text("1 road\n0 sky\n2 traffic light\n")
    assert MaskFolderDataset(root).label_names["semantic"] == ["sky", "road", "traffic light"]
    # names that begin with a number (a review: 1 cent, 2 cent, 5 cent were refused)
    (root / "classes.txt").write_text("1 cent\n2 cent\n5 cent\n")
    assert MaskFolderDataset(root).label_names["semantic"] == ["1 cent", "2 cent", "5 cent"]
    (root / "classes.txt").write_text("sky\n3d road\ncar\n")  # names, one not numbered
    assert MaskFolderDataset(root).label_names["semantic"] == ["sky", "3d road", "car"]
