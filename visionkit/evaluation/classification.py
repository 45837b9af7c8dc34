"""Classification metrics (top-1, top-5) from torchmetrics, synced across processes.

>>> import torch
>>> ev = ClassificationEvaluator("cls", num_classes=3)
>>> ev.process({"class": torch.tensor([0, 2])},
...            [{"scores": torch.tensor([.8, .1, .1])}, {"scores": torch.tensor([.1, .8, .1])}])
>>> ev.evaluate()
{'cls/top1': 0.5}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from visionkit.data.transforms import IGNORE_CLASS


class ClassificationEvaluator(nn.Module):
    """Micro-averaged top-1 (and top-5 when there are more than 5 classes) accuracy.

    Images without an image-level label (``class == -1``) are not counted.
    """

    def __init__(self, head: str, num_classes: int) -> None:
        super().__init__()
        self.head = head
        self.metrics = nn.ModuleDict(
            {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
        )
        if num_classes > 5:
            self.metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()

    def process(self, batch: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
        """``predictions``: this head's per-image dicts, each with ``scores`` [C]."""
        labels = batch.get("class")
        if labels is None or not predictions:
            return
        scores = torch.stack([p["scores"] for p in predictions]).float()
        valid = labels != IGNORE_CLASS
        if valid.any():
            for metric in self.metrics.values():
                metric.update(scores[valid], labels[valid].to(scores.device))

    def evaluate(self) -> dict[str, float]:
        out = {}
        for name, metric in self.metrics.items():
            if metric.update_called:
                out[f"{self.head}/{name}"] = float(metric.compute())
        return out
