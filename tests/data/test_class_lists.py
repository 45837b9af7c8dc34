"""Issue 18 item 4: the class lists of the training set, the validation sets and a checkpoint
are compared when the datasets are built, so that no label silently means another class."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.data.test_masks import write_void_folder
from tests.helpers import detection_config, make_coco, run
from visionkit.build.data import build_datasets
from visionkit.config import DataConfig
from visionkit.data.classes import RelabelledDataset, check_checkpoint_classes
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.errors import DataError

pytestmark = pytest.mark.reliability

SQUARE_DISC = [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}]


def coco(root, categories=None, keep=None):
    """The helpers' COCO data (square: category 1, disc: 2 by default), with only the
    annotations of the category ids in ``keep``."""

    def edit(data):
        if keep is not None:
            data["annotations"] = [a for a in data["annotations"] if a["category_id"] in keep]

    return make_coco(root, categories=categories or SQUARE_DISC, edit=edit)


def datasets(train, val, fmt="coco", **extra):
    key = "images" if fmt == "coco" else "root"
    spec = {"format": fmt, **extra}
    data = DataConfig(train={**spec, key: str(train)}, val={**spec, key: str(val)})
    return build_datasets(data, needs=["semantic"] if "semantic" in extra else [])


def test_same_classes_and_a_subset_with_the_same_ids_and_names_pass(tmp_path):
    built = datasets(coco(tmp_path / "train"), coco(tmp_path / "val"))
    assert built["val"].label_names == built["train"].label_names
    # a subset keeping category 1 = square: its labels are the training set's already
    subset = [{"id": 1, "name": "square"}]
    built = datasets(coco(tmp_path / "train"), coco(tmp_path / "sq", subset, keep={1}))
    assert not isinstance(built["val"], RelabelledDataset)
    assert built["val"].label_names["instances"] == ["square"]


def test_a_subset_at_other_labels_is_moved_to_the_training_sets_labels(tmp_path):
    """val has {2: disc} only: its own label 0 is disc, the training set's label 1."""
    val_root = coco(tmp_path / "val", [{"id": 2, "name": "disc"}], keep={2})
    built = datasets(coco(tmp_path / "train"), val_root, semantic=True)
    val = built["val"]
    assert isinstance(val, RelabelledDataset)
    assert val.label_names["instances"] == ["square", "disc"]
    assert val.category_ids == [1, 2] and val.ann_path == val_root / "annotations.json"
    own = val.dataset[0]
    assert own["labels"].tolist() == [0]
    sample = val[0]
    assert sample["labels"].tolist() == [1]  # disc, as the model counts
    assert set(np.unique(own["semantic"]).tolist()) == {0, 1}
    assert set(np.unique(sample["semantic"]).tolist()) == {0, 2}  # background stays 0
    assert (val.load_semantic(sample["image_id"]) == sample["semantic"]).all()


def test_a_val_json_with_the_ids_named_the_other_way_round_is_an_error(tmp_path):
    swapped = [{"id": 1, "name": "disc"}, {"id": 2, "name": "square"}]
    train_root, val_root = coco(tmp_path / "train"), coco(tmp_path / "val", swapped)
    with pytest.raises(DataError) as info:
        datasets(train_root, val_root)
    text = str(info.value)
    assert "the classes of data.val do not match those of data.train" in text
    assert (
        f"instances classes: data.val ({val_root / 'annotations.json'}) has "
        "[id 1 'disc', id 2 'square']; "
        f"data.train ({train_root / 'annotations.json'}) has [id 1 'square', id 2 'disc']"
    ) in text
    assert "category id 1 ('disc') of data.val is 'square' in data.train" in text


def test_a_val_json_with_other_ids_is_an_error(tmp_path):
    """Same names, other ids: COCO evaluation would score predictions under the wrong ids."""
    other = [{"id": 3, "name": "square"}, {"id": 4, "name": "disc"}]

    def renumber(data):
        for ann in data["annotations"]:
            ann["category_id"] += 2

    val_root = make_coco(tmp_path / "val", categories=other, edit=renumber)
    with pytest.raises(DataError, match=r"category id 3 \('square'\) of data.val is not a class"):
        datasets(coco(tmp_path / "train"), val_root)


def test_a_val_classes_txt_in_another_order_is_read_by_name(tmp_path):
    """As a training mix merges its parts by name, a validation set's classes are matched by
    name: a classes.txt in another order moves its labels (it was refused, so the same mask
    folder trained in a mix and was refused for validation)."""
    train_root = write_void_folder(tmp_path / "train", void=255)
    val_root = write_void_folder(tmp_path / "val", void=255)
    (val_root / "classes.txt").write_text("road\nsky\ncar\n")  # 0 is road here, sky there
    val = datasets(train_root, val_root, fmt="mask_folder")["val"]
    assert val.label_names == {"semantic": ["sky", "road", "car"]}
    raw = MaskFolderDataset(str(val_root))[0]["semantic"]
    moved = val[0]["semantic"]
    for value, into in ((0, 1), (1, 0), (2, 2)):
        assert (moved[raw == value] == into).all()
    image_id = val[0]["image_id"]
    assert (val.load_semantic(image_id) == moved).all()
    # a class the training set does not have is refused, both lists named
    (val_root / "classes.txt").write_text("road\nsea\n")
    with pytest.raises(DataError) as info:
        datasets(train_root, val_root, fmt="mask_folder")
    text = str(info.value)
    assert (
        f"semantic classes: data.val ({val_root / 'classes.txt'}) has ['road', 'sea']; "
        f"data.train ({train_root / 'classes.txt'}) has ['sky', 'road', 'car']"
    ) in text
    assert "label 1 ('sea') of data.val is not a class of data.train" in text
    # the beginning of the list keeps every label's index and name: as it is
    (val_root / "classes.txt").write_text("sky\nroad\n")
    assert datasets(train_root, val_root, fmt="mask_folder")["val"].label_names == {
        "semantic": ["sky", "road"]
    }


