"""The Lightning "system": a :class:`VisionModel` plus optimisation, evaluation and logging.

The model is a plain ``nn.Module`` passed in (Lightning's "Systems vs Models"); this module is
the only one that knows about Lightning's training loop. Precision, devices, distribution,
checkpointing and accumulation are the ``Trainer``'s.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MeanMetric

from visionkit.build import lr_schedule as default_lr_schedule
from visionkit.build import optimizer_factory as default_optimizer
from visionkit.build.optim import OptimizerFactory, ScheduleFactory, is_fused
from visionkit.choices import TTA_MODES
from visionkit.data.batch import labelled_images
from visionkit.errors import NonFiniteLossError
from visionkit.evaluation.tasks import TASKS, label_family, progress_bar_suffixes
from visionkit.inference.tta import hflip_images, merge_hflip
from visionkit.models.model import VisionModel

logger = logging.getLogger(__name__)

UNENDING = 10**9  # a schedule's length before a time budget's first projection


class VisionSystem(L.LightningModule):
    """Trains and evaluates any :class:`VisionModel`.

    Logs ``train/loss`` and ``train/<head>/<term>`` per step and per epoch (a head's epoch
    figures over the images that carry its labels), ``val/loss`` and the evaluators' flat
    metrics (``cls/top1``, ``det/mAP``, ...) per validation epoch.

    Args:
        model: the model to train.
        optimizer: ``(model, fused) -> optimizer`` (:func:`visionkit.build.optimizer_factory`;
            default: AdamW with the config's default settings).
        lr_schedule: ``(total_steps, steps_per_epoch) -> (step -> learning-rate factor)``, run
            per optimiser step (:func:`visionkit.build.lr_schedule`; default: the config's
            default schedule).
        evaluators: one dict per validation loader, in loader order: metric key → evaluator
            (:func:`visionkit.build.build_evaluators`). A key is the head's name, or
            ``<head>@<set>`` for a head evaluated on several sets; the metric keys the
            evaluators report are ``<head>/<metric>`` and ``<head>/<set>/<metric>``.
        on_nonfinite_loss: ``error`` or ``skip`` (``trainer.on_nonfinite_loss``).
        channels_last: convert the model's weights and every batch to NHWC
            (``trainer.channels_last``); parameter names and checkpoints load either way.
        tta: validation predictions with test-time augmentation: ``None``, or ``"flip"``
            (each batch and its mirror, merged per head by :func:`visionkit.inference.tta.
            merge_hflip`, as ``visionkit predict --tta flip``); ``visionkit eval --tta``.
        val_sets: the names of the validation sets, in loader order: with several, each
            logs its loss as ``val/loss/<set>``, and ``val/loss`` is over all of them.
    """

    def __init__(
        self,
        model: VisionModel,
        optimizer: OptimizerFactory | None = None,
        lr_schedule: ScheduleFactory | None = None,
        evaluators: Sequence[Mapping[str, nn.Module]] = (),
        on_nonfinite_loss: str = "error",
        channels_last: bool = False,
        tta: str | None = None,
        val_sets: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if tta is not None and tta not in TTA_MODES:
            raise ValueError(f"unknown test-time augmentation {tta!r}; valid: {TTA_MODES}")
        self.model = model
        self.tta = tta
        self.channels_last = channels_last
        if channels_last:  # NHWC: oneDNN's native layout (faster convs, and a CPU max-pool
            # that is ~20x faster than NCHW's when gradients are needed); names unchanged
            model.to(memory_format=torch.channels_last)
        self.on_nonfinite_loss = on_nonfinite_loss
        self.skipped_batches = 0
        self.make_optimizer = optimizer or default_optimizer()
        self.lr_schedule = lr_schedule or default_lr_schedule()
        self.schedule_steps = UNENDING  # set by configure_optimizers
        # one ModuleDict in head order (the order metrics are reported and averaged in)
        head_order = {name: i for i, name in enumerate(model.heads)}
        flat = [(key, ev) for per_set in evaluators for key, ev in per_set.items()]
        flat.sort(key=lambda item: head_order[item[0].split("@")[0]])
        self.evaluators = nn.ModuleDict(flat)
        self.evaluators_of_set: list[list[tuple[str, str]]] = [  # per val loader: (head, key)
            [(key.split("@")[0], key) for key in per_set] for per_set in evaluators
        ]
        self.last_metrics: dict[str, float] = {}
        # val/loss per validation set, as a float (sum, weight) pair that torchmetrics sums over
        # ranks: Lightning's mean of a logged tensor divides its integer sample count by the
        # number of ranks, rounding down, which is wrong when ranks see different numbers of
        # images (as they do with the unpadded validation sampler).
        self.val_losses = nn.ModuleList(MeanMetric() for _ in range(max(1, len(evaluators))))
        self.val_loss_keys = (
            [f"val/loss/{name}" for name in val_sets] if len(val_sets) > 1 else ["val/loss"]
        )
        # with several sets, val/loss is the loss over all of their images
        self.val_loss_all = MeanMetric() if len(self.val_loss_keys) > 1 else None
        # the labels whose images each head's epoch losses are averaged over: its label
        # family, or for a term learnt from a target only some of those images carry (an
        # instance head's masks) that target (the head's ``term_labels``)
        self.head_families = {
            name: label_family(head) if getattr(head, "task", None) in TASKS else ""
            for name, head in model.heads.items()
        }
        self.term_labels = {
            f"{name}/{term}": labels
            for name, head in model.heads.items()
            for term, labels in getattr(head, "term_labels", {}).items()
        }
        # each kind of labels counted per step, once
        self.counted_labels = list(
            dict.fromkeys([*self.head_families.values(), *self.term_labels.values()])
        )
        self.epoch_losses = nn.ModuleDict()  # "<head>/<term>" -> MeanMetric, at the first step

    def forward(self, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
        return self.model(images)

    def _images(self, batch: dict[str, Any]) -> torch.Tensor:
        images = batch["images"]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def _step(self, batch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        outputs = self.model(self._images(batch))
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
        weights = {f"train/{k}": v for k, v in losses.items() if k.endswith("/weight")}
        self.log_dict(weights, on_step=True, on_epoch=True, batch_size=size, sync_dist=True)
        self._log_head_losses(losses, batch)
        if self.trainer.optimizers:  # train/lr (ungrouped parameters), train/lr_<prefix>
            lrs: dict[str, float] = {}
            for group in self.trainer.optimizers[0].param_groups:
                key = f"train/lr_{group['name']}" if group.get("name") else "train/lr"
                lrs.setdefault(key, group["lr"])
            self.log_dict(lrs, on_step=True, on_epoch=False, batch_size=size)
        return losses["loss"]

    def _log_head_losses(self, losses: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        """Each head's loss terms and sum (``train/<head>/<term>``): per step as the head gave
        them (``_step``), per epoch (``_epoch``) as their mean over the images that carry the
        head's labels (:func:`~visionkit.data.batch.labelled_images`): a ``MeanMetric`` per
        term, each step weighted by that count (torchmetrics sums values and counts over the
        ranks; a term in the head's ``term_labels`` by the images carrying that target),
        logged only at steps where some rank had such an image, so that an epoch without one
        logs no value for the head rather than 0 or NaN."""
        size = len(batch["images"])
        kinds = self.counted_labels
        counts = torch.stack([labelled_images(batch, labels).sum() for labels in kinds])
        # over every rank (a copy: DDP sums in place), so that all log at the same steps
        totals = self.trainer.strategy.reduce(counts.to(self.device, copy=True), reduce_op="sum")
        count_of = dict(zip(kinds, zip(counts.tolist(), totals.tolist(), strict=True), strict=True))
        for head, family in self.head_families.items():
            keys = [k for k in losses if k.partition("/")[0] == head and k != f"{head}/weight"]
            for key in keys:
                value = losses[key]
                name = f"train/{key}"
                self.log(f"{name}_step", value, on_step=True, batch_size=size, sync_dist=True)
                count, total = count_of[self.term_labels.get(key, family)]
                if not total:
                    continue
                if key not in self.epoch_losses:
                    self.epoch_losses[key] = MeanMetric().to(self.device)
                mean = self.epoch_losses[key]
                # weight 0 where this rank had none: a metric updated on every rank
                mean.update(value.detach().float(), weight=float(count))
                attribute = f"epoch_losses.{key}"  # made after Lightning looked for metrics
                self.log(
                    f"{name}_epoch",
                    mean,
                    on_step=False,
                    on_epoch=True,
                    batch_size=size,
                    metric_attribute=attribute,
                )

    def on_train_epoch_start(self) -> None:
        """Forget the last epoch's head losses: Lightning keeps every metric ever logged in
        ``callback_metrics`` (what ``metrics.csv`` reads), so a head without labelled images
        in this epoch would be shown the last epoch's value."""
        for key in self.epoch_losses:
            self.trainer.callback_metrics.pop(f"train/{key}_epoch", None)

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

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Make the last training step a validation step: Lightning validates a stop
        (``max_time``, ``max_steps``, the last epoch) only at a point its schedule validates
        anyway (the end of an epoch that ``check_val_every_n_epoch`` names, or a multiple of
        ``val_check_interval``), so the weights of the steps after the last such point would
        never be scored nor reach ``best.ckpt``, and a run shorter than its validation period
        would have no metrics at all. Here, after every callback (Lightning's ``Timer``
        included) has said whether training stops, a stop lets the validation run."""
        trainer = self.trainer
        if not trainer.enable_validation or trainer.sanity_checking:
            return
        progress = trainer.fit_loop.epoch_loop.batch_progress
        last_epoch = 0 <= (trainer.max_epochs or -1) <= trainer.current_epoch + 1
        ending = trainer.should_stop or 0 <= trainer.max_steps <= trainer.global_step
        if ending or (last_epoch and progress.is_last_batch):
            trainer.should_stop = True  # Lightning validates on a stop ...
            trainer.check_val_every_n_epoch = None  # ... in any epoch

    def on_validation_epoch_start(self) -> None:
        for key, evaluator in self.evaluators.items():
            evaluator.reset()
            # the threshold the head keeps detections at now (an evaluation's --conf too)
            head = self.model.heads[key.split("@")[0]]
            if hasattr(evaluator, "score_floor") and hasattr(head, "score_thresh"):
                evaluator.score_floor = float(head.score_thresh)

    def validation_step(
        self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        outputs, losses = self._step(batch)
        size = len(batch["images"])
        val_loss = self.val_losses[dataloader_idx]
        val_loss.update(losses["loss"].detach().float(), weight=size)
        key = self.val_loss_keys[min(dataloader_idx, len(self.val_loss_keys) - 1)]
        self.log(key, val_loss, on_epoch=True, batch_size=size, add_dataloader_idx=False)
        if self.val_loss_all is not None:
            self.val_loss_all.update(losses["loss"].detach().float(), weight=size)
        sizes = [tuple(s) for s in batch["image_sizes"].tolist()]
        orig_sizes = [tuple(s) for s in batch["orig_sizes"].tolist()]
        if self.tta == "flip":
            mirrored = self.model(hflip_images(self._images(batch), sizes))
            predictions = merge_hflip(self.model, outputs, mirrored, sizes, orig_sizes)
        else:
            predictions = self.model.postprocess(outputs, sizes, orig_sizes)
        for name, key in self.evaluators_of_set[dataloader_idx]:
            self.evaluators[key].process(batch, [p[name] for p in predictions])

    def headline_metrics(self) -> list[str]:
        """The main metric of each evaluated head (``cls/top1``, ``det/mAP``, ...)."""
        keys = []
        for key, evaluator in self.evaluators.items():
            spec = TASKS.get(getattr(self.model.heads[key.split("@")[0]], "task", None))
            metric = getattr(evaluator, "main_metric", None) or (spec and spec.main_metric)
            if metric:
                keys.append(f"{key.replace('@', '/')}/{metric}")
        return keys

    def on_validation_epoch_end(self) -> None:
        metrics: dict[str, float] = {}
        for evaluator in self.evaluators.values():
            # an evaluator's once-only note of a small set ("noted") waits for a validation
            # of the whole set: the sanity check scores its first batches only
            quiet = self.trainer.sanity_checking and getattr(evaluator, "noted", None) is False
            if quiet:
                evaluator.noted = True
            metrics.update(evaluator.evaluate())
            if quiet:
                evaluator.noted = False
        if self.trainer.state.fn == TrainerFn.FITTING and not self.trainer.sanity_checking:
            self._keep_predict_conf(metrics)
        main = self.headline_metrics()
        headline = [metrics[k] for k in main if metrics.get(k) == metrics.get(k)]
        if len(main) > 1:
            metrics["val/score"] = sum(headline) / len(headline) if headline else float("nan")
        self.last_metrics = metrics
        if self.val_loss_all is not None:
            # the same on every rank (the metric gathered them): "max" keeps it exact, and
            # Lightning does not warn of an epoch value logged without sync_dist
            self.log("val/loss", self.val_loss_all.compute(), sync_dist=True, reduce_fx="max")
            self.val_loss_all.reset()
        for key, value in metrics.items():
            # NaN means "no such objects" (COCO -1): not logged, except a main metric (the
            # checkpoint's monitor must exist; ModelCheckpoint ranks NaN last)
            if value == value or key in main or key == "val/score":
                # the same on every rank (the evaluators gather); "max" keeps it exact
                self.log(
                    key,
                    value,
                    prog_bar=key.endswith(progress_bar_suffixes()),
                    sync_dist=True,
                    reduce_fx="max",
                )

    def _keep_predict_conf(self, metrics: Mapping[str, float]) -> None:
        """Keep each box head's best-F1 score threshold of this validation of training (on
        the head's first validation set) with the model, ``meta["predict_conf"]``: the default
        ``conf`` of its predictions (:func:`visionkit.inference.options.prediction_conf`). A
        head whose boxes found nothing there (F1 0) keeps none: 0.25 is its default then.
        Evaluations (``visionkit eval``, :func:`~visionkit.engine.runner.evaluate`) leave the
        model's as they are."""
        kept: dict[str, float] = {}
        firsts: dict[str, str] = {}  # head -> its first set's evaluator key
        for head, key in (pair for per_set in self.evaluators_of_set for pair in per_set):
            firsts.setdefault(head, key)
        for head, key in firsts.items():
            prefix = key.replace("@", "/")
            if metrics.get(f"{prefix}/F1", 0.0) > 0:
                kept[head] = metrics[f"{prefix}/F1_conf"]
        if kept:
            self.model.meta["predict_conf"] = kept
        else:
            self.model.meta.pop("predict_conf", None)

    def configure_optimizers(self) -> dict[str, Any]:
        # Fused kernels, except under fp16's GradScaler (the optimiser would unscale itself).
        fused = str(self.trainer.precision) != "16-mixed"
        optimizer = self.make_optimizer(self.model, fused)
        total = self.trainer.estimated_stepping_batches  # inf under trainer.max_time alone
        # (estimated_stepping_batches has set num_training_batches up)
        batches = getattr(self.trainer, "num_training_batches", math.inf)
        if math.isinf(batches):  # an iterable without a length: epochs by max_epochs
            epochs = max(1, self.trainer.max_epochs or 1)
            per_epoch = max(1, math.ceil(total / epochs)) if math.isfinite(total) else 1
        else:
            accumulate = getattr(self.trainer, "accumulate_grad_batches", 1)
            per_epoch = max(1, math.ceil(batches / accumulate))
        # the schedule's length; TimeBudgetSchedule shortens it to what trainer.max_time allows
        # (until its first projection, a time budget alone has a schedule without an end)
        self.schedule_steps = max(1, int(total)) if math.isfinite(total) else UNENDING
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor(per_epoch))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _lr_factor(self, per_epoch: int) -> Callable[[int], float]:
        """The learning-rate factor at a step of a schedule :attr:`schedule_steps` long (read
        at every step: a time budget moves it; rebuilt only when it moves)."""
        schedule = functools.lru_cache(maxsize=1)(lambda total: self.lr_schedule(total, per_epoch))
        return lambda step: schedule(self.schedule_steps)(step)

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
        # the weights' own prediction thresholds (a resumed run's, best.ckpt's validated again)
        kept = (checkpoint.get("visionkit") or {}).get("predict_conf")
        if kept:
            self.model.meta["predict_conf"] = dict(kept)
        else:
            self.model.meta.pop("predict_conf", None)
