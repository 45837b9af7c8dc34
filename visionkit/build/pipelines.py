"""The training and evaluation pipelines of the ``data`` section (:func:`build_pipelines`),
and what is said of a training crop larger than the photos it is cut from."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from visionkit.config import DataConfig
from visionkit.data.image_size import pipeline_steps
from visionkit.data.transforms import build_pipeline

logger = logging.getLogger(__name__)


def build_pipelines(data: DataConfig, mean: Sequence[float], std: Sequence[float]) -> dict:
    """The training and evaluation pipelines (``{"train": ..., "val": ...}``) of the ``data``
    section, normalised by the backbone's ``mean`` / ``std``; a crop of the training pipeline
    larger than the photos it is cut from is logged (:func:`oversized_crops`)."""
    for warning in oversized_crops(pipeline_steps(data, train=True)):
        logger.warning(warning)
    return {
        split: build_pipeline(
            pipeline_steps(data, train=split == "train"), mean, std, f"data.transforms.{split}"
        )
        for split in ("train", "val")  # a test set is evaluated with the "val" pipeline
    }


def oversized_crops(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    """What is wrong with each ``RandomCrop`` / ``CenterCrop`` of the training ``steps`` that
    is mostly padding: less than half of it can be photo, cut from photos whose longest side
    an earlier ``LongestMaxSize`` set (times the mean scale of a ``RandomScale`` after it),
    e.g. a recipe's 256-px crop of photos resized to ``data.image_size=128``.
    Another resizing step in between makes the size unknown: nothing is said.

    >>> steps = [{"name": "LongestMaxSize", "max_size": 128}, {"name": "RandomCrop",
    ...     "height": 256, "width": 256}]
    >>> oversized_crops(steps)[0][:75]
    'data.transforms.train[1] (RandomCrop): crops 256x256 from photos whose long'
    >>> oversized_crops([steps[0], {"name": "RandomCrop", "height": 160, "width": 160}])
    []
    """
    where, longest, found = "data.transforms.train", None, []
    for i, step in enumerate(steps):
        name, size = step.get("name"), step.get("max_size")
        h, w = step.get("height"), step.get("width")
        if name == "LongestMaxSize":
            longest = (i, size) if isinstance(size, int) else None
        elif name == "RandomScale" and longest:
            limit = step.get("scale_limit", 0.1)  # a range (lo, hi), or ±limit: its mean
            mean = sum(limit) / 2 if isinstance(limit, (list, tuple)) else 0.0
            longest = (longest[0], int(longest[1] * (1 + mean)))
        elif name in ("RandomCrop", "CenterCrop") and longest and isinstance(h, int):
            side = longest[1]
            if isinstance(w, int) and min(h, side) * min(w, side) < 0.5 * h * w:
                found.append(
                    f"{where}[{i}] ({name}): crops {h}x{w} from photos whose longest side is "
                    f"{side} on average ({where}[{longest[0]}], LongestMaxSize, and any "
                    "RandomScale after it): most of each training input is padding; set the "
                    f"crop with the image size ({where}[{i}].height=... "
                    f"{where}[{i}].width=...), or leave its height and width out to follow "
                    "data.image_size"
                )
        elif not _keeps_size(name):
            longest = None  # a step that may resize: the photos' size is not known here
    return found


def _keeps_size(name: Any) -> bool:
    """Whether the albumentations step ``name`` never changes the image size: a pixel-level
    one (albumentations' ``ImageOnlyTransform``), a flip, or padding (still padding)."""
    import albumentations as A

    cls = getattr(A, name, None) if isinstance(name, str) else None
    return name in ("HorizontalFlip", "VerticalFlip", "PadIfNeeded") or (
        isinstance(cls, type) and issubclass(cls, A.ImageOnlyTransform)
    )
