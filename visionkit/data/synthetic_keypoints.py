"""Keypoints of the shapes dataset (``make_shapes(..., keypoints=True)``,
``visionkit make-shapes --keypoints``, ``synthetic: {keypoints: true}``).

Every shape gets the same five keypoints, in the COCO keypoint format: its ``center`` and its
extreme points ``left``, ``top``, ``right``, ``bottom`` (the vertex of a square or triangle
that reaches furthest in that direction, the point of the circle on that side). They are
computed from the exact geometry the shape was drawn from, so an occluded keypoint still has
its true position. Each category gets :data:`KEYPOINT_NAMES` and :data:`SKELETON` (the
centre joined to each extreme point); ``left`` and ``right`` are the flip pair.

Visibility (COCO's): ``2`` when the shape's own visible pixels reach within
:data:`VISIBLE_RADIUS` pixels of the keypoint, else ``1`` (labelled, hidden by a later
shape). Shapes lie inside the image, so no keypoint is out of frame here (``0``); crops and
shifts of the training pipeline set ``0`` for the points they push out
(:mod:`visionkit.data.keypoint_transforms`).

Coordinates are pixel indices, COCO's convention: the pixel whose centre is at
``(i + 0.5, j + 0.5)`` is ``(i, j)``, so a point of the geometry at ``(x, y)`` is stored as
``(x - 0.5, y - 0.5)``.

>>> import numpy as np
>>> points = shape_points("square", 10.0, 10.0, 5.0, 0.0)
>>> points[:, 0].tolist()  # center, left, top, right, bottom: x
[10.0, 5.0, 10.0, 15.0, 10.0]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: The keypoints of every shape, in order.
KEYPOINT_NAMES: tuple[str, ...] = ("center", "left", "top", "right", "bottom")
#: 1-based pairs joined when drawn: the centre to each extreme point.
SKELETON: tuple[tuple[int, int], ...] = ((1, 2), (1, 3), (1, 4), (1, 5))
#: Pixels around a keypoint within which a visible pixel of its shape makes it visible.
VISIBLE_RADIUS = 2.0


def shape_points(name: str, cx: float, cy: float, radius: float, rotation: float) -> np.ndarray:
    """float64 ``[5, 2]`` (x, y) of :data:`KEYPOINT_NAMES` for the shape drawn with these
    parameters (continuous image coordinates; see ``_shape`` in
    :mod:`visionkit.data.synthetic`: circles have radius ``0.85 * radius``)."""
    if name == "circle":
        r = 0.85 * radius
        return np.array([[cx, cy], [cx - r, cy], [cx, cy - r], [cx + r, cy], [cx, cy + r]])
    sides = 4 if name == "square" else 3
    angles = rotation + 2.0 * math.pi * np.arange(sides) / sides
    xs, ys = cx + radius * np.cos(angles), cy + radius * np.sin(angles)
    pick = [np.argmin(xs), np.argmin(ys), np.argmax(xs), np.argmax(ys)]
    return np.array([[cx, cy], *([xs[k], ys[k]] for k in pick)])


def keypoint_fields(points: np.ndarray, visible: np.ndarray) -> dict[str, Any]:
    """The ``keypoints`` and ``num_keypoints`` fields of one annotation: ``points`` from
    :func:`shape_points`, ``visible`` the shape's visible mask ``[H, W]`` bool."""
    rows, cols = np.nonzero(visible)
    centres = np.stack([cols + 0.5, rows + 0.5], axis=1)  # [M, 2] pixel centres (x, y)
    values: list[float] = []
    for x, y in points:
        near = np.hypot(centres[:, 0] - x, centres[:, 1] - y).min(initial=math.inf)
        values += [round(float(x) - 0.5, 2), round(float(y) - 0.5, 2)]
        values.append(2 if near <= VISIBLE_RADIUS else 1)
    return {"keypoints": values, "num_keypoints": len(points)}


def keypoint_categories(categories: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The categories with :data:`KEYPOINT_NAMES` and :data:`SKELETON` added."""
    return [
        {**c, "keypoints": list(KEYPOINT_NAMES), "skeleton": [list(p) for p in SKELETON]}
        for c in categories
    ]
