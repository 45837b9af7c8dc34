"""Per-head epoch losses on partly labelled data (visionkit/engine/system.py): the mean over the
images that carry the head's labels, not over every step; an epoch without them logs nothing."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

import visionkit
from tests.engine.epoch_losses_run import N, batch, train
from visionkit.data.batch import labelled_images
from visionkit.engine.callbacks import RunFolderCallback, StepLog
from visionkit.engine.system import VisionSystem

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
    b["masks"], b["has_masks"] = [torch.zeros(0, 8, 8)] * 3, torch.tensor([False, False, True])
    b["identities"] = [torch.tensor([-1, 0]), torch.tensor([-1]), torch.zeros(0)]
    assert labelled_images(b, "masks").tolist() == [False, False, True]
    assert labelled_images(b, "identities").tolist() == [True, False, False]
    assert labelled_images(b, "keypoints").tolist() == [False] * 3  # no keypoints


def mask_batch(with_masks, seed):
    """Two 64-px images with a box each; instance masks on the images ``with_masks`` says."""
    g = torch.Generator().manual_seed(seed)
    box = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
    mask[:, 8:40, 8:40] = 1
    return {
        "images": torch.rand(2, 3, 64, 64, generator=g),
        "boxes": [box, box], "labels": [torch.zeros(1, dtype=torch.long)] * 2,
        "has_boxes": torch.tensor([True, True]),
        "masks": [mask, mask], "has_masks": torch.tensor(with_masks),
    }  # fmt: skip


def test_an_instance_heads_mask_term_is_averaged_over_the_images_with_masks(tmp_path):
    """A box-only step beside segmented ones: its mask term is an exact 0 per step and counts
    for nothing in the mask term's epoch mean (the images with masks: 1 + 2), while the box
    terms are averaged over every image with boxes (the head's ``term_labels``)."""
    torch.manual_seed(0)
    model = visionkit.create_model({"model": {
        "backbone": {"name": "simple_cnn"}, "neck": {"name": "fpn", "out_channels": 16},
        "heads": {"inst": {"name": "fcos_mask", "num_classes": 1}}}})  # fmt: skip
    batches = [
        mask_batch([True, False], 1),
        mask_batch([False, False], 2),
        mask_batch([True, True], 3),
    ]
    L.Trainer(
        accelerator="cpu", max_epochs=1, logger=StepLog(tmp_path), log_every_n_steps=1,
        callbacks=[RunFolderCallback(tmp_path)], enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    ).fit(VisionSystem(model), torch.utils.data.DataLoader(batches, batch_size=None))  # fmt: skip
    steps = [
        r for r in read_csv(tmp_path / "logs" / "metrics.csv") if r.get("train/inst/mask_step")
    ]
    mask = [float(r["train/inst/mask_step"]) for r in steps]
    box = [float(r["train/inst/box_step"]) for r in steps]
    assert mask[1] == 0.0 and mask[0] > 0 and mask[2] > 0
    epoch = read_csv(tmp_path / "metrics.csv")[0]
    assert float(epoch["train/inst/mask_epoch"]) == pytest.approx((mask[0] + 2 * mask[2]) / 3)
    assert float(epoch["train/inst/box_epoch"]) == pytest.approx(sum(box) / 3)


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
