"""Boxes of COCO annotations that have a segmentation but no usable ``bbox``.

Ultralytics and most converters write polygons or RLE and leave ``bbox`` out, or write
``[0, 0, 0, 0]``; the box such an annotation stands for is the tight box of its segmentation.
The COCO reader takes that box (a ``box from segmentation`` warning of the data report names
the annotations), trains on it, and scores it: its kept ground truth
(:func:`~visionkit.data.readers.coco_format.kept_ground_truth`) carries the box, so COCOeval's
``bbox`` scoring uses it. A ``bbox`` that is there but not 4 finite numbers stays an error.

>>> box_from_segmentation({"segmentation": [[2, 1, 6, 1, 6, 4]]}, {"height": 8, "width": 8})
([2.0, 1.0, 4.0, 3.0], 6.0)
>>> box_from_segmentation({"bbox": [2, 1, 4, 3], "segmentation": [[2, 1, 6, 1, 6, 4]]},
...                       {"height": 8, "width": 8}) is None  # its own box is usable
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from visionkit.data.checks import DataReport
from visionkit.data.readers.coco_format import is_box
from visionkit.data.readers.segmentation_checks import (
    is_polygon,
    segmentation_problem,
    segmentation_rle,
)

#: A derived box: COCO ``[x, y, w, h]`` and the area of the segmentation's mask.
DerivedBox = tuple[list[float], float]

#: The most annotation ids the ``box from segmentation`` warning names.
MAX_IDS_SHOWN = 10


def lacks_box(bbox: Any) -> bool:
    """Whether a ``bbox`` value says "no box": absent (``None``, ``[]``) or of zero or
    negative width or height (``[0, 0, 0, 0]``)."""
    if bbox is None or (isinstance(bbox, list | tuple) and len(bbox) == 0):
        return True
    return is_box(bbox) and (bbox[2] <= 0 or bbox[3] <= 0)


def box_from_segmentation(ann: dict[str, Any], image: dict[str, Any] | None) -> DerivedBox | None:
    """The tight box of ``ann``'s segmentation and its mask area, for an annotation of
    ``image`` (an image entry with ``height`` / ``width``) whose ``bbox`` :func:`lacks_box`;
    ``None`` when its bbox is usable (or malformed: an error of its own), its image is not
    known, or its segmentation gives no box (none, bad geometry, nothing inside the image).

    Polygons give their extent (the usable ones: 3 points or more), clipped to the image, as
    COCO's own boxes are; an RLE gives pycocotools' ``toBbox`` of its mask."""
    if image is None or not lacks_box(ann.get("bbox")):
        return None
    height, width = int(image["height"]), int(image["width"])
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        seg = [p for p in seg if is_polygon(p)]
    if not seg or segmentation_problem(seg, height, width):
        return None
    from pycocotools import mask as mask_utils

    rle = segmentation_rle(seg, height, width)
    area = float(mask_utils.area(rle))
    if isinstance(seg, list):
        points = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in seg])
        low = points.min(axis=0).clip(0, (width, height))
        high = points.max(axis=0).clip(0, (width, height))
        box = [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])]
    else:
        box = [float(v) for v in mask_utils.toBbox(rle)]
    if box[2] <= 0 or box[3] <= 0:
        return None
    return box, area or box[2] * box[3]


def bad_box_detail(ann: dict[str, Any], image: dict[str, Any] | None) -> str:
    """What is wrong with ``ann``'s ``bbox`` (not 4 finite numbers), and, where it has none
    but a segmentation, why that gave no box (:func:`box_from_segmentation`)."""
    detail = f"bbox {ann.get('bbox')!r}: expected [x, y, width, height], 4 finite numbers"
    seg = ann.get("segmentation")
    if image is None or not seg or not lacks_box(ann.get("bbox")):
        return detail
    height, width = int(image["height"]), int(image["width"])
    why = segmentation_problem(seg, height, width) or f"nothing of it in the {width}x{height} image"
    return f"{detail}, or a segmentation to take one from (its segmentation: {why})"


def report_boxes_from_segmentation(
    derived: Mapping[int, DerivedBox], annotations: Sequence[Any], report: DataReport
) -> None:
    """One ``box from segmentation`` warning for the file, counting the annotations (by
    position in ``annotations``) whose box was taken from their segmentation and naming
    their ids (the first :data:`MAX_IDS_SHOWN`)."""
    if not derived:
        return
    ids = [annotations[k].get("id") for k in derived]
    shown = ", ".join(map(str, ids[:MAX_IDS_SHOWN]))
    more = f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else ""
    n = len(ids)
    report.add(
        "box from segmentation",
        report.source,
        f"{n} annotation{'s' if n != 1 else ''} without a usable bbox (missing, or zero or "
        f"negative width or height) take{'s' if n == 1 else ''} the tight box of "
        f"{'its' if n == 1 else 'their'} segmentation, for training and evaluation: "
        f"annotation id{'s' if n != 1 else ''} {shown}{more}",
        "warning",
    )
