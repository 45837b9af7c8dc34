"""Keypoints of the shapes dataset (``make_shapes(..., keypoints=True)``,
``visionkit make-shapes --keypoints``, ``synthetic: {keypoints: true}``).

Every shape gets the same five keypoints, in the COCO keypoint format: its ``center`` and the
points of its outline straight ``left``, ``top``, ``right`` and ``bottom`` of the centre
(where a ray from the centre in that image direction leaves the shape). On a circle those are
its extreme points. They are not the extreme *vertices* of squares and triangles on purpose:
when two vertices tie (a square rotated by 45°), the extreme vertex jumps from one to the
other under a rotation of a fraction of a degree, a label that no model can learn, while the
ray's point moves continuously with the rotation. They are computed from the exact geometry
the shape was drawn from, so an occluded keypoint still has its true position. Each category gets :data:`KEYPOINT_NAMES` and :data:`SKELETON` (the
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
    :mod:`visionkit.data.synthetic`: circles have radius ``0.85 * radius``, squares and
    triangles are regular polygons of circumradius ``radius`` with a vertex at angle
    ``rotation``)."""
    directions = np.array([math.pi, -0.5 * math.pi, 0.0, 0.5 * math.pi])  # left top right bottom
    if name == "circle":
        reach = np.full(4, 0.85 * radius)
    else:
        # a regular n-gon's outline at angle phi from the centre: apothem / cos(angle to the
        # normal of the edge it crosses); edge normals lie half-way between the vertices
        sector = 2.0 * math.pi / (4 if name == "square" else 3)
        offset = np.mod(directions - rotation, sector) - sector / 2
        reach = radius * math.cos(sector / 2) / np.cos(offset)
    xs = cx + reach * np.cos(directions)
    ys = cy + reach * np.sin(directions)
    return np.array([[cx, cy], *zip(xs, ys, strict=True)])


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