def test_each_set_of_a_validation_mix_is_compared(tmp_path):
    train_root = coco(tmp_path / "train")
    good, bad = coco(tmp_path / "good"), coco(tmp_path / "bad", SQUARE_DISC[::-1][:1], keep={2})
    data = DataConfig(
        train={"format": "coco", "images": str(train_root)},
        val={
            "a": {"format": "coco", "images": str(good)},
            "b": {"format": "coco", "images": str(bad)},
        },
    )
    built = build_datasets(data)["val"]
    assert list(built) == ["a", "b"] and isinstance(built["b"], RelabelledDataset)
    assert built["b"][0]["labels"].tolist() == [1]


def write_checkpoint(path, label_names, category_ids=()):
    """A file with a visionkit checkpoint's metadata (what the comparison reads), resumable
    as last.ckpt is (an optimiser state)."""
    meta = {"label_names": label_names, "category_ids": list(category_ids)}
    torch.save({"visionkit": meta, "state_dict": {}, "optimizer_states": []}, path)
    return path


def test_resuming_on_other_classes_is_an_error(tmp_path):
    built = datasets(coco(tmp_path / "train"), coco(tmp_path / "val"))
    same = write_checkpoint(tmp_path / "same.ckpt", {"instances": ["square", "disc"]}, [1, 2])
    check_checkpoint_classes(built, same, resume=True)
    other = write_checkpoint(tmp_path / "other.ckpt", {"instances": ["square", "disc"]}, [1, 3])
    with pytest.raises(DataError) as info:
        check_checkpoint_classes(built, other, resume=True)
    text = str(info.value)
    assert f"resume: {other}: the classes do not match" in text
    assert "start a new run with model.init_from=" in text
    assert (
        "the checkpoint was trained on instances classes [id 1 'square', id 3 'disc'], but "
        f"data.train ({tmp_path / 'train' / 'annotations.json'}) has "
        "[id 1 'square', id 2 'disc']"
    ) in text


def test_init_from_the_same_classes_in_another_order_is_an_error(tmp_path):
    built = datasets(coco(tmp_path / "train"), coco(tmp_path / "val"))
    ckpt = write_checkpoint(tmp_path / "swapped.ckpt", {"instances": ["disc", "square"]}, [1, 2])
    with pytest.raises(DataError) as info:
        check_checkpoint_classes(built, ckpt, resume=False)
    text = str(info.value)
    assert f"model.init_from: {ckpt}: the classes do not match" in text
    assert "the same classes in another order" in text
    assert "'square' 1 -> 0, 'disc' 0 -> 1" in text


def test_init_from_other_classes_is_a_transfer(tmp_path, caplog):
    built = datasets(coco(tmp_path / "train"), coco(tmp_path / "val"))
    more = write_checkpoint(tmp_path / "three.ckpt", {"instances": ["disc", "square", "star"]})
    new = write_checkpoint(tmp_path / "new.ckpt", {"instances": ["car", "bus"]})
    with caplog.at_level(logging.WARNING):
        check_checkpoint_classes(built, more, resume=False)  # another head size: not loaded
        check_checkpoint_classes(built, new, resume=False)  # other classes: a transfer
        assert not caplog.records
        shared = write_checkpoint(tmp_path / "shared.ckpt", {"instances": ["car", "square"]})
        check_checkpoint_classes(built, shared, resume=False)
    assert "'square' 1 -> 0" in caplog.text and "start from other classes' weights" in caplog.text
    # as many classes under other names: the class layers load as they are, said at INFO
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="visionkit"):
        check_checkpoint_classes(built, new, resume=False)
    assert "as many classes, so each label's weights are loaded as they are" in caplog.text
    assert "('car' -> 'square', 'bus' -> 'disc')" in caplog.text
    # a file without visionkit metadata (timm, torchvision) is not compared
    torch.save({"state_dict": {}}, tmp_path / "plain.pth")
    check_checkpoint_classes(built, tmp_path / "plain.pth", resume=False)


def test_train_with_a_val_json_named_the_other_way_round_stops_before_training(tmp_path, capsys):
    swapped = [{"id": 1, "name": "disc"}, {"id": 2, "name": "square"}]
    val_root = coco(tmp_path / "val", swapped)
    config = detection_config(tmp_path / "config.yaml", coco(tmp_path / "train"), val_root)
    code, _, err = run(["train", "--config", config], capsys)
    assert code == 1
    assert "the classes of data.val do not match those of data.train" in err
    assert "category id 2 ('square') of data.val is 'disc' in data.train" in err
    assert not (tmp_path / "runs" / "rel" / "checkpoints").exists()


@pytest.mark.parametrize("how", ["--resume", "model.init_from="])
def test_train_from_a_checkpoint_of_other_classes_stops_before_training(tmp_path, capsys, how):
    ckpt = write_checkpoint(tmp_path / "swapped.ckpt", {"instances": ["disc", "square"]}, [1, 2])
    root = coco(tmp_path / "train")
    config = detection_config(tmp_path / "config.yaml", root, coco(tmp_path / "val"))
    option = [how, ckpt] if how == "--resume" else [f"{how}{ckpt}"]
    code, _, err = run(["train", "--config", config, *option], capsys)
    assert code == 1
    key = "resume" if how == "--resume" else "model.init_from"
    assert f"{key}: {ckpt}: the classes do not match" in err
    assert "the checkpoint was trained on instances classes [id 1 'disc', id 2 'square']" in err
