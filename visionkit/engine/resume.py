"""Continuing a run: which checkpoint to resume from, RNG state in checkpoints, SIGTERM.

- ``resume: auto`` (or ``--resume auto``) picks the newest checkpoint of the run folder that
  loads; a truncated or corrupt one is reported and skipped, so the previous good one is used.
- :class:`RngStateCallback` saves the Python, NumPy and torch random states in every
  checkpoint and restores them on resume, so data order and augmentations continue as in an
  uninterrupted run.
- :class:`SigtermCheckpoint` writes ``checkpoints/last.ckpt`` when the run receives SIGTERM
  (Lightning stops the loop at the next batch); :func:`~visionkit.engine.runner.train` then
  exits with :class:`~visionkit.errors.TrainingInterrupted`.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from visionkit.checkpoint import load_checkpoint
from visionkit.errors import CheckpointError

logger = logging.getLogger(__name__)


def find_resume_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The newest ``*.ckpt`` in ``checkpoint_dir`` that loads (by training step, then file
    time); ``None`` when there is none. Checkpoints that fail to load are logged and skipped."""
    checkpoint_dir = Path(checkpoint_dir)
    candidates = sorted(
        checkpoint_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    loaded: list[tuple[int, float, Path]] = []
    for path in candidates:
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as err:
            logger.warning("resume: auto: skipping %s", err)
            continue
        loaded.append((int(ckpt.get("global_step", 0)), path.stat().st_mtime, path))
    if not loaded:
        return None
    return max(loaded)[2]


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])
    )


class RngStateCallback(L.Callback):
    """Puts the Python, NumPy and torch random states into every checkpoint (as tensors and
    plain types, so ``weights_only`` loading works) and restores them when a run resumes.

    The states are restored at ``on_train_start``, after the sanity-check validation (whose
    data-loader iterator draws from the torch generator), so the training batches and their
    augmentations continue exactly as in an uninterrupted run."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        state = {
            "python": {"version": version, "state": list(internal), "gauss": gauss},
            "numpy": _numpy_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is not None:
            self._restore(self._pending)
            self._pending = None

    @staticmethod
    def _restore(state_dict: dict[str, Any]) -> None:
        py = state_dict["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
        _set_numpy_state(state_dict["numpy"])
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class SigtermCheckpoint(L.Callback):
    """On SIGTERM (preemption), save ``path`` so that ``--resume`` continues from here."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.saved = False

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)
            self.saved = True
            logger.warning(
                "SIGTERM at epoch %d, step %d: saved %s",
                trainer.current_epoch,
                trainer.global_step,
                self.path,
            )
