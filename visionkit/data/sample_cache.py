"""``data.cache: ram`` (Ultralytics' ``cache=ram``): each loader process keeps the Samples it
has read, decoded, so that an image is decoded once per process rather than once per epoch.

A small set's epochs are a few steps long, and decoding its photos is most of what the
loader does: on 2 CPU cores a 500 × 400 JPEG takes 2.4 ms, about 30 ms of every 8-image
batch with MixUp's partners (docs/benchmarks.md). The cache holds what the reader returned,
before any transform, and hands out copies, so training draws exactly the augmentations it
would draw without it.

Each process (the main one with ``num_workers: 0``, else each loader worker) fills its own
cache as it reads, up to its share of the memory available when it starts: a quarter of it,
divided among the loader's workers (the training loader and each validation set's loader
each take a quarter). The images past that share are decoded each time; that is logged once per process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: The share of the memory available that one loader's caches (all its workers) may hold.
LOADER_SHARE = 0.25
#: The per-process budget where the memory available cannot be read (not Linux, no sysconf).
FALLBACK_BYTES = 2 * 1024**3


def available_memory() -> int | None:
    """Bytes of memory available for new allocations: Linux's ``MemAvailable``, else the free
    physical pages (``os.sysconf``), else ``None``."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def sample_bytes(sample: dict[str, Any]) -> int:
    """The bytes of a Sample's arrays (the image, masks, label map, boxes, ...).

    >>> sample_bytes({"image": np.zeros((4, 5, 3), np.uint8), "image_id": 1})
    60
    """
    return sum(v.nbytes for v in sample.values() if isinstance(v, np.ndarray))


def copy_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """A copy whose arrays are the cached ones' copies: a transform that writes into its input
    cannot change the cache.

    >>> cached = {"image": np.zeros((2, 2, 3), np.uint8), "path": "a.jpg"}
    >>> copy_sample(cached)["image"][0, 0, 0] = 255
    >>> int(cached["image"].max())
    0
    """
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in sample.items()}


class SampleCache:
    """The Samples one process has read, by dataset index, within a byte budget.

    Args:
        budget: bytes this process may hold; ``None``: its share of the memory available
            (:data:`LOADER_SHARE` divided among the loader's workers), read at the first
            Sample it stores.

    >>> cache = SampleCache(budget=100)
    >>> read = lambda i: {"image": np.full((3, 3, 3), i, np.uint8)}
    >>> int(cache.get(1, read)["image"][0, 0, 0]), cache.get(1, lambda i: 1 / 0)["image"].shape
    (1, (3, 3, 3))
    >>> _ = cache.get(2, read), cache.get(3, read)  # 27 bytes each: 81 of the 100 held
    >>> sorted(cache.samples), cache.refused
    ([1, 2, 3], 0)
    >>> _ = cache.get(4, read); sorted(cache.samples), cache.refused
    ([1, 2, 3], 1)
    """

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget
        self.samples: dict[int, dict[str, Any]] = {}
        self.held = 0  # bytes
        self.refused = 0  # Samples read but not stored (over budget)

    def __getstate__(self) -> dict[str, Any]:
        """A worker started by pickling (spawn, forkserver) fills a cache of its own."""
        return {"budget": self.budget, "samples": {}, "held": 0, "refused": 0}

    def get(self, index: int, read: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        """Sample ``index``: a copy of the stored one, or ``read(index)`` (stored if it fits)."""
        key = int(index)
        stored = self.samples.get(key)
        if stored is not None:
            return copy_sample(stored)
        sample = read(index)
        size = sample_bytes(sample)
        if self.budget is None:
            self.budget = self._share()
        if self.held + size <= self.budget or not self.samples:
            self.samples[key] = sample
            self.held += size
            return copy_sample(sample)
        if not self.refused:
            logger.info(
                "data.cache: ram: this loader process holds %d images (%.1f GB, its share of the "
                "memory available); the others are decoded each time they are read",
                len(self.samples),
                self.held / 1e9,
            )
        self.refused += 1
        return sample

    @staticmethod
    def _share() -> int:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        workers = info.num_workers if info is not None else 1
        available = available_memory()
        if available is None:
            return FALLBACK_BYTES
        return int(available * LOADER_SHARE / max(1, workers))
