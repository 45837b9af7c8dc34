"""Classification recipes against the timm classifier of the same architecture."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.cases import RecipeCase, build_optimizer, single_head
from benchmarks.harness import Settings
from visionkit.config import Config
from visionkit.errors import ConfigError


class ClassificationCase(RecipeCase):
    """A classification recipe (one ``linear`` or ``mlp`` head on a timm backbone) against
    ``timm.create_model(<the recipe's backbone>, pretrained=False, num_classes=C)``.

    Ours is the recipe's model: the timm backbone built with ``features_only=True`` and the
    recipe's head (global average pool, linear). The baseline is the same timm architecture
    as a plain classifier (its own pooling and ``fc``), so the ratio measures what our
    backbone wrapper and head cost over timm's model, not a different network. Nothing is
    downloaded.

    Both models get the same images (``[B, 3, H, W]`` uniform in ``0..1``, the same seed; each
    side at its own size when ``settings.baseline_image_size`` is given) normalised once, outside the timed region, by our backbone's mean/std (timm's pretrained
    config: the same for both), and in training the same random labels ``[B]`` in
    ``0..C-1``. Ours trains on ``model.loss`` (the head's cross-entropy), the baseline on
    ``F.cross_entropy(logits, labels)``, both with the recipe's optimiser. Inference returns the
    class and the probabilities of each image: ours through ``model.postprocess``, the
    baseline through ``logits.softmax(1)`` and ``argmax``.
    """

    section: ClassVar[str] = "classification"
    HEADS: ClassVar[tuple[str, ...]] = ("linear", "mlp")

    def __init__(self, name: str, settings: Settings, config: Config, recipe: str) -> None:
        import timm

        super().__init__(name, settings, config, recipe)
        self.head_name, head = single_head(config, recipe, self.HEADS, "classification")
        self.kind = head["name"]
        self.num_classes = int(head["num_classes"])
        backbone = config.model.backbone.name
        self.timm_name = backbone.removeprefix("timm/")
        if "/" in self.timm_name or not timm.is_model(self.timm_name):
            raise ConfigError(
                f"{recipe}: the classification benchmark compares with timm's classifier of the "
                f"same name; model.backbone.name {backbone!r} is not a timm model"
            )
        self.labels = {
            "ours": f"visionkit: {backbone} (features_only), {self.kind} head",
            "baseline": f"timm classifier: create_model({self.timm_name!r})",
        }

    def build_baseline(self) -> nn.Module:
        import timm

        return timm.create_model(self.timm_name, pretrained=False, num_classes=self.num_classes)

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(self.config.optimizer, model)

    def make_batch(self, which: str, batch_size: int) -> Any:
        """The same normalised images (at ``which`` side's size) and labels for both
        models."""
        gen = torch.Generator().manual_seed(self.settings.seed)
        labels = torch.randint(0, self.num_classes, (batch_size,), generator=gen)
        images = torch.rand(batch_size, 3, *self.size_of(which), generator=gen)
        return {"images": self.normalise(images), "class": labels}

    def train_loss(self, which: str, model: nn.Module, batch: Any) -> Tensor:
        if which == "ours":
            return model.loss(model(batch["images"]), batch)["loss"]
        return F.cross_entropy(model(batch["images"]), batch["class"])

    def infer(self, which: str, model: nn.Module, batch: Any) -> Any:
        images = batch["images"]
        if which == "ours":
            sizes = [tuple(images.shape[-2:])] * len(images)
            return [p[self.head_name] for p in model.postprocess(model(images), sizes, sizes)]
        probs = model(images).float().softmax(dim=1)
        return [
            {"label": label, "scores": p}
            for label, p in zip(probs.argmax(dim=1).tolist(), probs, strict=True)
        ]
