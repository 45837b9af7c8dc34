"""``train`` and ``evaluate``: what ``visionkit train`` / ``visionkit eval`` run.

>>> from visionkit.engine.runner import train
>>> run_dir, metrics = train("configs/quickstart.yaml", ["trainer.max_epochs=1"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from visionkit.config import Config, ConfigLike, load_config, save_config
from visionkit.data.datamodule import VisionDataModule, build_datasets, label_names_of
from visionkit.engine.callbacks import RunFolderCallback, make_loggers
from visionkit.engine.checkpoint import SafeCheckpointIO
from visionkit.engine.pictures import ValidationPictures
from visionkit.engine.precision import resolve_precision
from visionkit.engine.system import VisionSystem
from visionkit.errors import ConfigError
from visionkit.factory import create_model, load, targets_needed

logger = logging.getLogger(__name__)


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


def make_trainer(
    cfg: Config, run_dir: Path, callbacks: Sequence[L.Callback] = (), **overrides: Any
) -> L.Trainer:
    """A ``lightning.Trainer`` from the ``trainer`` section, with safe checkpoint I/O."""
    t = cfg.trainer.model_dump()
    args = {k: v for k, v in t.items() if v is not None}
    args["precision"] = resolve_precision(args["precision"], args["accelerator"])
    args.update(overrides)
    return L.Trainer(
        default_root_dir=str(run_dir),
        plugins=[SafeCheckpointIO()],
        callbacks=list(callbacks),
        **args,
    )


def train(
    config: ConfigLike,
    overrides: Sequence[str] = (),
    output_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
) -> tuple[Path, dict[str, float]]:
    """Train from a config; returns the run folder and the final validation metrics.

    The run folder gets ``config.yaml`` (resolved), ``checkpoints/{best,last}.ckpt``,
    ``metrics.csv`` (per epoch), ``metrics.json`` (validation metrics of ``best.ckpt``),
    ``plots/curves.png`` and ``logs/`` (per-step CSV log).
    """
    cfg = load_config(config, overrides)
    if cfg.data.train is None:
        raise ConfigError("data.train: required for training")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(output_dir) if output_dir else Path(cfg.output_dir) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)

    datasets = build_datasets(cfg.data, needs=targets_needed(cfg))
    label_names = label_names_of(datasets)
    extra = {"category_ids": list(getattr(datasets["train"], "category_ids", []) or [])}
    model = create_model(cfg, label_names=label_names, extra_meta=extra)
    cfg = load_config(model.meta["config"])
    if L.pytorch.utilities.rank_zero_only.rank == 0:  # every DDP process runs this
        save_config(cfg, run_dir / "config.yaml")

    datamodule = VisionDataModule(cfg.data, datasets, model.backbone.mean, model.backbone.std)
    system = VisionSystem(model, cfg.optimizer, cfg.scheduler, val_dataset=datasets.get("val"))
    monitor, mode = monitor_of(system, cfg)
    has_val = "val" in datasets
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=monitor if has_val else None,
        mode=mode,
        save_top_k=1,
        save_last=True,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    trainer = make_trainer(
        cfg,
        run_dir,
        callbacks=[
            checkpoint,
            RunFolderCallback(run_dir),
            ValidationPictures(run_dir, val_dataset=datasets.get("val")),
        ],
        logger=make_loggers(run_dir),
        **({} if has_val else {"limit_val_batches": 0}),
    )
    trainer.fit(system, datamodule=datamodule, ckpt_path=str(resume) if resume else None)

    metrics: dict[str, float] = {}
    best = checkpoint.best_model_path or checkpoint.last_model_path
    if has_val and best:
        results = trainer.validate(system, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
        metrics.update(system.last_metrics)
        if trainer.is_global_zero:
            (run_dir / "metrics.json").write_text(
                json.dumps(metrics, indent=2, sort_keys=True) + "\n"
            )
    return run_dir, metrics


EVAL_OVERRIDE_SECTIONS = ("data.", "trainer.")


def metrics_json(metrics: dict[str, float], indent: int | None = None) -> str:
    """Metrics as JSON; ``nan`` (COCO's "no such objects") is written as ``null``."""
    clean = {k: (None if v != v else v) for k, v in metrics.items()}
    return json.dumps(clean, indent=indent, sort_keys=True)


def evaluate(
    checkpoint: str | os.PathLike,
    overrides: Sequence[str] = (),
    save_predictions: str | os.PathLike | None = None,
) -> dict[str, float]:
    """Evaluate a checkpoint on the validation data of its own config.

    Args:
        checkpoint: a checkpoint written by :func:`train`.
        overrides: changes to the ``data`` and ``trainer`` sections only
            (e.g. ``data.val.images=/other/data``, ``trainer.devices=2``).
        save_predictions: write the exact COCO results list that was evaluated to this json
            (one detection head; with several, the head name is added before the suffix).
    """
    bad = [o for o in overrides if not o.startswith(EVAL_OVERRIDE_SECTIONS)]
    if bad:
        raise ConfigError([f"{o!r}: eval accepts data.* and trainer.* overrides only" for o in bad])
    model = load(checkpoint)
    cfg = load_config(model.meta["config"], overrides)
    if cfg.data.val is None:
        raise ConfigError("data.val: required for evaluation")
    label_names = model.meta.get("label_names") or {}
    datasets = {"val": _build_val(cfg, label_names)}
    datamodule = VisionDataModule(cfg.data, datasets, model.backbone.mean, model.backbone.std)
    system = VisionSystem(model, cfg.optimizer, cfg.scheduler, val_dataset=datasets["val"])
    trainer = make_trainer(cfg, Path(cfg.output_dir) / cfg.name, logger=False)
    results = trainer.validate(system, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    metrics.update(system.last_metrics)
    if save_predictions is not None and trainer.is_global_zero:
        _save_predictions(system, Path(save_predictions))
    return metrics


def _save_predictions(system: VisionSystem, path: Path) -> None:
    coco = {n: e for n, e in system.evaluators.items() if hasattr(e, "results")}
    if not coco:
        raise ConfigError("--save-predictions: the model has no head evaluated with COCO results")
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, evaluator in coco.items():
        target = path if len(coco) == 1 else path.with_name(f"{path.stem}_{name}{path.suffix}")
        target.write_text(json.dumps(evaluator.results))


def _build_val(cfg: Config, label_names: dict[str, list[str]]) -> Any:
    from visionkit.data.datamodule import build_split

    return build_split(cfg.data.val, label_names, "data.val", targets_needed(cfg))
