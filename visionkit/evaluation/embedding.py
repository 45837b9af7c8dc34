"""Embedding metrics: verification on pairs and retrieval over a gallery/query split (NumPy).

Verification asks "same identity?" of pairs of images by the cosine similarity of their
embeddings: ROC AUC, the true-accept rate at false-accept rates 1e-3 and 1e-2, and the best
accuracy with its threshold. The pairs are the dataset's own list when it has one (an
LFW-style ``pairs`` file of the ``identities`` reader), else every pair of the evaluated images
(or, for large sets, a fixed-seed sample of same and different pairs): deterministic, and on a
validation set of identities never seen in training they measure recognition of new people.

Retrieval splits each identity's images (in image id order) alternately into gallery and
queries; each query ranks the whole gallery: recall@k (a same-identity image among the k most
similar) and mAP (mean over queries of the average precision of its ranking).

>>> import numpy as np
>>> roc_auc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False]))
0.75
>>> tar_at_far(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False]), 0.1)
0.5
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from visionkit.data.batch import IGNORE_CLASS

logger = logging.getLogger(__name__)

#: Every pair of the evaluated images is scored up to this many pairs; above it, a fixed-seed
#: sample of :data:`SAMPLED_PAIRS` same-identity and as many different-identity pairs.
ALL_PAIRS_LIMIT = 500_000
SAMPLED_PAIRS = 50_000
#: The false-accept rates at which the true-accept rate is reported.
FARS = (1e-3, 1e-2)
#: The k of recall@k.
RECALL_KS = (1, 5, 10)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a
    random negative, ties counting one half (the Mann-Whitney U statistic, average ranks).
    ``nan`` without both positives and negatives."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank, ties averaged
    rank_sum = float(average_rank[inverse][positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def tar_at_far(scores: np.ndarray, positive: np.ndarray, far: float) -> float:
    """True-accept rate at a false-accept rate of at most ``far``: the threshold is the
    ``floor(far · n_neg) + 1``-th highest negative score, pairs scoring strictly above it are
    accepted (so at most ``floor(far · n_neg)`` negatives are); ``nan`` without both kinds."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    negatives = np.sort(scores[~positive])[::-1]
    if positive.sum() == 0 or len(negatives) == 0:
        return float("nan")
    allowed = int(np.floor(far * len(negatives)))
    if allowed >= len(negatives):
        return 1.0
    return float((scores[positive] > negatives[allowed]).mean())


