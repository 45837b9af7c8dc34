"""A multi-task recipe against its heads as single-task models run one after another."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from benchmarks.cases import RecipeCase, build_optimizer, synthetic_boxes
from benchmarks.harness import Settings
from visionkit.build.model import create_model
from visionkit.config import Config, load_config
from visionkit.errors import ConfigError
from visionkit.registry import HEADS


class MultitaskCase(RecipeCase):
    """A recipe with several heads against its single-task models run one after another
    (issue #5: the multi-task model's inference should cost at most 50 % of theirs).

    Ours is the recipe's model, built by :func:`visionkit.create_model`: the backbone (and
    the neck) run once per batch and every head reads them. The baseline is one single-task
    model per head, built from the same recipe with only that head kept in ``model.heads``
    (same backbone and neck configuration, same image size; the neck is dropped when that head
    reads the backbone, as a ``linear`` classifier does), so the comparison isolates the
    sharing. Heads supported: classification, detection (``fcos`` / ``retinanet``) and
    semantic segmentation.

    Every model gets the same batch: images ``[B, 3, H, W]`` uniform in ``0..1`` normalised by
    the backbone's mean/std outside the timed region, a class per image, ``boxes_per_image``
    boxes per image and a label map, all random (the same seed; with
    ``settings.baseline_image_size`` the baseline's images and label maps have its size, and
    the same relative boxes are scaled to it). Training: ours takes one step
    of the joint loss (``model.loss(...)["loss"]``, the recipe's loss balancing); the baseline
    one step of each single model in sequence (the sum of the three independent losses, one
    backward and the recipe's optimiser over all three models: per parameter the same update
    as three separate steps). Inference: ``model(images)`` + ``model.postprocess`` of every
    head; the baseline's call runs the single models one after another and is timed as one
    unit. The ratios in the table are ours / baseline: for ms/image, 0.5 or less meets the
    target.
    """

    section: ClassVar[str] = "multitask"
    TASKS: ClassVar[tuple[str, ...]] = ("classification", "detection", "semantic")

    def __init__(self, name: str, settings: Settings, config: Config, recipe: str) -> None:
        super().__init__(name, settings, config, recipe)
        heads = config.model.heads
        self.tasks = {key: HEADS.component_class(spec["name"]).task for key, spec in heads.items()}
        unsupported = {k: heads[k]["name"] for k, t in self.tasks.items() if t not in self.TASKS}
        if len(heads) < 2 or unsupported:
            raise ConfigError(
                f"{recipe}: the multi-task benchmark needs two or more heads of "
                f"{', '.join(self.TASKS)}; got { ({k: s['name'] for k, s in heads.items()}) }"
            )
        missing = [k for k, spec in heads.items() if spec.get("num_classes") is None]
        if missing:
            raise ConfigError(
                f"{recipe}: num_classes must be set in model.heads.{', '.join(missing)} "
                "to benchmark them"
            )
        self.num_classes = {key: int(spec["num_classes"]) for key, spec in heads.items()}
        names = ", ".join(f"{key} {spec['name']}" for key, spec in heads.items())
        neck = config.model.neck or {}
        trunk = config.model.backbone.name + (
            f" + {neck.get('name', '')} {neck.get('out_channels', '')}" if neck else ""
        )
        self.labels = {
            "ours": f"visionkit multi-task: {trunk}, heads {names}",
            "baseline": f"{len(heads)} single-task models in sequence ({trunk}): "
            + " + ".join(spec["name"] for spec in heads.values()),
        }

    def single_task_config(self, head: str) -> Config:
        """The recipe with only ``head`` in ``model.heads``; no neck when that head reads the
        backbone; no ``init_from`` (the models are untrained), ``freeze`` and optimiser
        parameter groups restricted to the modules the single model has."""
        data = self.config.to_dict()
        model = data["model"]
        model["heads"] = {head: model["heads"][head]}
        if HEADS.component_class(model["heads"][head]["name"]).reads == "backbone":
            model["neck"] = None
        kept = ("backbone", f"heads.{head}") + (("neck",) if model["neck"] else ())

        def keeps(prefix: str) -> bool:
            return prefix == "heads" or any(prefix == k or prefix.startswith(k + ".") for k in kept)

        model["init_from"] = None
        model["freeze"] = [p for p in model.get("freeze") or [] if keeps(p)]
        groups = data.get("optimizer", {}).get("param_groups") or {}
        data.setdefault("optimizer", {})["param_groups"] = {
            p: g for p, g in groups.items() if keeps(p)
        }
        return load_config(data)

    def describe(self) -> dict[str, Any]:
        heads = {k: spec["name"] for k, spec in self.config.model.heads.items()}
        return {**super().describe(), "heads": heads}

    def train_memory_format(self, which: str) -> torch.memory_format:
        """Both sides are visionkit models: both train as the recipe says."""
        return super().train_memory_format("ours")

    def build_baseline(self) -> nn.Module:
        return nn.ModuleDict(
            {head: create_model(self.single_task_config(head)) for head in self.tasks}
        )

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(self.config.optimizer, model)

    def make_batch(self, which: str, batch_size: int) -> Any:
        """The same normalised images and labels of every task for ours and the baseline, at
        ``which`` side's size: the targets that do not depend on the size (classes, relative
        boxes) are drawn first, so they are the same at every size."""
        gen = torch.Generator().manual_seed(self.settings.seed)
        size = self.size_of(which)
        batch: dict[str, Any] = {}
        for head, task in self.tasks.items():
            classes = self.num_classes[head]
            if task == "classification":
                batch["class"] = torch.randint(0, classes, (batch_size,), generator=gen)
            elif task == "detection":
                n = self.settings.boxes_per_image
                boxes, labels = synthetic_boxes(gen, batch_size, n, classes, size)
                batch.update(
                    boxes=boxes, labels=labels, has_boxes=torch.ones(batch_size, dtype=torch.bool)
                )
        images = torch.rand(batch_size, 3, *size, generator=gen)
        batch["images"] = self.normalise(images)
        for head, task in self.tasks.items():
            if task == "semantic":
                classes = self.num_classes[head]
                batch["semantic"] = torch.randint(0, classes, (batch_size, *size), generator=gen)
                batch["has_semantic"] = torch.ones(batch_size, dtype=torch.bool)
        return batch

    def train_loss(self, which: str, model: nn.Module, batch: Any) -> Tensor:
        if which == "ours":
            return model.loss(model(batch["images"]), batch)["loss"]
        return sum(single.loss(single(batch["images"]), batch)["loss"] for single in model.values())

    def infer(self, which: str, model: nn.Module, batch: Any) -> Any:
        images = batch["images"]
        sizes = [tuple(images.shape[-2:])] * len(images)
        if which == "ours":
            return model.postprocess(model(images), sizes, sizes)
        per_model = [single.postprocess(single(images), sizes, sizes) for single in model.values()]
        return [
            {k: v for preds in per_image for k, v in preds.items()}
            for per_image in zip(*per_model, strict=True)
        ]


# Recipe head name → case class.
