"""Callbacks that fill the run folder: ``metrics.csv`` (per epoch and validation), ``plots/curves.png``, and the
per-step log ``logs/metrics.csv`` (:class:`StepLog`); the loggers of the config's ``logger:``
list (:func:`make_loggers`); TF32 matrix products in every process on a GPU
(:class:`Tf32Matmuls`)."""

from __future__ import annotations

import csv
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

from visionkit.build.trainer import use_tf32_matmuls
from visionkit.checkpoint import write_atomic
from visionkit.config.schema import LoggerConfig
from visionkit.engine.system import UNENDING
from visionkit.errors import ConfigError
from visionkit.evaluation.plots import pyplot, save_figure

logger = logging.getLogger(__name__)


class RunFolderCallback(L.Callback):
    """Writes ``metrics.csv`` and redraws ``plots/curves.png``: one row per training epoch
    (``train/...`` epoch means) and one per validation (``val/loss``, ``cls/top1``, ...), a
    validation at an epoch's end sharing the epoch's row. A validation between epochs (a
    step-based ``val_check_interval``) has its own row at its step, so every row's metrics were
    measured at its ``step``; the curves' x-axis is then the step (:func:`curve_axis`).

    Columns: ``epoch``, ``step``, ``lr`` (the learning rate at that moment: the one the next
    step uses), then every metric the system logged. The validation of ``best.ckpt`` after
    training (``metrics.json``) is in neither file.

    ``metrics.csv`` is written at every row; ``curves.png`` is redrawn at every validation, at
    most every ``plot_every_s`` seconds at epoch ends between them, and when training ends:
    a small dataset's epochs are a few steps long, and a redraw at each cost 15 ms a step of
    a 0.4 s step (0.24 s a drawing, every 16 steps; docs/benchmarks.md).
    """

    def __init__(self, run_dir: str | Path, plot_every_s: float = 30.0) -> None:
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, Any]] = []
        self.plot_every_s = plot_every_s
        self._changes = 0  # rows added or extended (a validation's row gets the epoch's losses)
        self._plotted: tuple[int, float] | None = None  # (_changes drawn, time.monotonic())

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A new run in a folder that holds an earlier one (``--exist-ok``) replaces its
        files: the earlier checkpoints and ``metrics.json`` go first, so that neither
        ``resume=auto`` nor a reader of the folder takes them for this run's."""
        if trainer.ckpt_path:
            return
        stale = [
            *sorted((self.run_dir / "checkpoints").glob("*.ckpt")),
            self.run_dir / "metrics.json",
        ]
        removed = [p for p in stale if p.is_file()]
        for path in removed:
            path.unlink()
        if removed:
            names = ", ".join(str(p.relative_to(self.run_dir)) for p in removed)
            logger.warning("%s held an earlier run: removed its %s", self.run_dir, names)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # best.ckpt scored again once fit ends:
            # not a row of the per-step log, one epoch past the last (metrics.json has it)
            trainer.loggers = [g for g in trainer.loggers if not isinstance(g, StepLog)]

    # Not rank_zero_only: reading trainer.callback_metrics computes the synced ones, a
    # collective, which rank 0 alone would make while the others went on to the next hook's
    # (a callback's all_reduce met Lightning's, and the ranks hung or mixed their numbers).
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        trainer.callback_metrics  # noqa: B018 (on every rank: see above)
        if trainer.is_global_zero:
            # the evaluators' own values: Lightning logs float32, off pycocotools' in the 8th
            # digit
            exact = getattr(pl_module, "last_metrics", None)
            self._add(trainer, lambda key: not key.startswith("train/"), exact)
            self.plot()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.callback_metrics  # noqa: B018 (on every rank: see above)
        if trainer.is_global_zero:
            self._add(trainer, lambda key: key.startswith("train/"))
            last = self._plotted[1] if self._plotted else -math.inf
            if time.monotonic() - last >= self.plot_every_s:
                self.plot()

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.plot(only_new=True)

    @rank_zero_only
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self.plot(only_new=True)  # a stopped run's curves up to its last row

    def plot(self, only_new: bool = False) -> None:
        """Redraws ``plots/curves.png`` from the rows (``only_new``: unless it shows them as
        they are already)."""
        if not self.rows or (only_new and self._plotted and self._plotted[0] == self._changes):
            return
        plot_curves(self.rows, self.run_dir / "plots" / "curves.png")
        self._plotted = (self._changes, time.monotonic())

    def _add(
        self, trainer: L.Trainer, wanted: Any, exact: Mapping[str, float] | None = None
    ) -> None:
        """Adds the metrics ``wanted`` picks (epoch-level ones) to the row of this step, a
        metric of ``exact`` with its value there rather than the logged one."""
        row: dict[str, Any] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        if trainer.optimizers:
            row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        for key, value in sorted(trainer.callback_metrics.items()):
            if (
                key.endswith("_step")
                or "/" not in key
                or f"{key}_epoch" in trainer.callback_metrics
                or not wanted(key)
            ):
                continue
            row[key] = float((exact or {}).get(key, value))
        last = self.rows[-1] if self.rows else {}
        if (last.get("epoch"), last.get("step")) == (row["epoch"], row["step"]):
            last.update(row)
        else:
            self.rows.append(row)
        self._changes += 1
        self.write_csv()

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
    """Wall time of ``trainer.fit``, split into training and the validation
    epochs inside it (the sanity check and the final validation of the best checkpoint are
    outside). ``times()`` gives ``{"time/train_s", "time/val_s"}``, which the runner adds to
    ``metrics.json``. Checkpoints carry the time so far, so a resumed run's figures are those
    of the whole run (Lightning's ``max_time`` counts it alike)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.end: float | None = None
        self.val_s = 0.0
        self._val_start: float | None = None
        self.before = {"time/train_s": 0.0, "time/val_s": 0.0}  # of the run resumed
        self._final: dict[str, float] = {}

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
        self._final = self._so_far(self.end)  # a later validate(ckpt_path) reloads `before`
        times = self.times()
        if times and trainer.is_global_zero:
            logger.info(
                "training took %s (and %s of validation)",
                _minutes(times["time/train_s"]),
                _minutes(times["time/val_s"]),
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._final and self.start is None:  # resumed with its budget spent: no
            self._final = dict(self.before)  # training ran, the run's time is the checkpoint's

    def times(self) -> dict[str, float]:
        """The run's figures once training ended (``{}`` before)."""
        return dict(self._final)

    def _so_far(self, now: float) -> dict[str, float]:
        val_s = self.val_s + (now - self._val_start if self._val_start is not None else 0.0)
        own = {"time/train_s": now - (self.start or now) - val_s, "time/val_s": val_s}
        return {k: self.before[k] + v for k, v in own.items()}

    def state_dict(self) -> dict[str, Any]:
        if self._final:
            return dict(self._final)
        return self._so_far(time.monotonic()) if self.start else dict(self.before)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = {k: float(state_dict.get(k, 0.0)) for k in self.before}


