"""visionkit/build.py (config → objects) and the task table it reads
(visionkit/evaluation/tasks.py)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

import visionkit
from visionkit.build import (
    build_dataset,
    build_evaluators,
    targets_needed,
    trainer_kwargs,
)
from visionkit.config import load_config
from visionkit.data.classes import LABEL_KEYS
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.readers.folder import ImageFolderDataset
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.data.synthetic import make_shapes
from visionkit.evaluation.tasks import TASKS, progress_bar_suffixes, task_of
from visionkit.models.heads import list_heads
from visionkit.registry import DATASETS, HEADS

PACKAGE = Path(visionkit.__file__).parent
SAMPLE_TARGETS = {"class", "identity", "boxes", "masks", "semantic", "keypoints", "identities"}


@pytest.fixture(scope="module")
def with_negatives(tmp_path_factory) -> Path:
    """A shapes dataset in which some images have no shape at all."""
    root = tmp_path_factory.mktemp("negatives")
    make_shapes(root, num_images=12, size=32, seed=3, min_shapes=0, max_shapes=1)
    return root


def count_negatives(root: Path) -> tuple[int, int]:
    data = json.loads((root / "annotations.json").read_text())
    with_boxes = {a["image_id"] for a in data["annotations"]}
    return len(data["images"]), len(data["images"]) - len(with_boxes)


# ---------------------------------------------------------------- datasets: the split


def test_the_split_is_an_argument_and_a_val_split_keeps_negatives(with_negatives, caplog):
    total, negatives = count_negatives(with_negatives)
    assert 0 < negatives < total  # the fixture has both kinds
    spec = {"format": "coco", "images": str(with_negatives), "keep_negatives": False}
    train = build_dataset(spec, split="train")
    assert len(train) == total - negatives
    # The error path says nothing about the split: only ``split`` decides.
    with caplog.at_level(logging.INFO, logger="visionkit.build"):
        val = build_dataset(spec, split="val", where="data.train.somewhere")
    assert len(val) == total
    assert "data.train.somewhere.keep_negatives: ignored" in caplog.text
    train_named_val = build_dataset(spec, split="train", where="data.val")
    assert len(train_named_val) == total - negatives


def test_an_unknown_split_is_refused(with_negatives):
    with pytest.raises(ValueError, match="split must be one of"):
        build_dataset({"format": "coco", "images": str(with_negatives)}, split="holdout")


def test_a_validation_set_under_skip_decodes_every_image_when_built(tmp_path):
    root = tmp_path / "data"
    make_shapes(root, num_images=4, size=32, seed=0)
    first = sorted(root.rglob("*.png"))[0]
    first.write_bytes(first.read_bytes()[:200])  # a truncated file: its header still reads
    spec = {"format": "coco", "images": str(root), "on_bad_image": "skip"}
    assert len(build_dataset(spec, split="train")) == 4  # headers only: found when read
    assert len(build_dataset(spec, split="val")) == 3  # decoded when built: left out


# ---------------------------------------------------------------- readers declare targets


def test_readers_declare_their_folder_argument_and_targets():
    for name, cls in (
        ("coco", CocoDataset),
        ("folder", ImageFolderDataset),
        ("mask_folder", MaskFolderDataset),
    ):
        assert DATASETS.component_class(name) is cls
        assert cls.location in DATASETS.signature(name).parameters
        assert set(cls.targets) <= SAMPLE_TARGETS
        for target, flag in cls.target_flags.items():
            assert target in cls.targets and flag in DATASETS.signature(name).parameters
    assert (CocoDataset.location, ImageFolderDataset.location) == ("images", "root")
    assert CocoDataset.target_flags == {
        "masks": "masks",
        "semantic": "semantic",
        "keypoints": "keypoints",
        "identities": "identities",
    }
    assert ImageFolderDataset.targets == ("class",)
    assert MaskFolderDataset.targets == ("semantic",)


def test_needed_targets_switch_on_the_declared_flags_only(shapes_root):
    spec = {"format": "coco", "images": str(shapes_root / "val")}
    sample = build_dataset(spec, needs=["class", "boxes", "masks"])[0]
    assert "masks" in sample and "semantic" not in sample
    assert "class" not in sample  # image classes need a class_field; no flag switches them on
    assert "masks" not in build_dataset({**spec, "masks": False}, needs=["masks"])[0]


def test_a_validation_folder_takes_the_training_class_order(tmp_path):
    from PIL import Image

    for name in ("b", "c"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "x.png")
    spec = {"format": "folder", "root": str(tmp_path)}
    assert build_dataset(spec, split="val").label_names == {"class": ["b", "c"]}
    val = build_dataset(spec, split="val", label_names={"class": ["a", "b", "c"]})
    assert val.label_names == {"class": ["a", "b", "c"]} and val[0]["class"] == 1


# ---------------------------------------------------------------- the task table


@pytest.mark.parametrize("name", list_heads())
def test_every_registered_head_has_a_task_spec(name):
    cls = HEADS.component_class(name)
    spec = task_of(cls)
    assert spec is TASKS[cls.task]
    assert set(spec.targets) <= SAMPLE_TARGETS
    assert spec.main_metric in spec.progress_bar
    assert spec.labels in LABEL_KEYS  # a family the readers and the class matching know


def test_task_of_names_the_known_tasks_for_an_unknown_one():
    class Odd:
        task = "presence"

    with pytest.raises(KeyError, match="unknown task 'presence'.*classification"):
        task_of(Odd)


def test_progress_bar_shows_every_main_metric_and_the_score():
    assert progress_bar_suffixes() == (
        "/top1",
        "/mAP",
        "/mask_mAP",
        "/kpt_mAP",
        "/id_auc",
        "/mIoU",
        "/auc",
        "/recall@1",
        "val/score",
    )
    assert all(f"/{spec.main_metric}" in progress_bar_suffixes() for spec in TASKS.values())


def test_targets_needed_follow_the_task_table(pyramid_config):
    heads = {
        "cls": {"name": "linear", "num_classes": 2},
        "ins": {"name": "fcos_mask", "num_classes": 3},
        "seg": {"name": "semantic_fpn", "num_classes": 4},
    }
    cfg = load_config(pyramid_config("three", heads))
    assert targets_needed(cfg) == ["class", "boxes", "masks", "semantic"]


def test_nothing_outside_the_task_table_branches_on_task_names():
    pattern = re.compile(r"""\btask\s*(==|!=|in|not in)\s*[("']""")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{i}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "tasks.py"
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


# ---------------------------------------------------------------- evaluators, trainer


@pytest.fixture(scope="module")
def cls_det_model():
    """A classification and a detection head on one small backbone."""
    return visionkit.create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
                "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
                "heads": {
                    "cls": {"name": "linear", "num_classes": 2},
                    "det": {"name": "fcos", "num_classes": 3, "num_convs": 1},
                },
            }
        }
    )


