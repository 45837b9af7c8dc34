"""The ``LightningDataModule``: loaders over already built datasets and pipelines.

The datasets and pipelines come from :mod:`visionkit.build` (``build_datasets``,
``build_pipelines``); the Lightning-free dataset wrappers from :mod:`visionkit.data.datasets`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, WeightedRandomSampler

from visionkit.data.batch import collate
from visionkit.data.datasets import MixedDataset, TransformedDataset, val_sets
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
    ``on_bad_image: skip``) out of each batch, and logs their count and files when the epoch's
    iteration ends."""

    def __iter__(self):
        skipped: list[dict[str, Any]] = []
        try:
            for batch in super().__iter__():
                if isinstance(batch, dict):
                    skipped += batch.pop("skipped", None) or []
                yield batch
        finally:
            if skipped:
                files = sorted({str(r["path"]) for r in skipped})
                logger.warning(
                    "on_bad_image: skip: %d unreadable images were skipped this epoch "
                    "(%d files: %s%s)",
                    len(skipped),
                    len(files),
                    ", ".join(files[:10]),
                    ", ..." if len(files) > 10 else "",
                )


class VisionDataModule(L.LightningDataModule):
    """Owns the datasets and pipelines of one config.

    Under several processes (DDP), Lightning gives the training loader a
    ``DistributedSampler`` (shuffled with the run's seed, the same on every rank, so the ranks
    draw disjoint parts of one permutation; a mix's weighted sampler is wrapped the same way).
    Validation loaders get an :class:`~lightning.pytorch.overrides.distributed.
    UnrepeatedDistributedSampler` from here instead: rank ``r`` of ``W`` reads images ``r, r + W,
    ...`` with no padding, so every image is evaluated exactly once and the metrics equal those
    of one process (the ranks may run one batch more or less). The training augmentations are
    seeded per rank (and per loader worker) from the run's seed, so the ranks do not draw the
    same flips.

    Args:
        datasets: the splits: ``train`` (one dataset) and ``val`` (one, or a name → dataset
            dict), as :func:`visionkit.build.build_datasets` makes them.
        pipelines: the ``train`` and ``val`` albumentations pipelines
            (:func:`visionkit.build.build_pipelines`).
        batch_size: images per training batch.
        val_batch_size: images per validation batch (default: ``batch_size``).
        num_workers: loader worker processes (persistent when more than 0).
        pin_memory: the loaders' ``pin_memory``.
        drop: Sample keys left out before the pipeline (:func:`visionkit.build.dropped_keys`:
            the readers' boxes, their labels and instance masks when no head learns from
            boxes; a classifier's loader then runs several times faster).
    """

    def __init__(
        self,
        datasets: Mapping[str, Any],
        pipelines: Mapping[str, Any],
        batch_size: int,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.datasets = dict(datasets)
        self.pipelines = dict(pipelines)
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.drop = tuple(drop)

    def _loader(self, dataset: Any, split: str) -> DataLoader:
        train = split == "train"
        batch_size = self.batch_size if train else self.val_batch_size
        sampler = None
        rank, world_size = self._rank_and_world_size()
        worker_init_fn = None
        if train and isinstance(dataset, MixedDataset):
            sampler = WeightedRandomSampler(
                dataset.sample_weights(), num_samples=len(dataset), replacement=True
            )
        if train:  # torch / numpy / random seeded per (rank, worker), as Lightning does
            worker_init_fn = partial(pl_worker_init_function, rank=rank)
        elif world_size > 1:
            sampler = unpadded_sampler(dataset, rank, world_size)
        workers = self.num_workers
        return SkipCountingLoader(
            TransformedDataset(
                dataset, self.pipelines[split], reseed=train, rank=rank, drop=self.drop
            ),
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=workers,
            collate_fn=partial(collate),
            pin_memory=self.pin_memory,
            persistent_workers=workers > 0,
            worker_init_fn=worker_init_fn,
            drop_last=False,
        )

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
