"""A two-head model (``cls``: image classes, ``emb``: identities) trained on hand-made batches
in which the class labels are missing from some steps, for tests/engine/test_epoch_losses.py.

Run as a script (``python tests/engine/epoch_losses_run.py OUT``) it trains with 2 CPU
processes (DDP, gloo; Lightning starts the second by running the script again): rank 0 has
class labels in steps 0 and 1 of epoch 0 (2 and 1 images), rank 1 never; it writes the run
files into OUT and rank 0's own ``cls/loss`` per step into ``OUT/rank0_cls_losses.json``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import lightning as L
import torch

import visionkit
from visionkit.engine.callbacks import RunFolderCallback, StepLog
from visionkit.engine.system import VisionSystem

N = -1  # no label


def batch(classes, identities, seed=0):
    return {
        "images": torch.rand(
            len(classes), 3, 32, 32, generator=torch.Generator().manual_seed(seed)
        ),
        "class": torch.tensor(classes),
        "identity": torch.tensor(identities),
    }


#: Per rank, per epoch, the batches: class labels in steps 0 and 1 of rank 0's epoch 0 only
#: (2 and 1 images); identities in every step.
RANKS = [
    [[batch([0, 1, N, N], [N, N, 0, 1], 1), batch([0, N, N, N], [0, 1, 2, 0], 2),
      batch([N, N, N, N], [1, 2, 0, 1], 3)],
     [batch([N, N, N, N], [2, 1, 0, 2], 4), batch([N, N], [0, 1], 5)]],
    [[batch([N, N, N, N], [0, 0, 1, 1], 6), batch([N, N], [2, 2], 7),
      batch([N, N, N, N], [1, 2, 0, 1], 8)],
     [batch([N, N, N, N], [2, 1, 0, 2], 9), batch([N, N], [0, 1], 10)]],
]  # fmt: skip


class Epochs(torch.utils.data.IterableDataset):
    """Yields this rank's batches of :data:`RANKS`, one epoch per iteration."""

    def __init__(self) -> None:
        self.epoch = 0

    def __iter__(self):
        self.epoch += 1
        return iter(RANKS[int(os.environ.get("LOCAL_RANK", 0))][self.epoch - 1])


class Recording(VisionSystem):
    """Keeps this process's own ``cls/loss`` of every step (the logged one is the ranks' mean)."""

    def training_step(self, batch, batch_idx):
        self.cls_losses.append(float(self._step(batch)[1]["cls/loss"]))
        return super().training_step(batch, batch_idx)


def train(out: Path, **trainer: object) -> Recording:
    torch.manual_seed(0)
    heads = {
        "cls": {"name": "linear", "num_classes": 2},
        "emb": {"name": "embedding", "num_classes": 3, "embedding_dim": 8},
    }
    system = Recording(
        visionkit.create_model({"model": {"backbone": {"name": "simple_cnn"}, "heads": heads}})
    )
    system.cls_losses = []
    L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=StepLog(out),
        callbacks=[RunFolderCallback(out)],
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer,
    ).fit(system, torch.utils.data.DataLoader(Epochs(), batch_size=None))
    return system


if __name__ == "__main__":
    out = Path(sys.argv[1])
    system = train(out, devices=2, strategy="ddp", use_distributed_sampler=False)
    if system.global_rank == 0:
        (out / "rank0_cls_losses.json").write_text(json.dumps(system.cls_losses))
