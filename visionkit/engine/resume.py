"""Continuing a run: which checkpoint to resume from, RNG and loader state in checkpoints.

- ``resume: auto`` (or ``--resume auto``) picks the newest checkpoint of the run folder that
  loads; a truncated or corrupt one is reported and skipped, so the previous good one is used.
- :class:`RngStateCallback` saves every rank's Python, NumPy and torch random states in every
  checkpoint and restores them on resume, so the model's own random draws continue as in an
  uninterrupted run (data order and augmentations come from :mod:`visionkit.engine.sampling`
  and need no random state).
- SIGTERM and Ctrl-C save ``last.ckpt`` to resume from: :mod:`visionkit.engine.interrupt`.
"""

from __future__ import annotations

import logging
import math
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from visionkit.checkpoint import load_checkpoint, resumable
from visionkit.config import load_config, override_keys
from visionkit.config.max_time import max_time_seconds
from visionkit.data.image_size import eval_size_note, unused_image_size_note
from visionkit.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)


#: Why a checkpoint that loads cannot be resumed from (:func:`~visionkit.checkpoint.resumable`).
WEIGHTS_ONLY = (
    "weights only, without the optimiser's state a run resumes from, as a run's best.ckpt "
    "is once the run ends"
)


def scan_checkpoints(checkpoint_dir: str | Path) -> tuple[Path | None, dict[Path, str]]:
    """The newest ``*.ckpt`` in ``checkpoint_dir`` that can be resumed from (by training step,
    then file time; ``None`` when there is none), and why each other cannot: the reason it
    does not load, without its detail (logged in full as it is skipped), or
    :data:`WEIGHTS_ONLY`."""
    checkpoint_dir = Path(checkpoint_dir)
    candidates = sorted(
        checkpoint_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    loaded: list[tuple[int, float, Path]] = []
    unusable: dict[Path, str] = {}
    for path in candidates:
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as err:
            logger.warning("resume: auto: skipping %s", err)
            unusable[path] = err.reason.split(" (")[0]  # "truncated or corrupt": detail above
            continue
        if not resumable(ckpt):  # best.ckpt once a run ends: weights only
            unusable[path] = WEIGHTS_ONLY
            continue
        loaded.append((int(ckpt.get("global_step", 0)), path.stat().st_mtime, path))
    return (max(loaded)[2] if loaded else None), unusable


def none_resumable_line(unusable: dict[Path, str]) -> str:
    """``resume: auto``'s warning when no checkpoint of a folder can be resumed from: each
    with its reason, and how to start from the weights of one that holds weights only."""
    folder = next(iter(unusable)).parent
    reasons = "; ".join(f"{path.name}: {why}" for path, why in unusable.items())
    weights = [path for path, why in unusable.items() if why == WEIGHTS_ONLY]
    hint = f"; to start from its weights: model.init_from={weights[0]}" if weights else ""
    n = len(unusable)
    which = (
        f"none of the {n} checkpoints in {folder} can"
        if n > 1
        else f"the checkpoint in {folder} cannot"
    )
    return f"resume: auto: {which} be resumed from ({reasons}); starting a new run{hint}"


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])
    )


