"""The embedding recipe end to end on tiny synthetic identities: P x K batches, the loss falls,
and the validation set of unseen styles gets verification and retrieval metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from visionkit.engine.runner import train

ROOT = Path(__file__).resolve().parents[2]


def test_embedding_recipe_trains_and_reports_verification_metrics(tmp_path):
    run_dir, metrics = train(
        ROOT / "configs" / "shapes" / "embedding_r18.yaml",
        [
            "model.backbone.name=simple_cnn",
            "model.heads.emb.num_classes=8",
            f"data.train.root={tmp_path / 'train'}",
            f"data.val.root={tmp_path / 'val'}",
            "data.train.synthetic={identities: 8, num_images: 160, size: 32}",
            "data.val.synthetic={identities: 4, first_identity: 8, num_images: 40, size: 32, seed: 1}",
            "data.image_size=32",
            "data.transforms.val=[{name: Resize, height: 32, width: 32}]",
            "data.sampler={p: 4, k: 4}",
            "data.batch_size=16",
            "data.num_workers=0",
            "trainer.max_steps=30",
            "trainer.val_check_interval=10",
            "trainer.enable_progress_bar=false",
            "trainer.accelerator=cpu",
        ],
        output_dir=tmp_path / "run",
    )
    for key in ("auc", "tar@far1e-3", "tar@far1e-2", "accuracy", "recall@1", "recall@5", "mAP"):
        assert 0.0 <= metrics[f"emb/{key}"] <= 1.0, key
    assert metrics["emb/auc"] > 0.6  # better than chance on styles it never saw
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["emb/auc"] == metrics["emb/auc"]
    with open(run_dir / "metrics.csv", newline="") as f:
        losses = [float(r["train/loss_epoch"]) for r in csv.DictReader(f) if r["train/loss_epoch"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