def test_evaluators_per_validation_set_follow_the_label_families(shapes_root, cls_det_model):
    model = cls_det_model
    shapes = CocoDataset(shapes_root / "val", class_field="background")
    boxes_only = CocoDataset(shapes_root / "val")
    per_set = build_evaluators(model, {"a": shapes, "b": boxes_only})
    assert [sorted(s) for s in per_set] == [["cls", "det@a"], ["det@b"]]
    assert build_evaluators(model, None) == []
    assert all(isinstance(e, torch.nn.Module) for s in per_set for e in s.values())


@pytest.mark.reliability
def test_a_failing_part_of_a_mix_is_named_by_its_own_key(shapes_root, tmp_path):
    """``data.train.boxes`` of a mix without its split file: the error named ``data.train``
    only; every failing part is reported at once."""
    from visionkit.build.data import build_datasets
    from visionkit.errors import DataError

    (tmp_path / "voc" / "Annotations").mkdir(parents=True)
    (tmp_path / "voc" / "JPEGImages").mkdir()
    cfg = load_config(
        {
            "model": {"heads": {"det": {"name": "fcos", "num_classes": 3}}},
            "data": {
                "train": {
                    "shapes": {"format": "coco", "images": str(shapes_root / "train")},
                    "boxes": {"format": "voc", "root": str(tmp_path / "voc"), "split": "train"},
                    "more": {"format": "voc", "root": str(tmp_path / "voc"), "split": "extra"},
                }
            },
        }
    )
    with pytest.raises(DataError) as info:
        build_datasets(cfg.data)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("data.train.boxes: split file ") and "train.txt" in lines[0]
    assert lines[1].startswith("data.train.more: split file ") and "extra.txt" in lines[1]
    assert lines[-1].startswith("hint: visionkit check-data")


def test_a_head_no_evaluation_set_can_score_is_named(shapes_root, cls_det_model, caplog):
    """``eval --split test`` with a test set for one head only: the other head's absence from
    the report is said, not silent."""
    model = cls_det_model
    with caplog.at_level("WARNING"):
        per_set = build_evaluators(model, CocoDataset(shapes_root / "val"))  # boxes only
    assert [sorted(s) for s in per_set] == [["det"]]
    assert "head 'cls' is not scored: no evaluation set carries its labels (class)" in caplog.text
    assert "'det' is not scored" not in caplog.text


def test_trainer_kwargs_are_plain_lightning_arguments(tiny_config, tmp_path):
    tiny_config["trainer"].update(precision="32-true", on_nonfinite_loss="skip")
    kwargs = trainer_kwargs(load_config(tiny_config), tmp_path, limit_val_batches=0)
    assert kwargs["default_root_dir"] == str(tmp_path)
    assert kwargs["precision"] == "32-true" and kwargs["limit_val_batches"] == 0
    assert kwargs["max_epochs"] == 2
    assert not {"compile", "on_nonfinite_loss", "channels_last"} & set(kwargs)
    assert None not in kwargs.values()


def test_a_head_argument_refused_by_the_head_is_a_config_error_naming_the_head():
    """Values only the head can judge (a choice, the data's class count) are config errors
    under the head's key, not tracebacks."""
    from visionkit.errors import ConfigError

    def model(heads: dict, label_names: dict | None = None):
        neck = {"name": "fpn", "out_channels": 16}
        cfg = {"model": {"backbone": {"name": "simple_cnn"}, "neck": neck, "heads": heads}}
        return visionkit.create_model(load_config(cfg), label_names=label_names)

    fcos = {"name": "fcos", "num_classes": 2, "box_loss": "l1"}
    with pytest.raises(ConfigError, match=r"model\.heads\.det: fcos: box_loss must be one of"):
        model({"det": fcos})
    cls = {"name": "linear", "num_classes": None}
    with pytest.raises(ConfigError, match=r"model\.heads\.cls: classification head: one class "):
        model({"cls": cls}, {"class": ["raccoon"]})  # one class folder
    assert model({"cls": cls}, {"class": ["raccoon", "street"]}).heads["cls"].num_classes == 2


def test_neck_levels_the_backbone_lacks_are_a_config_error_not_a_traceback():
    """An FPN from P3 on a backbone without stride 8 raised a ValueError traceback."""
    from visionkit.build.model import create_model
    from visionkit.errors import ConfigError

    cfg = {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"det": {"name": "fcos", "num_classes": 2}},
        }
    }
    with pytest.raises(ConfigError) as info:
        create_model(cfg)
    assert "model.neck: fpn: min_level=3..max_level=5 needs backbone maps at strides [8]" in str(
        info.value
    )
