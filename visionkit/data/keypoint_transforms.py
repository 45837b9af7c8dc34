"""Keypoints through the albumentations pipeline (:func:`visionkit.data.transforms.apply_pipeline`).

A Sample's ``keypoints`` (float ``[N, K, 3]``: x, y, visibility, one row per box) travel as
albumentations ``xy`` keypoints with ``remove_invisible=False``, so every point comes back,
in order, and the rows of the boxes a transform dropped are dropped by their instance index.
A point that leaves the image gets visibility 0.

Flip pairs: albumentations 2.0 mirrors keypoint coordinates but has no notion of left and
right, so a mirrored ``left_eye`` would sit where the right eye is. Three sentinel points
(the image's corners) travel with the keypoints; when the orientation of their triangle has
changed sign, the transforms mirrored the image (a horizontal or vertical flip, a transpose,
any odd number of them) and each row is permuted by the Sample's ``keypoint_flip`` (what
:func:`visionkit.data.readers.coco_keypoints.flip_index` gives).

Pixel centres: albumentations flips, rotates and crops keypoints as pixel indices (a flip maps
``x`` to ``W - 1 - x``) but scales them from the image's corner (``x * s``: Resize,
LongestMaxSize, RandomScale, RandomResizedCrop, ...), which puts a resized point ``(s - 1) / 2``
pixels off the pixel it labels, on the other side after a flip (AlbumentationsX issue 529).
:func:`pixel_index_scaling` scales them as pixel indices, ``(x + 0.5) * s - 0.5``, while
visionkit's pipelines run; ``FCOSKeypointsHead.postprocess`` maps predictions back the same way.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import albumentations as A
import albumentations.augmentations.geometric.functional as fgeometric
import numpy as np
import torch

from visionkit.data.batch import scale_about_pixel_centres


def keypoint_params() -> A.KeypointParams:
    """How keypoints travel: ``xy`` pixel indices, every point kept (visibility is ours)."""
    return A.KeypointParams(format="xy", remove_invisible=False)


_LIBRARY_SCALE = fgeometric.keypoints_scale
_STATE = threading.local()  # depth: how many pixel_index_scaling blocks this thread is in


def _scale(keypoints: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """albumentations' ``keypoints_scale``, about pixel centres, ``(x + 0.5) * s - 0.5``, in a
    thread inside :func:`pixel_index_scaling`; the library's own everywhere else."""
    scaled = _LIBRARY_SCALE(keypoints, scale_x, scale_y)  # its other columns (scale) too
    if getattr(_STATE, "depth", 0):
        xy = np.asarray(keypoints, np.float32)[:, :2]
        scaled[:, :2] = scale_about_pixel_centres(xy, np.array([scale_x, scale_y], np.float32))
    return scaled


@contextlib.contextmanager
def pixel_index_scaling() -> Iterator[None]:
    """Within the block, albumentations' resizing steps called by this thread scale keypoints as
    pixel indices, as its flips and rotations treat them (see the module docstring); other
    threads' calls, and this thread's after the block, get the library's scaling. Blocks nest.

    >>> import albumentations as A
    >>> resize = A.Compose([A.Resize(8, 8)], keypoint_params=keypoint_params())
    >>> points = np.array([[0.0, 3.0]])
    >>> with pixel_index_scaling():
    ...     out = resize(image=np.zeros((4, 4, 3), np.uint8), keypoints=points)
    >>> out["keypoints"].tolist()  # pixel 0 of 4 covers pixels 0 and 1 of 8: centre 0.5
    [[0.5, 6.5]]
    >>> resize(image=np.zeros((4, 4, 3), np.uint8), keypoints=points)["keypoints"].tolist()
    [[0.0, 6.0]]
    """
    # one wrapper installed for good (a module attribute the resizing steps look up per call),
    # switched per thread: no lock, nothing to restore, other threads unaffected
    fgeometric.keypoints_scale = _scale
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1


def _orientation(points: np.ndarray) -> float:
    (ax, ay), (bx, by), (cx, cy) = points[:3, :2]
    return float((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))


def keypoint_inputs(sample: dict[str, Any], num_boxes: int) -> np.ndarray | None:
    """The ``keypoints`` input of the pipeline: the ``[N * K, 2]`` points then the three
    sentinels; ``None`` when the Sample has none.

    Raises:
        ValueError: the rows do not match the boxes.
    """
    if sample.get("keypoints") is None:
        return None
    points = np.asarray(sample["keypoints"], np.float32)
    if points.ndim != 3 or points.shape[-1] != 3 or len(points) != num_boxes:
        raise ValueError(
            f"keypoints of shape {points.shape} for {num_boxes} boxes: expected [N, K, 3]"
        )
    h, w = sample["image"].shape[:2]
    sentinels = np.array([[0, 0], [w - 1, 0], [0, h - 1]], np.float32)
    return np.concatenate([points[..., :2].reshape(-1, 2), sentinels])


def keypoint_outputs(
    sample: dict[str, Any],
    moved: Any,
    kept: np.ndarray,
    size: Sequence[int] | None,
) -> torch.Tensor:
    """float32 ``[M, K, 3]`` keypoints of the ``kept`` instances after the pipeline
    (``moved``: the pipeline's ``keypoints`` output), swapped by ``keypoint_flip`` when the
    image was mirrored, visibility 0 outside the ``size`` ``(H, W)`` image (beyond the half pixel
    around its first and last pixel centres); ``size=None``: every visibility as it was (the
    steps that decide it are still to come)."""
    before = np.asarray(sample["keypoints"], np.float32)
    count = before.shape[1]
    moved = np.asarray(moved, np.float32).reshape(-1, 2)
    h, w = sample["image"].shape[:2]
    start = np.array([[0, 0], [w - 1, 0], [0, h - 1]], np.float32)
    after = before.copy()
    after[..., :2] = moved[:-3].reshape(-1, count, 2)
    if _orientation(start) * _orientation(moved[-3:]) < 0:
        flip = sample.get("keypoint_flip")
        if flip is not None:
            after = after[:, np.asarray(flip, np.int64)]
    after = after[np.asarray(kept, np.int64)]
    if size is None:
        return torch.as_tensor(after.reshape(-1, count, 3))
    x, y = after[..., 0], after[..., 1]
    outside = (x < -0.5) | (y < -0.5) | (x > size[1] - 0.5) | (y > size[0] - 0.5)
    after[..., 2] = np.where(outside, 0.0, after[..., 2])
    return torch.as_tensor(after.reshape(-1, count, 3))
