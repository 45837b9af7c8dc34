"""Which weights of a checkpoint trained with ``ema.enabled: true`` are read.

Lightning's weight averaging (:mod:`visionkit.engine.ema`) writes the averaged (EMA) weights
under ``state_dict`` and the raw ones under ``current_model_state``; ``best.ckpt`` keeps the
averaged ones only (:func:`visionkit.checkpoint.strip_training_state`). Every reader
(``visionkit.load``, ``eval``, ``predict``, ``export``, ``model.init_from``) takes the
averaged ones unless told ``weights="raw"`` (``--weights raw``; ``model.init_from`` takes the
averaged ones), and says which it took. A source of one set (an export, a model in memory)
refuses ``weights`` naming another (:func:`one_set`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from visionkit.choices import WEIGHTS
from visionkit.errors import CheckpointError, ConfigError

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


def check_weights(weights: object, call: str = "", source: object = None) -> None:
    """Refuse a ``weights`` that names no set of weights (``None``, ``"ema"`` or ``"raw"``),
    or one that a model in memory (``source``; a path is a file, read later) does not hold
    (:func:`one_set`).

    Raises:
        ConfigError: headed as an invalid argument of ``call`` where given.
    """
    if weights is not None and weights not in WEIGHT_CHOICES:
        raise ConfigError(
            f"weights (--weights): expected {' or '.join(map(repr, WEIGHT_CHOICES))} (or None: "
            f"the EMA weights of a run with ema.enabled: true), got {weights!r}",
            call=call,
        )
    if source is not None and not isinstance(source, (str, os.PathLike)):
        one_set(weights, getattr(source, "meta", None), call=call)


def held_weights(checkpoint: Mapping[str, Any], weights: str | None) -> dict[str, str]:
    """``{"weights": "ema" | "raw"}``, the set of an EMA run's weights read from ``checkpoint``
    with ``weights`` (:func:`pick_state`), for the model's ``meta``: an export of the model
    records it, and a source of one set (:func:`one_set`) is asked against it; ``{}`` for a
    run without EMA (one set)."""
    return {"weights": weights or "ema"} if trained_with_ema(checkpoint) else {}


def one_set(
    weights: str | None, meta: Any, source: str | os.PathLike | None = None, call: str = ""
) -> None:
    """Refuse ``weights`` naming a set that a source of one set of weights does not hold: an
    export (``source``: its path) or a model in memory (``source=None``), whose ``meta``
    says which it holds (:func:`held_weights`; ``"ema"`` is taken for a source that does
    not say, as the default).

    Raises:
        CheckpointError: for an export; ConfigError: for a model in memory.
    """
    held = meta.get("weights") if isinstance(meta, Mapping) else None
    if weights is None or weights == held or (weights == "ema" and held is None):
        return
    holds = {"ema": "the EMA ones", "raw": "the raw ones"}.get(held, "the ones it was given")
    if source is None:
        raise ConfigError(
            f"weights (--weights): {weights!r}, but a model in memory holds one set of weights "
            f"({holds}); pass the model visionkit.load(CHECKPOINT, weights={weights!r}) gives, "
            "or leave weights out",
            call=call,
        )
    raise CheckpointError(
        source,
        f"an export holds one set of weights ({holds}), not a choice of --weights {weights} / "
        f"weights={weights!r}: export the checkpoint with them (visionkit export --weights "
        f"{weights}), or leave the option out",
    )


#: What the EMA line offers a reader that takes ``weights`` (``visionkit.load``, ``evaluate``,
#: ``predict_files``, ``export`` and their commands' ``--weights``).
RAW_OFFER = "the raw ones: --weights raw / weights='raw'"


def pick_state(
    checkpoint: Mapping[str, Any],
    path: str | os.PathLike,
    weights: str | None = None,
    offer: str = RAW_OFFER,
) -> Mapping[str, Any]:
    """The state dict of ``checkpoint`` to read: ``state_dict``, or with ``weights="raw"`` the
    raw weights of an EMA run. Logs which, for a run trained with EMA (one line, ending with
    ``offer`` when the file holds the raw ones too: how the caller takes them, or says it
    cannot: ``model.init_from``).

    Raises:
        CheckpointError: ``weights="raw"`` for a checkpoint without them (``best.ckpt``).
        ConfigError: ``weights`` is neither ``"ema"`` nor ``"raw"`` (nor ``None``).
    """
    check_weights(weights)
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
        "%s: read the EMA weights (ema.enabled: true); %s",
        path,
        offer
        if isinstance(raw, Mapping)
        else "the raw ones were left out of this file (a run's last.ckpt has them)",
    )
    return state


def model_tensors(state: Mapping[str, Any], prefix: str) -> dict[str, Tensor]:
    """The tensors of ``state`` under ``prefix`` (``model.``), the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
