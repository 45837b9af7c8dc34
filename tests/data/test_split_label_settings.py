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
