"""Classification metrics (top-1, top-5): the share of labelled images whose class is among the
``k`` highest scores, gathered across processes with each image id counted once; per class,
the images, top-1 recall and precision (:meth:`ClassificationEvaluator.per_class`).

>>> import torch
>>> ev = ClassificationEvaluator("cls", num_classes=3)
>>> ev.process({"class": torch.tensor([0, 2])},
...            [{"scores": torch.tensor([.8, .1, .1])}, {"scores": torch.tensor([.1, .8, .1])}])
>>> ev.evaluate()
{'cls/top1': 0.5}
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from visionkit.data.batch import IGNORE_CLASS

#: One counted image: ``(image_id or None, hit@k per k, (label, top-1 class))``.
Record = tuple[int | None, tuple[bool, ...], tuple[int, int]]


class ClassificationEvaluator(nn.Module):
    """Micro-averaged top-1 (and top-5 when there are more than 5 classes) accuracy.

    Images without an image-level label (``class == -1``) are not counted. Each counted image
    is kept as one record ``(image_id, hits, (label, top-1 class))``; :meth:`evaluate` gathers
    the records of every process and counts an image id once (a padding ``DistributedSampler``
    repeats images on the last ranks), so several processes give exactly the numbers of one. This replaces
    torchmetrics' ``MulticlassAccuracy``, whose summed states cannot tell a repeated image
    apart (the hit is the same test: the label is among ``torch.topk(scores, k)``).

    Attributes:
        records: this process's ``(image_id or None, hits, (label, predicted))`` per counted
            image, ``hits`` a tuple of bools in the order of :attr:`ks`, ``predicted`` the
            top-1 class; a batch without ``image_ids`` gives ``None`` ids, which are never
            merged.
        confusion: after :meth:`evaluate`, the ``[C, C]`` counts of (true, predicted top-1)
            class over every process's images (``None`` before), read by :meth:`per_class`.
    """

    def __init__(self, head: str, num_classes: int, class_names: list[str] | None = None) -> None:
        super().__init__()
        self.head = head
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else None
        self.ks = (1, 5) if num_classes > 5 else (1,)
        self.records: list[Record] = []
        self.confusion: torch.Tensor | None = None

    def reset(self) -> None:
        self.records = []
        self.confusion = None

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
        predicted = top[:, 0].tolist()
        for row, (image_id, label) in enumerate(zip(ids, labels.tolist(), strict=True)):
            if label != IGNORE_CLASS:
                hit = tuple(bool(h[row]) for h in hits)
                self.records.append((image_id, hit, (int(label), int(predicted[row]))))

    def gather(self) -> list[Record]:
        """The records of every process (on every rank); an image id recorded on several
        processes keeps the records of the lowest rank that has it."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return list(self.records)
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self.records)
        owner: dict[int, int] = {}
        for rank, records in enumerate(parts):
            for image_id, *_ in records:
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
        pairs = torch.tensor([pair for *_, pair in records])  # [N, 2]: label, top-1 class
        c = self.num_classes
        self.confusion = torch.bincount(pairs[:, 0] * c + pairs[:, 1], minlength=c * c).view(c, c)
        return {
            f"{self.head}/top{k}": sum(hits[j] for _, hits, _ in records) / len(records)
            for j, k in enumerate(self.ks)
        }

    def per_class(self) -> list[dict[str, Any]]:
        """Per class of the last :meth:`evaluate`: ``class``, ``name``, ``images`` (labelled
        with it), ``recall`` (their share whose top-1 class is it: the class's top-1 accuracy)
        and ``precision`` (of the images predicted as it, the share labelled with it); ``nan``
        where nothing was labelled / predicted as the class. Empty before :meth:`evaluate`.

        >>> ev = ClassificationEvaluator("cls", num_classes=2, class_names=["cat", "dog"])
        >>> ev.process({"class": torch.tensor([0, 0, 1])}, [{"scores": torch.tensor(s)}
        ...            for s in ([.9, .1], [.2, .8], [.3, .7])])
        >>> ev.evaluate()
        {'cls/top1': 0.6666666666666666}
        >>> [(r["name"], r["images"], r["recall"], r["precision"]) for r in ev.per_class()]
        [('cat', 2, 0.5, 1.0), ('dog', 1, 1.0, 0.5)]
        """
        if self.confusion is None:
            return []
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        truth, predicted, hits = self.confusion.sum(1), self.confusion.sum(0), self.confusion.diag()
        return [
            {
                "class": c,
                "name": names[c],
                "images": int(truth[c]),
                "recall": _share(hits[c], truth[c]),
                "precision": _share(hits[c], predicted[c]),
            }
            for c in range(self.num_classes)
        ]


def _share(part: torch.Tensor, whole: torch.Tensor) -> float:
    return float(part) / float(whole) if int(whole) > 0 else math.nan
