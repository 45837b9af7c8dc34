"""Detection recipes against torchvision's FCOS / RetinaNet with a ResNet-18 FPN."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from benchmarks.cases import RecipeCase, build_optimizer, single_head, synthetic_boxes
from benchmarks.harness import Settings
from visionkit.config import Config


class DetectionCase(RecipeCase):
    """A detection recipe against torchvision's FCOS or RetinaNet with a ResNet-18 FPN.

    The baseline is built as ``torchvision.models.detection.fcos_resnet50_fpn`` /
    ``retinanet_resnet50_fpn`` build theirs without pretrained weights, with ResNet-18: all
    layers trainable, ``nn.BatchNorm2d``, C3–C5 into a 256-channel FPN with P6/P7 from P5
    (``LastLevelP6P7(256, 256)``), the default heads (4 convs, GroupNorm for FCOS), and
    ``num_classes`` of the recipe: both torchvision heads use a sigmoid focal loss over
    ``num_classes`` channels with labels ``0..C-1`` and no background channel, as ours.

    Both models see the same images: ``[B, 3, H, W]`` in ``0..1``. Ours receives them
    normalised by the backbone's mean/std, done once outside the timed region (in training
    the data pipeline does it); torchvision receives the list of ``0..1`` images and its
    ``GeneralizedRCNNTransform`` normalises, resizes (``min_size``/``max_size`` set to the
    same size, so the resize keeps the size) and batches them inside the timed region, and
    maps boxes back to the input size in inference.

    With ``settings.baseline_image_size`` each side gets images of its own size (uniform
    noise from the same seed) and the same relative boxes scaled to it; torchvision's
    ``min_size``/``max_size`` are then the baseline's size.
    """

    section: ClassVar[str] = "detection"

    def __init__(self, name: str, settings: Settings, config: Config, recipe: str) -> None:
        super().__init__(name, settings, config, recipe)
        self.head_name, head = single_head(config, recipe, ("fcos", "retinanet"), "detection")
        self.kind = head["name"]
        self.num_classes = int(head["num_classes"])
        neck = config.model.neck or {}
        levels = f"P{neck.get('min_level')}-P{neck.get('max_level')}" if neck else "no neck"
        baseline = "FCOS" if self.kind == "fcos" else "RetinaNet"
        self.labels = {
            "ours": f"visionkit: {config.model.backbone.name}, {neck.get('name', '')} "
            f"{neck.get('out_channels', '')} {levels}, {self.kind} "
            f"{head.get('num_convs')}-conv towers",
            "baseline": f"torchvision {baseline}: resnet18, FPN 256 P3-P7, 4-conv towers",
        }

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "boxes_per_image": self.settings.boxes_per_image}

    def build_baseline(self) -> nn.Module:
        from torchvision.models.detection import FCOS, RetinaNet
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
        from torchvision.ops.feature_pyramid_network import LastLevelP6P7

        backbone = resnet_fpn_backbone(
            backbone_name="resnet18",
            weights=None,
            norm_layer=nn.BatchNorm2d,  # what fcos_resnet50_fpn uses when untrained
            trainable_layers=5,
            returned_layers=[2, 3, 4],
            extra_blocks=LastLevelP6P7(256, 256),
        )
        detector = FCOS if self.kind == "fcos" else RetinaNet
        return detector(
            backbone,
            num_classes=self.num_classes,
            min_size=min(self.size_of("baseline")),
            max_size=max(self.size_of("baseline")),
        )

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(self.config.optimizer, model)

    def synthetic(
        self, batch_size: int, which: str = "ours"
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Images ``[B, 3, H, W]`` uniform in ``0..1`` at ``which`` side's size; per image
        ``boxes_per_image`` xyxy boxes in its pixels (sides 1/8 to 1/2 of the image; the same
        relative boxes at every size, see :func:`synthetic_boxes`) and labels in ``0..C-1``."""
        gen = torch.Generator().manual_seed(self.settings.seed)
        size = self.size_of(which)
        n = self.settings.boxes_per_image
        boxes, labels = synthetic_boxes(gen, batch_size, n, self.num_classes, size)
        images = torch.rand(batch_size, 3, *size, generator=gen)
        return images, boxes, labels

    def make_batch(self, which: str, batch_size: int) -> Any:
        images, boxes, labels = self.synthetic(batch_size, which)
        if which == "ours":
            return {"images": self.normalise(images), "boxes": boxes, "labels": labels}
        targets = [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels, strict=True)]
        return {"images": list(images), "targets": targets}

    def train_loss(self, which: str, model: nn.Module, batch: Any) -> Tensor:
        if which == "ours":
            return model.loss(model(batch["images"]), batch)["loss"]
        return sum(model(batch["images"], batch["targets"]).values())

    def infer(self, which: str, model: nn.Module, batch: Any) -> Any:
        if which == "ours":
            images = batch["images"]
            sizes = [tuple(images.shape[-2:])] * len(images)
            return model.postprocess(model(images), sizes)
        return model(batch["images"])

    def outputs_per_image(self, which: str, predictions: Any) -> float | None:
        if which == "ours":
            counts = [len(p[self.head_name]["boxes"]) for p in predictions]
        else:
            counts = [len(p["boxes"]) for p in predictions]
        return sum(counts) / max(1, len(counts))


# The normalisation torchvision's segmentation weights were trained with (its models take
# normalised tensors, unlike its detectors, which normalise inside).
