"""A plain ViT (timm's ``test_vit``, through the simple feature pyramid) under the detection
and semantic segmentation heads: a few training steps lower the loss and give metrics, and the
checkpoint reloads and predicts (:mod:`visionkit.models.backbones.plain_vit`)."""

from __future__ import annotations

import csv

import visionkit
from visionkit.data.io import read_image
from visionkit.engine.runner import train


def test_a_plain_vit_trains_fcos_and_semantic_fpn_together(shapes_root, pyramid_config):
    config = pyramid_config(
        "vit",
        {
            "det": {"name": "fcos", "num_convs": 1},
            "seg": {"name": "semantic_fpn", "num_classes": None},
        },
    )
    config["model"]["backbone"] = {"name": "test_vit", "out_indices": [-3, -2, -1]}
    config["trainer"]["max_epochs"] = 2
    run_dir, metrics = train(config)
    assert {"det/mAP", "seg/mIoU"} <= set(metrics)
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert losses[-1] < losses[0], losses

    model = visionkit.load(run_dir / "checkpoints" / "best.ckpt")
    assert model.backbone.strides == [8, 16, 32]
    (pred,) = model.predict([read_image(shapes_root / "val" / "images" / "000001.png")])
    assert pred["seg"]["mask"].shape == (64, 64) and pred["det"]["boxes"].shape[1] == 4
