"""Class-balanced training batches for metric learning: P identities × K images each.

``data.sampler: {p: 8, k: 4}`` makes every training batch hold ``k`` images of each of ``p``
different identities, so that ``supcon`` / ``triplet`` losses find positives and hard
negatives in every batch (and ArcFace / CosFace see balanced identities). Like
:class:`~visionkit.engine.sampling.EpochSampler`, whose subclass it is, epoch ``e``'s order is
a function of ``(seed, e)`` alone: resumable mid-epoch, the same with any number of loader
workers, and dealt out to the ranks so that each rank's batch is itself P × K.

An epoch is ``len(dataset) // (p · k · world_size)`` batches per rank (at least one).
Identities are taken in a shuffled order, refilled when used up; each identity's images in a
shuffled order, refilled when used up (an identity with fewer than ``k`` images repeats some).
Identities with a single image are left out when at least ``p`` others have two or more.

This module does not import Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from visionkit.engine.sampling import EpochSampler
from visionkit.errors import ConfigError


def identities_of(dataset: Any) -> list[int]:
    """The identity (image-level label) of every sample of ``dataset``, read without decoding.

    Raises:
        ConfigError: the dataset cannot say (only the ``identities`` and ``folder`` readers
            know their labels without reading the images).
    """
    if hasattr(dataset, "identities"):
        return list(dataset.identities())
    items = getattr(dataset, "items", None)
    if isinstance(items, list) and items and isinstance(items[0], tuple) and len(items[0]) == 2:
        return [int(label) for _, label in items]
    raise ConfigError(
        "data.sampler: the P x K identity sampler needs a training set whose identities are "
        f"known without decoding its images (format: identities or folder), got "
        f"{type(dataset).__name__}; remove data.sampler or change data.train.format"
    )


class IdentityBatchSampler(EpochSampler):
    """This rank's share of epoch ``epoch``'s P × K order (module docstring).

    Args:
        dataset: what is sampled (its length and identities are read).
        seed: the run's seed.
        rank: this process's global rank.
        world_size: the number of processes.
        p: identities per batch.
        k: images per identity in a batch.
        identities: the identity of each sample (default: :func:`identities_of`).

    Raises:
        ConfigError: fewer than ``p`` identities.
    """

    def __init__(
        self,
        dataset: Any,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        p: int = 8,
        k: int = 4,
        identities: Sequence[int] | None = None,
    ) -> None:
        super().__init__(dataset, seed, rank, world_size)
        labels = np.asarray(identities if identities is not None else identities_of(dataset))
        groups = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
        several = {c: g for c, g in groups.items() if len(g) > 1}
        self.groups = several if len(several) >= p else groups
        if len(self.groups) < p:
            raise ConfigError(
                f"data.sampler.p: {p} identities per batch, but the training set has "
                f"{len(self.groups)} identities; lower data.sampler.p"
            )
        self.p, self.k = int(p), int(k)
        self.batch_size = self.p * self.k
        self.steps = max(1, len(dataset) // (self.batch_size * self.num_replicas))
        self.num_samples = self.steps * self.batch_size
        self.total_size = self.num_samples * self.num_replicas

    def order(self, epoch: int) -> list[int]:
        """Epoch ``epoch``'s global order: for each step, the ranks' P × K batches
        interleaved (rank ``r`` takes places ``r, r + W, ...``, as the parent deals them)."""
        rng = np.random.default_rng([self.seed % 2**63, epoch, 7])
        names = sorted(self.groups)
        queue: list[int] = []
        pools: dict[int, list[int]] = {c: [] for c in names}

        def next_identities() -> list[int]:
            chosen: list[int] = []
            while len(chosen) < self.p:
                fresh = [c for c in queue if c not in chosen]
                if not fresh:  # refilled; one already in this batch waits for the next
                    queue.extend(int(names[i]) for i in rng.permutation(len(names)))
                    continue
                queue.remove(fresh[0])
                chosen.append(fresh[0])
            return chosen

        def next_images(c: int) -> list[int]:
            out = []
            for _ in range(self.k):
                if not pools[c]:
                    pools[c] = [int(i) for i in rng.permutation(self.groups[c])]
                out.append(pools[c].pop(0))
            return out

        order: list[int] = []
        for _ in range(self.steps):
            blocks = [
                [i for c in next_identities() for i in next_images(c)]
                for _ in range(self.num_replicas)
            ]
            order += [
                blocks[r][j] for j in range(self.batch_size) for r in range(self.num_replicas)
            ]
        return order

    def __len__(self) -> int:
        return self.num_samples
