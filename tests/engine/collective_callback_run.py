"""``visionkit.engine.runner.train`` with 2 CPU processes (DDP, gloo) and a user callback that
makes a collective call at each epoch's end, for tests/engine/test_distributed.py.

Run as a script (``python tests/engine/collective_callback_run.py OUT``; Lightning starts the
second process by running it again) it trains a classifier for 2 epochs on tiny shapes data in
``OUT`` and writes the callback's all-reduced values, per epoch, into ``OUT/sums.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist

from visionkit.data.synthetic import make_shapes
from visionkit.engine.runner import train


class SyncedEpochEnd(L.Callback):
    """All-reduces ``rank + 1`` at each training epoch's end: 3.0 with 2 processes."""

    def __init__(self) -> None:
        self.sums: list[float] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        value = torch.tensor([float(trainer.global_rank + 1)])
        dist.all_reduce(value)
        self.sums.append(float(value))


def main(out: Path) -> None:
    data = out / "data"
    if not (data / "annotations.json").is_file():  # rank 0; rank 1 starts once it exists
        make_shapes(data, num_images=8, size=32, seed=0)
    entry = {"format": "coco", "images": str(data), "class_field": "background"}
    config = {
        "name": "synced",
        "output_dir": str(out / "runs"),
        "model": {"backbone": {"name": "simple_cnn"}, "heads": {"cls": {"name": "linear"}}},
        "data": {"train": entry, "image_size": 32, "batch_size": 2, "num_workers": 0},
        "trainer": {
            "max_epochs": 2,
            "accelerator": "cpu",
            "devices": 2,
            "strategy": "ddp",
            "enable_progress_bar": False,
        },
    }
    callback = SyncedEpochEnd()
    train(config, callbacks=[callback])
    if dist.get_rank() == 0:
        (out / "sums.json").write_text(json.dumps(callback.sums))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
