"""The keyword arguments of ``lightning.Trainer`` from the ``trainer`` section (Lightning
itself is imported only by :mod:`visionkit.engine`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionkit.config import (
    VISIONKIT_TRAINER_KEYS,
    Config,
)
from visionkit.engine.precision import resolve_precision


def trainer_kwargs(cfg: Config, run_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of ``lightning.Trainer`` from the ``trainer`` section: every key
    set, except visionkit's own (:data:`~visionkit.config.VISIONKIT_TRAINER_KEYS`), with
    ``precision: auto`` resolved and ``default_root_dir`` the run folder; ``overrides`` win."""
    t = cfg.trainer.model_dump()
    args = {k: v for k, v in t.items() if v is not None and k not in VISIONKIT_TRAINER_KEYS}
    args["precision"] = resolve_precision(args["precision"], args["accelerator"])
    args.update(overrides)
    return {"default_root_dir": str(run_dir), **args}
