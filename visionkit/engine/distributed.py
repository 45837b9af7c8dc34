"""What visionkit refuses of the ``trainer`` settings, before any process starts
(:func:`lightning_trainer`, :func:`check_distributed`) or at the first step
(:class:`UnusedParameters`), and the one ``all_gather_object`` of the engine's per-rank
reports (:func:`gather_objects`)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch.distributed as dist
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher

from visionkit.errors import ConfigError


def lightning_trainer(kwargs: dict[str, Any], **extra: Any) -> L.Trainer:
    """``lightning.Trainer(**kwargs, **extra)``, with what Lightning refuses of the hardware
    settings (GPUs asked for where there are none or fewer, an unknown strategy) as a
    :class:`~visionkit.errors.ConfigError` naming the ``trainer`` keys (it was Lightning's
    traceback: a checkpoint's config keeps the devices of the machine it trained on), and
    :func:`check_distributed`."""
    try:
        trainer = L.Trainer(**kwargs, **extra)
    except (MisconfigurationException, ValueError) as err:
        keys = ("accelerator", "devices", "num_nodes", "strategy")
        hardware = any(k in str(err).lower() for k in (*keys, "gpu", "cuda", "interactive"))
        given = ", ".join(f"trainer.{k}={kwargs[k]}" for k in keys if k in kwargs)
        raise ConfigError(
            f"trainer: Lightning cannot set up {given}: {err} (a checkpoint's config keeps "
            "the hardware it trained on); give others as overrides, e.g. "
            "trainer.accelerator=cpu trainer.devices=1 trainer.strategy=auto (visionkit eval: "
            "--device cpu)"
            if hardware
            else f"trainer: Lightning refuses the settings: {err}"
        ) from None
    check_distributed(trainer, kwargs.get("sync_batchnorm"))
    return trainer


def check_distributed(trainer: L.Trainer, sync_batchnorm: bool | None = None) -> None:
    """Refuse what would fail or mislead only once the processes run.

    Raises:
        ConfigError: the strategy starts its processes with ``multiprocessing`` (``ddp_spawn``,
            ``ddp_fork``, ``ddp_notebook``, and what Lightning picks in a notebook): the
            workers' metrics, evaluators and timings never come back to the process that
            writes ``metrics.json``, prints the results and saves the predictions (they were
            float32 copies, without the ``nan`` keys, and ``--save-predictions`` wrote
            ``[]``); or ``trainer.sync_batchnorm`` with several CPU processes (torch's
            ``SyncBatchNorm`` runs on GPUs only: DDP stopped with a traceback in every rank).
    """
    strategy = trainer.strategy
    if isinstance(getattr(strategy, "launcher", None), _MultiProcessingLauncher):
        method = getattr(strategy.launcher, "_start_method", "spawn")
        raise ConfigError(
            f"trainer.strategy: this strategy starts its processes with multiprocessing "
            f"({method}: ddp_spawn, ddp_fork, ddp_notebook, or a notebook's default), and "
            "their results (metrics, predictions, timings) do not come back to the process "
            "that writes and prints them; use trainer.strategy=ddp, which runs the command in "
            "every process (from a script or the visionkit command, not a notebook; in a "
            "notebook: trainer.devices=1)"
        )
    synced = getattr(strategy, "_layer_sync", None) is not None  # what Lightning does to fit
    if sync_batchnorm and synced and strategy.root_device.type == "cpu":
        raise ConfigError(
            f"trainer.sync_batchnorm: true with {trainer.world_size} CPU process(es) of "
            f"{type(strategy).__name__}: "
            "torch's SyncBatchNorm runs on GPUs only; leave it unset on the CPU "
            "(each process then keeps its own BatchNorm statistics)"
        )


def gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in one process). A
    collective call: every rank must make it."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, obj)
    return parts


class UnusedParameters(L.Callback):
    """After the first backward pass of a run on several processes, the trainable parameters
    that got no gradient (a neck no head reads, a level no head uses) are a
    :class:`~visionkit.errors.ConfigError` naming them: DDP (``find_unused_parameters`` off,
    Lightning's default and faster) failed at the next step with its own traceback in every
    rank. Nothing is checked in one process, or when ``find_unused_parameters`` is on."""

    def __init__(self) -> None:
        self.checked = False

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.checked:
            return
        self.checked = True
        wrapped = getattr(trainer.strategy, "model", None)
        if trainer.world_size == 1 or getattr(wrapped, "find_unused_parameters", True):
            return
        unused = [
            name.removeprefix("model.")
            for name, p in pl_module.named_parameters()
            if p.requires_grad and p.grad is None
        ]
        if unused:
            modules = list(dict.fromkeys(module_of(name) for name in unused))
            error = ConfigError(
                f"{len(unused)} parameters of the model get no gradient from the loss, in "
                f"{', '.join(modules[:10])}{', ...' if len(modules) > 10 else ''}: no head "
                "uses them, and DDP needs every trainable parameter in the loss; leave out "
                "what no head reads (e.g. model.neck when no head reads the neck), freeze it "
                "(model.freeze), or set trainer.strategy=ddp_find_unused_parameters_true "
                "(slower)"
            )
            error.every_rank = True  # the same parameters on every rank
            raise error


def module_of(parameter: str) -> str:
    """The module path of a parameter name, up to its first numbered part:
    ``neck.inner_blocks.0.0.weight`` -> ``neck.inner_blocks``."""
    parts = parameter.split(".")[:-1]
    numbered = next((i for i, part in enumerate(parts) if part.isdigit()), len(parts))
    return ".".join(parts[:numbered]) or parameter
