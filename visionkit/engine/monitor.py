"""The metric that picks ``best.ckpt`` (``monitor``) and early stopping's
(``early_stopping.monitor``): chosen from the evaluated heads, checked before training against
the names validation will log, and at the first validation against those it did log, so that a
misspelt name is a :class:`~visionkit.errors.ConfigError` naming the right ones, not
Lightning's traceback after the whole run.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L

from visionkit.config import Config
from visionkit.engine.system import VisionSystem
from visionkit.errors import ConfigError


def monitor_of(system: VisionSystem, cfg: Config) -> tuple[str, str]:
    """The metric that picks ``best.ckpt`` and its mode: ``cfg.monitor`` when set; else the
    evaluated head's main metric (``<head>/top1``, ``<head>/mAP``, ``<head>/mIoU``,
    ``<head>/mask_mAP``); with several evaluated heads ``val/score``, the mean of their main
    metrics; else ``val/loss``."""
    if cfg.monitor:
        return cfg.monitor, "min" if "loss" in cfg.monitor else "max"
    headline = system.headline_metrics()
    if len(headline) > 1:
        return "val/score", "max"
    if headline:
        return headline[0], "max"
    return "val/loss", "min"


def known_names(system: VisionSystem) -> list[str]:
    """The names every validation logs: ``val/loss`` (and ``val/loss/<set>`` with several
    sets), each evaluated head's main metric, and ``val/score`` with several of those."""
    headline = system.headline_metrics()
    names = dict.fromkeys(["val/loss", *system.val_loss_keys, *headline])
    if len(headline) > 1:
        names["val/score"] = None
    return list(names)


def _close(name: str, names: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the names most like ``name`` (case aside), or ``""``."""
    lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(lower[c]) for c in close)}?" if close else ""


def check_monitors(monitors: Mapping[str, str], system: VisionSystem) -> None:
    """Before training: each ``{config key: metric name}`` that validation never logs (a head
    without an evaluator, a misspelt ``val/`` name) is an error. A name under an evaluated
    head (``det/mAP50``) is checked by :class:`MonitorCheck` at the first validation;
    ``train/...`` names are logged by training.

    Raises:
        ConfigError: naming the key, the name and the names that are logged.
    """
    known = known_names(system)
    heads = [key.replace("@", "/") for key in system.evaluators]
    for key, name in monitors.items():
        _check_head_loss(key, name, system)
        if name in known or name.startswith("train/") or name.rpartition("/")[0] in heads:
            continue
        metrics = f" and each evaluated head's metrics ({', '.join(h + '/...' for h in heads)})"
        raise ConfigError(
            f"{key}: {name!r} is never logged{_close(name, known)}; validation logs "
            f"{', '.join(known)}{metrics if heads else ''} (docs/configuration.md#monitor)"
        )


def _check_head_loss(key: str, name: str, system: VisionSystem) -> None:
    """A head's training loss term is logged as ``train/<head>/<term>_step`` and
    ``_epoch`` only (:meth:`VisionSystem._log_head_losses`): ``train/<head>/<term>`` is an
    error naming both."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "train" or parts[1] not in system.model.heads:
        return
    if parts[2].endswith(("_step", "_epoch")):
        return
    raise ConfigError(
        f"{key}: {name!r} is logged as {name}_step (each step) and {name}_epoch (the mean "
        "over the epoch's images carrying the head's labels, at the end of each epoch); "
        "monitor one of them, or a validation metric (docs/configuration.md#monitor)"
    )


class MonitorCheck(L.Callback):
    """At the end of the first validation: each monitored name was logged, else a
    :class:`ConfigError` listing the logged ones (before Lightning's checkpoint and early
    stopping fail on it with a traceback). Put it before ``EarlyStopping`` in the callbacks."""

    def __init__(self, monitors: Mapping[str, str]) -> None:
        self.monitors = {k: v for k, v in monitors.items() if not v.startswith("train/")}

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or not self.monitors:
            return
        logged = sorted(k for k in trainer.callback_metrics if not k.startswith("train/"))
        for key, name in self.monitors.items():
            if name not in trainer.callback_metrics:
                raise ConfigError(
                    f"{key}: {name!r} was not logged by the validation{_close(name, logged)}; "
                    f"it logged {', '.join(logged)}"
                )
        self.monitors = {}
