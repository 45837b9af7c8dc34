"""Session 39: ``class_weights`` took a list only, so balancing imbalanced classes meant
counting each class's training images by hand; ``class_weights: auto`` now takes
``n_images / (n_classes * images of the class)`` from the training set (scikit-learn's
``class_weight="balanced"``), logged once with the counts; a class without training images is
an error naming it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.helpers import write_image
from visionkit import create_model
from visionkit.build import build_datasets
from visionkit.build.model import build_model
from visionkit.config import load_config
from visionkit.errors import ConfigError


def pets(root: Path, classes: dict[str, int]) -> Path:
    for name, count in classes.items():
        for i in range(count):
            write_image(root / name / f"{i}.png", seed=i)
    return root


def config(root: Path, **data) -> dict:
    heads = {"cls": {"name": "linear", "class_weights": "auto"}}
    return {
        "model": {"backbone": {"name": "simple_cnn"}, "heads": heads},
        "data": {"train": {"format": "folder", "root": str(root), **data}, "image_size": 32},
    }


def built(cfg: dict):
    loaded = load_config(cfg)
    return build_model(loaded, build_datasets(loaded.data, needs=["class"]))


def test_auto_weighs_each_class_by_its_training_images_as_sklearns_balanced(tmp_path, caplog):
    root = pets(tmp_path / "pets", {"cat": 6, "dog": 2, "fox": 4})
    with caplog.at_level(logging.INFO, logger="visionkit"):
        model = built(config(root))
    # n / (C * count): 12 / (3 * 6), 12 / (3 * 2), 12 / (3 * 4)
    expected = [12 / 18, 2.0, 1.0]
    assert model.heads["cls"].class_weights.tolist() == pytest.approx(expected)
    # the resolved weights are what the checkpoint's config holds (load rebuilds them)
    assert model.meta["config"]["model"]["heads"]["cls"]["class_weights"] == pytest.approx(expected)
    [line] = [r.getMessage() for r in caplog.records if "class_weights" in r.getMessage()]
    assert line.startswith("model.heads.cls.class_weights: auto -> cat 0.667, dog 2, fox 1")
    assert "training images per class: cat 6, dog 2, fox 4" in line


def test_a_class_without_training_images_is_an_error_naming_it(tmp_path):
    root = pets(tmp_path / "pets", {"cat": 3, "dog": 3, "fox": 2})
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("cat/0.png\ncat/1.png\ndog/0.png\n")
    with pytest.raises(ConfigError) as err:
        built(config(root, split="train"))
    assert "model.heads.cls.class_weights: auto, but classes without training images: fox" in str(
        err.value
    )


def test_auto_without_a_training_set_and_a_misspelt_auto_are_refused():
    heads = {"cls": {"name": "linear", "num_classes": 2, "class_weights": "auto"}}
    cfg = {"model": {"backbone": {"name": "simple_cnn"}, "heads": heads}}
    with pytest.raises(ConfigError, match="auto takes the weights from the training set"):
        create_model(cfg)
    heads["cls"]["class_weights"] = "balanced"
    with pytest.raises(ConfigError, match=r"class_weights: expected a list or 'auto', got 'bal"):
        create_model(cfg)


def test_the_imbalance_warning_points_to_it(tmp_path):
    from visionkit.data.datasets import imbalance_note
    from visionkit.data.readers.folder import ImageFolderDataset

    note = imbalance_note(ImageFolderDataset(pets(tmp_path / "pets", {"cat": 10, "dog": 1})))
    assert "a classification head's class_weights: auto weighs each class by its images" in note
