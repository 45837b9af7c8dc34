"""Which weights of a checkpoint trained with ``ema.enabled: true`` are read.

Lightning's weight averaging (:mod:`visionkit.engine.ema`) writes the averaged (EMA) weights
under ``state_dict`` and the raw ones under ``current_model_state``; ``best.ckpt`` keeps the
averaged ones only (:func:`visionkit.checkpoint.strip_training_state`). Every reader
(``visionkit.load``, ``eval``, ``predict``, ``export``, ``model.init_from``) takes the
averaged ones unless told ``weights="raw"``, and says which it took.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from visionkit.choices import WEIGHTS
from visionkit.errors import CheckpointError

logger = logging.getLogger(__name__)

#: What ``weights=`` takes: the averaged weights (the default) or the raw ones.
WEIGHT_CHOICES = WEIGHTS

RAW_KEY = "current_model_state"  # Lightning's WeightAveraging: the raw weights


def trained_with_ema(checkpoint: Mapping[str, Any]) -> bool:
    """Whether ``checkpoint`` (a loaded Lightning checkpoint) was written by a run with EMA."""
    meta = checkpoint.get("visionkit")
    config = meta.get("config") if isinstance(meta, Mapping) else None
    ema = config.get("ema") if isinstance(config, Mapping) else None
    return RAW_KEY in checkpoint or bool(isinstance(ema, Mapping) and ema.get("enabled"))


def pick_state(
    checkpoint: Mapping[str, Any], path: str | os.PathLike, weights: str | None = None
) -> Mapping[str, Any]:
    """The state dict of ``checkpoint`` to read: ``state_dict``, or with ``weights="raw"`` the
    raw weights of an EMA run. Logs which, for a run trained with EMA (one line).

    Raises:
        CheckpointError: ``weights="raw"`` for a checkpoint without them (``best.ckpt``).
        ValueError: ``weights`` is neither ``"ema"`` nor ``"raw"`` (nor ``None``).
    """
    if weights not in (None, *WEIGHT_CHOICES):
        raise ValueError(f"weights={weights!r}: expected one of {', '.join(WEIGHT_CHOICES)}")
    state = checkpoint.get("state_dict", {})
    if not trained_with_ema(checkpoint):
        return state  # one set of weights: "raw" and "ema" are the same
    raw = checkpoint.get(RAW_KEY)
    if weights == "raw":
        if not isinstance(raw, Mapping):
            raise CheckpointError(
                path,
                "holds the EMA weights only (ema.enabled: true; a run's best.ckpt leaves the "
                "raw ones out when the run ends); its last.ckpt holds both, or leave out "
                "--weights raw / weights='raw' for the EMA weights",
            )
        logger.info("%s: read the raw weights (not the EMA ones)", path)
        return raw
    logger.info(
        "%s: read the EMA weights (ema.enabled: true)%s",
        path,
        "; the raw ones: --weights raw (visionkit.load(..., weights='raw'))"
        if isinstance(raw, Mapping)
        else "; the raw ones were left out of this file (a run's last.ckpt has them)",
    )
    return state


def model_tensors(state: Mapping[str, Any], prefix: str) -> dict[str, Tensor]:
    """The tensors of ``state`` under ``prefix`` (``model.``), the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
