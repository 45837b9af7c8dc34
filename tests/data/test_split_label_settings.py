"""Session 38: data.train and data.val of one mask folder read with different label
settings (val forgot ``ignore_index: 11``, or ``reduce_zero_label``) were not compared: the
validation labels were read another way than the training labels, and the metrics were
wrong (silently where no out-of-range value showed it). Now the config check says which key
differs in which split, what each says and what to write."""

from __future__ import annotations

import pytest

from tests.data.test_masks import write_void_folder
from tests.data.test_semantic_label_range import segmentation_config
from tests.helpers import run
from visionkit.build.label_settings import label_setting_problems


def test_train_stops_when_val_forgot_the_ignore_index_of_the_same_folder(tmp_path, capsys):
    root = write_void_folder(tmp_path / "camvid", void=3)
    config = segmentation_config(tmp_path, root, root)
    code, _, err = run(["train", "--config", config, "data.train.ignore_index=3"], capsys)
    assert code == 2
    assert "data.val.ignore_index: 255 (the default) but data.train.ignore_index: 3" in err
    assert "write ignore_index: 3 in data.val too (data.val.ignore_index=3)" in err
    assert not (tmp_path / "runs").exists()  # before anything was built


def test_check_data_names_a_differing_reduce_zero_label(tmp_path, capsys):
    root = write_void_folder(tmp_path / "ade", void=3)
    config = segmentation_config(tmp_path, root, root)
    code, out, _ = run(
        ["check-data", "--config", config, "--split", "all", "data.val.reduce_zero_label=true"],
        capsys,
    )
    assert code == 1
    assert "data.val.reduce_zero_label: true but data.train.reduce_zero_label: false" in out


def test_other_folders_are_warned_of_and_the_same_settings_pass():
    data = {
        "train": {"format": "mask_folder", "root": "a", "ignore_index": 11},
        "val": {"format": "mask_folder", "root": "b", "ignore_index": None},
    }
    errors, warnings = label_setting_problems(data)
    assert errors == []
    assert warnings[0].startswith("data.val.ignore_index: 255 (the default) but data.train")
    data["val"]["ignore_index"] = 11
    assert label_setting_problems(data) == ([], [])
    mixes = {  # a mix: each set compared with the training set of its name
        "train": {"x": {"format": "mask_folder", "root": "a", "reduce_zero_label": True}},
        "val": {"x": {"format": "mask_folder", "root": "a"}, "y": {"format": "folder"}},
    }
    errors, _ = label_setting_problems(mixes)
    assert errors[0].startswith("data.val.x.reduce_zero_label: false (the default) but data.")


@pytest.mark.parametrize("key", ["palette", "void_color"])
def test_palette_settings_are_compared_too(key):
    value = "colours.txt" if key == "palette" else [0, 0, 0]
    data = {
        "train": {"format": "mask_folder", "root": "r", key: value},
        "val": {"format": "mask_folder", "root": "r"},
    }
    errors, _ = label_setting_problems(data)
    assert errors and errors[0].startswith(f"data.val.{key}: null")


def test_other_label_files_of_one_folder_are_no_error(tmp_path):
    """Before: Cityscapes' one folder of ``_gtFine_color`` and ``_gtFine_labelTrainIds``
    files, trained on the colours (``palette: cityscapes``) and validated on the train ids,
    was refused as one dataset read two ways; the label files, not the root, are compared."""
    root = str(tmp_path / "cs")
    city = {"format": "mask_folder", "root": root, "image_suffix": "_leftImg8bit"}
    data = {
        "train": {**city, "mask_suffix": "_gtFine_color", "palette": "cityscapes"},
        "val": {**city, "mask_suffix": "_gtFine_labelTrainIds"},
    }
    assert label_setting_problems(data) == ([], [])
    data["train"] = {**city, "mask_suffix": "_gtFine_labelIds", "ignore_index": 0}
    errors, warnings = label_setting_problems(data)  # other files: a warning at most
    assert errors == [] and "they read other label files" in warnings[0]
    assert f"{root}/masks/*_gtFine_labelIds.png" in warnings[0]
    data["val"]["mask_suffix"] = "_gtFine_labelIds"  # the same files: read two ways
    errors, _ = label_setting_problems(data)
    assert errors[0].startswith("data.val.ignore_index: 255 (the default) but data.train")
    assert f"both read the label files {root}/masks/*_gtFine_labelIds.png" in errors[0]


def test_a_mix_is_matched_by_root_where_no_name_matches(tmp_path):
    """Before: a validation set matching none of the mix's names was compared with nothing."""
    data = {
        "train": {
            "camvid": {"format": "mask_folder", "root": "camvid", "ignore_index": 11},
            "extra": {"format": "mask_folder", "root": "extra"},
        },
        "val": {"format": "mask_folder", "root": "camvid"},
    }
    errors, _ = label_setting_problems(data)
    assert errors[0].startswith("data.val.ignore_index: 255 (the default) but ")
    assert "data.train.camvid.ignore_index: 11" in errors[0]


def test_one_palette_file_written_two_ways_is_the_same(tmp_path, monkeypatch):
    """Before: ``colours.txt`` and ``/data/camvid/colours.txt`` were told apart (an error)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "camvid").mkdir()
    absolute = tmp_path / "camvid" / "colours.txt"
    data = {
        "train": {"format": "mask_folder", "root": "camvid", "palette": "colours.txt"},
        "val": {"format": "mask_folder", "root": "camvid", "palette": str(absolute)},
    }
    assert label_setting_problems(data) == ([], [])
    data["val"]["palette"] = "other.txt"
    errors, _ = label_setting_problems(data)
    assert errors[0].startswith("data.val.palette: other.txt but data.train.palette: colours")


def test_check_data_compares_only_the_splits_asked_for(tmp_path, capsys):
    """Before: ``check-data --split train`` reported data.val's label settings as an error."""
    root = write_void_folder(tmp_path / "camvid", void=3)
    config = segmentation_config(tmp_path, root, root)
    args = ["check-data", "--config", config, "data.train.ignore_index=3"]
    code, out, _ = run([*args, "--split", "train"], capsys)
    assert code == 0 and "data.val" not in out, out
    code, out, _ = run([*args, "--split", "val"], capsys)
    assert code == 1 and "data.val.ignore_index: 255 (the default) but data.train" in out
