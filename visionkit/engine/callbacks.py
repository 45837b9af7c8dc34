"""Callbacks that fill the run folder: per-epoch ``metrics.csv`` and ``plots/curves.png``."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only


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
        with open(self.run_dir / "metrics.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """One panel for the losses, one per metric family, epochs on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("epoch", "step")]
    losses = [k for k in keys if "loss" in k and k.count("/") <= 1]
    metrics = [k for k in keys if "loss" not in k and k != "lr"]
    panels = (
        [("loss", losses)]
        + ([("metrics", metrics)] if metrics else [])
        + [("learning rate", ["lr"])]
    )
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
