"""Several heads on one backbone: partial labels, mixed datasets, per-set evaluation."""

from __future__ import annotations

import csv
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import WeightedRandomSampler

import visionkit
from visionkit.build import build_datasets, build_evaluators, build_model, targets_needed
from visionkit.config import load_config
from visionkit.data.datasets import MixedDataset, merge_label_names
from visionkit.data.io import read_image
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.readers.folder import ImageFolderDataset
from visionkit.engine.runner import train
from visionkit.errors import DataError

HEADS = {
    "cls": {"name": "linear"},
    "det": {"name": "fcos", "num_convs": 1},
    "seg": {"name": "semantic_fpn", "channels": 32},
}


def three_head_model():
    return visionkit.create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
                "neck": {"name": "fpn", "out_channels": 32, "min_level": 3, "max_level": 5},
                "heads": HEADS,
            }
        },
        label_names={
            "class": ["a", "b", "c", "d"],
            "instances": ["circle", "square", "triangle"],
            "semantic": ["background", "circle", "square", "triangle"],
        },
    )


def partial_batch():
    """Four 64 px images: class labels on 0 and 1 only, boxes on 1 and 2, semantic on 3."""
    torch.manual_seed(0)
    semantic = torch.full((4, 64, 64), 255, dtype=torch.long)
    semantic[3] = 0
    semantic[3, 10:30, 10:30] = 2
    return {
        "images": torch.randn(4, 3, 64, 64),
        "class": torch.tensor([1, 3, -1, -1]),
        "boxes": [
            torch.zeros(0, 4),
            torch.tensor([[8.0, 8.0, 40.0, 40.0]]),
            torch.tensor([[20.0, 4.0, 60.0, 30.0]]),
            torch.zeros(0, 4),
        ],  # fmt: skip
        "labels": [
            torch.zeros(0, dtype=torch.long),
            torch.tensor([1]),
            torch.tensor([0]),
            torch.zeros(0, dtype=torch.long),
        ],  # fmt: skip
        "has_boxes": torch.tensor([False, True, True, False]),
        "semantic": semantic,
        "has_semantic": torch.tensor([False, False, False, True]),
    }


def test_partial_label_losses_are_finite_and_only_labelled_images_count():
    model = three_head_model().eval()  # BatchNorm statistics would couple the images
    batch = partial_batch()
    losses = model.loss(model(batch["images"]), batch)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert {"cls/loss", "det/loss", "seg/loss", "loss"} <= set(losses)

    # changing an image that carries no label of a head leaves that head's loss unchanged
    other = dict(batch, images=batch["images"].clone())
    other["images"][3] = torch.randn(3, 64, 64)  # image 3 has no class and no boxes
    again = model.loss(model(other["images"]), other)
    for key in ("cls/loss", "det/loss"):
        torch.testing.assert_close(again[key], losses[key])
    assert not torch.allclose(again["seg/loss"], losses["seg/loss"])


