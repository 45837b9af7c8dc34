"""Which folder a training run writes to: its own, or, when that holds another run, the next
free ``<folder>-2``, ``-3``, ... (a run folder is never overwritten); and what ``eval`` says
of a run folder's ``config.yaml`` edited after the run (:func:`edited_config_note`); the
strict JSON of its ``metrics.json`` (:func:`metrics_json`)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from visionkit.checkpoint import unused_folder

#: Files that mark a folder as holding a run (``config.yaml`` alone does not: a run writes it
#: before its first checkpoint, so every DDP process picks the same folder).
RUN_FILES = ("checkpoints/*.ckpt", "metrics.csv", "metrics.json")


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run's checkpoints or metrics."""
    return folder.is_dir() and any(next(folder.glob(p), None) for p in RUN_FILES)


def choose_run_dir(
    folder: Path, resuming: bool = False, exist_ok: bool = False, init_from: Any = None
) -> Path:
    """The folder a training run writes to: ``folder``, or when it holds another run
    (:func:`holds_run`) and the run neither resumes nor has ``exist_ok``, the first of
    ``folder-2``, ``folder-3``, ... that holds none (:func:`~visionkit.checkpoint.
    unused_folder`). Said by :func:`another_run_note` once the run makes it.

    Raises:
        ConfigError: ``exist_ok`` replaces the run whose checkpoint ``init_from`` names (it
            would be removed as the new run starts).
    """
    if exist_ok and not resuming and holds_run(folder) and init_from is not None:
        source = Path(str(init_from))
        if source.is_file() and source.resolve().is_relative_to(folder.resolve()):
            from visionkit.errors import ConfigError

            raise ConfigError(
                f"model.init_from={init_from} is a file of the run in {folder}, whose "
                "checkpoints --exist-ok removes as the new run starts: copy it out of the "
                "folder first, or write the new run elsewhere (without --exist-ok it goes to "
                f"{folder.name}-2)"
            )
    if resuming or exist_ok or not holds_run(folder):
        return folder
    return unused_folder(folder, holds_run)


def resumed_folder(folder: Path, checkpoint: Path | None, given: bool) -> tuple[Path, bool]:
    """The folder a run resumed from ``checkpoint`` writes to, and whether that continues the
    checkpoint's run (``resuming`` of :func:`choose_run_dir`). Without a folder ``given``
    (``--output-dir``), a checkpoint of a run folder's ``checkpoints/`` goes on in that run
    folder (``runs/x-2`` for ``runs/x-2/checkpoints/last.ckpt``), as Ultralytics resumes in
    the run's own folder: the config's ``<output_dir>/<name>`` may hold another run (``runs/x``),
    whose files a resume there replaced. Any other folder is a new run's, so one that holds a
    run is never written into."""
    if checkpoint is None or Path(checkpoint).resolve().parent.name != "checkpoints":
        return folder, False  # (resolved: `--resume last.ckpt` run from checkpoints/)
    own = Path(checkpoint).resolve().parent.parent
    folder = folder if given else own
    return folder, folder.resolve() == own.resolve()


def another_run_note(folder: Path, chosen: Path) -> str | None:
    """What to log when a run writes to ``chosen`` instead of ``folder``, which holds another
    run, with how to reuse or continue that run; ``None`` when they are the same."""
    if chosen == folder:
        return None
    return (
        f"{folder} holds another run; this run writes to {chosen} (--exist-ok reuses {folder}, "
        "replacing its files; --resume continues it)"
    )


def edited_config_note(
    checkpoint: str | os.PathLike, config: dict[str, Any], overrides: Sequence[str] = ()
) -> str | None:
    """What to log when the ``config.yaml`` of a checkpoint's run folder says other ``data``
    than the ``config`` saved in the checkpoint, which ``eval`` and ``predict`` use: an edit
    of that file changes nothing, which a user who made it should hear, with the override
    that does change the data. ``None`` when they agree or there is no such file."""
    from visionkit.config import load_config, override_keys, resolve_file
    from visionkit.engine.resume import config_changes
    from visionkit.errors import ConfigError

    folder = Path(checkpoint).resolve().parent
    path = folder.parent / "config.yaml"
    if folder.name != "checkpoints" or not path.is_file():  # not a run folder's checkpoint
        return None
    try:
        edited = resolve_file(path).get("data")  # as a config file: name: '1e5' stays text
        if edited is None:
            return None
        ours = load_config(config).to_dict()["data"]  # both with the defaults filled in
        theirs = load_config({**config, "data": edited}).to_dict()["data"]
    except (OSError, yaml.YAMLError, AttributeError, ConfigError):
        return f"{path} is not read (the checkpoint holds its own config)"
    given = tuple(override_keys(overrides))
    changes = [c for c in config_changes(ours, theirs, "data") if not c.startswith(given or "\0")]
    if not changes:
        return None
    first = changes[0].split(": ", 1)[0]
    return (
        f"{path} differs from the config saved in the checkpoint ({'; '.join(changes[:3])}"
        f"{' ...' if len(changes) > 3 else ''}): the checkpoint's is used; give the change as "
        f"an override (e.g. {first}=...) to evaluate other data"
    )


def metrics_json(metrics: dict[str, float], indent: int | None = None) -> str:
    """Metrics as strict JSON: ``nan`` (COCO's "no such objects") and infinities are written
    as ``null``."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in metrics.items()
    }
    return json.dumps(clean, indent=indent, sort_keys=True)