class Tf32Matmuls(L.Callback):
    """On a CUDA device, float32 matrix products use TF32
    (:func:`~visionkit.build.trainer.use_tf32_matmuls`) in each process as it sets up, whoever
    started it (``make_trainer`` sets it in the parent, before Lightning checks it there)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.strategy.root_device.type == "cuda":
            use_tf32_matmuls()


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


#: Metrics left out of the curves (they stay in metrics.csv), matched on the last part of a
#: name (``det/AR100``, ``det/<val set>/AR100``): the recall and per-size breakdowns of the COCO
#: summary, per-class IoUs, the true-accept rates and threshold of an embedding head's
#: verification (``id_`` for the identities of detections), and a box head's best-F1 score
#: threshold (``F1_conf``, a score, not a quality).
CURVE_BREAKDOWNS = re.compile(
    r"(^|_)AR|_(small|medium|large)$|^IoU_|(^|_)tar@|(^|_)threshold$|^F1_conf$"
)
#: Learning-rate and momentum columns of Lightning's ``LearningRateMonitor``.
MONITOR_RATES = ("lr-", "momentum-")


def curve_axis(rows: list[dict[str, Any]]) -> str:
    """The x-axis of the curves: ``"epoch"``, or ``"step"`` when an epoch has several rows
    (validations between epochs: a step-based ``val_check_interval``, or a fraction of one)."""
    return "step" if len({row["epoch"] for row in rows}) < len(rows) else "epoch"


def plot_curves(rows: list[dict[str, Any]], path: Path, x_axis: str | None = None) -> None:
    """Panels over ``x_axis`` (``epoch`` or ``step``; default :func:`curve_axis`), four to a row: the total losses (``train/loss_epoch``, ``val/loss``),
    each head's training loss (``train/<head>/loss_epoch``, with several heads), each head's
    validation metrics (:func:`curve_panels`), and the learning rates (``lr`` and the
    per-group ``train/lr_*``)."""
    if not rows:
        return
    plt = pyplot()
    x_axis = x_axis or curve_axis(rows)
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("epoch", "step")]
    panels = curve_panels(keys)
    columns = min(4, len(panels))
    lines = -(-len(panels) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(5 * columns, 3.6 * lines), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, names) in zip(axes.flat, panels, strict=False):
        for name in names:
            points = [(r[x_axis], r[name]) for r in rows if name in r and math.isfinite(r[name])]
            if points:
                xs, ys = zip(*points, strict=False)
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel(x_axis)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def curve_panels(keys: list[str]) -> list[tuple[str, list[str]]]:
    """The panels of :func:`plot_curves` (title, column names) for the columns ``keys``: the
    losses, each head's training loss, one panel of metrics per head (``<head>/...``, without
    :data:`CURVE_BREAKDOWNS`), ``val/score``, the learning rates."""
    # train/loss_epoch, val/loss and val/loss/<set> (a head named e.g. "glossy" is no loss)
    losses = [k for k in keys if k.partition("/")[2].startswith("loss") and k.count("/") <= 1]
    losses += [k for k in keys if k.startswith("val/loss/")]  # one per validation set
    head_losses = [k for k in keys if k.startswith("train/") and k.endswith("/loss_epoch")]
    head_losses = [k for k in head_losses if k.count("/") == 2]
    rates = [k for k in keys if k.startswith(("train/lr", *MONITOR_RATES))] or ["lr"]
    metrics: dict[str, list[str]] = {}
    for key in keys:
        head, _, name = key.partition("/")
        if head in ("train", "val") or not name:  # losses, learning rates, val/score
            continue
        if not key.startswith(MONITOR_RATES) and not CURVE_BREAKDOWNS.search(key.split("/")[-1]):
            metrics.setdefault(head, []).append(key)
    metric_panels = [(f"{head} metrics", names) for head, names in metrics.items()]
    if "val/score" in keys:
        metric_panels.append(("mean of the heads' main metrics", ["val/score"]))
    return (
        [("loss", losses)]
        + ([("loss per head (train)", head_losses)] if len(head_losses) > 1 else [])
        + metric_panels
        + [("learning rate", rates)]
    )


#: The packages each logger of ``logger:`` can run on (the first is the one to install).
LOGGER_PACKAGES: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard", "tensorboardX"),
    "wandb": ("wandb",),
    "mlflow": ("mlflow",),
}


def check_logger_packages(specs: Sequence[LoggerConfig] | None) -> None:
    """A :class:`~visionkit.errors.ConfigError` naming the package to install for every logger
    of ``logger:`` that cannot run here; checked when a run starts, before any data is read
    (not when a config is loaded: a checkpoint's config loads where its loggers do not)."""
    problems = []
    for i, spec in enumerate(specs or ()):
        packages = LOGGER_PACKAGES.get(spec.name, ())
        if packages and not any(find_spec(p) is not None for p in packages):
            problems.append(
                f"logger[{i}]: {spec.name} needs the {packages[0]!r} package, which is not "
                f"installed: pip install {packages[0]} (or leave {spec.name} out of logger:)"
            )
    if problems:
        raise ConfigError(problems)


def make_loggers(
    run_dir: str | Path,
    tensorboard: bool | None = None,
    resume_step: int | None = None,
    specs: Sequence[LoggerConfig] | None = None,
    run_name: str = "run",
) -> list[Logger]:
    """The run's Lightning loggers: a :class:`StepLog` writing ``<run_dir>/logs/metrics.csv``
    (per step) always, then the loggers of ``specs`` (the config's ``logger:`` list; ``csv`` is
    the step log itself). Without ``specs``: a ``TensorBoardLogger`` writing
    ``<run_dir>/tensorboard/`` when ``tensorboard`` is true, or (``None``) when the
    ``tensorboard`` package is installed (``pip install visionkit[tensorboard]``).
    ``resume_step``: the global step of the checkpoint a resumed run continues from (the step
    log keeps the rows before it); ``run_name`` names the W&B run and the MLflow experiment."""
    loggers: list[Logger] = [StepLog(run_dir, resume_step)]
    if specs is None:
        if tensorboard is None:
            tensorboard = find_spec("tensorboard") is not None
        specs = [LoggerConfig(name="tensorboard")] if tensorboard else []
    check_logger_packages(specs)
    for i, spec in enumerate(specs):
        if spec.name != "csv":
            loggers.append(_make_logger(i, spec, Path(run_dir), run_name))
    return loggers


def _make_logger(i: int, spec: LoggerConfig, run_dir: Path, run_name: str) -> Logger:
    """One Lightning logger of ``logger:``, writing into the run folder unless its arguments
    (``spec``'s extra keys, which win) say otherwise."""
    from lightning.pytorch import loggers as pl

    made: dict[str, tuple[type[Logger], dict[str, Any]]] = {
        "tensorboard": (
            pl.TensorBoardLogger,
            {"save_dir": str(run_dir), "name": "", "version": "tensorboard"},
        ),
        "wandb": (pl.WandbLogger, {"save_dir": str(run_dir), "name": run_name}),
        "mlflow": (
            pl.MLFlowLogger,
            {"experiment_name": run_name, "save_dir": str(run_dir / "mlruns")},
        ),
    }
    cls, defaults = made[spec.name]
    try:
        return cls(**{**defaults, **(spec.model_extra or {})})
    except TypeError as err:  # an argument the class does not take
        raise ConfigError(
            f"logger[{i}] ({spec.name}): {err}; expected the keyword arguments of "
            f"lightning.pytorch.loggers.{cls.__name__}"
        ) from None


class _WithoutVersion:
    """Leaves Lightning's ``v_num`` field out of a progress bar: the logger's version, which for
    visionkit's step log is the folder name ``logs`` (``v_num=logs`` on every bar). A run is
    told apart by its run folder (``runs/x-2``), printed when it starts. While training, the
    bar leads with the optimiser step of the whole run (``step=130/2000``; the bar itself
    counts the batches of an epoch): the schedule's length, which a time budget projects."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)  # type: ignore[misc]
        items.pop("v_num", None)
        if trainer.state.fn != TrainerFn.FITTING:  # eval's bar: no optimiser steps
            return items
        total = getattr(pl_module, "schedule_steps", None)
        known = isinstance(total, int) and total < UNENDING
        return {"step": f"{trainer.global_step}/{total}" if known else trainer.global_step, **items}


class ProgressBar(_WithoutVersion, TQDMProgressBar):
    """Lightning's tqdm progress bar without ``v_num``."""


class RichBar(_WithoutVersion, RichProgressBar):
    """Lightning's rich progress bar (its default where ``rich`` is installed) without
    ``v_num``."""


def progress_bar() -> ProgressBar | RichBar:
    """The progress bar Lightning would pick (rich where installed, else tqdm), without
    ``v_num``."""
    return RichBar() if _RICH_AVAILABLE else ProgressBar()


class StepLog(CSVLogger):
    """Lightning's CSV logger for ``<run_dir>/logs/metrics.csv``, safe to kill at any time.

    Rows are appended as they are logged (every call is flushed, not every 100 steps), so a
    killed run keeps its log up to its last logged step; when a new metric adds a column the
    file is rewritten atomically (Lightning rewrites it in place). A resumed run
    (``resume_step`` set) keeps the rows of the steps before its checkpoint and appends after
    them, where Lightning's logger would delete the file: the log of a run resumed any number
    of times, killed or not, holds every step once. A new run in a reused folder
    (``--exist-ok``) starts the file afresh, as Lightning does.

    Lightning writes a batch's row just after that batch's step checkpoint: a run killed in
    that moment (milliseconds) has the checkpoint without the row, and the row stays missing
    from the log after the resume."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="logs", flush_logs_every_n_steps=1)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment  # the file is rank 0's; other ranks get a no-op stand-in
    def experiment(self) -> _StepLogWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _StepLogWriter(self.log_dir, self.resume_step)
        return self._experiment


class _StepLogWriter(ExperimentWriter):
    """Lightning's CSV writer that keeps a resumed run's earlier rows and rewrites atomically."""

    def __init__(self, log_dir: str, keep_before: int | None) -> None:
        self.keep_before = keep_before
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        """Called by Lightning before the first row: a new run's file goes (Lightning's rule);
        a resumed run's keeps the rows before ``keep_before``, and its header."""
        path = Path(self.metrics_file_path)
        if self.keep_before is None:
            super()._check_log_dir_exists()
            return
        if not path.is_file():
            return
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            self.metrics_keys = list(reader.fieldnames or [])
        kept = [
            r for r in rows if (r.get("step") or "").isdigit() and int(r["step"]) < self.keep_before
        ]
        if len(kept) < len(rows):  # the steps after the checkpoint are logged again
            self._write_all(self.metrics_keys, kept)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        self._write_all(fieldnames, rows)

    def _write_all(self, fieldnames: list[str], rows: list[dict[str, Any]]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=fieldnames)
                writer.writeheader()
                writer.writerows(rows)

        write_atomic(Path(self.metrics_file_path), write)