def test_a_head_without_labels_in_the_batch_gets_zero_gradient_but_is_connected():
    model = three_head_model()
    batch = partial_batch()
    batch["class"] = torch.full((4,), -1)  # no image carries a class
    losses = model.loss(model(batch["images"]), batch)
    assert losses["cls/loss"] == 0
    losses["loss"].backward()
    cls_grads = [p.grad for p in model.heads["cls"].parameters()]
    assert all(g is not None and not g.any() for g in cls_grads)  # connected, exactly zero
    assert any(p.grad.abs().sum() > 0 for p in model.heads["seg"].parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def make_class_folder(root, shapes_root, split):
    """An ImageFolder of shapes images sorted by their background class."""
    ds = CocoDataset(shapes_root / split, class_field="background", instances=False)
    names = ds.label_names["class"]
    for i in range(len(ds)):
        folder = root / names[ds.classes[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.open(ds.paths[i]).save(folder / f"{i}.png")
    return names


def test_mixed_dataset_merges_labels_and_samples_by_weight(shapes_root, tmp_path):
    names = make_class_folder(tmp_path / "folder", shapes_root, "train")
    folder = ImageFolderDataset(tmp_path / "folder")
    coco = CocoDataset(shapes_root / "train")
    mixed = MixedDataset({"pets": folder, "shapes": coco}, {"pets": 1.0, "shapes": 3.0})
    assert len(mixed) == len(folder) + len(coco)
    assert mixed.label_names == {
        "class": sorted(names),
        "instances": ["circle", "square", "triangle"],
    }
    assert mixed.category_ids == coco.category_ids
    assert "boxes" not in mixed[0] and "class" in mixed[0]
    assert "boxes" in mixed[len(folder)] and "class" not in mixed[len(folder)]
    drawn = list(
        WeightedRandomSampler(
            mixed.sample_weights(), 4000, generator=torch.Generator().manual_seed(0)
        )
    )
    share = np.mean([i >= len(folder) for i in drawn])
    assert abs(share - 0.75) < 0.03

    with pytest.raises(DataError, match="'class' classes differ"):
        merge_label_names(
            {
                "a": folder,
                "b": CocoDataset(
                    shapes_root / "train",
                    class_field="background",
                    class_names=sorted(names)[::-1],
                ),
            }  # fmt: skip
        )


def test_three_heads_train_on_mixed_data_each_evaluated_on_its_own_set(
    shapes_root, tmp_path, pyramid_config
):
    make_class_folder(tmp_path / "cls_train", shapes_root, "train")
    make_class_folder(tmp_path / "cls_val", shapes_root, "val")
    config = pyramid_config(
        "multi",
        HEADS,
        train={
            "pets": {"format": "folder", "root": str(tmp_path / "cls_train"), "weight": 1},
            "shapes": {"format": "coco", "images": str(shapes_root / "train"), "weight": 2},
        },
        val={
            "pets": {"format": "folder", "root": str(tmp_path / "cls_val")},
            "shapes": {"format": "coco", "images": str(shapes_root / "val")},
        },
    )
    run_dir, metrics = train(config)
    assert {"cls/top1", "det/mAP", "seg/mIoU"} <= set(metrics)
    mean = (metrics["cls/top1"] + metrics["det/mAP"] + metrics["seg/mIoU"]) / 3
    assert abs(metrics["val/score"] - mean) < 1e-6  # best.ckpt is picked by this mean
    assert not any(k.startswith(("cls/shapes", "det/pets")) for k in metrics)
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    losses = [float(r["train/loss_epoch"]) for r in rows]
    assert losses[-1] < losses[0], losses

    model = visionkit.load(run_dir / "checkpoints" / "best.ckpt")
    assert sorted(model.heads) == ["cls", "det", "seg"]
    (pred,) = model.predict([read_image(shapes_root / "val" / "images" / "000001.png")])
    assert pred["cls"]["name"] in model.meta["label_names"]["class"]
    assert pred["det"]["boxes"].shape[1] == 4
    assert pred["seg"]["mask"].shape == (64, 64)


def test_a_set_of_a_mix_whose_labels_no_head_learns_from_is_warned_of(
    shapes_root, tmp_path, pyramid_config, caplog
):
    make_class_folder(tmp_path / "cls", shapes_root, "train")
    sets = {
        "pets": {"format": "folder", "root": str(tmp_path / "cls")},  # classes: no cls head
        "shapes": {"format": "coco", "images": str(shapes_root / "train")},
    }
    cfg = load_config(pyramid_config("det", {"det": HEADS["det"]}, train=sets, val=sets))
    datasets = build_datasets(cfg.data, needs=targets_needed(cfg))
    with caplog.at_level(logging.WARNING):
        model = build_model(cfg, datasets)
        build_evaluators(model, datasets["val"])
    warned = [r.getMessage() for r in caplog.records if "no head learns" in r.getMessage()]
    assert [w.split(":")[0] for w in warned] == ["data.train.pets", "data.val.pets"]
    assert "image-level classes" in warned[0] and "data.train.pets=null" in warned[0]
