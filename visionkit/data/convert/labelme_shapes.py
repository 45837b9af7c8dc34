"""The shapes of one LabelMe file as COCO instances (used by
:mod:`visionkit.data.convert.labelme`).

A LabelMe shape is ``{"label", "points", "shape_type", "group_id", "mask"}``; ``points`` are
``[x, y]`` pairs in continuous pixel coordinates of the upright image (0 is the left edge of
the first pixel, as COCO's), which are taken as they are. The shapes that are objects:

* ``polygon`` (also a shape without ``shape_type``, as LabelMe reads one) and
  ``oriented_rectangle`` (a turned box, which LabelMe saves as its 4 corners): its points, 3
  or more (fewer: the shape is skipped, and reported);
* ``rectangle``: the box its two corners span (in any order; the extent when a tool writes
  all four), as a 4-point polygon, the polygon LabelMe's own ``labelme2coco`` writes;
* ``circle``: centre and a point on the rim, as a polygon whose edges stay within a pixel of
  the circle (at least 12 points), as ``labelme2coco`` writes one;
* ``mask``: a PNG (base64) of the box its two corners span, LabelMe's ``mask[y1:y2 + 1,
  x1:x2 + 1]`` (black-and-white, mode ``1``, as LabelMe saves it, or grey), decoded by the
  one label-image decoder; the instance is then an RLE.

Masks and areas are those pycocotools gives the polygons (as COCO evaluation draws them):
a rectangle from (10, 20) to (30, 40) covers 20 x 20 = 400 pixels.
``labelme2coco`` writes the same polygons, but takes its ``area`` and ``bbox`` from a mask
drawn by PIL, which also fills the far edge (441 pixels, 21 wide there).

Shapes with the same ``(label, group_id)`` are one instance (LabelMe's own rule), their
polygons and masks merged; a shape without ``group_id`` is an instance of its own. Shapes
labelled :data:`IGNORE_LABEL` are instances too, which the converter writes as ignore
regions. The other shape types (``point``, ``line``, ``linestrip``, ``points``, and any
other) have no area: they are left out, counted per file (:func:`read_instances` returns
them).

>>> circle_polygon(10.0, 10.0, 4.0)[:4]
[10.0, 14.0, 12.0, 13.4641]
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

#: The shape types that are objects (with an area).
OBJECT_SHAPES = ("polygon", "rectangle", "oriented_rectangle", "circle", "mask")

#: LabelMe's label for regions to ignore (its examples' ``labels.txt`` starts with it;
#: ``labelme2voc`` paints them -1, ignored): ignore regions, written as crowd regions.
IGNORE_LABEL = "__ignore__"
#: The lines of LabelMe's ``labels.txt`` that are no classes, left out of given class names:
#: :data:`IGNORE_LABEL` and ``_background_`` (``labelme2voc``'s class 0).
NOT_CLASSES = (IGNORE_LABEL, "_background_")


def ignore_regions(crowds: int, classes: int) -> int:
    """How many :data:`IGNORE_LABEL` instances ``crowds`` crowd annotations of a converted
    LabelMe file of ``classes`` categories are: the converter writes each instance once per
    class (and none without a class), so what ``check-data`` and ``convert`` count is the
    instances written, not the classes times them; two shapes with one box are two.

    >>> ignore_regions(6, 3), ignore_regions(0, 0)
    (2, 0)
    """
    return crowds // classes if classes else 0


class Instance(NamedTuple):
    """One object of a LabelMe file: its label, its polygons (flat COCO lists) and its masks
    (full-image ``uint8 [H, W]``), and the shapes it was made of (``"shape 3"``, ...)."""

    label: str
    polygons: list[list[float]]
    masks: list[np.ndarray]
    shapes: list[str]


class Shapes(NamedTuple):
    """What :func:`read_instances` found: the instances, the problems (``(where, what)``: the
    file is unusable), the shapes skipped for lack of geometry (``(where, what)``) and the
    shapes left out by type (``"point 'nose' (shape 5)"``)."""

    instances: list[Instance]
    problems: list[tuple[str, str]]
    skipped: list[tuple[str, str]]
    left_out: list[str]


def read_instances(shapes: Any, height: int, width: int) -> Shapes:
    """The instances of a LabelMe file's ``shapes`` for an image of ``height`` x ``width``
    (see the module docstring); every problem is collected, none raised."""
    out = Shapes([], [], [], [])
    if not isinstance(shapes, list):
        out.problems.append(("shapes", f"is {type(shapes).__name__}; expected a list of shapes"))
        return out
    groups: dict[tuple[str, Any], Instance] = {}
    for k, shape in enumerate(shapes):
        where = f"shape {k}"
        if not isinstance(shape, dict):
            out.problems.append((where, f"is {type(shape).__name__}; expected an object"))
            continue
        label, kind = label_and_kind(shape)
        where = f"shape {k} ({kind} {label!r})"
        if not label:
            out.problems.append((where, f"label {shape.get('label')!r}: expected a class name"))
            continue
        if kind not in OBJECT_SHAPES:
            out.left_out.append(f"{kind} {label!r} (shape {k})")
            continue
        points = _points(shape.get("points"))
        if isinstance(points, str):
            out.problems.append((where, points))
            continue
        geometry = _geometry(kind, points, shape, height, width)
        if geometry is None:  # no area: skipped, as a zero-area box is
            out.skipped.append((where, f"{len(points)} points: {kind} without area"))
            continue
        if isinstance(geometry, str):
            out.problems.append((where, geometry))
            continue
        group = shape.get("group_id")
        key = (label, group if group is not None else ("shape", k))
        instance = groups.setdefault(key, Instance(label, [], [], []))
        (instance.masks if isinstance(geometry, np.ndarray) else instance.polygons).append(geometry)
        instance.shapes.append(f"shape {k}")
    out.instances.extend(groups.values())
    return out


def label_and_kind(shape: dict[str, Any]) -> tuple[str, str]:
    """A shape's label (stripped; ``""`` when it is no text) and ``shape_type`` (``polygon``
    when absent, LabelMe's default in older files)."""
    label = shape.get("label")
    return label.strip() if isinstance(label, str) else "", shape.get("shape_type") or "polygon"


