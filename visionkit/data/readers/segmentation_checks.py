"""Checks of COCO ``segmentation`` geometry, made before pycocotools sees it.

pycocotools' C code trusts its input: polygon coordinates that are ``nan``, ``inf`` or far
outside the image (``1e9``) make ``frPyObjects`` allocate and loop without end (the process
hangs or is killed), RLE ``counts`` that sum past ``height * width`` write past the mask
buffer in older releases, and a compressed ``counts`` string that is not what
``pycocotools.mask.encode`` writes is read past its end or decodes to garbage. So every
segmentation a reader will decode is checked here first; what fails is a ``bad
segmentation`` error (the dataset is not used), while a segmentation that is merely empty or
degenerate (no polygon of 3 points) leaves its image without masks (its boxes are kept), with a
warning.

>>> rle_problem({"size": [2, 2], "counts": [0, 3, 1]}, 2, 2) is None
True
>>> rle_problem({"size": [2, 2], "counts": [0, 9]}, 2, 2)
'RLE counts sum to 9 pixels, expected height * width = 2 * 2 = 4'
>>> polygon_problem([[0, 0, 1, float("nan"), 1, 1]], 2, 2)
'polygon 0: coordinate 3 is nan (expected numbers within [-2, 4] for x, [-2, 4] for y)'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from visionkit.data.checks import DataReport

#: The longest run of characters one count may take in a compressed RLE string: 6 characters
#: hold 30 bits, so counts of images up to 2**29 pixels, far past any image the decoder opens.
MAX_CHARS_PER_COUNT = 6


def is_polygon(polygon: Any) -> bool:
    """A flat list of at least 3 (x, y) points."""
    return isinstance(polygon, list) and len(polygon) >= 6 and len(polygon) % 2 == 0


def polygon_problem(polygons: list[Any], height: int, width: int) -> str | None:
    """Why the coordinates of a polygon list cannot be given to pycocotools, or ``None``.

    Every coordinate must be a finite number at most one image size outside the image
    (``x`` in ``[-width, 2 * width]``, ``y`` in ``[-height, 2 * height]``): pycocotools walks
    every pixel along each edge, so farther points only cost time, and ``nan`` / ``inf`` never
    end. Entries that are not lists are left to :func:`is_polygon` (dropped with a warning)."""
    bounds = f"[-{width}, {2 * width}] for x, [-{height}, {2 * height}] for y"
    for k, polygon in enumerate(polygons):
        if not isinstance(polygon, list):
            continue
        bad = next((i for i, v in enumerate(polygon) if not is_number(v)), None)
        if bad is None:
            values = np.asarray(polygon, dtype=np.float64)
            low = np.resize(np.array([-width, -height], np.float64), len(values))
            outside = ~(np.isfinite(values) & (values >= low) & (values <= -2 * low))
            bad = int(np.flatnonzero(outside)[0]) if outside.any() else None
        if bad is not None:
            value = repr(polygon[bad])[:40]
            return f"polygon {k}: coordinate {bad} is {value} (expected numbers within {bounds})"
    return None


def is_number(value: Any) -> bool:
    """A float, or an int that converts to one (not a bool)."""
    if isinstance(value, float):
        return True
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 1 << 1023


def _is_integral(value: Any) -> bool:
    """An integer, or a float with an integer value (``640.0``: some tools write floats)."""
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer()
    )


def compressed_counts(counts: str) -> list[int] | str:
    """The run lengths of a compressed RLE string (the format ``pycocotools.mask.encode``
    writes), or why it is not one.

    Each count is stored as 5-bit groups in characters ``'0'``..``'o'`` (ASCII 48-111), the
    ``0x20`` bit saying that another group follows and the ``0x10`` bit of the last group the
    sign; from the fourth count on, the value is the difference to the count two before
    (``rleFrString`` in pycocotools' ``maskApi.c``, read here without its C overflows)."""
    codes = np.frombuffer(counts.encode("utf-32-le"), np.uint32).astype(np.int64) - 48
    if codes.size == 0:
        return "the compressed RLE counts string is empty"
    outside = (codes < 0) | (codes > 63)
    if outside.any():
        bad = int(np.flatnonzero(outside)[0])
        return (
            f"character {bad} ({counts[bad]!r}) of the compressed RLE counts is not one of "
            "'0'..'o' (not a string written by pycocotools.mask.encode)"
        )
    ends = np.flatnonzero((codes & 0x20) == 0)
    if ends.size == 0 or ends[-1] != codes.size - 1:
        return "the compressed RLE counts string ends inside a number (truncated?)"
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > MAX_CHARS_PER_COUNT:
        return (
            f"a compressed RLE count takes {int(lengths.max())} characters (at most "
            f"{MAX_CHARS_PER_COUNT} for any image size)"
        )
    shift = 5 * (np.arange(codes.size) - np.repeat(starts, lengths))
    values = np.add.reduceat((codes & 0x1F) << shift, starts)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= 1 << (5 * lengths[negative])
    # from index 3 on, each value is relative to the count two before it
    out = values.copy()
    out[2::2] = np.cumsum(values[2::2])
    if values.size > 3:
        out[3::2] = values[1] + np.cumsum(values[3::2])
    return [int(v) for v in out]


def rle_problem(rle: dict[str, Any], height: int, width: int) -> str | None:
    """Why an RLE (``{"size": [h, w], "counts": str | list[int]}``) cannot be decoded into a
    mask of this image, or ``None``: the size must be the image's, and the counts
    non-negative integers that sum to ``height * width``."""
    size = rle.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(_is_integral(v) for v in size)):
        return f"RLE size {size!r}: expected [height, width], two integers"
    if [int(v) for v in size] != [height, width]:
        return f"RLE size {list(size)} differs from the image size [{height}, {width}]"
    counts = rle["counts"]
    if isinstance(counts, str):
        decoded = compressed_counts(counts)
        if isinstance(decoded, str):
            return decoded
        counts = decoded
    elif isinstance(counts, list):
        bad = [i for i, v in enumerate(counts) if not isinstance(v, int) or isinstance(v, bool)]
        if bad:
            return (
                f"RLE counts[{bad[0]}] is {str(counts[bad[0]])[:40]!r}: expected non-negative "
                "integers"
            )
    else:
        return (
            f"RLE counts is a {type(counts).__name__}: expected a string (compressed RLE) or a "
            "list of integers (uncompressed RLE)"
        )
    negative = [i for i, v in enumerate(counts) if v < 0]
    if negative:
        return f"RLE count {negative[0]} is {counts[negative[0]]}: expected non-negative counts"
    total = sum(counts)
    if total != height * width:
        return (
            f"RLE counts sum to {total} pixels, expected height * width = {height} * {width} "
            f"= {height * width}"
        )
    return None


def segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
    """Why ``segmentation`` cannot be decoded for an image of this size, or ``None``."""
    if segmentation is None or segmentation == [] or segmentation == {}:
        return "no segmentation"
    if isinstance(segmentation, list):
        if not all(is_polygon(p) for p in segmentation):
            return "polygon with fewer than 3 points or an odd number of coordinates"
        return polygon_problem(segmentation, height, width)
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        return f"segmentation is neither polygons nor RLE: {str(segmentation)[:60]}"
    return rle_problem(segmentation, height, width)


def segmentation_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """A COCO ``segmentation`` (polygons, merged into one, RLE or uncompressed RLE) as one
    pycocotools RLE. Give it only what :func:`segmentation_problem` accepts: pycocotools
    trusts its input (bad geometry can hang or crash the process)."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    counts = segmentation["counts"]
    return {
        "size": segmentation["size"],
        "counts": counts.encode() if isinstance(counts, str) else counts,
    }


def usable_segmentation(
    seg: Any, height: int, width: int, where: str, report: DataReport
) -> tuple[Any | None, str | None]:
    """``(segmentation, None)`` with its degenerate polygons removed, ``(None, why)`` when it
    has nothing usable (empty, none at all, or polygons of fewer than 3 points / odd length
    only: not reported here, the caller says what becomes of its instance), or ``(None,
    None)`` for a ``bad segmentation`` error, reported: coordinates that are not finite
    numbers near the image, an RLE of another size than the image or whose counts do not
    decode to it, and anything that is neither polygons nor RLE. Bad polygons beside good
    ones are dropped alone, with a warning."""
    if isinstance(seg, list):
        problem = polygon_problem(seg, height, width)
        if problem:
            report.add("bad segmentation", where, problem)
            return None, None
        good = [p for p in seg if is_polygon(p)]
        if not good:
            return (
                None,
                "no segmentation" if not seg else "only polygons of < 3 points / odd length",
            )
        if len(good) < len(seg):
            report.add(
                "polygon dropped",
                where,
                f"{len(seg) - len(good)} of {len(seg)} polygons have < 3 points or an odd "
                "number of coordinates",
                "warning",
            )
        return good, None
    if seg is None or seg == {}:
        return None, "no segmentation"
    problem = segmentation_problem(seg, height, width)
    if problem:
        report.add("bad segmentation", where, problem)
        return None, None
    return seg, None


def check_segmentations(
    images: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    where: Callable[[int], str],
    report: DataReport,
) -> None:
    """Check the segmentation of every instance and crowd region of a COCO reader's
    ``targets`` (one per image, in step with ``images``) with :func:`usable_segmentation`,
    in place: ``segmentations`` / ``crowd_segmentations`` hold the usable ones (``None``
    where there is none), and ``has_masks`` says whether every annotation of the image has
    one. An image with an annotation without one (a box-only annotation beside polygons, as
    partly segmented sets have) keeps its boxes for detection and gives no instance masks
    and no label map: a mask or map that left the object out would teach that it is
    background. Each such image is a warning. A crowd region without a segmentation (a box
    marked ``iscrowd``) is ignored over its box instead: it is not an object to learn, so
    the image keeps its masks (a note counts them). ``where(i)`` names image ``i`` in
    reports."""
    crowd_boxes = 0
    for i, (img, target) in enumerate(zip(images, targets, strict=True)):
        h, w = int(img["height"]), int(img["width"])
        missing: list[str] = []
        for k, ann_id in enumerate(target["ann_ids"]):
            name = f"annotation id {ann_id}"
            seg = target["segmentations"][k]
            usable, why = usable_segmentation(seg, h, w, f"{name} ({where(i)})", report)
            if why:
                missing.append(f"{name}: {why}")
            target["segmentations"][k] = usable
        for k, seg in enumerate(target["crowd_segmentations"]):
            usable, why = usable_segmentation(seg, h, w, f"crowd region ({where(i)})", report)
            box = target["crowd_boxes"][k]
            if why and box[2] > 0 and box[3] > 0:
                usable, why = box_polygon(box), None
                crowd_boxes += 1
            elif why:
                missing.append(f"crowd region: {why}, and its bbox {box} has no area")
            target["crowd_segmentations"][k] = usable
        target["has_masks"] = not missing
        if missing:
            more = f"; {len(missing) - 3} more" if len(missing) > 3 else ""
            report.add(
                "boxes without masks",
                where(i),
                f"{'; '.join(missing[:3])}{more}: boxes kept; no masks or label map for this image",
                "warning",
            )
    if crowd_boxes:
        report.notes.append(
            f"{crowd_boxes} crowd region{'s' if crowd_boxes != 1 else ''} (iscrowd: 1) without "
            "a segmentation: ignored over the box"
        )


def box_polygon(box: Sequence[float]) -> list[list[float]]:
    """The COCO polygon of an ``[x, y, width, height]`` box."""
    x, y, w, h = (float(v) for v in box)
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]
