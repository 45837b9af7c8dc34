"""Train a tiny classifier for a few steps through the real CLI code path, reload, predict."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

import visionkit
from visionkit.data.io import read_image
from visionkit.engine.runner import evaluate, train

ROOT = Path(__file__).resolve().parents[2]


def test_train_reload_predict_and_eval(tiny_config, shapes_root, tmp_path):
    started = time.monotonic()
    run_dir, metrics = train(tiny_config, ["trainer.max_epochs=3"])
    elapsed = time.monotonic() - started

    # run folder contract
    for rel in [
        "config.yaml",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "metrics.csv",
        "metrics.json",
        "plots/curves.png",
        "per_class_recall_cls.csv",
        "per_class_recall_cls.md",
    ]:
        assert (run_dir / rel).is_file(), rel
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["heads"]["cls"]["num_classes"] == 4  # resolved from the data
    rows = list(csv.DictReader((run_dir / "metrics.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    losses = [float(r["train/loss_epoch"]) for r in rows]
    assert losses[-1] < losses[0], losses
    assert json.loads((run_dir / "metrics.json").read_text())["cls/top1"] == metrics["cls/top1"]
    assert 0.0 <= metrics["cls/top1"] <= 1.0
    # the training time, split from the 3 validations inside the fit (the run's budget)
    assert metrics["time/train_s"] > 0 and metrics["time/val_s"] > 0
    assert metrics["time/train_s"] + metrics["time/val_s"] < elapsed

    # checkpoints hold tensors and plain types only
    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["visionkit"]["label_names"]["class"] == ["plain", "gradient", "noise", "stripes"]

    # reload from the checkpoint alone and predict on raw images
    model = visionkit.load(run_dir / "checkpoints" / "best.ckpt")
    image = read_image(next((shapes_root / "val" / "images").glob("*.png")))
    (pred,) = model.predict([image])
    assert pred["cls"]["name"] in ["plain", "gradient", "noise", "stripes"]

    # evaluating the checkpoint reproduces the metric of the run
    again = evaluate(run_dir / "checkpoints" / "best.ckpt")
    assert abs(again["cls/top1"] - metrics["cls/top1"]) < 1e-6


def test_eval_cli_prints_metrics_json_on_the_last_line(tiny_config, tmp_path):
    run_dir, metrics = train(tiny_config, ["trainer.max_epochs=1", "trainer.limit_train_batches=2"])
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "eval.py"),
            "--checkpoint",
            str(run_dir / "checkpoints" / "best.ckpt"),
            "data.num_workers=0",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert abs(printed["cls/top1"] - metrics["cls/top1"]) < 1e-6
