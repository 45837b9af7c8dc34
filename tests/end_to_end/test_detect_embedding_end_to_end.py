"""Detection plus embedding end to end: simple_cnn → FPN → fcos_embedding on tiny shapes
whose shapes carry identity styles (validation: styles never seen in training); the loss
falls, the box and identity metrics exist, and a reloaded model predicts embeddings."""

from __future__ import annotations

import csv

import torch

import visionkit
from visionkit.data.io import read_image
from visionkit.engine.runner import train


def test_detect_embedding_train_evaluate_and_predict(tmp_path):
    data = tmp_path / "shapes_id"
    config = {
        "name": "detemb",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 32, "min_level": 3, "max_level": 5},
            "heads": {
                "det": {
                    "name": "fcos_embedding",
                    "num_convs": 1,
                    "emb_convs": 1,
                    "embedding_dim": 16,
                },  # fmt: skip
            },
        },
        "data": {
            "train": {
                "format": "coco",
                "images": str(data / "train"),
                "synthetic": {"num_images": 24, "size": 64, "seed": 0, "styles": 6},
            },
            "val": {
                "format": "coco",
                "images": str(data / "val"),
                "synthetic": {
                    "num_images": 8,
                    "size": 64,
                    "seed": 1,
                    "styles": 4,
                    "first_style": 6,
                },  # fmt: skip
            },
            "image_size": 64,
            "batch_size": 8,
            "num_workers": 0,
            "transforms": {"train": [{"name": "HorizontalFlip", "p": 0.5}], "val": []},
        },
        "optimizer": {"name": "adamw", "lr": 0.003},
        "trainer": {
            "max_epochs": 3,
            "accelerator": "cpu",
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
    }
    run_dir, metrics = train(config)
    assert {"det/mAP", "det/id_matched", "det/id_auc"} <= set(metrics)
    assert 0.0 <= metrics["det/id_matched"] <= 1.0
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert losses[-1] < losses[0], losses

    model = visionkit.load(run_dir / "checkpoints" / "best.ckpt")
    assert model.heads["det"].num_identities == 6  # from the training data, kept in the meta
    (pred,) = model.predict([read_image(data / "val" / "images" / "000001.png")])
    det = pred["det"]
    assert det["embeddings"].shape == (len(det["boxes"]), 16)
    if len(det["boxes"]):
        assert torch.allclose(det["embeddings"].norm(dim=1), torch.ones(len(det["boxes"])))
