"""Session 39: a class folder whose images the split's list leaves out (``splits/train.txt``
naming none of ``fox/``) was read as a class with 0 images and no word (``check-data``: "no
problems found"); now a warning names the class and the list."""

from __future__ import annotations

import logging
from pathlib import Path

from tests.helpers import write_image
from visionkit.data.readers.folder import ImageFolderDataset


def photos(root: Path, classes: dict[str, int]) -> Path:
    for name, count in classes.items():
        for i in range(count):
            write_image(root / name / f"{i}.png", seed=i)
    return root


def test_a_class_the_training_list_leaves_out_is_warned_of_by_name_and_list(tmp_path, caplog):
    root = photos(tmp_path / "pets", {"cat": 3, "dog": 3, "fox": 3})
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("cat/0.png\ncat/1.png\ndog/0.png\ndog/1.png\n")
    with caplog.at_level(logging.WARNING):
        train = ImageFolderDataset(root, split="train")
    assert train.label_names["class"] == ["cat", "dog", "fox"]  # the folder's classes
    [problem] = train.report.warnings
    assert problem.kind == "class without images"
    assert "fox/ (3 images in it, none listed in splits/train.txt)" in problem.detail
    assert "in a training set they are never learnt" in problem.detail
    assert "fox/ (3 images in it, none listed in splits/train.txt)" in caplog.text


def test_a_list_that_names_every_class_says_nothing(tmp_path):
    root = photos(tmp_path / "pets", {"cat": 2, "dog": 2})
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("cat/0.png\ndog/1.png\n")
    assert not ImageFolderDataset(root, split="train").report.warnings
