"""What every measurement shares: the settings of a run, timing, medians, peak memory and
the facts about the machine.

>>> durations = iter([0.0, 1.0, 1.0, 4.0, 4.0, 6.0])  # a fake clock: calls take 1, 3, 2 s
>>> times = time_alternating({"f": lambda: None}, reps=3, clock=lambda: next(durations))
>>> times, median(times["f"])
({'f': [1.0, 3.0, 2.0]}, 2.0)
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import os
import platform
import re
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from visionkit.build.trainer import cpu_supports_bf16, resolve_precision

# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """What one benchmark run measures and how.

    Attributes:
        precision: ``"fp32"`` or ``"bf16"`` (autocast on the CPU) of our model, and of the
            baseline unless ``baseline_precision`` is given.
        baseline_precision: ``"fp32"`` or ``"bf16"`` of the baseline alone; ``None`` takes
            ``precision``. With ``baseline_image_size`` it measures the baseline at its own
            defaults against the recipe at the recipe's, e.g. ``"fp32"`` and ``(256, 256)``
            for torchvision's FCOS against ``fcos_r18`` at bf16 and 160 px.
        threads: torch intra-op threads.
        image_size: ``(H, W)`` fed to our model, and to the baseline unless
            ``baseline_image_size`` is given; ``None`` takes each recipe's
            ``data.image_size``.
        baseline_image_size: ``(H, W)`` fed to the baseline alone; ``None`` takes our
            model's size (``image_size``, or the recipe's).
        batch_size: training batch; ``None`` takes each recipe's ``data.batch_size``.
        infer_batch_sizes: batches at which inference latency is measured.
        warmup: untimed repetitions before each timed series (at least 1; peak memory is
            measured over them).
        reps: timed repetitions; each figure is their median.
        boxes_per_image: synthetic ground-truth objects per training image.
        seed: seed of the synthetic images and targets.
        measure: what to measure, any of :data:`MEASUREMENTS`: ``models`` (each recipe
            against its baseline, with FLOP counts and the matrix-multiply peak they are
            compared with), ``pipeline`` (the recipe's training data loader alone) and
            ``coco-eval`` (pycocotools on a synthetic results file).
        peak_sizes: sides of the square matrix multiplications whose best median FLOP/s is
            the peak.
        pipeline_batches: batches per timed repetition of the data pipeline.
        pipeline_workers: data loader workers; ``None`` takes each recipe's
            ``data.num_workers``.
        coco_images, coco_objects, coco_dets: size of the synthetic COCO evaluation: images,
            ground-truth objects per image, detections per image.
        coco_reps: timed repetitions of the COCO evaluation (it takes seconds each).
    """

    precision: str = "fp32"
    threads: int = 1
    image_size: tuple[int, int] | None = None
    batch_size: int | None = None
    infer_batch_sizes: tuple[int, ...] = (1, 8)
    warmup: int = 2
    reps: int = 5
    boxes_per_image: int = 3
    seed: int = 0
    measure: tuple[str, ...] = ("models", "pipeline", "coco-eval")
    peak_sizes: tuple[int, ...] = (2048, 3072, 4096)
    pipeline_batches: int = 4
    pipeline_workers: int | None = None
    coco_images: int = 500
    coco_objects: int = 10
    coco_dets: int = 100
    coco_reps: int = 3
    baseline_precision: str | None = None
    baseline_image_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision: expected 'fp32' or 'bf16', got {self.precision!r}")
        if self.baseline_precision not in (None, "fp32", "bf16"):
            raise ValueError(
                f"baseline_precision: expected 'fp32', 'bf16' or None, got "
                f"{self.baseline_precision!r}"
            )
        for name in ("image_size", "baseline_image_size"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or min(size) < 1):
                raise ValueError(f"{name}: expected (H, W), each at least 1, got {size!r}")
        counts = (self.warmup, self.reps, self.threads, self.pipeline_batches, self.coco_reps)
        counts += (self.coco_images, self.coco_objects, self.coco_dets)
        if min(counts) < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ValueError(
                "warmup, reps, batch_size, threads, pipeline_batches and the coco_* sizes "
                "must be at least 1"
            )
        if self.pipeline_workers is not None and self.pipeline_workers < 0:
            raise ValueError("pipeline_workers: expected 0 or more")
        if not self.infer_batch_sizes or min(self.infer_batch_sizes) < 1:
            raise ValueError("infer_batch_sizes: expected one or more sizes >= 1")
        if not self.peak_sizes or min(self.peak_sizes) < 16:
            raise ValueError("peak_sizes: expected one or more sizes >= 16")
        unknown = [m for m in self.measure if m not in MEASUREMENTS]
        if unknown or not self.measure:
            raise ValueError(
                f"measure: expected one or more of {', '.join(MEASUREMENTS)}, got "
                f"{list(self.measure)}"
            )


MEASUREMENTS = ("models", "pipeline", "coco-eval")

# Defaults of --quick (each is overridden by the option given explicitly): under a minute on
# a quiet 2-core CPU. Only the model-against-model cases (and the peak their FLOP/s are
# compared with): the floors are on their ratios.
QUICK = {
    "image_size": (128, 128),
    "batch_size": 4,
    "infer_batch_sizes": (1, 4),
    "warmup": 1,
    "reps": 7,  # bursts of load spread the per-round ratios widely: more rounds, steadier median
    "measure": ("models",),
    "peak_sizes": (2048,),
}


def resolve_precision_name(precision: str) -> str:
    """``fp32`` / ``bf16`` as given; ``auto`` as :func:`~visionkit.build.trainer.resolve_precision`
    decides for the CPU (``bf16`` on AVX-512 BF16 / AMX, else ``fp32``)."""
    if precision == "auto":
        return "bf16" if resolve_precision("auto", "cpu").startswith("bf16") else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision: expected fp32, bf16 or auto, got {precision!r}")
    return precision


# --------------------------------------------------------------------------- timing and memory


def median(values: Sequence[float]) -> float:
    """The median of the repetitions (the mean of the middle two for an even count)."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def time_alternating(
    fns: Mapping[str, Callable[[], object]],
    reps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds of each call of each function, ``reps`` rounds, the functions alternating
    within each round (so a burst of load from elsewhere hits every function alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return times


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median over rounds of ``numerators[i] / denominators[i]``: for timings taken back
    to back in each round, a ratio that load changing during the run affects little.

    >>> paired_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 1.0])
    3.0
    """
    if len(numerators) != len(denominators):
        raise ValueError("paired_ratio: the two series differ in length")
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


class PeakRSS:
    """Peak resident set size of this process, in MiB.

    Read with ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: it is process-wide, so it counts
    everything resident (Python, torch, both models of a case, memory that earlier phases
    left allocated), not one model alone. On Linux the high-water mark can be reset
    (``/proc/self/clear_refs``), so a peak read after :meth:`reset` is the peak since; the
    resident size at the reset (:meth:`current`) tells how much of it was there before.
    Elsewhere it is the peak since the process started (``resettable`` is then False).
    """

    def __init__(self) -> None:
        self.resettable = self._clear()

    @staticmethod
    def _clear() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        """Start a new peak from the current resident size (where the OS allows it), after
        handing memory freed by earlier phases back to the OS (glibc keeps it otherwise)."""
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        if self.resettable:
            self._clear()

    @staticmethod
    def current() -> float:
        """The resident size now, in MiB (0 where ``/proc/self/statm`` is absent)."""
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return 0.0
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    @staticmethod
    def read() -> float:
        """The peak so far, in MiB."""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB (bytes on macOS)
        return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10


# --------------------------------------------------------------------------- machine


def machine_info(settings: Settings) -> dict[str, Any]:
    """CPU model, cores, library versions, threads, precision, date and load of this run."""
    import timm
    import torchvision

    cpu = platform.processor() or platform.machine()
    flags = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        cpu = found.group(1).strip() if found else cpu
        found = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
        flags = found.group(1) if found else ""
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_bf16": cpu_supports_bf16(),
        "cpu_amx": "amx_tile" in flags.split(),
        "threads": torch.get_num_threads(),
        "precision": settings.precision,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "platform": platform.platform(),
        "load_average_start": load_average(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: other work on the machine inflates timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
