"""A few training steps on two detection sets that annotate different classes (``pets``:
cat, dog; ``roads``: car): the run says once which set annotates which, the FCOS head's
classification loss gets each image's annotated classes (a Mosaic / MixUp mixes images of
one set, so it annotates that set's classes), the losses stay finite and each set is
evaluated on its own classes."""

from __future__ import annotations

import csv
import logging
import math

import yaml

from tests.helpers import detection_config, make_coco
from visionkit.models.heads import fcos

PETS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
CARS = [{"id": 3, "name": "car"}]


def edit(ids):
    def change(data):
        for ann in data["annotations"]:
            ann["category_id"] = ids[ann["image_id"] % len(ids)]

    return change


def test_two_sets_with_other_classes_train_with_each_images_classes_masked(
    tmp_path, monkeypatch, caplog
):
    from visionkit.engine.runner import train

    pets = make_coco(tmp_path / "pets", edit=edit([1, 2]), categories=PETS)
    roads = make_coco(tmp_path / "roads", edit=edit([3]), categories=CARS)
    sets = {
        "pets": {"format": "coco", "images": str(pets)},
        "roads": {"format": "coco", "images": str(roads)},
    }
    steps = [{"name": "Mosaic", "p": 0.5}, {"name": "MixUp", "p": 0.5}]
    path = detection_config(
        tmp_path / "config.yaml",
        pets,
        data={"train": sets, "val": sets, "batch_size": 4, "transforms": {"train": steps}},
    )
    config = yaml.safe_load(path.read_text())
    config["trainer"].update(limit_train_batches=2, max_epochs=1)

    seen = []  # the annotated classes the head's focal loss received, per step
    focal_loss = fcos.focal_loss

    def spy(*args, **kwargs):
        seen.append(args[6] if len(args) > 6 else kwargs.get("annotated"))
        return focal_loss(*args, **kwargs)

    monkeypatch.setattr(fcos, "focal_loss", spy)
    with caplog.at_level(logging.INFO, logger="visionkit"):
        run_dir, metrics = train(config)

    said = [
        r
        for r in caplog.records
        if "the sets annotate different box classes (pets: cat, dog; roads: car)" in r.getMessage()
    ]
    assert len(said) == 1  # once, by the run's rank-0 notes (not by every data build)
    masks = [m for m in seen if m is not None]
    assert len(masks) >= 2 and all(m.shape[1:] == (1, 3) for m in masks)  # [B, 1, C]
    rows = {tuple(row) for m in masks for row in m[:, 0].tolist()}
    # a Mosaic / MixUp mixes images of one set: it annotates that set's classes, never none
    assert rows <= {(True, True, False), (False, False, True)}
    log = run_dir / "logs" / "metrics.csv"
    losses = [
        float(r["train/loss_step"]) for r in csv.DictReader(log.open()) if r["train/loss_step"]
    ]
    assert len(losses) == 2 and all(map(math.isfinite, losses)), losses
    assert {"det/pets/mAP", "det/roads/mAP"} <= set(metrics)  # each set on its own classes
