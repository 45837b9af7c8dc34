"""The training sampler: an order that depends only on (seed, epoch), resumable mid-epoch.

:class:`EpochSampler` draws epoch ``e``'s order from a generator seeded with ``seed + e`` (a
permutation, or for a :class:`~visionkit.data.datasets.MixedDataset` a weighted draw with
replacement) and deals it out to the ranks as Lightning's ``DistributedSampler`` does; a
fresh epoch gives exactly ``DistributedSampler``'s order. Each index it yields is a
:class:`SampleKey` carrying ``(seed, epoch, draw)``, the keys
:class:`~visionkit.data.datasets.TransformedDataset` seeds that sample's augmentations from.
No random state is read: not torch's generator, not a loader worker's, so the order and the
augmentations are the same with any number of loader workers and after any resume.

:class:`~visionkit.engine.datamodule.ResumableLoader` saves how many draws of the epoch were
consumed in every checkpoint (Lightning stores a loader's ``state_dict`` and restores it when
a run resumes mid-epoch); :meth:`EpochSampler.resume_at` then makes the next pass skip them.

This module does not import Lightning (a spawned loader worker unpickles :class:`SampleKey`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DistributedSampler

logger = logging.getLogger(__name__)


class SampleKey(int):
    """A dataset index (an ``int``) that carries the keys its sample's augmentations are seeded
    from: ``seed_keys = (seed, epoch, draw)``, ``draw`` being the sample's place in the epoch's
    global order (unique across ranks, so no two ranks share augmentations), and ``mixing``:
    whether its multi-image steps (MixUp, Mosaic, ...) may apply (``data.close_mixing``)."""

    seed_keys: tuple[int, ...]
    mixing: bool

    def __new__(cls, index: int, seed_keys: Sequence[int], mixing: bool = True) -> SampleKey:
        key = super().__new__(cls, index)
        key.seed_keys = tuple(int(k) for k in seed_keys)
        key.mixing = bool(mixing)
        return key

    def __reduce__(self) -> tuple[Any, ...]:  # to loader workers, through their index queue
        return (SampleKey, (int(self), self.seed_keys, self.mixing))


class EpochSampler(DistributedSampler):
    """This rank's share of epoch ``epoch``'s order, from draw :attr:`start` of the epoch on.

    A ``DistributedSampler`` (so Lightning uses it as it is under DDP instead of wrapping it)
    whose order is a function of ``(seed, epoch)`` alone, and that can skip the draws that a
    resumed run already trained on (:meth:`resume_at`).

    Args:
        dataset: what is sampled (only its length is read).
        seed: the run's seed.
        rank: this process's global rank.
        world_size: the number of processes.
        weights: per-sample weights: an epoch is ``len(dataset)`` draws with replacement in
            proportion to them (a mix's ``sample_weights()``); default: a permutation.
        batch_size: images per batch of the loader it feeds (:meth:`close_mixing_at` reads
            which batch, and so which step, a draw goes to).
    """

    def __init__(
        self,
        dataset: Any,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        weights: Sequence[float] | None = None,
        batch_size: int = 1,
    ) -> None:
        super().__init__(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=False
        )
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.batch_size = int(batch_size)
        self._closing: tuple[int, int, int] | None = None  # close_mixing_at's arguments
        self.closed = False  # a draw has been marked unmixed
        self.iter_epoch = 0  # the epoch and first draw of the pass that ran last
        self.iter_start = 0
        self._resume: tuple[int, int, str] | None = None

    def order(self, epoch: int) -> list[int]:
        """Epoch ``epoch``'s global order of dataset indices (every rank's draws)."""
        g = torch.Generator()
        g.manual_seed(self.seed + epoch)
        n = len(self.dataset)
        if self.weights is None:
            return torch.randperm(n, generator=g).tolist()
        return torch.multinomial(self.weights, n, replacement=True, generator=g).tolist()

    def resume_at(self, epoch: int, draws: int, changed: str = "") -> None:
        """Make the next pass over epoch ``epoch`` start after its first ``draws`` draws (a
        pass over another epoch, e.g. when the checkpoint was written after the epoch's last
        batch, starts at its beginning). ``changed``: what differs from the run that
        consumed those draws (``"batch_size 16 -> 8"``), said in a warning when the pass
        does resume mid-epoch."""
        self._resume = (int(epoch), int(draws), changed)

    def close_mixing_at(self, step: int, batches_per_epoch: int, accumulate: int = 1) -> int:
        """Mark the draws trained on at optimiser step ``step`` or later as not to be mixed
        (:attr:`SampleKey.mixing` false: ``data.close_mixing``), an epoch being
        ``batches_per_epoch`` batches and a step ``accumulate`` of them (Lightning steps at the
        last batch of an epoch too). Read at every draw, so a later call moves the point, but
        never later once a draw has been marked unmixed (:attr:`closed`: mixing, once off,
        stays off). Returns the point in force."""
        if self._closing is not None and self.closed:
            step = min(int(step), self._closing[0])
        self._closing = (int(step), max(1, int(batches_per_epoch)), max(1, int(accumulate)))
        return self._closing[0]

    def mixing(self, epoch: int, draw: int) -> bool:
        """Whether draw ``draw`` of epoch ``epoch`` is trained on before the step set by
        :meth:`close_mixing_at` (always, before a call).

        >>> sampler = EpochSampler(range(10), seed=0, batch_size=2)  # 5 batches an epoch
        >>> sampler.close_mixing_at(7, batches_per_epoch=5)  # the point in force
        7
        >>> [sampler.mixing(1, draw) for draw in (3, 4, 5)]  # batches 6, 7 and 7 of the run
        [True, False, False]
        """
        if self._closing is None:
            return True
        step, batches, accumulate = self._closing
        batch = draw // (self.batch_size * self.num_replicas)  # this epoch's batch
        mixed = epoch * math.ceil(batches / accumulate) + batch // accumulate < step
        self.closed = self.closed or not mixed
        return mixed

    def __iter__(self) -> Iterator[int]:
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = min(self._resume[1], len(self.dataset))
            if self._resume[2] and start < len(self.dataset):
                logger.warning(
                    "resume: the checkpoint was written in the middle of epoch %d (%d samples "
                    "drawn) and since then %s changed: the rest of that epoch is not exactly "
                    "the interrupted run's (it goes on from draw %d of this run's order for "
                    "the epoch, in other batches)",
                    self.epoch,
                    start,
                    self._resume[2],
                    start,
                )
        self._resume = None
        self.iter_epoch, self.iter_start = self.epoch, start
        order = self.order(self.epoch)
        places = list(range(start, len(order)))
        # pad to a multiple of the number of ranks by repeating from the front, as
        # DistributedSampler does (every rank runs as many batches)
        total = math.ceil(len(places) / self.num_replicas) * self.num_replicas
        if places:
            places = (places * math.ceil(total / len(places)))[:total]
        seed = self.seed % 2**63
        for j in range(self.rank, total, self.num_replicas):
            # a padded repeat gets its own draw number (>= len(order)): its own augmentations
            draw = start + j
            yield SampleKey(
                order[places[j]], (seed, self.epoch, draw), self.mixing(self.epoch, draw)
            )
