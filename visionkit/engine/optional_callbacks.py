"""The callbacks a config adds to a training run when it asks for them: step checkpoints
(``trainer.checkpoint_every_n_steps``), the time budget's schedule (``trainer.max_time``),
closing the multi-image steps (``data.close_mixing``), the weights' moving average (``ema``)
and early stopping (``early_stopping``)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping

from visionkit.config import Config
from visionkit.engine.checkpoint import NamedCheckpoint
from visionkit.engine.close_mixing import CloseMixing, has_mixing_steps
from visionkit.engine.ema import EMACallback
from visionkit.engine.time_budget import TimeBudgetSchedule
from visionkit.errors import ConfigError


def training_callbacks(
    cfg: Config, run_dir: Path, monitor: str, mode: str, has_val: bool
) -> list[L.Callback]:
    """The optional callbacks of a config: step checkpoints, the time budget, closing the
    multi-image steps, EMA, early stopping."""
    callbacks: list[L.Callback] = []
    if cfg.trainer.checkpoint_every_n_steps:
        callbacks.append(
            NamedCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="step",
                every_n_train_steps=cfg.trainer.checkpoint_every_n_steps,
                save_top_k=1,
                enable_version_counter=False,
            )
        )
    if cfg.trainer.max_time is not None:
        callbacks.append(TimeBudgetSchedule())
    if cfg.data.close_mixing and has_mixing_steps(cfg.data.transforms.train):
        callbacks.append(CloseMixing(cfg.data.close_mixing))
    if cfg.ema.enabled:
        callbacks.append(EMACallback(cfg.ema.decay, cfg.ema.warmup_steps))
    stop = cfg.early_stopping
    if stop.patience is not None:
        if not has_val and stop.monitor is None:
            raise ConfigError("early_stopping: needs data.val or early_stopping.monitor")
        stop_monitor = stop.monitor or monitor
        stop_mode = ("min" if "loss" in stop_monitor else "max") if stop.monitor else mode
        callbacks.append(
            EarlyStopping(
                monitor=stop_monitor,
                patience=stop.patience,
                min_delta=stop.min_delta,
                mode=stop_mode,
                check_on_train_epoch_end=not has_val,
                check_finite=False,  # an undefined main metric (NaN) is not a divergence
            )
        )
    return callbacks
