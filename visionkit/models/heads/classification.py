"""Image classification heads: ``linear`` (pool → dropout → linear) and ``mlp`` (the same
class with a hidden layer by default).

>>> import torch
>>> head = ClassificationHead(in_channels=[16, 32], num_classes=4)
>>> head([torch.rand(2, 16, 8, 8), torch.rand(2, 32, 4, 4)])["logits"].shape
torch.Size([2, 4])
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.data.batch import IGNORE_CLASS
from visionkit.errors import SampleError
from visionkit.models.heads._utils import resolve_num_classes
from visionkit.registry import HEADS

#: How many of the most probable classes a prediction lists (``top5``), as Ultralytics.
TOP_K = 5


def class_results(probs: Tensor, class_names: list[str] | None) -> list[dict[str, Any]]:
    """Per image of ``probs`` (class probabilities ``[B, C]``): ``label``, ``name``,
    ``score``, ``top5``, ``scores`` and ``names``, as :meth:`ClassificationHead.postprocess`
    gives them (flip test-time augmentation decodes its averaged probabilities here too).
    ``label`` is the argmax (the first index on ties, as ``argmax`` and the exported model's),
    ``top5`` the five most probable classes, best first, ties in index order."""
    # A stable sort, not ``topk``: ``topk`` does not keep index order on ties, so its first
    # entry need not be the argmax (all-zero logits gave label 8, not 0) as export's is.
    ranked = probs.sort(dim=1, descending=True, stable=True)
    best_values = ranked.values[:, :TOP_K].tolist()
    best_indices = ranked.indices[:, :TOP_K].tolist()
    results = []
    for p, values, indices in zip(probs, best_values, best_indices, strict=True):
        top = [
            {"label": i, "name": class_names[i] if class_names else None, "score": v}
            for v, i in zip(values, indices, strict=True)
        ]
        first = top[0]
        results.append(
            {
                "label": first["label"],
                "name": first["name"],
                "score": first["score"],
                "top5": top,
                "scores": p,
                "names": class_names,
            }
        )
    return results


@HEADS.register("linear")
class ClassificationHead(nn.Module):
    """Global pool → dropout → linear (with ``hidden_dims``: (dropout → linear → ReLU) per
    hidden width first), on one feature level.

    Args:
        in_channels: channels of each feature map of the list it reads (the backbone's
            ``out_channels``).
        num_classes: number of classes C; ``None`` takes the number of ``class_names``.
        hidden_dims: widths of hidden layers (``()`` for a linear classifier).
        dropout: dropout before each linear layer.
        level: which feature map of the list to pool (default: the last).
        label_smoothing: passed to cross-entropy.
        class_weights: a weight per class (C values, finite, >= 0, one > 0): the loss is
            torch's ``CrossEntropyLoss(weight=..., label_smoothing=...)``, each image's term
            weighted by its class's (the smoothed terms by each class's own), averaged over
            the images' class weights; for imbalanced classes, e.g. the inverse of each
            class's share of the training images. ``"auto"``: training sets them from the
            training set's images per class, ``n_images / (C * images of the class)``, as
            scikit-learn's ``class_weight="balanced"`` (a class without images: an error).
            ``None``: all 1.
        class_names: names of the C classes, used in predictions.
    """

    task: ClassVar[str] = "classification"
    reads: ClassVar[str] = "backbone"

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int | None = None,
        hidden_dims: tuple[int, ...] = (),
        dropout: float = 0.0,
        level: int = -1,
        label_smoothing: float = 0.0,
        class_names: list[str] | None = None,
        class_weights: list[float] | Literal["auto"] | None = None,
    ) -> None:
        super().__init__()
        num_classes = resolve_num_classes("classification head", num_classes, class_names)
        if num_classes < 2:
            named = f" ({', '.join(class_names)})" if class_names else ""
            raise ValueError(
                f"classification head: one class{named}: a softmax over one class is always "
                "1 and learns nothing; it needs two classes or more"
            )
        self.num_classes = num_classes
        if class_weights == "auto":  # build_model replaces it by the training set's
            raise ValueError(
                "class_weights: auto takes the weights from the training set's images per "
                "class, which training (visionkit train) counts; without a training set give "
                f"{num_classes} values, one per class"
            )
        if class_weights is not None and (
            len(class_weights) != num_classes
            or not all(math.isfinite(w) and w >= 0 for w in class_weights)
            or not any(w > 0 for w in class_weights)
        ):
            raise ValueError(
                f"classification head: class_weights must be {num_classes} values (one per "
                f"class), finite and >= 0 with at least one > 0, got {list(class_weights)}"
            )
        self.register_buffer(
            "class_weights",
            torch.tensor(class_weights, dtype=torch.float32) if class_weights else None,
            persistent=False,
        )
        self.level = level
        self.label_smoothing = label_smoothing
        self.class_names = list(class_names) if class_names else None
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
        width = in_channels[level]
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
            labels = torch.full(
                logits.shape[:1], IGNORE_CLASS, dtype=torch.long, device=logits.device
            )
        valid = labels != IGNORE_CLASS
        bad = valid & ((labels < 0) | (labels >= logits.shape[1]))
        if bad.any():  # the last guard behind the readers' own checks
            ids = targets.get("image_ids")
            rows = bad.nonzero().flatten().tolist()
            which = f"image ids {[int(ids[i]) for i in rows][:10]}" if ids is not None else rows
            raise SampleError(
                f"image-level classes {sorted(set(labels[bad].tolist()))[:10]} of {which} are "
                f"not classes 0..{self.num_classes - 1} (num_classes {self.num_classes}) nor "
                f"{IGNORE_CLASS} (no class); check the dataset's class indices"
            )
        weights = None if self.class_weights is None else self.class_weights.to(logits.device)
        per_image = F.cross_entropy(  # [B]; with weights, torch's (the smoothed terms too)
            logits,
            labels.clamp(min=0),
            weight=weights,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        # Zero-weighted rather than skipped: every parameter stays in the graph (DDP-safe).
        per_image = per_image * valid
        if weights is not None:  # torch's weighted mean: over the images' class weights
            total = (weights[labels.clamp(min=0)] * valid).sum()
            return {"ce": per_image.sum() / total.clamp(min=1e-12)}
        return {"ce": per_image.sum() / valid.sum().clamp(min=1)}

    def postprocess(
        self,
        outputs: dict[str, Tensor],
        image_sizes: list[tuple[int, int]] | None = None,
        orig_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Any]]:
        """Per image: ``label`` (int), ``name`` (str or None), ``score`` (the label's
        probability, a float), ``top5`` (the five most probable classes, best first, each
        ``{"label", "name", "score"}``, as ``visionkit predict`` writes them in
        ``images.json``; Ultralytics' ``probs.top5``), ``scores`` (probabilities [C]) and
        ``names`` (the C class names, or None)."""
        return class_results(outputs["logits"].float().softmax(dim=1), self.class_names)


mlp = HEADS.variant(
    "mlp",
    ClassificationHead,
    "Global pool → (dropout → linear → ReLU) per hidden width → dropout → linear.",
    hidden_dims=(512,),
    dropout=0.2,
)
