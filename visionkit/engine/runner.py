"""``train`` and ``evaluate``: what ``visionkit train`` / ``visionkit eval`` run.

>>> from visionkit.engine.runner import train
>>> run_dir, metrics = train("configs/quickstart.yaml", ["trainer.max_epochs=1"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger

from visionkit.build import (
    build_datasets,
    build_evaluators,
    build_model,
    build_pipelines,
    build_split,
    compile_model,
    dropped_keys,
    lr_schedule,
    optimizer_factory,
    require_labels_scored,
    targets_needed,
    trainer_kwargs,
)
from visionkit.build.backbone_arguments import resumed_arguments
from visionkit.build.class_weights import stored_class_weights, weighs_classes
from visionkit.build.data import annotation_notes, check_saved_data_paths, split_spec
from visionkit.build.model import load
from visionkit.build.trainer import use_tf32_matmuls
from visionkit.checkpoint import strip_training_state, write_atomic
from visionkit.config import (
    Config,
    ConfigLike,
    load_config,
    locating,
    override_keys,
    override_list,
    save_config,
)
from visionkit.data.classes import check_checkpoint_classes
from visionkit.data.datasets import imbalance_note, shared_images_note, val_sets
from visionkit.engine.callbacks import (
    RunFolderCallback,
    Tf32Matmuls,
    TrainingTime,
    check_logger_packages,
    make_loggers,
    progress_bar,
)
from visionkit.engine.checkpoint import NamedCheckpoint, SafeCheckpointIO
from visionkit.engine.datamodule import SkippedImages, VisionDataModule
from visionkit.engine.distributed import UnusedParameters, lightning_trainer
from visionkit.engine.eval_checks import (
    check_eval_arguments,
    check_eval_label_settings,
    check_eval_overrides,
)
from visionkit.engine.interrupt import (
    CtrlC,
    SigtermCheckpoint,
    interrupted_after_training,
    stop_noted,
)
from visionkit.engine.monitor import MonitorCheck, check_monitors, monitor_of
from visionkit.engine.optional_callbacks import training_callbacks
from visionkit.engine.pictures import ValidationPictures
from visionkit.engine.resume import (
    LoaderState,
    RngStateCallback,
    check_resumed_run,
    image_size_note,
    resolve_resume,
)
from visionkit.engine.run_folder import (
    another_run_note,
    choose_run_dir,
    edited_config_note,
    metrics_json,
    resumed_folder,
)
from visionkit.engine.system import VisionSystem
from visionkit.engine.time_budget import mixed_budget_note
from visionkit.errors import ConfigError, arguments_of
from visionkit.evaluation.coco import save_results
from visionkit.evaluation.keypoints import eval_sigmas, scored_with
from visionkit.inference.device import (
    autocast_dtype,
    lightning_device,
    lightning_precision,
    resolve_device,
)
from visionkit.inference.options import (
    box_heads,
    check_thresholds,
    data_at,
    detection_settings,
    parse_imgsz,
)
from visionkit.models.model import VisionModel

logger = logging.getLogger(__name__)


def make_trainer(
    cfg: Config, run_dir: Path, callbacks: Sequence[L.Callback] = (), **overrides: Any
) -> L.Trainer:
    """A ``lightning.Trainer`` from the ``trainer`` section
    (:func:`visionkit.build.trainer_kwargs`), with safe checkpoint I/O and visionkit's
    :func:`~visionkit.engine.callbacks.progress_bar` (unless one is given); on a GPU, float32
    matrix products use TF32 (:func:`~visionkit.build.trainer.use_tf32_matmuls`), here before
    Lightning checks the setting and in each process it starts
    (:class:`~visionkit.engine.callbacks.Tf32Matmuls`); ``SkippedImages``: skipped images
    logged per epoch over every rank. ``lightning_trainer`` refuses settings that cannot work
    first, ``UnusedParameters`` parameters DDP would find unused after the first step."""
    kwargs = trainer_kwargs(cfg, run_dir, **overrides)
    # first: its gather must come before any hook that only rank 0 runs (they may sync too)
    callbacks = [SkippedImages(), *callbacks, Tf32Matmuls(), UnusedParameters()]
    if kwargs.get("enable_progress_bar", True) and not any(
        isinstance(c, L.pytorch.callbacks.ProgressBar) for c in callbacks
    ):
        callbacks.append(progress_bar())
    trainer = lightning_trainer(kwargs, plugins=[SafeCheckpointIO()], callbacks=callbacks)
    if trainer.strategy.root_device.type == "cuda":  # before Lightning checks it (not in setup)
        use_tf32_matmuls()
    return trainer


def make_datamodule(cfg: Config, datasets: dict[str, Any], model: VisionModel) -> VisionDataModule:
    """``datasets`` with the config's loader settings and pipelines (the backbone's norms)."""
    data = cfg.data
    return VisionDataModule(
        datasets,
        build_pipelines(data, model.backbone.mean, model.backbone.std),
        batch_size=data.batch_size,
        val_batch_size=data.val_batch_size,
        num_workers=data.num_workers,
        pin_memory=data.pin_memory,
        cache=bool(data.cache),
        drop=dropped_keys(cfg),
        seed=cfg.seed,
        sampler=data.sampler.model_dump() if data.sampler else None,
    )


@locating  # a config error found after loading (num_classes vs the data) names its file:line
def train(
    config: ConfigLike,
    overrides: Sequence[str] = (),
    output_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    exist_ok: bool | None = None,
    callbacks: Sequence[L.Callback] = (),
    loggers: Sequence[Logger] = (),
) -> tuple[Path, dict[str, float]]:
    """Train from a config; returns the run folder and the final validation metrics.

    ``callbacks`` and ``loggers``: Lightning objects added to visionkit's own (the run folder's
    callbacks; the step log and the config's ``logger:`` list), e.g. a ``LearningRateMonitor``.

    The run folder is ``output_dir``, else a resumed checkpoint's, else the config's
    ``<output_dir>/<name>``; one that holds another run gets ``<folder>-2``, ...
    (:func:`choose_run_dir`) unless the run continues there (``resume``: a checkpoint of that
    folder, or ``auto``) or ``exist_ok`` (default: the config's ``exist_ok``) reuses it. It
    gets ``config.yaml`` (resolved), ``checkpoints/{best,last}.ckpt``,
    ``metrics.csv`` (per epoch and validation), ``metrics.json`` (validation metrics of
    ``best.ckpt``; ``time/train_s`` / ``time/val_s``: wall time of training steps and of the
    validations between them), ``plots/curves.png`` and ``logs/`` (per-step CSV log).

    ``trainer.fit`` runs with :class:`~visionkit.engine.interrupt.CtrlC` installed: a first
    Ctrl-C, like SIGTERM, ends the run after the current batch with ``last.ckpt`` saved and
    :class:`~visionkit.errors.TrainingInterrupted`.
    """
    cfg = load_config(config, overrides)
    if cfg.data.train is None:
        raise ConfigError("data.train: required for training")
    check_logger_packages(cfg.logger)  # before any data is read
    wrong = _wrong_objects(callbacks, L.Callback, "callbacks", "lightning.pytorch.Callback")
    wrong += _wrong_objects(loggers, Logger, "loggers", "lightning.pytorch.loggers.Logger")
    if wrong:
        raise ConfigError(wrong, call="train")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    folder = Path(output_dir) if output_dir else Path(cfg.output_dir) / cfg.name
    resume_from = resolve_resume(cfg.resume if resume is None else resume, folder, cfg.trainer)
    # resume=auto that finds no checkpoint that loads starts a new run, and a new run never
    # writes into a folder holding another (its metrics.csv, its corrupt checkpoints)
    exist_ok = cfg.exist_ok if exist_ok is None else exist_ok
    folder, continues = resumed_folder(folder, resume_from, given=output_dir is not None)
    run_dir = choose_run_dir(folder, continues, exist_ok, cfg.model.init_from)

    datasets = build_datasets(cfg.data, needs=targets_needed(cfg))
    resuming = resume_from is not None
    check_checkpoint_classes(datasets, resume_from or cfg.model.init_from, resume=resuming)
    # A resumed run gets its weights from the checkpoint: model.init_from is not read again.
    kept = stored_class_weights(resume_from)  # class_weights: auto keeps them
    cfg = resumed_arguments(cfg, resume_from)  # and the architecture its weights file implied
    model = build_model(cfg, datasets, resume=resuming, stored_weights=kept)
    resume_step = check_resumed_run(resume_from, model)  # before config.yaml is written
    sized = image_size_note(cfg.data, resume_from, overrides)  # resumed: an error
    cfg = load_config(model.meta["config"])
    if cfg.trainer.compile:
        compile_model(model, cfg.trainer.compile)

    datamodule = make_datamodule(cfg, datasets, model)
    system = VisionSystem(
        model,
        optimizer_factory(cfg.optimizer),
        lr_schedule(cfg.scheduler),
        evaluators=build_evaluators(model, datasets.get("val")),
        val_sets=list(val_sets(datasets.get("val"))),
        on_nonfinite_loss=cfg.trainer.on_nonfinite_loss,
        channels_last=cfg.trainer.channels_last,
    )
    monitor, mode = monitor_of(system, cfg)
    has_val = "val" in datasets
    monitors = {"monitor": monitor, "early_stopping.monitor": cfg.early_stopping.monitor}
    monitors = {k: v for k, v in monitors.items() if v and has_val}
    check_monitors(monitors, system)
    checkpoint = NamedCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best",
        monitor=monitor if has_val else None,
        mode=mode,
        save_top_k=1,
        enable_version_counter=False,
        auto_insert_metric_name=False,
    )
    # Lightning's save_last only writes when a top-k checkpoint was written in the same step,
    # so after the best epoch last.ckpt would stop following the run: keep it on its own.
    last = NamedCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="last",
        save_top_k=1,
        enable_version_counter=False,
    )
    sigterm = SigtermCheckpoint(run_dir / "checkpoints" / "last.ckpt")
    timer = TrainingTime()
    run_callbacks: list[L.Callback] = [MonitorCheck(monitors), checkpoint, last]
    run_callbacks += [RunFolderCallback(run_dir), RngStateCallback(), LoaderState(), timer]
    run_callbacks += training_callbacks(cfg, run_dir, monitor, mode, has_val)
    run_callbacks.append(ValidationPictures(run_dir, val_dataset=datasets.get("val")))
    run_callbacks += callbacks
    run_callbacks.append(sigterm)
    trainer = make_trainer(
        cfg,
        run_dir,
        callbacks=run_callbacks,
        logger=[
            *make_loggers(run_dir, resume_step=resume_step, specs=cfg.logger, run_name=cfg.name),
            *loggers,
        ],
        **({} if has_val else {"limit_val_batches": 0}),
    )
    # Made once the data, the model and the trainer are built: a run that stops on a bad
    # config, bad data or a refused trainer setting (trainer.strategy: ddp_spawn) leaves no
    # run folder behind (and the next run takes its name).
    run_dir.mkdir(parents=True, exist_ok=True)
    if L.pytorch.utilities.rank_zero_only.rank == 0:  # every DDP process runs this
        save_config(cfg, run_dir / "config.yaml")
        notes = another_run_note(folder, run_dir), mixed_budget_note(cfg.trainer)
        notes += (
            sized,
            shared_images_note(cfg.data, datasets),
            imbalance_note(datasets["train"], weighs_classes(cfg)),
        )
        annotated, unboxed = annotation_notes(datasets["train"])  # sets of other box classes
        for note in [*notes, *unboxed]:
            if note:  # not before an error of data or model
                logger.warning("%s", note)
        if annotated:
            logger.info("%s", annotated)
    with stop_noted(run_dir, resume_from):  # a stopped run's folder says how to continue it
        metrics = _fit_and_validate_best(
            trainer, system, datamodule, resume_from, sigterm, (checkpoint, last) if has_val else ()
        )
    if metrics:
        metrics.update(timer.times())
    if metrics and trainer.is_global_zero:
        text = metrics_json(metrics, indent=2) + "\n"  # nan as null: strict JSON
        write_atomic(run_dir / "metrics.json", lambda tmp: tmp.write_text(text))
    best = run_dir / "checkpoints" / "best.ckpt"
    if trainer.is_global_zero and best.is_file():  # weights to ship; last.ckpt resumes
        sizes = strip_training_state(best)
        logger.info(
            "best.ckpt: the optimiser's state left out (%.0f -> %.0f MB)",
            *(size / 1e6 for size in sizes),
        )
    return run_dir, metrics


def _wrong_objects(objects: Sequence[Any], kind: type, argument: str, expected: str) -> list[str]:
    """The non-Lightning objects given to ``train(callbacks=...)`` / ``train(loggers=...)``."""
    return [
        f"train({argument}=...)[{i}]: expected a {expected} instance, got {type(obj).__name__}"
        for i, obj in enumerate(objects)
        if not isinstance(obj, kind)
    ]


def _fit_and_validate_best(
    trainer: L.Trainer,
    system: VisionSystem,
    datamodule: VisionDataModule,
    resume_from: Path | None,
    sigterm: SigtermCheckpoint,
    pick_from: Sequence[ModelCheckpoint],
) -> dict[str, float]:
    """``trainer.fit``, then validation of the first checkpoint written by ``pick_from``
    (``best.ckpt``, else ``last.ckpt``); its metrics, or none when ``pick_from`` is empty.
    SIGTERM or Ctrl-C in either: :class:`~visionkit.errors.TrainingInterrupted`."""
    with CtrlC(trainer, sigterm):  # SIGTERM and Ctrl-C: TrainingInterrupted
        trainer.fit(
            system,
            datamodule=datamodule,
            ckpt_path=str(resume_from) if resume_from else None,
            weights_only=True,
        )
    path = next((c.best_model_path for c in pick_from if c.best_model_path), None)
    if path is None:
        return {}
    with interrupted_after_training(trainer, sigterm.path):
        results = trainer.validate(
            system, datamodule=datamodule, ckpt_path=path, verbose=False, weights_only=True
        )
    return validated_metrics(results, system)


def evaluate(
    checkpoint: str | os.PathLike | VisionModel,
    overrides: Sequence[str] = (),
    save_predictions: str | os.PathLike | None = None,
    split: str = "val",
    scored: dict[str, Any] | None = None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    device: str | None = None,
    half: bool = False,
    bf16: bool = False,
    tta: str | None = None,
    imgsz: int | str | Sequence[int | str] | None = None,
    weights: str | None = None,
) -> dict[str, float]:
    """Evaluate a checkpoint on the validation (or test) data of its own config.

    Args:
        checkpoint: a checkpoint written by :func:`train`, or a model
            (:func:`visionkit.load`'s, or one built in Python: its ``meta`` config decides).
        overrides: changes to the ``data`` and ``trainer`` sections, and a keypoint head's
            OKS sigmas (e.g. ``data.val.images=/other/data``, ``trainer.devices=2``,
            ``model.heads.pose.kpt_oks_sigmas=[0.1,0.1,0.1]``: this evaluation only).
        save_predictions: write the exact COCO results list that was evaluated to this json
            (one detection head; with several, the head name is added before the suffix; a
            keypoint head's keypoint results go beside it, ``<stem>_keypoints.json``).
        split: ``"val"`` (``data.val``) or ``"test"`` (``data.test``, built like ``val``:
            every image kept); the keys are the same but the loss's (``test/loss``).
        scored: a dict that receives the evaluators that scored (evaluator key → evaluator,
            e.g. for per-class tables: :meth:`~visionkit.evaluation.coco.CocoEvaluator.
            per_class_ap`).
        conf, iou, max_det: the detection heads' score threshold, NMS IoU threshold and
            detections kept per image, for this evaluation only
            (:func:`visionkit.inference.options.detection_settings`); ``None`` keeps the
            head's own (e.g. FCOS: 0.05, 0.6, 100; a low score threshold is what COCO mAP
            wants). Given for a model without a detection head: a ConfigError.
        device, half, bf16: run on this device (``--device`` of
            :mod:`visionkit.inference.device`: ``auto``, ``cpu``, ``cuda:N``, ...) in float16 /
            bfloat16 mixed precision; they replace ``trainer.accelerator`` / ``devices`` /
            ``precision``. ``None`` / ``False``: the config's trainer settings.
        tta: ``None``, or ``"flip"``: every batch and its mirror image, merged per head as
            ``visionkit predict --tta flip`` does (:mod:`visionkit.inference.tta`).
        imgsz: evaluate at this size, ``320`` or ``(240, 320)``: the evaluation pipeline's
            sizing steps use it instead of the model's evaluation size
            (:func:`visionkit.inference.options.data_at`); metrics stay at the original
            resolution. ``None``: the size the model was validated at in training.
        weights: ``"raw"``: a checkpoint's raw weights of an EMA run (``None`` / ``"ema"``:
            the averaged ones; :func:`visionkit.load`; a model in memory holds one set).
    """
    overrides = override_list(overrides)
    check_eval_overrides(overrides)
    on_device: dict[str, Any] = {"sync_batchnorm": False}  # Lightning syncs only to fit
    with arguments_of("evaluate"):  # visionkit eval: its options
        check_eval_arguments(split, tta, weights, checkpoint)
        check_thresholds(conf, iou, max_det)
        size = parse_imgsz(imgsz)
        if device is not None or half or bf16:
            chosen = resolve_device(device or "auto")
            precision = lightning_precision(autocast_dtype(chosen, half, bf16))
            on_device |= {**lightning_device(chosen), "precision": precision}
    model = checkpoint if isinstance(checkpoint, VisionModel) else load(checkpoint, weights=weights)
    checkpoint = None if model is checkpoint else checkpoint  # a path, or a model in memory
    thresholds = {"conf": conf, "iou": iou, "max_det": max_det}
    given = [f"{k} (--{k.replace('_', '-')})" for k, v in thresholds.items() if v is not None]
    if given and not box_heads(model):
        kinds = ", ".join(f"{n} ({type(h).__name__})" for n, h in model.heads.items())
        raise ConfigError(
            f"{' / '.join(given)}: the checkpoint has no detection head (heads: {kinds}); "
            "these thresholds apply to detection and instance heads",
            call="evaluate",
        )
    config = model.meta["config"]
    if checkpoint and (note := edited_config_note(checkpoint, config, overrides)):
        logger.warning("%s", note)
    if size is not None:
        config = {**config, "data": data_at(config["data"], size)}
    cfg = load_config(config, overrides)
    sigmas = eval_sigmas(model, cfg.model.heads, override_keys(overrides))  # OKS sigmas given
    if on_device.get("precision", "") is None:  # the config's, for the device given
        del on_device["precision"]
    label_names = model.meta.get("label_names") or {}
    spec = split_spec(cfg.data, split)
    check_saved_data_paths(spec, split, overrides, checkpoint or "the model", model.meta)
    check_eval_label_settings(cfg.data, split, model.meta["config"])
    val = build_split(
        spec,
        split=split,
        label_names=label_names,
        needs=targets_needed(cfg),
        category_ids=model.meta.get("category_ids"),
        reference=f"checkpoint {checkpoint}" if checkpoint else "the model",
    )
    require_labels_scored(model, val, f"data.{split}")
    datasets = {"val": val}
    datamodule = make_datamodule(cfg, datasets, model)
    with scored_with(model, sigmas):  # the model keeps its own
        evaluators = build_evaluators(model, val, split)
    system = VisionSystem(
        model,
        optimizer_factory(cfg.optimizer),
        lr_schedule(cfg.scheduler),
        evaluators=evaluators,
        val_sets=list(val_sets(val)),
        channels_last=cfg.trainer.channels_last,
        tta=tta,
    )
    trainer = make_trainer(cfg, Path(cfg.output_dir) / cfg.name, logger=False, **on_device)
    device = next(model.parameters()).device  # Lightning's teardown moves it to the CPU
    with detection_settings(model, **thresholds):
        results = trainer.validate(system, datamodule=datamodule, verbose=False)
    model.to(device)  # a model given in memory comes back where it was
    metrics = validated_metrics(results, system)
    if split != "val":  # the loss of the split scored: test/loss, not val/loss
        metrics = {re.sub(r"^val/loss", f"{split}/loss", k): v for k, v in metrics.items()}
    if save_predictions is not None and trainer.is_global_zero:
        save_results(system.evaluators, Path(save_predictions))
    if scored is not None:
        scored.update(system.evaluators.items())
    return metrics


def validated_metrics(results: Sequence[Mapping[str, Any]], system: VisionSystem) -> dict:
    """What every validation loader logged (``val/loss/<set>``) and the evaluators' metrics."""
    metrics = {k: float(v) for result in results for k, v in result.items()}
    metrics.update(system.last_metrics)
    return metrics
