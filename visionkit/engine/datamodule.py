"""The ``LightningDataModule``: loaders over already built datasets and pipelines.

The datasets and pipelines come from :mod:`visionkit.build` (``build_datasets``,
``build_pipelines``); the Lightning-free dataset wrappers from :mod:`visionkit.data.datasets`.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from visionkit.data.batch import collate
from visionkit.data.datasets import MixedDataset, TransformedDataset, val_sets
from visionkit.data.sample_cache import LOADER_SHARE, SampleCache
from visionkit.engine.distributed import gather_objects
from visionkit.engine.identity_sampling import IdentityBatchSampler
from visionkit.engine.sampling import EpochSampler
from visionkit.errors import DataError

logger = logging.getLogger(__name__)


def unpadded_sampler(dataset: Any, rank: int, world_size: int) -> UnrepeatedDistributedSampler:
    """Rank ``rank`` of ``world_size``'s share of a validation set: indices ``rank, rank +
    world_size, ...``, in order, no index on two ranks and none repeated (a plain
    ``DistributedSampler`` pads the last ranks with repeats, which evaluators would count twice).

    Raises:
        DataError: the set has fewer images than there are processes (a rank with no batch
            would skip the validation epoch that the others wait in).
    """
    if len(dataset) < world_size:
        raise DataError(
            f"the validation set has {len(dataset)} images, fewer than the {world_size} "
            "processes; evaluate on fewer devices (trainer.devices=...)"
        )
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False
    )


class SkipCountingLoader(DataLoader):
    """A ``DataLoader`` that takes the ``"skipped"`` records (images a reader replaced under
    ``on_bad_image: skip``) out of each batch and keeps the files of its current pass in
    :attr:`skipped`, which :class:`SkippedImages` reports at the epoch's end."""

    skipped: tuple[str, ...] = ()
    reported = 0  # how many of ``skipped`` were reported (a run stopped: the rest)

    def __iter__(self):
        self.skipped, self.reported = [], 0
        for batch in super().__iter__():
            if isinstance(batch, dict):
                self.skipped += [str(r["path"]) for r in batch.pop("skipped", None) or []]
            yield batch


