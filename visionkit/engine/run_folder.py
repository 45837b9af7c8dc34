"""Which folder a training run writes to: its own, or, when that holds another run, the next
free ``<folder>-2``, ``-3``, ... (a run folder is never overwritten)."""

from __future__ import annotations

import logging
from pathlib import Path

from visionkit.checkpoint import unused_folder

logger = logging.getLogger(__name__)


#: Files that mark a folder as holding a run (``config.yaml`` alone does not: a run writes it
#: before its first checkpoint, so every DDP process picks the same folder).
RUN_FILES = ("checkpoints/*.ckpt", "metrics.csv", "metrics.json")


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run's checkpoints or metrics."""
    return folder.is_dir() and any(next(folder.glob(p), None) for p in RUN_FILES)


def choose_run_dir(folder: Path, resuming: bool = False, exist_ok: bool = False) -> Path:
    """The folder a training run writes to: ``folder``, or when it holds another run
    (:func:`holds_run`) and the run neither resumes nor has ``exist_ok``, the first of
    ``folder-2``, ``folder-3``, ... that holds none (:func:`~visionkit.checkpoint.
    unused_folder`). The choice is logged, with how to reuse or continue the other run."""
    if resuming or exist_ok or not holds_run(folder):
        return folder
    chosen = unused_folder(folder, holds_run)
    logger.warning(
        "%s holds another run; this run writes to %s (--exist-ok reuses %s, replacing its "
        "files; --resume continues it)",
        folder,
        chosen,
        folder,
    )
    return chosen
