"""Semantic-segmentation recipes against torchvision's ``deeplabv3_mobilenet_v3_large``."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from benchmarks.cases import RecipeCase, build_optimizer, single_head
from benchmarks.harness import Settings
from visionkit.config import Config
from visionkit.errors import ConfigError
from visionkit.models.backbones import IMAGENET_MEAN, IMAGENET_STD


class SegmentationCase(RecipeCase):
    """A semantic-segmentation recipe (one ``semantic_fpn`` or ``deeplabv3plus`` head) against
    torchvision's ``deeplabv3_mobilenet_v3_large``.

    The baseline is ``deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
    num_classes=C, aux_loss=False)``: nothing is downloaded. It is a dilated MobileNetV3-Large
    (output stride 16, 960 channels) → torchvision's ``DeepLabHead`` (ASPP with rates 12/24/36
    and 256 channels, BatchNorm, dropout, a 3x3 conv and a 1x1 classifier), logits upsampled
    bilinearly to the input size inside ``forward``.

    Both models see the same images (``[B, 3, H, W]`` uniform in ``0..1``, the same seed; with
    ``settings.baseline_image_size`` each side's own size, and its own label map), each
    normalised once outside the timed region: ours by its backbone's mean/std, torchvision's by
    the ImageNet mean/std its weights use (its segmentation models take normalised tensors).
    Training targets are the same random label map ``[B, H, W]`` in ``0..C-1``: ours gets it as
    ``{"semantic", "has_semantic"}`` through ``model.loss`` (the recipe's loss: cross-entropy,
    plus dice when the recipe sets ``dice_weight``), torchvision's
    ``F.cross_entropy(out["out"], target, ignore_index=255)``; both use the recipe's
    optimiser. Inference returns an argmax label map at the input size for each image: ours
    through ``model.postprocess(outputs, sizes, sizes)``, torchvision's
    ``model(images)["out"].argmax(1)``.
    """

    section: ClassVar[str] = "segmentation"
    HEADS: ClassVar[tuple[str, ...]] = ("semantic_fpn", "deeplabv3plus")

    def __init__(self, name: str, settings: Settings, config: Config, recipe: str) -> None:
        super().__init__(name, settings, config, recipe)
        self.head_name, head = single_head(config, recipe, self.HEADS, "segmentation")
        if self.batch_size < 2:
            raise ConfigError(
                f"{recipe}: the segmentation benchmark trains at batch >= 2 (torchvision's ASPP "
                f"batch-normalises a pooled 1x1 map), got --batch-size {self.batch_size}"
            )
        self.kind = head["name"]
        self.num_classes = int(head["num_classes"])
        neck = config.model.neck or {}
        parts = [config.model.backbone.name]
        if neck:
            parts.append(
                f"{neck.get('name', '')} {neck.get('out_channels', '')} "
                f"P{neck.get('min_level')}-P{neck.get('max_level')}"
            )
        parts.append(f"{self.kind} {head.get('channels', 128)} ch")
        self.labels = {
            "ours": "visionkit: " + ", ".join(parts),
            "baseline": "torchvision DeepLabV3: mobilenet_v3_large (dilated, stride 16), "
            "ASPP 256 ch",
        }

    def build_baseline(self) -> nn.Module:
        from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

        return deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=self.num_classes, aux_loss=False
        )

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(self.config.optimizer, model)

    def synthetic(self, batch_size: int, which: str = "ours") -> tuple[Tensor, Tensor]:
        """Images ``[B, 3, H, W]`` uniform in ``0..1`` and a label map ``[B, H, W]`` (int64)
        uniform in ``0..C-1``, at ``which`` side's size."""
        gen = torch.Generator().manual_seed(self.settings.seed)
        height, width = self.size_of(which)
        images = torch.rand(batch_size, 3, height, width, generator=gen)
        labels = torch.randint(0, self.num_classes, (batch_size, height, width), generator=gen)
        return images, labels

    def make_batch(self, which: str, batch_size: int) -> Any:
        images, labels = self.synthetic(batch_size, which)
        if which == "ours":
            return {
                "images": self.normalise(images),
                "semantic": labels,
                "has_semantic": torch.ones(batch_size, dtype=torch.bool),
            }
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return {"images": (images - mean) / std, "target": labels}

    def train_loss(self, which: str, model: nn.Module, batch: Any) -> Tensor:
        if which == "ours":
            return model.loss(model(batch["images"]), batch)["loss"]
        import torch.nn.functional as F

        return F.cross_entropy(model(batch["images"])["out"], batch["target"], ignore_index=255)

    def infer(self, which: str, model: nn.Module, batch: Any) -> Any:
        images = batch["images"]
        if which == "ours":
            sizes = [tuple(images.shape[-2:])] * len(images)
            return [
                p[self.head_name]["mask"] for p in model.postprocess(model(images), sizes, sizes)
            ]
        return model(images)["out"].argmax(1)
