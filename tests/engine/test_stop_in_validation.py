"""SIGTERM (or Ctrl-C) during a validation: ``last.ckpt`` holds the run as it trained, the
message says the validation was cut short, and the run folder says how to continue.

With ``ema.enabled`` the validation runs on the averaged weights, swapped into the model; a
stop in the middle of it saved them swapped: ``last.ckpt``'s raw weights were the average
and its average the raw weights, so the resumed run trained on from the average."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch

from visionkit.checkpoint import load_checkpoint
from visionkit.engine.runner import train
from visionkit.errors import TrainingInterrupted


class SigtermInValidation(L.Callback):
    """SIGTERM after the first batch of epoch 1's validation; keeps the weights it saw."""

    def __init__(self) -> None:
        self.raw: dict[str, torch.Tensor] = {}

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:  # the raw weights
        if trainer.current_epoch == 1:
            self.raw = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_validation_batch_end(self, trainer, *args) -> None:
        if trainer.current_epoch == 1 and not trainer.sanity_checking and self.raw:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.fixture()
def ema_config(tiny_config):
    tiny_config["ema"] = {"enabled": True, "decay": 0.5, "warmup_steps": 0}
    tiny_config["data"]["val_batch_size"] = 8  # a validation of 3 batches
    tiny_config["trainer"].update(max_epochs=3)
    return tiny_config


def test_a_sigterm_in_an_ema_validation_saves_the_raw_weights_as_raw(ema_config, tmp_path):
    stop = SigtermInValidation()
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match="during the validation of epoch 1") as info:
        train(ema_config, output_dir=run_dir, callbacks=[stop])
    assert "--resume" in str(info.value)
    saved = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    raw = saved["current_model_state"]
    for key, value in stop.raw.items():
        torch.testing.assert_close(raw[key], value, msg=key)
    differs = [k for k, v in stop.raw.items() if v.is_floating_point() and k in saved["state_dict"]]
    assert any(not torch.equal(saved["state_dict"][k], stop.raw[k]) for k in differs)


def test_the_run_folder_says_how_to_continue_until_it_does(ema_config, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(ema_config, output_dir=run_dir, callbacks=[SigtermInValidation()])
    note = (run_dir / "STOPPED.txt").read_text()
    assert "SIGTERM" in note and "during the validation of epoch 1" in note
    assert f"visionkit train --resume {run_dir / 'checkpoints' / 'last.ckpt'}" in note
    train(ema_config, output_dir=run_dir, resume="auto")
    assert not (run_dir / "STOPPED.txt").exists()  # the run went on: nothing to say any more


def test_a_run_continued_in_another_folder_leaves_the_old_one_saying_where(ema_config, tmp_path):
    """The old folder's note offered to continue the run a second time, from the same
    checkpoint, after it had gone on elsewhere."""
    old, new = tmp_path / "run", tmp_path / "run-continued"
    with pytest.raises(TrainingInterrupted):
        train(ema_config, output_dir=old, callbacks=[SigtermInValidation()])
    last = old / "checkpoints" / "last.ckpt"
    train(ema_config, output_dir=new, resume=str(last))
    note = (old / "STOPPED.txt").read_text()
    assert note.startswith("visionkit: this run was stopped: interrupted by SIGTERM at epoch 1")
    assert f"it went on in {new} (resumed from {last})" in note
    assert "--resume" not in note  # no command that would continue it twice
    assert not (new / "STOPPED.txt").exists()
