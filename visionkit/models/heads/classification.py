"""Image classification heads: ``linear`` (pool → dropout → linear) and ``mlp``.

>>> import torch
>>> head = linear(in_channels=[16, 32], num_classes=4)
>>> head([torch.rand(2, 16, 8, 8), torch.rand(2, 32, 4, 4)])["logits"].shape
torch.Size([2, 4])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.registry import HEADS

IGNORE = -1  # value of ``targets["class"]`` for an image without an image-level label


class ClassificationHead(nn.Module):
    """Global average pool of one feature level, optional hidden layers, then a linear layer.

    Args:
        in_channels: channels of the feature level it reads.
        num_classes: number of classes C.
        hidden_dims: widths of hidden layers (``()`` for a linear classifier).
        dropout: dropout before each linear layer.
        level: which feature map of the backbone's list to pool (default: the last).
        label_smoothing: passed to cross-entropy.
        class_names: names of the C classes, used in predictions.
    """

    task: ClassVar[str] = "classification"
    label_key: ClassVar[str] = "class"
    reads: ClassVar[str] = "backbone"

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden_dims: Sequence[int] = (),
        dropout: float = 0.0,
        level: int = -1,
        label_smoothing: float = 0.0,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.level = level
        self.label_smoothing = label_smoothing
        self.class_names = list(class_names) if class_names else None
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        width = in_channels
        for hidden in hidden_dims:
            layers += [nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
        self.classifier = nn.Sequential(*layers)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {"logits": self.classifier(features[self.level])}  # [B, C]

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Any]) -> dict[str, Tensor]:
        """Cross-entropy averaged over the images whose ``targets["class"]`` is not ``-1``."""
        logits = outputs["logits"].float()  # [B, C]
        labels = targets.get("class")
        if labels is None:
            labels = torch.full(logits.shape[:1], IGNORE, dtype=torch.long, device=logits.device)
        valid = labels != IGNORE
        per_image = F.cross_entropy(
            logits,
            labels.clamp(min=0),
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        # Zero-weighted rather than skipped: every parameter stays in the graph (DDP-safe).
        loss = (per_image * valid).sum() / valid.sum().clamp(min=1)
        return {"ce": loss}

    def postprocess(
        self,
        outputs: dict[str, Tensor],
        image_sizes: list[tuple[int, int]] | None = None,
        orig_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Any]]:
        """Per image: ``label`` (int), ``name`` (str or None), ``scores`` (probabilities [C])."""
        probs = outputs["logits"].float().softmax(dim=1)
        labels = probs.argmax(dim=1).tolist()
        return [
            {
                "label": label,
                "name": self.class_names[label] if self.class_names else None,
                "scores": p,
            }
            for label, p in zip(labels, probs, strict=False)
        ]


def _create_classifier(in_channels: list[int], level: int, **kwargs: Any) -> ClassificationHead:
    return ClassificationHead(in_channels=in_channels[level], level=level, **kwargs)


@HEADS.register
def linear(
    in_channels: list[int],
    num_classes: int | None = None,
    dropout: float = 0.0,
    level: int = -1,
    label_smoothing: float = 0.0,
    class_names: list[str] | None = None,
) -> ClassificationHead:
    """Global pool → dropout → linear."""
    return _create_classifier(
        in_channels,
        level,
        num_classes=num_classes,
        dropout=dropout,
        label_smoothing=label_smoothing,
        class_names=class_names,
    )


@HEADS.register
def mlp(
    in_channels: list[int],
    num_classes: int | None = None,
    hidden_dims: tuple[int, ...] = (512,),
    dropout: float = 0.2,
    level: int = -1,
    label_smoothing: float = 0.0,
    class_names: list[str] | None = None,
) -> ClassificationHead:
    """Global pool → (dropout → linear → ReLU) per hidden width → dropout → linear."""
    return _create_classifier(
        in_channels,
        level,
        num_classes=num_classes,
        hidden_dims=hidden_dims,
        dropout=dropout,
        label_smoothing=label_smoothing,
        class_names=class_names,
    )