def best_accuracy(scores: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """The best balanced accuracy (the mean of the true-accept and true-reject rates) of
    "same when score >= t" over every threshold, and that ``t`` (the lowest score still
    accepted; ``inf`` when accepting nothing is best). On a list with as many same as
    different pairs (LFW's) it is the plain accuracy; on every pair of a set, where different
    pairs are the vast majority, it is not swayed by them."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last pair of each run of equal scores
    true_accepts = np.cumsum(p)[last]  # accepting every score >= s
    false_accepts = np.cumsum(~p)[last]
    n_pos, n_neg = max(int(p.sum()), 1), max(int((~p).sum()), 1)
    balanced = np.r_[0.5, (true_accepts / n_pos + (n_neg - false_accepts) / n_neg) / 2]
    thresholds = np.r_[np.inf, s[last]]
    best = int(np.argmax(balanced))
    return float(balanced[best]), float(thresholds[best])


def make_pairs(
    labels: np.ndarray, limit: int = ALL_PAIRS_LIMIT, sampled: int = SAMPLED_PAIRS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``[P, 2]`` and whether each is a same-identity pair: every pair ``i < j``
    when there are at most ``limit``, else ``sampled`` same and ``sampled`` different pairs
    drawn with a fixed ``seed`` (with replacement)."""
    labels = np.asarray(labels)
    n = len(labels)
    if n * (n - 1) // 2 <= limit:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        groups = [g for g in groups if len(g) > 1]
        sizes = np.array([len(g) * (len(g) - 1) for g in groups], dtype=np.float64)
        picked = rng.choice(len(groups), size=sampled, p=sizes / sizes.sum()) if groups else []
        same = np.array([rng.choice(groups[g], 2, replace=False) for g in picked]).reshape(-1, 2)
        a, b = rng.integers(0, n, (2, 4 * sampled))
        keep = labels[a] != labels[b]
        diff = np.stack([a[keep], b[keep]], 1)[:sampled]
        pairs = np.concatenate([same, diff])
        i, j = pairs[:, 0], pairs[:, 1]
    return np.stack([i, j], 1), labels[i] == labels[j]


def verification_metrics(
    embeddings: np.ndarray, labels: np.ndarray, pairs: np.ndarray | None = None
) -> dict[str, float]:
    """``auc``, ``tar@far1e-3``, ``tar@far1e-2``, ``accuracy`` and ``threshold`` of the cosine
    similarities of ``pairs`` (index pairs; default :func:`make_pairs`)."""
    z = np.asarray(embeddings, dtype=np.float64)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(labels)
    if pairs is None:
        pairs, same = make_pairs(labels)
    else:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    scores = np.einsum("pd,pd->p", z[pairs[:, 0]], z[pairs[:, 1]])
    accuracy, threshold = best_accuracy(scores, same)
    metrics = {"auc": roc_auc(scores, same)}
    metrics.update(
        {f"tar@far{far:.0e}".replace("e-0", "e-"): tar_at_far(scores, same, far) for far in FARS}
    )
    metrics.update({"accuracy": accuracy, "threshold": threshold})
    return metrics


def gallery_query_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the gallery and of the queries: each identity's images, in order, go
    alternately to the gallery (1st, 3rd, ...) and to the queries (2nd, 4th, ...)."""
    labels = np.asarray(labels)
    seen: dict[Any, int] = {}
    gallery, queries = [], []
    for index, label in enumerate(labels.tolist()):
        place = seen.get(label, 0)
        seen[label] = place + 1
        (gallery if place % 2 == 0 else queries).append(index)
    return np.array(gallery, dtype=np.int64), np.array(queries, dtype=np.int64)


def retrieval_metrics(
    embeddings: np.ndarray, labels: np.ndarray, ks: Sequence[int] = RECALL_KS
) -> dict[str, float]:
    """``recall@k`` for each ``k`` and ``mAP`` of the queries against the gallery of
    :func:`gallery_query_split`, ranked by cosine similarity (ties keep gallery order).
    Nothing when no query has an image of its identity in the gallery."""
    z = np.asarray(embeddings, dtype=np.float64)
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(labels)
    gallery, queries = gallery_query_split(labels)
    if len(queries) == 0:
        return {}
    order = np.argsort(-(z[queries] @ z[gallery].T), axis=1, kind="stable")  # [Q, G]
    relevant = labels[gallery][order] == labels[queries][:, None]  # [Q, G] in rank order
    found = relevant.any(1)
    relevant = relevant[found]
    if len(relevant) == 0:
        return {}
    metrics = {f"recall@{k}": float(relevant[:, :k].any(1).mean()) for k in ks}
    hits = np.cumsum(relevant, axis=1)
    precision = hits / np.arange(1, relevant.shape[1] + 1)
    average_precision = (precision * relevant).sum(1) / relevant.sum(1)
    metrics["mAP"] = float(average_precision.mean())
    return metrics


def small_set_note(labels: np.ndarray, pairs: np.ndarray | None = None) -> str | None:
    """What a validation set of these identity ``labels`` (and ``pairs``, as for
    :func:`verification_metrics`) is too small to measure, or ``None``: ``recall@k`` with a
    gallery of at most k images is 1.0 whatever the embeddings, and a false-accept rate under
    one different pair in the set is measured with none allowed (``tar@far1e-3`` then equals
    ``tar@far1e-2`` below 100 different pairs)."""
    labels = np.asarray(labels)
    if len(labels) < 2:  # nothing measured (auc is nan): nothing to say of its size
        return None
    if pairs is None:
        total = len(labels) * (len(labels) - 1) // 2
        counts = np.unique(labels, return_counts=True)[1]
        same = int((counts * (counts - 1) // 2).sum())
        different = total - same if total <= ALL_PAIRS_LIMIT else SAMPLED_PAIRS
    else:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        different = int((labels[pairs[:, 0]] != labels[pairs[:, 1]]).sum())
    gallery = len(gallery_query_split(labels)[0])
    notes = []
    trivial = [f"recall@{k}" for k in RECALL_KS if k >= gallery]
    if trivial:
        notes.append(
            f"{' and '.join(trivial)} of a gallery of {gallery} images are 1.0 whatever the model"
        )
    unresolved = [far for far in FARS if far * different < 1]
    if unresolved and different:
        names = " and ".join(f"tar@far{far:.0e}".replace("e-0", "e-") for far in unresolved)
        notes.append(
            f"{different} different-identity pairs cannot resolve a false-accept rate of "
            f"{unresolved[0]:g} (it needs {round(1 / unresolved[0]):,}): {names} accept no "
            "different pair"
        )
    return "; ".join(notes) or None


class EmbeddingEvaluator(nn.Module):
    """Verification and retrieval metrics of an embedding head on one validation set.

    Keeps ``(image_id, identity, embedding)`` per labelled image; :meth:`evaluate` gathers
    every process's records (an image id once) and sorts them by image id, so the pairs and
    the gallery/query split do not depend on batching or the number of processes.

    Args:
        head: the metric prefix (``<head>/auc``, ...).
        dataset: the validation set. Its ``pairs`` (``(image_id, image_id)`` rows, the
            ``identities`` reader's ``pairs`` file) are used when it has them.
    """

    def __init__(self, head: str, dataset: Any = None) -> None:
        super().__init__()
        self.head = head
        self.pairs = getattr(dataset, "pairs", None)
        self.records: list[tuple[int | None, int, np.ndarray]] = []
        self.noted = False  # small_set_note logged (once)

    def reset(self) -> None:
        self.records = []

    @torch.no_grad()
    def process(self, batch: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
        """``predictions``: this head's per-image dicts, each with ``embedding`` [D]."""
        labels = batch.get("identity")
        if labels is None or not predictions:
            return
        labels = torch.as_tensor(labels).reshape(-1).tolist()
        ids = batch.get("image_ids")
        ids = [int(i) for i in ids.tolist()] if ids is not None else [None] * len(labels)
        for image_id, label, pred in zip(ids, labels, predictions, strict=True):
            if label != IGNORE_CLASS:
                vector = torch.as_tensor(pred["embedding"]).float().cpu().numpy()
                self.records.append((image_id, int(label), vector))

    def gather(self) -> list[tuple[int | None, int, np.ndarray]]:
        """Every process's records, an image id kept once, sorted by image id."""
        records = list(self.records)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, self.records)
            records = [r for part in parts for r in part]
        seen: set[int] = set()
        unique = []
        for record in records:
            if record[0] is None or record[0] not in seen:
                unique.append(record)
                if record[0] is not None:
                    seen.add(record[0])
        return sorted(unique, key=lambda r: (r[0] is None, r[0] or 0))

    def evaluate(self) -> dict[str, float]:
        """``<head>/auc``, ``/tar@far1e-3``, ``/tar@far1e-2``, ``/accuracy``, ``/threshold``,
        ``/recall@1``, ``/recall@5``, ``/recall@10``, ``/mAP``; metrics that need two
        identities (or two images of one) are left out when the set lacks them, except the
        main metric ``auc``, then ``nan`` (the checkpoint's monitor must exist)."""
        records = self.gather()
        if len(records) < 2:
            return {f"{self.head}/auc": float("nan")}
        z = np.stack([r[2] for r in records])
        labels = np.array([r[1] for r in records])
        pairs = None
        if self.pairs is not None:
            place = {r[0]: i for i, r in enumerate(records)}
            rows = [(place[a], place[b]) for a, b in self.pairs if a in place and b in place]
            pairs = np.array(rows, dtype=np.int64).reshape(-1, 2)
        if not self.noted:
            self.noted = True
            note = small_set_note(labels, pairs)
            if note:
                logger.warning(
                    "%s: a small validation set (%d images): %s", self.head, len(z), note
                )
        metrics = {**verification_metrics(z, labels, pairs), **retrieval_metrics(z, labels)}
        return {f"{self.head}/{k}": v for k, v in metrics.items() if np.isfinite(v) or k == "auc"}
