"""Classification metrics (top-1, top-5): the share of labelled images whose class is among the
``k`` highest scores, gathered across processes with each image id counted once.

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
import torch.distributed as dist
from torch import nn

from visionkit.data.batch import IGNORE_CLASS


class ClassificationEvaluator(nn.Module):
    """Micro-averaged top-1 (and top-5 when there are more than 5 classes) accuracy.

    Images without an image-level label (``class == -1``) are not counted. Each counted image
    is kept as one record ``(image_id, hit@1, hit@5)``; :meth:`evaluate` gathers the records of
    every process and counts an image id once (a padding ``DistributedSampler`` repeats images
    on the last ranks), so several processes give exactly the numbers of one. This replaces
    torchmetrics' ``MulticlassAccuracy``, whose summed states cannot tell a repeated image
    apart (the hit is the same test: the label is among ``torch.topk(scores, k)``).

    Attributes:
        records: this process's ``(image_id or None, hits)`` per counted image, ``hits`` a tuple
            of bools in the order of :attr:`ks`; a batch without ``image_ids`` gives ``None``
            ids, which are never merged.
    """

    def __init__(self, head: str, num_classes: int) -> None:
        super().__init__()
        self.head = head
        self.num_classes = num_classes
        self.ks = (1, 5) if num_classes > 5 else (1,)
        self.records: list[tuple[int | None, tuple[bool, ...]]] = []

    def reset(self) -> None:
        self.records = []

    @torch.no_grad()
    def process(self, batch: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
        """``predictions``: this head's per-image dicts, each with ``scores`` [C]."""
        labels = batch.get("class")
        if labels is None or not predictions:
            return
        scores = torch.stack([p["scores"] for p in predictions]).float()  # [B, C]
        labels = torch.as_tensor(labels).to(scores.device).reshape(-1)  # [B]
        top = scores.topk(max(self.ks), dim=1).indices  # [B, k]
        hits = [(top[:, :k] == labels[:, None]).any(1).tolist() for k in self.ks]
        ids = batch.get("image_ids")
        ids = [int(i) for i in ids.tolist()] if ids is not None else [None] * len(labels)
        for row, (image_id, label) in enumerate(zip(ids, labels.tolist(), strict=True)):
            if label != IGNORE_CLASS:
                self.records.append((image_id, tuple(bool(h[row]) for h in hits)))

    def gather(self) -> list[tuple[int | None, tuple[bool, ...]]]:
        """The records of every process (on every rank); an image id recorded on several
        processes keeps the records of the lowest rank that has it."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return list(self.records)
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self.records)
        owner: dict[int, int] = {}
        for rank, records in enumerate(parts):
            for image_id, _ in records:
                if image_id is not None:
                    owner.setdefault(image_id, rank)
        return [
            record
            for rank, records in enumerate(parts)
            for record in records
            if record[0] is None or owner[record[0]] == rank
        ]

    def evaluate(self) -> dict[str, float]:
        """``<head>/top1`` (and ``<head>/top5``); nothing when no process counted an image.
        A collective call under several processes: every rank must call it."""
        records = self.gather()
        if not records:
            return {}
        return {
            f"{self.head}/top{k}": sum(hits[j] for _, hits in records) / len(records)
            for j, k in enumerate(self.ks)
        }
