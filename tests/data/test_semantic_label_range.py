"""Issue 18 item 11: label PNG values outside the classes (and not ignored) are a clear error
naming the file and the values, through ``visionkit train`` and ``check-data``, never a
traceback from inside the semantic head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from tests.data.test_masks import write_void_folder
from tests.helpers import run
from visionkit.data.readers.voc_segmentation import write_mask_png
from visionkit.errors import SampleError, VisionkitError
from visionkit.models.heads.semantic_fpn import SemanticFPNHead

pytestmark = pytest.mark.reliability


def segmentation_config(tmp_path, train, val):
    spec = {"format": "mask_folder"}
    config = {
        "name": "seg",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"seg": {"name": "semantic_fpn", "num_classes": None, "channels": 16}},
        },
        "data": {
            "train": {**spec, "root": str(train)},
            "val": {**spec, "root": str(val)},
            "image_size": 32,
            "batch_size": 2,
            "num_workers": 0,
        },
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 1,
            "limit_val_batches": 1,
            "accelerator": "cpu",
            "enable_progress_bar": False,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def with_bad_value(root, value=7):
    """``masks/0.png`` gets a patch of ``value``, which is no class (0..2) of the folder."""
    mask = np.zeros((32, 32), np.uint8)
    mask[4:8, 4:8] = value
    write_mask_png(root / "masks" / "0.png", mask, palette=False)
    return root / "masks" / "0.png"


def test_train_on_a_label_png_with_a_value_past_the_classes_names_the_file(tmp_path, capsys):
    val = write_void_folder(tmp_path / "val", void=255)
    bad = with_bad_value(val)  # its first image: in the one validation batch, unshuffled
    config = segmentation_config(tmp_path, write_void_folder(tmp_path / "train", void=255), val)
    code, _, err = run(["train", "--config", config, "data.num_workers=1"], capsys)
    assert code == 1
    assert f"{bad}: label values [7] are not classes 0..2 nor the ignore index 255" in err
    assert (
        "if 7 marks void (unlabelled) pixels, as CamVid's 11 and VOC's 255 borders do, set " in err
    )
    assert "ignore_index: 7 in this dataset's entry" in err
    assert "(e.g. data.val.ignore_index=7, and data.train.ignore_index=7)" in err


def test_voc_borders_under_a_recipes_ignore_index_say_to_set_255(tmp_path, capsys):
    """The CamVid recipe's ``ignore_index: 11`` kept by dotted overrides on VOC label PNGs
    (255 borders): the error said what 255 is not, and nothing of what to do."""
    root = write_void_folder(tmp_path / "data", void=255)
    code, out, _ = run(
        ["check-data", "--format", "mask_folder", "--root", root, "ignore_index=11"],
        capsys,
    )
    assert code == 1
    assert "label values [255] are not classes 0..2 nor the ignore index 11" in out
    assert (
        "VOC's 255 borders do, set ignore_index: 255 in this dataset's entry instead of 11" in out
    )


def test_check_data_finds_the_value_before_training(tmp_path, capsys):
    root = write_void_folder(tmp_path / "data", void=255)
    with_bad_value(root)
    code, out, _ = run(["check-data", "--format", "mask_folder", "--root", root], capsys)
    assert code == 1
    assert "masks/0.png" in out and "label values [7] are not classes 0..2" in out


def test_a_val_folder_with_more_classes_than_training_stops_before_training(tmp_path, capsys):
    """The case of the issue: a val classes.txt with one more class let value 3 through its
    reader, and the head raised ``ValueError: targets['semantic'] has values [3] outside 0..2``
    in the middle of validation."""
    train = write_void_folder(tmp_path / "train", void=255)
    val = write_void_folder(tmp_path / "val", void=3)  # value 3 ...
    (val / "classes.txt").write_text("sky\nroad\ncar\nbus\n")  # ... is the class 'bus' here
    code, _, err = run(["train", "--config", segmentation_config(tmp_path, train, val)], capsys)
    assert code == 1
    assert f"semantic classes: data.val ({val / 'classes.txt'}) has" in err
    assert "label 3 ('bus') of data.val is not a class of data.train" in err
    assert "targets['semantic']" not in err


def test_the_heads_own_check_is_a_visionkit_error_naming_the_images():
    head = SemanticFPNHead([8, 8], [8, 16], num_classes=3, channels=8)
    logits = head([torch.zeros(2, 8, 4, 4), torch.zeros(2, 8, 2, 2)])
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[1, :2, :2] = 11
    batch = {"semantic": target, "image_ids": torch.tensor([41, 42])}
    with pytest.raises(SampleError) as info:
        head.loss(logits, batch)
    assert isinstance(info.value, VisionkitError)
    assert str(info.value).startswith(
        "semantic label maps of image ids [42] have values [11] that are neither classes 0..2 "
        "nor ignored (255 or ignore_index 255)"
    )


def test_the_ignore_index_hint_only_when_none_is_set(tmp_path):
    """A stray value with ignore_index still 255 suggests setting it; with CamVid's 11 (here
    3) already set, a stray 7 must not suggest replacing it (every 3 would become an error)."""
    from visionkit.data.readers.mask_folder import MaskFolderDataset

    root = write_void_folder(tmp_path / "void", void=3)
    bad = with_bad_value(root, value=7)
    with pytest.raises(VisionkitError) as info:
        MaskFolderDataset(root, ignore_index=3).read_mask(0)
    assert f"{bad}: label values [7] are not classes 0..2 nor the ignore index 3" in str(info.value)
    assert "set ignore_index" not in str(info.value)
    with pytest.raises(VisionkitError, match="set ignore_index: 7 in this dataset's entry"):
        MaskFolderDataset(root).read_mask(0)
    # a dataset of a mix: the keys name it (data.train.ignore_index is refused beside a mix)
    from visionkit.build.data import build_split

    mix = build_split({"fields": {"format": "mask_folder", "root": str(root)}}, split="train")
    with pytest.raises(
        VisionkitError,
        match=r"\(e\.g\. data\.train\.fields\.ignore_index=7, and data\.val\.fields\.ignore_index=7\)",
    ):
        mix["fields"].read_mask(0)
