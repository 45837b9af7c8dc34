"""The Lightning "system": a :class:`VisionModel` plus optimisation, evaluation and logging.

The model is a plain ``nn.Module`` passed in (Lightning's "Systems vs Models"); this module is
the only one that knows about Lightning's training loop. Precision, devices, distribution,
checkpointing and accumulation are the ``Trainer``'s.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric

from visionkit.config import OptimizerConfig, SchedulerConfig
from visionkit.engine.datamodule import carries_labels, val_sets
from visionkit.engine.optimizers import build_optimizer, is_fused
from visionkit.errors import ConfigError, NonFiniteLossError
from visionkit.evaluation import build_evaluator
from visionkit.models.factory import prefix_problems
from visionkit.models.model import VisionModel

# The metric that sums up each kind of head; with several heads, ``val/score`` is their mean.
MAIN_METRIC = {
    "classification": "top1",
    "detection": "mAP",
    "instance": "mask_mAP",
    "semantic": "mIoU",
}
logger = logging.getLogger(__name__)

PROGRESS_BAR_SUFFIXES = ("/top1", "/mAP", "/mask_mAP", "/mIoU", "val/score")


class VisionSystem(L.LightningModule):
    """Trains and evaluates any :class:`VisionModel`.

    Logs ``train/loss`` and ``train/<head>/<term>`` per step, ``val/loss`` and the evaluators'
    flat metrics (``cls/top1``, ``det/mAP``, ...) per validation epoch.

    Args:
        model: the model to train.
        optimizer, scheduler: their config sections.
        val_dataset: the validation dataset, or a name → dataset dict of several. Each head is
            evaluated on the sets that carry its labels; its metric keys are
            ``<head>/<metric>`` when one set does, ``<head>/<set>/<metric>`` when several do.
        on_nonfinite_loss: ``error`` or ``skip`` (``trainer.on_nonfinite_loss``).
        channels_last: convert the model's weights and every batch to NHWC
            (``trainer.channels_last``); parameter names and checkpoints load either way.
    """

    def __init__(
        self,
        model: VisionModel,
        optimizer: OptimizerConfig | None = None,
        scheduler: SchedulerConfig | None = None,
        val_dataset: Any = None,
        on_nonfinite_loss: str = "error",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        if channels_last:  # NHWC: oneDNN's native layout (faster convs, and a CPU max-pool
            # that is ~20x faster than NCHW's when gradients are needed); names unchanged
            model.to(memory_format=torch.channels_last)
        self.on_nonfinite_loss = on_nonfinite_loss
        self.skipped_batches = 0
        self.optimizer_cfg = optimizer or OptimizerConfig()
        self.scheduler_cfg = scheduler or SchedulerConfig()
        self.evaluators = nn.ModuleDict()
        self.evaluators_of_set: list[list[tuple[str, str]]] = []  # per val loader: (head, key)
        sets = val_sets(val_dataset)
        for name, head in model.heads.items():
            carrying = [s for s, ds in sets.items() if carries_labels(ds, head.label_key)]
            for set_name in carrying:
                prefix = name if len(carrying) == 1 else f"{name}/{set_name}"
                evaluator = build_evaluator(
                    prefix, head, sets[set_name], model.meta.get("category_ids") or None
                )
                if evaluator is not None:
                    self.evaluators[prefix.replace("/", "@")] = evaluator
        for set_name in sets:
            self.evaluators_of_set.append(
                [
                    (name, key)
                    for name, head in model.heads.items()
                    for key in (name, f"{name}@{set_name}")
                    if key in self.evaluators and carries_labels(sets[set_name], head.label_key)
                ]
            )
        self.last_metrics: dict[str, float] = {}
        # val/loss per validation set, as a float (sum, weight) pair that torchmetrics sums over
        # ranks: Lightning's mean of a logged tensor divides its integer sample count by the
        # number of ranks, rounding down, which is wrong when ranks see different numbers of
        # images (as they do with the unpadded validation sampler).
        self.val_losses = nn.ModuleList(MeanMetric() for _ in range(max(1, len(sets))))

    def forward(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        return self.model(images)

    def _step(self, batch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        images = batch["images"]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        outputs = self.model(images)
        return outputs, self.model.loss(outputs, batch)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        _, losses = self._step(batch)
        size = len(batch["images"])
        if not self._loss_is_finite(losses, batch_idx):
            return None
        self.log(
            "train/loss",
            losses["loss"],
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=size,
            sync_dist=True,  # averaged over ranks (a few scalars per step)
        )
        terms = {f"train/{k}": v for k, v in losses.items() if k != "loss"}
        self.log_dict(terms, on_step=True, on_epoch=True, batch_size=size, sync_dist=True)
        if self.trainer.optimizers:  # train/lr (ungrouped parameters), train/lr_<prefix>
            lrs: dict[str, float] = {}
            for group in self.trainer.optimizers[0].param_groups:
                key = f"train/lr_{group['name']}" if group.get("name") else "train/lr"
                lrs.setdefault(key, group["lr"])
            self.log_dict(lrs, on_step=True, on_epoch=False, batch_size=size)
        return losses["loss"]

    def _loss_is_finite(self, losses: dict[str, torch.Tensor], batch_idx: int) -> bool:
        """``trainer.on_nonfinite_loss``: ``error`` raises :class:`NonFiniteLossError` naming
        the step and every loss term; ``skip`` skips the batch on every rank (Lightning makes
        no optimiser step for a ``None`` loss) and counts it in ``train/skipped_batches``."""
        finite = bool(torch.isfinite(losses["loss"].detach()).item())
        if self.trainer is not None and self.trainer.world_size > 1:
            finite = not self.trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if finite:
            return True
        terms = {k: float(v.detach().float()) for k, v in losses.items()}
        if self.on_nonfinite_loss == "error":
            raise NonFiniteLossError(self.global_step, self.current_epoch, terms)
        self.skipped_batches += 1
        logger.warning(
            "skipping batch %d of epoch %d (step %d): the loss is not finite (%s); "
            "%d skipped so far",
            batch_idx,
            self.current_epoch,
            self.global_step,
            ", ".join(f"{k}={v:.4g}" for k, v in terms.items()),
            self.skipped_batches,
        )
        self.log("train/skipped_batches", float(self.skipped_batches), on_step=True)
        return False

    def on_validation_epoch_start(self) -> None:
        for evaluator in self.evaluators.values():
            evaluator.reset()

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        outputs, losses = self._step(batch)
        size = len(batch["images"])
        val_loss = self.val_losses[dataloader_idx]
        val_loss.update(losses["loss"].detach().float(), weight=size)
        self.log("val/loss", val_loss, on_epoch=True, batch_size=size)
        sizes = [tuple(s) for s in batch["image_sizes"].tolist()]
        orig_sizes = [tuple(s) for s in batch["orig_sizes"].tolist()]
        predictions = self.model.postprocess(outputs, sizes, orig_sizes)
        for name, key in self.evaluators_of_set[dataloader_idx]:
            self.evaluators[key].process(batch, [p[name] for p in predictions])

    def headline_metrics(self) -> list[str]:
        """The main metric of each evaluated head (``cls/top1``, ``det/mAP``, ...)."""
        return [
            f"{key.replace('@', '/')}/{MAIN_METRIC[self.model.heads[key.split('@')[0]].task]}"
            for key in self.evaluators
            if self.model.heads[key.split("@")[0]].task in MAIN_METRIC
        ]

    def on_validation_epoch_end(self) -> None:
        metrics: dict[str, float] = {}
        for evaluator in self.evaluators.values():
            metrics.update(evaluator.evaluate())
        headline = [metrics[k] for k in self.headline_metrics() if metrics.get(k) == metrics.get(k)]
        if len(self.headline_metrics()) > 1 and headline:
            metrics["val/score"] = sum(headline) / len(headline)
        self.last_metrics = metrics
        for key, value in metrics.items():
            if value == value:  # NaN means "no such objects" (COCO -1): not logged
                # the same on every rank (the evaluators gather); "max" keeps it exact
                self.log(
                    key,
                    value,
                    prog_bar=key.endswith(PROGRESS_BAR_SUFFIXES),
                    sync_dist=True,
                    reduce_fx="max",
                )

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.optimizer_cfg
        groups = optimizer_param_groups(self.model, cfg)
        # Fused kernels, except under fp16's GradScaler (the optimiser would unscale itself).
        fused = str(self.trainer.precision) != "16-mixed"
        optimizer = build_optimizer(cfg, groups, fused=fused)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, math.ceil(total / max(1, self.trainer.max_epochs or 1)))
        factor = lr_factor_fn(self.scheduler_cfg, total_steps=total, steps_per_epoch=per_epoch)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's clipping, or, for a fused optimiser, the same clipping done here:
        Lightning's mixed-precision plugin refuses to clip for any optimiser that could
        unscale gradients itself, but ours is only fused where there is no GradScaler
        (bf16 or fp32), so its gradients are already the true ones."""
        if not gradient_clip_val or not is_fused(optimizer):
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm
            )
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":  # a str enum in Lightning
            torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["visionkit"] = self.model.meta
        checkpoint["visionkit_skipped_batches"] = self.skipped_batches

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_batches = int(checkpoint.get("visionkit_skipped_batches", 0))