def _rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch (and CUDA) random states, as tensors and plain
    types (``weights_only`` loading reads them)."""
    version, internal, gauss = random.getstate()
    state = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _distributed() -> bool:
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


class RngStateCallback(L.Callback):
    """Puts every process's Python, NumPy and torch random states into every checkpoint
    (gathered from all ranks: ``{"ranks": [rank 0's, rank 1's, ...]}``) and restores each
    rank's own when a run resumes.

    The data order and the augmentations do not need them (they are drawn from the seed, the
    epoch and the sample's draw: :mod:`visionkit.engine.sampling`); what does is the model's
    own randomness, e.g. dropout or a head's random subset of positives. The states are
    restored at ``on_train_start``, after the sanity-check validation, so the training steps
    continue exactly as in an uninterrupted run. Resumed with another number of processes,
    a rank without a saved state keeps its seeded start, and a warning says so."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # every rank builds the checkpoint (Trainer.save_checkpoint), so all take part here
        state = _rng_state()
        if not _distributed():
            return {"ranks": [state]}
        states: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(states, state)
        return {"ranks": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        rank, world_size = int(trainer.global_rank), int(trainer.world_size)
        # an older checkpoint holds rank 0's states only, not in a list
        states = pending.get("ranks", [pending])
        if rank < len(states):
            _set_rng_state(states[rank])
        if len(states) != world_size and rank == 0:
            logger.warning(
                "resume: the checkpoint holds the random states of %d process(es) and this run "
                "has %d: %s; the model's own random draws (dropout, sampled positives) are not "
                "exactly those of an uninterrupted run",
                len(states),
                world_size,
                f"ranks {len(states)}..{world_size - 1} start from the seeded state"
                if world_size > len(states)
                else f"the states of ranks {world_size}..{len(states) - 1} are not used",
            )


class LoaderState(L.Callback):
    """Saves the training loader's ``state_dict`` (which draws of the epoch were consumed:
    :class:`~visionkit.engine.datamodule.ResumableLoader`) in every checkpoint and gives it
    back at ``on_train_start`` of a resumed run, before the first batch is drawn.

    Lightning stores a stateful loader's state too, but restores it only when it sets the
    loader up after loading the checkpoint; ``VisionSystem.configure_optimizers`` sets it up
    before (``trainer.estimated_stepping_batches``), so that restore never happens. Loading
    is harmless when the checkpoint is at an epoch end: the state then names an epoch whose
    draws are all consumed, and the next epoch starts at its beginning (a checkpoint written
    after Lightning counted the epoch as done first has the epoch loop set to that beginning:
    :func:`_begin_next_epoch`)."""

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        loader = getattr(self._trainer, "train_dataloader", None)
        return {"train": loader.state_dict()} if hasattr(loader, "state_dict") else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("train")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path and _stopped_after_an_epoch(trainer):
            _begin_next_epoch(trainer)
        pending, self._pending = self._pending, None
        loader = trainer.train_dataloader
        if pending is not None and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(pending)
            _count_the_batches_left(trainer, loader, pending)
            return
        done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        if trainer.ckpt_path and 0 < done < trainer.num_training_batches:
            logger.warning(
                "resume: %s was written in the middle of epoch %d (after %d of its %d batches) "
                "and holds no training-loader state (an older visionkit wrote it): the rest of "
                "that epoch is drawn from the start of the epoch's order, not from the samples "
                "the interrupted run had left",
                trainer.ckpt_path,
                trainer.current_epoch,
                done,
                trainer.num_training_batches,
            )


def _count_the_batches_left(trainer: L.Trainer, loader: Any, state: dict[str, Any]) -> None:
    """Resumed mid-epoch with another batch size (or number of processes), the rest of the
    epoch is not the batches Lightning counts as left: the epoch ended before its last batch
    index and its end-of-epoch validation never ran. Count the batches done so that those
    left, at this batch size, end the epoch at its last index."""
    sampler = getattr(loader, "sampler", None)
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    total = trainer.num_training_batches
    same = all(
        state.get(k) == v
        for k, v in (
            ("batch_size", loader.batch_size),
            ("world_size", getattr(sampler, "num_replicas", 1)),
        )
    )
    if same or progress.ready <= 0 or not hasattr(sampler, "dataset"):
        return  # (``ready`` counts batches of the old size: it may exceed ``total``)
    left = max(0, len(sampler.dataset) - int(state.get("draws", 0)))
    per_rank = math.ceil(left / sampler.num_replicas)
    done = total - math.ceil(per_rank / int(loader.batch_size))
    if 0 <= done < total:
        # shifted alike: Lightning's counters differ by one at a batch's end (``completed``
        # is raised as the loop resets), and at ``total`` it would start the epoch anew
        shift = progress.ready - done
        for key in ("ready", "started", "processed", "completed"):
            setattr(progress, key, max(0, getattr(progress, key) - shift))


def _stopped_after_an_epoch(trainer: L.Trainer) -> bool:
    """Whether the restored checkpoint was written after an epoch's last batch: once
    Lightning had counted the epoch as done (SIGTERM or Ctrl-C during the epoch's last batch
    or its end-of-epoch validation: every epoch counter of the fit loop equal), or in its
    ``on_train_epoch_end`` hooks (``last.ckpt`` at an epoch's end: the epoch processed, not
    yet completed), while the epoch loop still holds that epoch's batches."""
    epochs = trainer.fit_loop.epoch_progress.current
    batches = trainer.fit_loop.epoch_loop.batch_progress.current
    processed = epochs.ready == epochs.started == epochs.processed
    counted = processed and epochs.completed in (epochs.processed - 1, epochs.processed)
    return counted and batches.ready >= trainer.num_training_batches


def _begin_next_epoch(trainer: L.Trainer) -> None:
    """Start the next epoch as a run that was not stopped does. Restored as Lightning saved
    it, the finished epoch's batch count made a step-budget run (``max_steps``, as the recipes
    for photos) go through an empty epoch, counting that epoch as processed once more, so that
    the samplers were set to the epoch after the next and trained on its order."""
    fit_loop = trainer.fit_loop
    for progress in (fit_loop.epoch_progress.current, fit_loop.epoch_progress.total):
        progress.completed = progress.processed
    fit_loop.restarting = False
    fit_loop.reset_restart_stage()
    loop = fit_loop.epoch_loop
    loop.batch_progress.reset_on_run()
    loop.restarting = False
    loop.reset_restart_stage()


def resolve_resume(
    resume: str | os.PathLike | None, run_dir: Path, trainer: Any = None
) -> Path | None:
    """The checkpoint a run continues from: ``None`` (a new run), ``"auto"`` (the newest
    checkpoint of ``run_dir/checkpoints`` that loads, or a new run when none does: it then
    writes to a folder of its own when ``run_dir`` holds a run, :func:`~visionkit.engine.
    run_folder.choose_run_dir`), or a path, which must load.

    A checkpoint path that has spent the budget of ``trainer`` (the config's section:
    ``max_steps`` done, or ``max_time`` trained) in a run that ended (its folder has
    ``metrics.json``) is a :class:`ConfigError` saying how to continue it: resumed, it would
    stop at once, having trained nothing (Lightning says only "max_steps reached" or "Time
    limit reached"). Such a checkpoint of a run stopped before it ended (Ctrl-C in the last
    validation), and ``auto``'s (a job requeued after its last step), go on to the final
    validation and ``metrics.json``, saying so."""
    if resume is None or str(resume) == "":
        return None
    if str(resume) == "auto":
        found, unusable = scan_checkpoints(run_dir / "checkpoints")
        if found is not None:
            logger.info("resume: auto: continuing from %s", found)
            spent = budget_spent(found, trainer)
            if spent:
                logger.info("resume: auto: %s; only the final validation runs", spent[0])
            return found
        if unusable:
            logger.warning("%s", none_resumable_line(unusable))
        else:
            logger.info("resume: auto: no checkpoint in %s; starting a new run", run_dir)
        return None
    spent = budget_spent(resume, trainer)  # loads it: a clear CheckpointError now
    if spent and (Path(resume).parent.parent / "metrics.json").is_file():
        raise ConfigError(f"{spent[0]}, so resuming it would train nothing; {spent[1]}")
    if spent:  # stopped after its last step, before the run ended: it ends now
        logger.info("resume: %s; only the final validation runs", spent[0])
    return Path(resume)


def budget_spent(checkpoint: str | os.PathLike, trainer: Any) -> tuple[str, str] | None:
    """Whether a checkpoint has spent the budget of the config's ``trainer`` section, as
    ``(what was spent, the override that continues it)``: its ``max_steps`` done
    (Lightning's ``global_step``) or its ``max_time`` trained (the time Lightning's ``Timer``
    saved); ``None`` when some is left, or the file keeps no count."""
    ckpt = load_checkpoint(checkpoint)
    if not resumable(ckpt):
        raise ConfigError(
            f"{checkpoint} holds the model's weights only (a run's best.ckpt once it ends, for "
            "eval, predict and export), not the optimiser's state a run resumes from: resume "
            f"from the last.ckpt beside it, or start a new run from these weights with "
            f"model.init_from={checkpoint}"
        )
    if trainer is None:
        return None
    done = int(ckpt.get("global_step") or 0)
    if 0 <= trainer.max_steps <= done:
        return (
            f"trainer.max_steps={trainer.max_steps}: {checkpoint} has done {done} steps already",
            f"give it a larger budget to continue the run, e.g. trainer.max_steps={2 * done}",
        )
    timer = next((v for k, v in ckpt.get("callbacks", {}).items() if k.startswith("Timer")), {})
    trained = float((timer.get("time_elapsed") or {}).get("train") or 0.0)
    if trainer.max_time is not None and trained >= max_time_seconds(trainer.max_time):
        seconds = int(2 * trained) + 60
        twice = f"{seconds // 86400:02d}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:00"
        return (
            f"trainer.max_time={trainer.max_time}: {checkpoint} has trained for "
            f"{trained:.0f} s of it already",
            f"give it more time to continue the run, e.g. trainer.max_time={twice}, or "
            "trainer.max_time=null (with a trainer.max_steps to stop at)",
        )
    return None


def image_size_note(data: Any, checkpoint: Path | None, overrides: Any = ()) -> str | None:
    """The warning of a ``data.image_size`` or ``data.val_image_size`` set in the config that
    reaches no step (:func:`~visionkit.data.image_size.unused_image_size_note`), and for a new
    run that of an evaluation size far from the training one (``eval_size_note``). A run
    resumed from ``checkpoint`` has its own (a saved config names every key): an error where
    ``overrides`` give another (its run folder's config.yaml has the size written into its
    steps, so the new one would be recorded and not used), else nothing to say."""
    keys = [k for k in ("image_size", "val_image_size") if k in data.model_fields_set]
    if checkpoint is not None:
        keys = [k for k in keys if f"data.{k}" in override_keys(overrides)]
    notes = [n for n in (unused_image_size_note(data, key) for key in keys) if n]
    if checkpoint is not None and notes:
        raise ConfigError(
            f"--resume {checkpoint}: {'; '.join(notes)}: the run's config.yaml wrote the size "
            "into the steps' sizes, and a resumed run continues at them; resume without it, or "
            f"start a new run at another size from these weights with model.init_from={checkpoint}"
        )
    if checkpoint is None:
        notes.append(eval_size_note(data))
    return "; ".join(n for n in notes if n) or None


#: Config entries a resumed run may change without effect on what the checkpoint restores.
FREE_ON_RESUME = ("model.init_from", "model.backbone.pretrained")


def config_changes(before: Any, after: Any, path: str = "") -> list[str]:
    """``"path: old -> new"`` for every leaf where two config dicts differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = list(dict.fromkeys([*before, *after]))
        return [
            change
            for k in keys
            for change in config_changes(before.get(k), after.get(k), f"{path}.{k}".lstrip("."))
        ]
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


def check_resumed_run(checkpoint: Path | None, model: Any) -> int | None:
    """The global step of the ``checkpoint`` a run resumes from (``None``: a new run), once
    its config (``model.meta["config"]``, with the overrides given) is checked against the
    checkpoint's: a model whose tensors differ from the checkpoint's (another backbone, head
    or width) cannot take them, another ``optimizer`` / ``scheduler`` section would not be
    used (the optimiser's state and the schedule are the checkpoint's), and ``ema`` switched
    off would train on from the averaged weights (:func:`ema_switched_off`), so all are a
    :class:`ConfigError` naming the changes, before the run folder's ``config.yaml`` is
    written. Other model settings (thresholds, ...) and the data and trainer sections may
    change."""
    if checkpoint is None:
        return None
    ckpt = load_checkpoint(checkpoint)
    saved = (ckpt.get("visionkit") or {}).get("config") or {}
    now = model.meta["config"]
    try:  # both with this visionkit's defaults: a key added since is no change
        saved = load_config(saved).to_dict() if saved else {}
        now = load_config(now).to_dict()
    except ConfigError:  # a config of another visionkit: the tensors alone are compared
        saved = {}
    changes = [
        change
        for section in ("model", "optimizer", "scheduler")
        for change in config_changes(saved.get(section), now.get(section), section)
        if saved and not change.startswith(FREE_ON_RESUME)
    ]
    theirs = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    ours = {f"model.{k}": tuple(v.shape) for k, v in model.state_dict().items()}
    other_model = theirs != ours
    refused = [c for c in changes if other_model or not c.startswith("model.")]
    refused += ema_switched_off(ckpt, now)
    if refused or other_model:
        what = "model" if other_model else "optimiser, schedule or EMA"
        found = refused or ["the model's tensors differ in name or shape"]
        raise ConfigError(
            [
                f"--resume {checkpoint}: this config's {what} is not the checkpoint's (a "
                "resumed run continues the checkpoint's model, optimiser, learning-rate "
                f"schedule and EMA): {'; '.join(found[:8])}{' ...' if len(found) > 8 else ''}",
                "leave these settings as the checkpoint has them to resume it (the run "
                "folder's config.yaml), or start a new run from its weights with "
                f"model.init_from={checkpoint}",
            ]
        )
    return int(ckpt.get("global_step") or 0)


def ema_switched_off(checkpoint: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """``["ema.enabled: True -> False ..."]`` when a checkpoint written with ``ema`` (its
    ``state_dict`` the averaged weights, the raw ones in ``current_model_state``) is resumed
    without it: Lightning would load the averaged weights and train on from them with the raw
    weights' optimiser state, dropping the raw weights (it only warns that a callback is
    missing)."""
    if "current_model_state" not in checkpoint or (config.get("ema") or {}).get("enabled"):
        return []
    return [
        "ema.enabled: True -> False (the checkpoint's weights are the average; the raw weights "
        "the optimiser continues would be dropped)"
    ]
