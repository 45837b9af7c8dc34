"""``resume: auto`` says why each checkpoint of the run folder cannot be resumed from: a
corrupt last.ckpt beside the weights-only best.ckpt a run leaves was "none of the 2
checkpoints ... loads", though best.ckpt loads (it holds no optimiser state to resume)."""

from __future__ import annotations

import logging

import torch

from visionkit.checkpoint import save_atomic, strip_training_state
from visionkit.engine.resume import resolve_resume


def write_checkpoint(path):
    state = {"state_dict": {"w": torch.zeros(2)}, "optimizer_states": [{}], "global_step": 3}
    save_atomic(state, path)
    return path


def test_resume_auto_says_which_checkpoint_is_corrupt_and_which_holds_weights_only(
    tmp_path, caplog
):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    last = write_checkpoint(folder / "last.ckpt")
    last.write_bytes(last.read_bytes()[:100])  # killed mid-copy
    best = write_checkpoint(folder / "best.ckpt")
    strip_training_state(best)  # as every run does to best.ckpt when it ends
    with caplog.at_level(logging.INFO, logger="visionkit"):
        assert resolve_resume("auto", tmp_path / "run") is None  # a new run
    (line,) = [r.getMessage() for r in caplog.records if "can be resumed" in r.getMessage()]
    assert f"none of the 2 checkpoints in {folder} can be resumed from (" in line
    assert "loads" not in line
    assert "last.ckpt: truncated or corrupt" in line and "PytorchStreamReader" not in line
    assert "best.ckpt: weights only, without the optimiser's state a run resumes from" in line
    assert line.endswith(f"starting a new run; to start from its weights: model.init_from={best}")


def test_resume_auto_names_the_reason_of_a_lone_checkpoint(tmp_path, caplog):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    strip_training_state(write_checkpoint(folder / "best.ckpt"))
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        assert resolve_resume("auto", tmp_path / "run") is None
    assert f"the checkpoint in {folder} cannot be resumed from (best.ckpt: weights only" in (
        caplog.text
    )
