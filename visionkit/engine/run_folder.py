"""Which folder a training run writes to: its own, or, when that holds another run, the next
free ``<folder>-2``, ``-3``, ... (a run folder is never overwritten)."""

from __future__ import annotations

from pathlib import Path

from visionkit.checkpoint import unused_folder

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
    unused_folder`). Said by :func:`another_run_note` once the run makes it."""
    if resuming or exist_ok or not holds_run(folder):
        return folder
    return unused_folder(folder, holds_run)


def another_run_note(folder: Path, chosen: Path) -> str | None:
    """What to log when a run writes to ``chosen`` instead of ``folder``, which holds another
    run, with how to reuse or continue that run; ``None`` when they are the same."""
    if chosen == folder:
        return None
    return (
        f"{folder} holds another run; this run writes to {chosen} (--exist-ok reuses {folder}, "
        "replacing its files; --resume continues it)"
    )