class SkippedImages(L.Callback):
    """At the end of each training and validation epoch, one log line of the images that the
    loaders (:class:`SkipCountingLoader`) skipped under ``on_bad_image: skip``, counted over
    every process: each rank reads its own share of the data (each logged its own count).
    A run that stops before an epoch's end (an exception, Ctrl-C, SIGTERM) says what its
    loaders had skipped and not yet reported; each rank its own, as the others may not be
    there to gather."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.report(trainer, trainer.train_dataloader)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.report(trainer, trainer.val_dataloaders)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        loaders = [trainer.train_dataloader, *_listed(trainer.val_dataloaders)]
        skipped = [path for loader in loaders for path in _unreported(loader)]
        if skipped:
            rank = f" (rank {trainer.global_rank})" if trainer.world_size > 1 else ""
            _say(skipped, f"before the run stopped{rank}")

    @staticmethod
    def report(trainer: L.Trainer, loaders: Any) -> None:
        """Gathers the ``loaders``' skipped files from every rank (a collective call) and
        logs them on rank 0."""
        skipped = [path for loader in _listed(loaders) for path in _unreported(loader)]
        skipped = [path for part in gather_objects(skipped) for path in part]
        if skipped and trainer.is_global_zero:
            _say(skipped, "this epoch")


def _listed(loaders: Any) -> list[Any]:
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


def _unreported(loader: Any) -> list[str]:
    """The files ``loader`` skipped in its current pass since the last report, now reported."""
    skipped = list(getattr(loader, "skipped", ()))
    if not isinstance(loader, SkipCountingLoader):
        return skipped
    fresh, loader.reported = skipped[loader.reported :], len(skipped)
    return fresh


def _say(skipped: list[str], when: str) -> None:
    files = sorted(set(skipped))
    logger.warning(
        "on_bad_image: skip: %d unreadable images were skipped %s (%d files: %s%s)",
        len(skipped),
        when,
        len(files),
        ", ".join(files[:10]),
        ", ..." if len(files) > 10 else "",
    )


class ResumableLoader(SkipCountingLoader):
    """The training loader: an :class:`~visionkit.engine.sampling.EpochSampler`'s batches, and
    a ``state_dict`` (how many draws of which epoch were consumed) that Lightning saves in
    every checkpoint and, when a run resumes mid-epoch, gives back to :meth:`load_state_dict`:
    the pass that follows skips those draws, so the rest of the epoch is the uninterrupted
    run's, sample for sample. The state is the same on every rank (each rank has consumed as
    many batches), so rank 0's, the one Lightning writes, serves them all."""

    sampler: EpochSampler

    def __iter__(self):
        self._batches = 0
        for batch in super().__iter__():
            self._batches += 1  # counted before the batch is trained on, as a checkpoint sees it
            yield batch

    def state_dict(self) -> dict[str, Any]:
        sampler = self.sampler
        if not isinstance(sampler, EpochSampler):  # Lightning replaced it (overfit_batches)
            return {}
        per_rank = min(getattr(self, "_batches", 0) * int(self.batch_size), len(sampler))
        return {
            "epoch": sampler.iter_epoch,
            "draws": sampler.iter_start + per_rank * sampler.num_replicas,
            "dataset_size": len(sampler.dataset),
            "world_size": sampler.num_replicas,
            "batch_size": int(self.batch_size),
            "seed": sampler.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sampler = self.sampler
        if not state or not isinstance(sampler, EpochSampler):
            return
        now = {
            "dataset_size": len(sampler.dataset),
            "world_size": sampler.num_replicas,
            "batch_size": int(self.batch_size),
            "seed": sampler.seed,
        }
        changed = [f"{k} {state[k]} -> {v}" for k, v in now.items() if k in state and state[k] != v]
        sampler.resume_at(state["epoch"], state["draws"], changed=", ".join(changed))


def ignore_sigint(worker_id: int = 0) -> None:
    """A loader worker ignores SIGINT: Ctrl-C in a terminal reaches every process of the group,
    and a worker that died of it would fail the batch or the validation that the main process
    still runs before it stops (:class:`~visionkit.engine.interrupt.CtrlC`); the main process
    stops its workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def init_training_worker(worker_id: int, rank: int) -> None:
    """A training loader worker: ignores SIGINT (:func:`ignore_sigint`), then seeds torch,
    NumPy and ``random`` per (rank, worker) as Lightning does."""
    ignore_sigint()
    pl_worker_init_function(worker_id, rank=rank)


class VisionDataModule(L.LightningDataModule):
    """Owns the datasets and pipelines of one config.

    The training loader is a :class:`ResumableLoader` over an
    :class:`~visionkit.engine.sampling.EpochSampler`: epoch ``e``'s order is a function of
    ``(seed, e)`` alone (under DDP the ranks take disjoint parts of it, as Lightning's
    ``DistributedSampler`` would deal them; a mix is drawn by weight, with replacement), each
    sample's augmentations are seeded from ``(seed, e, draw)``, and a run resumed mid-epoch goes
    on with the draws it had not trained on; so order and augmentations do not depend on the
    number of loader workers or on any random state.
    Validation loaders get an :class:`~lightning.pytorch.overrides.distributed.
    UnrepeatedDistributedSampler` from here instead: rank ``r`` of ``W`` reads images ``r, r + W,
    ...`` with no padding, so every image is evaluated exactly once and the metrics equal those
    of one process (the ranks may run one batch more or less).

    Args:
        datasets: the splits: ``train`` (one dataset) and ``val`` (one, or a name → dataset
            dict), as :func:`visionkit.build.build_datasets` makes them.
        pipelines: the ``train`` and ``val`` albumentations pipelines
            (:func:`visionkit.build.build_pipelines`).
        batch_size: images per training batch.
        val_batch_size: images per validation batch (default: ``batch_size``).
        num_workers: loader worker processes (persistent when more than 0).
        pin_memory: the loaders' ``pin_memory``.
        cache: each loader process keeps the Samples it read (``data.cache: ram``,
            :class:`~visionkit.data.sample_cache.SampleCache`).
        drop: Sample keys left out before the pipeline (:func:`visionkit.build.dropped_keys`:
            the readers' boxes, their labels and instance masks when no head learns from
            boxes; a classifier's loader then runs several times faster).
        seed: the run's seed: the training order and augmentations are drawn from it.
        sampler: ``{"p": P, "k": K}`` (``data.sampler``): training batches of P identities ×
            K images (:class:`~visionkit.engine.identity_sampling.IdentityBatchSampler`;
            the training batch size is then P × K).
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        pipelines: Mapping[str, Any],
        batch_size: int,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        cache: bool = False,
        drop: Sequence[str] = (),
        seed: int = 0,
        sampler: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.datasets = dict(datasets)
        self.pipelines = dict(pipelines)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.cache = cache
        self.drop = tuple(drop)
        self.seed = int(seed)
        self.sampler = dict(sampler) if sampler else None

    def _loader(self, dataset: Any, split: str) -> DataLoader:
        train = split == "train"
        rank, world_size = self._rank_and_world_size()
        transformed = TransformedDataset(
            dataset,
            self.pipelines[split],
            reseed=train,
            rank=rank,
            drop=self.drop,
            cache=self._cache(split, world_size) if self.cache else None,
        )
        common = {
            "num_workers": self.num_workers,
            "collate_fn": partial(collate),
            "pin_memory": self.pin_memory,
            "persistent_workers": self.num_workers > 0,
            "drop_last": False,
        }
        if not train:
            sampler = unpadded_sampler(dataset, rank, world_size) if world_size > 1 else None
            return SkipCountingLoader(
                transformed,
                batch_size=self.val_batch_size,
                sampler=sampler,
                worker_init_fn=ignore_sigint,
                **common,
            )
        weights = dataset.sample_weights() if isinstance(dataset, MixedDataset) else None
        sampler = EpochSampler(
            dataset, self.seed, rank, world_size, weights=weights, batch_size=self.batch_size
        )
        if self.sampler:
            sampler = IdentityBatchSampler(dataset, self.seed, rank, world_size, **self.sampler)
        return ResumableLoader(
            transformed,
            batch_size=getattr(sampler, "batch_size", self.batch_size),
            sampler=sampler,
            worker_init_fn=partial(init_training_worker, rank=rank),
            # the workers' base seed comes from here, not from torch's global generator, which
            # a loader would otherwise draw from at every pass (and so shift a resumed run's)
            generator=torch.Generator().manual_seed(self.seed),
            **common,
        )

    def _cache(self, split: str, world_size: int) -> SampleCache:
        """A loader's cache: the training loaders of this machine's ranks share
        :data:`LOADER_SHARE` of the memory, the validation sets' another."""
        nodes = int(getattr(getattr(self, "trainer", None), "num_nodes", 1) or 1)
        local = int(os.environ.get("LOCAL_WORLD_SIZE") or 0) or max(1, world_size // nodes)
        sets = 1 if split == "train" else max(1, len(val_sets(self.datasets.get("val"))))
        return SampleCache(share=LOADER_SHARE / (local * sets))

    def _rank_and_world_size(self) -> tuple[int, int]:
        """This process's global rank and the number of processes (``(0, 1)`` outside a
        distributed run)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.global_rank), int(trainer.world_size)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def train_dataloader(self) -> DataLoader:
        if "train" not in self.datasets:
            raise DataError("no data.train dataset is configured")
        return self._loader(self.datasets["train"], "train")

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """One loader per validation set (a list when several are named)."""
        sets = val_sets(self.datasets.get("val"))
        if not sets:
            raise DataError("no data.val dataset is configured")
        loaders = [self._loader(dataset, "val") for dataset in sets.values()]
        return loaders if len(loaders) > 1 else loaders[0]
