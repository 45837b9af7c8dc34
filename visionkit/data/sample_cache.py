"""``data.cache: ram`` (Ultralytics' ``cache=ram``): each loader process keeps the Samples it
has read, decoded, so that an image is decoded once per process rather than once per epoch.

A small set's epochs are a few steps long, and decoding its photos is most of what the
loader does: on 2 CPU cores a 500 × 400 JPEG takes 2.4 ms, about 30 ms of every 8-image
batch with MixUp's partners (docs/benchmarks.md). The cache holds what the reader returned
(resized already when the pipeline starts with a resize to a fixed size that shrinks it:
:mod:`visionkit.data.read_resize`), and hands out copies, so training draws exactly the
augmentations it would draw without it.

Each process (the main one with ``num_workers: 0``, else each loader worker) fills its own
cache as it reads, up to its share of the memory available (a container's limit included)
when it first reads: the training loader's processes on a machine share a quarter of it
(divided among the DDP ranks there and each rank's workers), the validation loaders another
quarter. The images past that share are decoded each time; that is logged once per process.
"""

from __future__ import annotations

import contextlib
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
    physical pages (``os.sysconf``), else ``None``; no more than a container's memory limit
    leaves (:func:`cgroup_room`: ``/proc/meminfo`` is the host's)."""
    machine = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                machine = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if machine is None:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            machine = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    room = cgroup_room()
    known = [m for m in (machine, room) if m is not None]
    return min(known) if known else None


def cgroup_room(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The bytes this process's cgroup may still allocate (its limit less its usage: cgroup v2's
    ``memory.max`` / ``memory.current``, v1's ``memory/memory.limit_in_bytes`` /
    ``memory.usage_in_bytes``), or ``None`` without a limit.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "memory.max").write_text("1000"), (d / "memory.current").write_text("300")
    >>> cgroup_room(d)
    700
    >>> _ = (d / "memory.max").write_text("max"); print(cgroup_room(d))
    None
    """
    for limit, usage in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            text = (root / limit).read_text().strip()
            if text == "max" or int(text) >= 2**60:  # v1 says "no limit" with a huge number
                return None
            return max(0, int(text) - int((root / usage).read_text().strip()))
        except (OSError, ValueError):
            continue
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
        budget: bytes this process may hold; ``None``: ``share`` of the memory available,
            divided among the loader's workers, read when the first Sample is read.
        share: the part of the memory available this loader's processes on this machine may
            hold together (:data:`LOADER_SHARE`, divided by the datamodule among the local
            DDP ranks, and among the validation sets).

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

    def __init__(self, budget: int | None = None, share: float = LOADER_SHARE) -> None:
        self.budget = budget
        self.share = share
        self.samples: dict[int, dict[str, Any]] = {}
        self.held = 0  # bytes
        self.refused = 0  # Samples read but not stored (over budget)

    def __getstate__(self) -> dict[str, Any]:
        """A worker started by pickling (spawn, forkserver) fills a cache of its own."""
        return {**self.__dict__, "samples": {}, "held": 0, "refused": 0}

    def get(self, index: int, read: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
        """Sample ``index``: a copy of the stored one, or ``read(index)`` (stored if it fits)."""
        key = int(index)
        stored = self.samples.get(key)
        if stored is not None:
            return copy_sample(stored)
        sample = read(index)
        size = sample_bytes(sample)
        if self.budget is None:
            self.budget = self._process_budget()
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

    def _process_budget(self) -> int:
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        workers = info.num_workers if info is not None else 1
        available = available_memory()
        if available is None:
            return FALLBACK_BYTES
        return int(available * self.share / max(1, workers))