def object_labels(shapes: Any) -> set[str]:
    """The labels of a LabelMe file's shapes that are objects (:data:`OBJECT_SHAPES`, not
    ignore regions): the classes it gives, read without its image (``visionkit split``)."""
    if not isinstance(shapes, list):
        return set()
    found = [label_and_kind(s) for s in shapes if isinstance(s, dict)]
    return {label for label, kind in found if kind in OBJECT_SHAPES} - {"", IGNORE_LABEL}


def _points(points: Any) -> np.ndarray | str:
    """``points`` as a float ``[N, 2]`` array, or why they are not ``[x, y]`` number pairs."""
    from visionkit.data.readers.segmentation_checks import is_number  # readers import us

    if not isinstance(points, list) or not points:
        return f"points {str(points)[:40]}: expected a list of [x, y] points"
    for i, p in enumerate(points):
        if not (isinstance(p, list) and len(p) == 2 and all(is_number(v) for v in p)):
            return f"points[{i}] is {str(p)[:40]}: expected [x, y], two numbers"
    return np.asarray(points, np.float64)


def _geometry(
    kind: str, points: np.ndarray, shape: dict[str, Any], height: int, width: int
) -> list[float] | np.ndarray | str | None:
    """A shape's polygon (flat list) or full-image mask; ``None`` when it has no area; a
    string saying why it cannot be read."""
    from visionkit.data.readers.segmentation_checks import polygon_problem  # readers import us

    if kind == "mask":
        return _mask(points, shape.get("mask"), height, width)
    if kind == "rectangle":
        if len(points) < 2:
            return None
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        polygon = [x0, y0, x1, y0, x1, y1, x0, y1]
    elif kind == "circle":
        if len(points) != 2:
            return f"{len(points)} points; a circle has 2 (its centre and a point on its rim)"
        (cx, cy), (px, py) = points
        polygon = circle_polygon(cx, cy, math.hypot(px - cx, py - cy))
    else:
        if len(points) < 3:
            return None
        polygon = points.reshape(-1).tolist()
    polygon = [float(v) for v in polygon]
    xs, ys = polygon[0::2], polygon[1::2]
    if max(xs) - min(xs) <= 0 or max(ys) - min(ys) <= 0:
        return None
    problem = polygon_problem([polygon], height, width)  # pycocotools' input, checked
    return problem.replace("polygon 0: ", "") if problem else polygon


def circle_polygon(cx: float, cy: float, radius: float) -> list[float]:
    """A polygon of a circle whose edges stay within a pixel of it (at least 12 points),
    starting at the bottom (``(cx, cy + r)``), as LabelMe's ``labelme2coco`` writes one (which
    rounds the number of points down where this rounds it up)."""
    n = 12 if radius <= 1 else max(12, math.ceil(math.pi / math.acos(1 - 1 / radius)))
    angles = 2 * math.pi * np.arange(n) / n
    xy = np.stack([cx + radius * np.sin(angles), cy + radius * np.cos(angles)], axis=1)
    return [round(float(v), 4) for v in xy.reshape(-1)]


def _mask(points: np.ndarray, data: Any, height: int, width: int) -> np.ndarray | str | None:
    """The full-image mask of a ``mask`` shape: its PNG placed at ``[y1:y2 + 1, x1:x2 + 1]``
    of its two corners (LabelMe's rule)."""
    from visionkit.data.io import read_label_image
    from visionkit.errors import ImageDecodeError

    if len(points) != 2:
        return f"{len(points)} points; a mask shape has 2 (the corners of its box)"
    if not isinstance(data, str) or not data:
        return "no 'mask' (a base64 PNG of the shape's box)"
    try:
        png = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return "'mask' is not base64 text (a PNG of the shape's box)"
    try:
        crop = read_label_image("mask", data=png) != 0
    except ImageDecodeError as err:
        return f"'mask' cannot be decoded: {err.reason}"
    (x0, y0), (x1, y1) = points.astype(int)
    size = (y1 - y0 + 1, x1 - x0 + 1)
    if crop.shape != size or x0 < 0 or y0 < 0 or x1 >= width or y1 >= height:
        return (
            f"'mask' is {crop.shape[0]}x{crop.shape[1]} (height x width) at corners "
            f"({x0}, {y0}), ({x1}, {y1}); expected {size[0]}x{size[1]}, inside the "
            f"{width}x{height} image"
        )
    if not crop.any():
        return None
    mask = np.zeros((height, width), np.uint8)
    mask[y0 : y1 + 1, x0 : x1 + 1] = crop
    return mask


def instance_rle(instance: Instance, height: int, width: int) -> dict[str, Any]:
    """One pycocotools RLE of everything an instance is made of (checked geometry only)."""
    from pycocotools import mask as mask_utils

    parts = []
    if instance.polygons:
        parts += mask_utils.frPyObjects(instance.polygons, height, width)
    if instance.masks:
        parts += mask_utils.encode(np.asfortranarray(np.stack(instance.masks, axis=-1)))
    return mask_utils.merge(parts)


def polygons_extent(polygons: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` of all the points of ``polygons``."""
    xy = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in polygons])
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)
