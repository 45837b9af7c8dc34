"""``plots/curves.png`` is redrawn at validations, at most every ``plot_every_s`` seconds at
epoch ends between them, and once more when training ends, while ``metrics.csv`` gets every
epoch's row (a small dataset's epochs are a few steps: a drawing at each slowed training)."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch

import visionkit
import visionkit.engine.callbacks as callbacks
from visionkit.data.batch import collate
from visionkit.engine.callbacks import RunFolderCallback
from visionkit.engine.system import VisionSystem


def _fit(tmp_path, monkeypatch, plot_every_s, epochs=5, interrupt_at=None):
    drawn: list[int] = []  # the rows each drawing showed
    monkeypatch.setattr(callbacks, "plot_curves", lambda rows, path: drawn.append(len(rows)))
    torch.manual_seed(0)
    model = visionkit.create_model({"model": {
        "backbone": {"name": "simple_cnn"}, "heads": {"cls": {"name": "linear", "num_classes": 2}}}})  # fmt: skip
    batches = [{"images": torch.rand(2, 3, 32, 32), "class": torch.tensor([0, 1])}]

    class Stop(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == interrupt_at:
                raise RuntimeError("stopped")

    trainer = L.Trainer(
        accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
        callbacks=[RunFolderCallback(tmp_path, plot_every_s=plot_every_s), Stop()],
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    if interrupt_at is None:
        trainer.fit(VisionSystem(model), loader)
    else:
        with pytest.raises(RuntimeError, match="stopped"):
            trainer.fit(VisionSystem(model), loader)
    with open(tmp_path / "metrics.csv", newline="") as f:
        return drawn, len(list(csv.DictReader(f)))


def test_epoch_ends_within_the_interval_write_rows_but_draw_once(tmp_path, monkeypatch):
    drawn, rows = _fit(tmp_path, monkeypatch, plot_every_s=3600)
    assert rows == 5
    assert drawn == [1, 5]  # the first epoch's end, then every row when training ends


def test_a_zero_interval_draws_at_every_epoch_end_and_not_again_at_the_end(tmp_path, monkeypatch):
    drawn, rows = _fit(tmp_path, monkeypatch, plot_every_s=0)
    assert drawn == [1, 2, 3, 4, 5] and rows == 5


def test_a_run_stopped_by_an_error_has_its_curves_up_to_its_last_row(tmp_path, monkeypatch):
    drawn, rows = _fit(tmp_path, monkeypatch, plot_every_s=3600, interrupt_at=2)
    assert rows == 3 and drawn == [1, 3]


def test_the_last_drawing_has_the_last_epochs_training_loss_beside_its_validation(
    tmp_path, monkeypatch
):
    """Lightning validates at an epoch's end before ``on_train_epoch_end``: the validation's row
    is drawn, then gets the epoch's training losses; the drawing at the end shows them."""
    drawn: list[list[set[str]]] = []
    monkeypatch.setattr(
        callbacks, "plot_curves", lambda rows, path: drawn.append([set(r) for r in rows])
    )
    torch.manual_seed(0)
    model = visionkit.create_model({"model": {
        "backbone": {"name": "simple_cnn"}, "heads": {"cls": {"name": "linear", "num_classes": 2}}}})  # fmt: skip
    samples = [
        {"image": torch.rand(3, 32, 32), "image_id": i, "orig_size": (32, 32),
         "image_size": (32, 32), "class": i}
        for i in range(2)
    ]  # fmt: skip
    loader = torch.utils.data.DataLoader([collate(samples)], batch_size=None)
    L.Trainer(
        accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
        callbacks=[RunFolderCallback(tmp_path, plot_every_s=3600)], num_sanity_val_steps=0,
        enable_progress_bar=False, enable_model_summary=False,
    ).fit(VisionSystem(model, evaluators=[{}]), loader, loader)  # fmt: skip
    last = drawn[-1]
    assert len(last) == 3
    assert all("val/loss" in row and "train/loss_epoch" in row for row in last)
