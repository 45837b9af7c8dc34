"""Session 39: ``class_weights`` took a list only, so balancing imbalanced classes meant
counting each class's training images by hand; ``class_weights: auto`` now takes
``n_images / (n_classes * images of the class)`` from the training set (scikit-learn's
``class_weight="balanced"``), logged once with the counts; a class without training images is
an error naming it. Then: a mix with a set of other labels (a COCO box set) was refused, a
mix's sampling weights were ignored (the counts are now of what training draws), a list with a
bad item said "expected 'auto'" too, a resumed run recomputed them silently (it now keeps its
checkpoint's and warns), and the imbalance warning suggested auto when it was set."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from tests.helpers import make_coco, write_image
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


def test_a_mix_with_a_box_set_counts_the_sets_that_carry_classes(tmp_path, caplog):
    # docs/multitask.md's mix: a class-folder set beside a COCO box set (no image classes):
    # auto was refused ("the training set does not count its images per class")
    root = pets(tmp_path / "pets", {"cat": 6, "dog": 2})
    heads = {"cls": {"name": "linear", "class_weights": "auto"}, "det": {"name": "fcos"}}
    train = {
        "pets": {"format": "folder", "root": str(root)},
        "shapes": {"format": "coco", "images": str(make_coco(tmp_path / "shapes"))},
    }
    cfg = load_config(
        {
            "model": {"backbone": {"name": "simple_cnn"}, "neck": {"name": "fpn"}, "heads": heads},
            "data": {"train": train, "image_size": 32},
        }
    )
    with caplog.at_level(logging.INFO, logger="visionkit"):
        model = build_model(cfg, build_datasets(cfg.data, needs=["class", "boxes"]))
    assert model.heads["cls"].class_weights.tolist() == pytest.approx([8 / 12, 2.0])
    assert "images per class training draws, by the sets' weights: cat 6, dog 2" in caplog.text


def test_a_mix_counts_each_sets_classes_as_often_as_training_draws_them(tmp_path, caplog):
    # set a (cat 8, dog 2) drawn 9 times as often as set b (cat 2, dog 8): training draws
    # 74 % cats, and auto said 'balanced' (cat 10, dog 10: weights 1, 1)
    a = pets(tmp_path / "a", {"cat": 8, "dog": 2})
    b = pets(tmp_path / "b", {"cat": 2, "dog": 8})
    train = {
        "a": {"format": "folder", "root": str(a), "weight": 9},
        "b": {"format": "folder", "root": str(b), "weight": 1},
    }
    cfg = load_config({**config(a), "data": {"train": train, "image_size": 32}})
    datasets = build_datasets(cfg.data, needs=["class"])
    with caplog.at_level(logging.INFO, logger="visionkit"):
        model = build_model(cfg, datasets)
    # weight_d * count_dc / len_d: cat 9 * 0.8 + 1 * 0.2 = 7.4, dog 2.6; rescaled to 20 images
    drawn = {"cat": 14.8, "dog": 5.2}
    expected = [20 / (2 * drawn["cat"]), 20 / (2 * drawn["dog"])]
    assert model.heads["cls"].class_weights.tolist() == pytest.approx(expected)
    # what the sampler draws: each class's share by the mix's own sample weights
    train_set, shares = datasets["train"], {"cat": 0.0, "dog": 0.0}
    for i, w in enumerate(train_set.sample_weights()):
        shares[train_set.label_names["class"][train_set[i]["class"]]] += w
    assert shares["cat"] / shares["dog"] == pytest.approx(drawn["cat"] / drawn["dog"])
    assert "images per class training draws, by the sets' weights: cat 14.8, dog 5.2" in (
        caplog.text
    )


def test_a_set_that_carries_classes_without_counting_them_is_named():
    from visionkit.build.class_weights import auto_class_weights, drawn_counts

    class Counted:
        label_names = {"class": ["cat", "dog"]}
        report = type("Report", (), {"class_counts": {"class": {"cat": 3, "dog": 1}}})()

        def __len__(self) -> int:
            return 4

    class Uncounted(Counted):
        report = None

    mix = type("Mix", (), {})()
    mix.parts, mix.weights = {"a": Counted(), "b": Uncounted()}, {"a": 1.0, "b": 1.0}
    mix.label_names = {"class": ["cat", "dog"]}
    assert drawn_counts(mix, "class") == ({"cat": 3.0, "dog": 1.0}, ["data.train.b"])
    cfg = load_config(config(Path("unused")))
    with pytest.raises(ConfigError, match=r"auto, but data.train.b carries 'class' labels without"):
        auto_class_weights(cfg, mix)


def test_a_list_with_a_bad_item_says_the_item_only():
    heads = {"cls": {"name": "linear", "num_classes": 2, "class_weights": ["x", 1.0]}}
    with pytest.raises(ConfigError) as err:
        create_model({"model": {"backbone": {"name": "simple_cnn"}, "heads": heads}})
    # before: a second line, "class_weights: expected 'auto', got ['x', 1.0]"
    assert str(err.value).splitlines()[1:] == [
        "  model.heads.cls.class_weights[0]: expected a valid number, unable to parse string as "
        "a number, got 'x'"
    ]


def test_the_imbalance_warning_does_not_point_to_it_when_class_weights_are_set(tmp_path):
    from visionkit.build.class_weights import weighs_classes
    from visionkit.data.datasets import imbalance_note
    from visionkit.data.readers.folder import ImageFolderDataset

    dataset = ImageFolderDataset(pets(tmp_path / "pets", {"cat": 10, "dog": 1}))
    assert "class_weights" not in imbalance_note(dataset, weighted=True)
    for weights, weighted in (("auto", True), ([1.0, 2.0], True), (None, False)):
        cfg = config(tmp_path)
        cfg["model"]["heads"]["cls"]["class_weights"] = weights
        assert weighs_classes(load_config(cfg)) is weighted


def test_a_resumed_run_keeps_its_weights_and_warns_when_the_data_gives_others(tmp_path, caplog):
    from visionkit.engine.runner import train

    root = pets(tmp_path / "pets", {"cat": 10, "dog": 1})
    cfg = config(root)
    cfg["data"].update(batch_size=8, num_workers=0)
    cfg.update(trainer={"max_epochs": 1, "accelerator": "cpu"}, output_dir=str(tmp_path / "runs"))
    with caplog.at_level(logging.INFO, logger="visionkit"):
        run_dir, _ = train(cfg)
    trained = [11 / 20, 11 / 2]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["heads"]["cls"]["class_weights"] == pytest.approx(trained)
    [imbalanced] = [r.getMessage() for r in caplog.records if "imbalanced" in r.getMessage()]
    assert "class_weights" not in imbalanced  # auto is set: not suggested again
    for i in range(1, 10):  # the data changes: dog 10 images now
        write_image(root / "dog" / f"{i}.png", seed=i)
    caplog.clear()
    cfg["trainer"]["max_epochs"] = 2
    with caplog.at_level(logging.INFO, logger="visionkit"):
        train(cfg, resume=run_dir / "checkpoints" / "last.ckpt")
    # before: recomputed silently (an INFO line: cat 1, dog 1) and written to config.yaml
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["heads"]["cls"]["class_weights"] == pytest.approx(trained)
    [warning] = [
        r for r in caplog.records if "class_weights" in r.getMessage() and r.levelname != "INFO"
    ]
    assert warning.levelname == "WARNING"
    assert warning.getMessage().startswith(
        "model.heads.cls.class_weights: auto: the resumed run keeps the weights it was trained "
        "with, cat 0.55, dog 5.5; its training data now gives cat 1, dog 1 (training images per "
        "class: cat 10, dog 10)"
    )
