"""Callbacks that fill the run folder: per-epoch ``metrics.csv`` and ``plots/curves.png``."""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only

from visionkit.checkpoint import write_atomic

logger = logging.getLogger(__name__)


class RunFolderCallback(L.Callback):
    """Appends one row per epoch to ``metrics.csv`` and redraws ``plots/curves.png``.

    Columns: ``epoch``, ``step``, ``lr``, then every epoch-level metric the system logged
    (``train/loss_epoch``, ``val/loss``, ``cls/top1``, ...).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, Any]] = []

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        if trainer.optimizers:
            row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        for key, value in sorted(trainer.callback_metrics.items()):
            if (
                key.endswith("_step")
                or "/" not in key
                or f"{key}_epoch" in trainer.callback_metrics
            ):
                continue
            row[key] = float(value)
        self.rows.append(row)
        self.write_csv()
        plot_curves(self.rows, self.run_dir / "plots" / "curves.png")

    def write_csv(self) -> None:
        columns = list(dict.fromkeys(k for row in self.rows for k in row))

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.rows)

        write_atomic(self.run_dir / "metrics.csv", write)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


class TrainingTime(L.Callback):
    """Wall time of ``trainer.fit`` in this process, split into training and the validation
    epochs inside it (the sanity check and the final validation of the best checkpoint are
    outside). ``times()`` gives ``{"time/train_s", "time/val_s"}``, which the runner adds to
    ``metrics.json``; a resumed run counts its own time only."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.end: float | None = None
        self.val_s = 0.0
        self._val_start: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start, self.end, self.val_s = time.monotonic(), None, 0.0

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is not None and self.end is None and not trainer.sanity_checking:
            self._val_start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_start is not None:
            self.val_s += time.monotonic() - self._val_start
            self._val_start = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end = time.monotonic()
        times = self.times()
        if times and trainer.is_global_zero:
            logger.info(
                "training took %s (and %s of validation)",
                _minutes(times["time/train_s"]),
                _minutes(times["time/val_s"]),
            )

    def times(self) -> dict[str, float]:
        if self.start is None or self.end is None:
            return {}
        return {"time/train_s": self.end - self.start - self.val_s, "time/val_s": self.val_s}


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Per-epoch panels: the total losses (``train/loss_epoch``, ``val/loss``), each head's
    training loss (``train/<head>/loss_epoch``, with several heads), the validation metrics,
    and the learning rates (``lr`` and the per-group ``train/lr_*``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("epoch", "step")]
    panels = curve_panels(keys)
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, names) in zip(axes[0], panels, strict=False):
        for name in names:
            points = [(r["epoch"], r[name]) for r in rows if name in r and math.isfinite(r[name])]
            if points:
                xs, ys = zip(*points, strict=False)
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curve_panels(keys: list[str]) -> list[tuple[str, list[str]]]:
    """The panels of :func:`plot_curves` (title, column names) for the columns ``keys``."""
    losses = [k for k in keys if "loss" in k and k.count("/") <= 1]
    head_losses = [k for k in keys if k.startswith("train/") and k.endswith("/loss_epoch")]
    head_losses = [k for k in head_losses if k.count("/") == 2]
    rates = [k for k in keys if k.startswith("train/lr")] or ["lr"]  # per parameter group
    metrics = [k for k in keys if "loss" not in k and k != "lr" and not k.startswith("train/")]
    return (
        [("loss", losses)]
        + ([("loss per head (train)", head_losses)] if len(head_losses) > 1 else [])
        + ([("metrics", metrics)] if metrics else [])
        + [("learning rate", rates)]
    )


def make_loggers(run_dir: str | Path, tensorboard: bool | None = None) -> list[Any]:
    """The run's Lightning loggers: a ``CSVLogger`` writing ``<run_dir>/logs/metrics.csv``
    (per step) always, and a ``TensorBoardLogger`` writing ``<run_dir>/tensorboard/`` when
    ``tensorboard`` is true, or (``None``) when the ``tensorboard`` package is installed
    (``pip install visionkit[tensorboard]``)."""
    import importlib.util

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="", version="logs")]
    if tensorboard is None:
        tensorboard = importlib.util.find_spec("tensorboard") is not None
    if tensorboard:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="", version="tensorboard"))
    return loggers
