"""Per-head epoch losses on partly labelled data (visionkit/engine/system.py): the mean over the
images that carry the head's labels, not over every step; an epoch without them logs nothing."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.engine.epoch_losses_run import N, batch, train
from visionkit.data.batch import labelled_images

REPO = Path(__file__).resolve().parents[2]


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_labelled_images_per_label_family():
    b = {**batch([0, N, 1], [N, N, 2]), "boxes": [torch.zeros(0, 4)] * 3}
    b["has_boxes"] = torch.tensor([True, False, True])
    assert labelled_images(b, "class").tolist() == [True, False, True]
    assert labelled_images(b, "identity").tolist() == [False, False, True]
    assert labelled_images(b, "instances").tolist() == [True, False, True]
    assert labelled_images(b, "semantic").tolist() == [False] * 3  # no label maps
    assert labelled_images(b, "a family of one's own").tolist() == [True] * 3


def test_a_heads_epoch_loss_is_its_mean_over_the_images_carrying_its_labels(tmp_path):
    """A step without class labels logs cls's 0 per step, but its epoch mean is over the 3
    labelled images (2 in step 0, 1 in step 1); an epoch without any logs no value, not 0 or
    NaN. The embedding head, labelled everywhere, is averaged over its images too."""
    train(tmp_path)
    logged = read_csv(tmp_path / "logs" / "metrics.csv")
    steps = [r for r in logged if r.get("train/cls/loss_step")]
    epochs = read_csv(tmp_path / "metrics.csv")
    assert len(steps) == 5 and len(epochs) == 2
    cls = [float(r["train/cls/loss_step"]) for r in steps]
    assert cls[2:] == [0.0, 0.0, 0.0] and min(cls[:2]) > 0
    for key in ("train/cls/loss_epoch", "train/cls/ce_epoch"):
        assert float(epochs[0][key]) == pytest.approx((2 * cls[0] + cls[1]) / 3)
        assert epochs[1][key] == ""  # no labelled image: no value (not 0, nor epoch 0's, nor NaN)
    emb = [float(r["train/emb/loss_step"]) for r in steps]
    assert float(epochs[0]["train/emb/loss_epoch"]) == pytest.approx(
        (2 * emb[0] + 4 * emb[1] + 4 * emb[2]) / 10
    )
    assert float(epochs[1]["train/emb/loss_epoch"]) == pytest.approx((4 * emb[3] + 2 * emb[4]) / 6)
    assert all("nan" not in value.lower() for row in epochs + logged for value in row.values())


def test_under_ddp_the_epoch_loss_is_over_the_labelled_images_of_every_rank(tmp_path):
    """2 processes: rank 0 has the class labels (3 images in epoch 0), rank 1 none; the
    epoch mean is rank 0's labelled images' mean (rank 1's steps count for nothing), and the
    epoch without labels anywhere logs nothing, without a hang."""
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT",
           "WORLD_SIZE", "NODE_RANK", "LOCAL_RANK", "RANK")}  # fmt: skip
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    script = REPO / "tests" / "engine" / "epoch_losses_run.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    own = json.loads((tmp_path / "rank0_cls_losses.json").read_text())
    epochs = read_csv(tmp_path / "metrics.csv")
    assert float(epochs[0]["train/cls/loss_epoch"]) == pytest.approx((2 * own[0] + own[1]) / 3)
    assert epochs[1]["train/cls/loss_epoch"] == ""
    assert all("nan" not in value.lower() for row in epochs for value in row.values())