def optimizer_param_groups(model: VisionModel, cfg: OptimizerConfig) -> list[dict[str, Any]]:
    """The optimiser's parameter groups.

    Each parameter goes to the ``cfg.param_groups`` entry whose module prefix (``backbone``,
    ``heads.det``, ...) is the longest that contains it, or to the ungrouped rest (``name``
    ``""``, listed first); each of those is split into weights with more than one dimension
    (``weight_decay``) and the others (biases, norms, loss-balancing log-variances: no decay).
    Frozen parameters (``requires_grad=False``) are left out; empty groups are dropped. Every
    group carries ``name``, ``lr_mult`` and ``lr = cfg.lr × lr_mult``.

    Raises:
        ConfigError: a prefix names no module of ``model``, or every parameter is frozen.
    """
    problems = prefix_problems(model, list(cfg.param_groups), "optimizer.param_groups")
    if problems:
        raise ConfigError(problems)
    longest_first = sorted(cfg.param_groups, key=len, reverse=True)
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = next((p for p in longest_first if name.startswith(f"{p}.")), "")
        decay = param.ndim > 1 and not name.startswith("loss_balancer.")
        buckets.setdefault((group, decay), []).append(param)
    if not buckets:
        raise ConfigError("model.freeze: every parameter of the model is frozen; nothing to train")
    groups = []
    for group in ["", *cfg.param_groups]:
        mult = cfg.param_groups[group].lr_mult if group else 1.0
        for decay in (True, False):
            if (group, decay) in buckets:
                groups.append(
                    {
                        "params": buckets[(group, decay)],
                        "name": group,
                        "lr_mult": mult,
                        "lr": cfg.lr * mult,
                        "weight_decay": cfg.weight_decay if decay else 0.0,
                    }
                )
    return groups


def lr_factor_fn(cfg: SchedulerConfig, total_steps: int, steps_per_epoch: int):
    """The learning-rate multiplier at each optimiser step: linear warm-up, then the schedule."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if cfg.name == "onecycle":
            rise = max(1, int(round(cfg.pct_start * total_steps)))
            if step < rise:
                return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * 0.5 * (
                    1 - math.cos(math.pi * step / rise)
                )
            progress = min(1.0, (step - rise) / max(1, total_steps - rise))
            return cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        if step < warmup:
            return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * step / warmup
        if cfg.name == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        if cfg.name == "step":
            epoch = step // steps_per_epoch
            return cfg.gamma ** sum(epoch >= e for e in cfg.step_epochs)
        return 1.0

    return factor
