"""One YOLO label file's lines to COCO annotations (used by :mod:`visionkit.data.convert.yolo`).

A line is ``class cx cy w h`` (a box) or ``class x1 y1 x2 y2 x3 y3 ...`` (a polygon), normalised
to ``[0, 1]`` by the upright image's width and height (a pose line has keypoints after the box,
:mod:`~visionkit.data.convert.yolo_pose`). Values up to :data:`TOLERANCE` outside ``[0, 1]``
(float round-off) are clipped; further out they are problems: a box's ``cx cy w h``, as
Ultralytics checks them, and a polygon's points. A box whose extent reaches past an edge of the
image (``0 0.95 0.5 0.2 0.2``) is clipped to it, as Ultralytics clips it, and recorded with
:meth:`~visionkit.data.convert.coco_builder.CocoBuilder.clip` when it reaches out by more than
:data:`~visionkit.data.convert.coco_builder.CLIP_TOLERANCE` pixels. A box or polygon of zero
area is skipped (and reported). A line that repeats an earlier one of its file is removed,
with a warning per file (:func:`without_duplicates`; Ultralytics removes more).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from visionkit.data.convert.coco_builder import CLIP_TOLERANCE, CocoBuilder, relative_posix
from visionkit.data.convert.yolo_pose import PoseFormat

#: How far outside ``[0, 1]`` a normalised coordinate may lie and still be clipped silently.
TOLERANCE = 1e-3


def read_label_lines(builder: CocoBuilder, root: Path, label: Path) -> list[tuple[int, str]]:
    """The ``(line number, text)`` of each non-blank line of ``label`` (none when there is no
    such file; a problem when it cannot be read)."""
    if not label.is_file():
        return []
    try:
        text = label.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        builder.problem(relative_posix(label, root), f"cannot be read ({err})")
        return []
    return [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def without_duplicates(lines: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], list[int]]:
    """``lines`` (``(line number, text)``) less each that repeats every value of an earlier
    line, read as Python floats (``0 0.5 ...`` and ``0 0.50 ...`` alike), and the numbers of
    those removed. Ultralytics removes duplicate rows of a label file too ("N duplicate
    labels removed"), but compares float32 rows, and a polygon line by its class and box
    alone: it removes lines kept here (docs/datasets.md).

    >>> without_duplicates([(1, "0 0.5 0.5 0.2 0.2"), (2, "1 0.5 0.5 0.2 0.2"), (3, "0 .5 .5 .2 .2")])
    ([(1, '0 0.5 0.5 0.2 0.2'), (2, '1 0.5 0.5 0.2 0.2')], [3])
    """
    seen: set[tuple[Any, ...]] = set()
    kept, removed = [], []
    for number, line in lines:
        try:
            key: tuple[Any, ...] = tuple(float(v) for v in line.split())
        except ValueError:  # not numbers: an error of add_label_line, compared as text
            key = tuple(line.split())
        if key in seen:
            removed.append(number)
        else:
            seen.add(key)
            kept.append((number, line))
    return kept, removed


def add_label_line(
    builder: CocoBuilder,
    where: str,
    image_id: int,
    line: str,
    width: int,
    height: int,
    pose: PoseFormat | None = None,
) -> None:
    """Add the annotation of one label ``line`` (at ``where``) of image ``image_id`` of
    ``width`` x ``height`` pixels, or record why it cannot be one."""
    if "," in line:  # "0,0.5,0.5,0.2,0.2" or a decimal comma ("0 0,5 ..."): not numbers
        builder.problem(
            where,
            f"{line.strip()!r}: has commas; fields are separated by spaces and decimals written "
            "with a point (0 0.5 0.5 0.2 0.2)",
        )
        return
    fields = line.split()
    if pose is not None and len(fields) != pose.fields:
        builder.problem(
            where, f"{len(fields)} fields; a line of this pose dataset holds {pose.layout()}"
        )
        return
    if len(fields) < 5:
        builder.problem(
            where,
            f"{len(fields)} fields; expected 5 (class cx cy w h) or a polygon "
            "(class x1 y1 x2 y2 x3 y3 ...)",
        )
        return
    try:
        number = float(fields[0])  # some exporters write 0.0, which Ultralytics reads as 0
    except ValueError:
        number = math.nan
    if not number.is_integer():
        builder.problem(where, f"class index {fields[0]!r} is not an integer")
        return
    label = int(number)
    num_classes = len(builder.class_names)
    if not 0 <= label < num_classes:
        builder.problem(
            where,
            f"class index {label} out of range 0..{num_classes - 1} ({num_classes} classes)",
        )
        return
    values = []
    for text in fields[1:]:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            builder.problem(where, f"{text!r} is not a finite number")
            return
        values.append(value)
    keypoints: dict[str, Any] = {}
    if pose is not None:
        points = pose.keypoints(values[4:], width, height)
        if isinstance(points, str):
            builder.problem(where, points)
            return
        keypoints = {"keypoints": points, "num_keypoints": sum(v > 0 for v in points[2::3])}
        values = values[:4]
    if len(values) == 4:
        cx, cy, w, h = values
        if w < 0 or h < 0:
            builder.problem(where, f"negative width or height ({w:g}, {h:g})")
            return
        # as Ultralytics: cx cy w h lie in [0, 1]; a box reaching past an edge is clipped to it
        beyond = [
            f"{n} {v:g}"
            for n, v in zip(("cx", "cy", "w", "h"), values, strict=True)
            if not -TOLERANCE <= v <= 1 + TOLERANCE
        ]
        if beyond:
            pixels = (
                " (pixel coordinates? divide x and w by the image width, y and h by its height)"
            )
            builder.problem(
                where,
                f"coordinates outside [0, 1] (normalised): {', '.join(beyond)}"
                f"{pixels * (max(values) > 2)}",
            )
            return
        points = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        sides = (width, height) * 2
        reach = max(max(-v, v - 1) * side for v, side in zip(points, sides, strict=True))
        if reach > CLIP_TOLERANCE:
            builder.clip(
                where,
                f"box cx {cx:g} cy {cy:g} w {w:g} h {h:g} reaches outside the {width}x{height} "
                "image; clipped to it",
            )
        points = [min(max(v, 0.0), 1.0) for v in points]
    elif len(values) % 2:  # 5 or more numbers, even: a polygon of at least 3 points
        hint = " (a box with a confidence column? drop it)" if len(values) == 5 else ""
        builder.problem(
            where,
            f"{len(fields)} fields: neither a box (class cx cy w h) nor a polygon (class x1 y1 "
            f"x2 y2 x3 y3 ...: x y pairs){hint}",
        )
        return
    else:
        points = values
    outside = [v for v in points if not -TOLERANCE <= v <= 1 + TOLERANCE]
    if outside:
        shown = ", ".join(f"{v:g}" for v in outside[:4])
        builder.problem(where, f"coordinates outside [0, 1] (normalised): {shown}")
        return
    xs = [min(max(x, 0.0), 1.0) * width for x in points[0::2]]
    ys = [min(max(y, 0.0), 1.0) * height for y in points[1::2]]
    x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
    if len(values) == 4:
        if x1 <= x0 or y1 <= y0:
            builder.skip(where, "box of zero area")
            return
        builder.add_annotation(image_id, label, [x0, y0, x1 - x0, y1 - y0], **keypoints)
        return
    area = _polygon_area(xs, ys)
    if area <= 0:
        builder.skip(where, "polygon of zero area")
        return
    polygon = [v for xy in zip(xs, ys, strict=True) for v in xy]
    builder.add_annotation(image_id, label, [x0, y0, x1 - x0, y1 - y0], [polygon], area)


def _polygon_area(xs: list[float], ys: list[float]) -> float:
    """Shoelace area of a closed polygon."""
    n = len(xs)
    twice = sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))
    return abs(twice) / 2
