"""What pycocotools needs of a COCO ground truth and a file may lack, filled before it is
scored: ``iscrowd`` as the integer 0 or 1, an ``area`` above 0, an ``id``
(:func:`fill_gt_defaults`; :func:`~visionkit.evaluation.coco.load_coco_gt` logs the counts).

>>> anns = [{"id": 1, "bbox": [0, 0, 4, 2], "iscrowd": "0"}, {"bbox": [0, 0, 1, 2]}]
>>> fill_gt_defaults({"annotations": anns})
{'area': 2, 'iscrowd': 1, 'id': 1, 'iscrowd_text': 1}
>>> [(a["id"], a["iscrowd"], a["area"]) for a in anns]
[(1, 0, 8.0), (2, 0, 2.0)]
"""

from __future__ import annotations

import math
from typing import Any

from visionkit.data.readers.coco_fields import (
    bad_crowd_detail,
    is_crowd,
    is_text_crowd,
    usable_area,
)
from visionkit.data.readers.segmentation_checks import (
    is_number,
    segmentation_problem,
    segmentation_rle,
)
from visionkit.errors import DataError, counted


def fill_gt_defaults(data: dict[str, Any], source: str = "ground truth") -> dict[str, int]:
    """Fill ``iscrowd`` (``0``; ``true`` / ``1.0`` / ``"1"`` written 1, ``"0"`` 0), ``area``
    (where it is not :func:`~visionkit.data.readers.coco_fields.usable_area`) and ``id`` (after
    the largest id, as a number) of a COCO ground-truth dict in place; returns how many of each
    were filled, and as ``iscrowd_text`` how many ``iscrowd`` values were the text ``"0"`` /
    ``"1"`` (pycocotools on the file as it is reads any non-empty text as a crowd).
    A segmentation is measured only when
    :func:`~visionkit.data.readers.segmentation_checks.segmentation_problem` accepts it
    (pycocotools can hang or crash on bad geometry); otherwise the box gives the area.

    Raises:
        DataError: an ``iscrowd`` that is neither 0 nor 1 (``NaN``, ``2``, ``"yes"``; see
            :mod:`~visionkit.data.readers.coco_fields`), naming ``source`` and the annotations.
    """
    from pycocotools import mask as mask_utils

    sizes = {img.get("id"): (img.get("height"), img.get("width")) for img in data.get("images", [])}
    filled = {"area": 0, "iscrowd": 0, "id": 0, "iscrowd_text": 0}
    bad: list[str] = []  # iscrowd values that are neither 0 nor 1
    annotations = data.get("annotations", [])
    numbers = [a["id"] for a in annotations if is_number(a.get("id")) and math.isfinite(a["id"])]
    next_id = math.ceil(max(numbers, default=0))  # ids written 1.0, 2.0 are 1 and 2 for COCO
    for ann in annotations:
        if ann.get("id") is None:
            next_id += 1
            ann["id"] = next_id
            filled["id"] += 1
        crowd = is_crowd(ann.get("iscrowd"))  # read as the reader reads it
        if crowd is None:  # NaN, 2, "yes": pycocotools' int() would raise or disagree
            bad.append(f"annotation id {ann.get('id')}: {bad_crowd_detail(ann['iscrowd'])}")
        elif ann.get("iscrowd") is None:  # absent, or null (a converter's NaN): an object
            filled["iscrowd"] += 1
        elif is_text_crowd(ann["iscrowd"]):  # "0" / "1": "0" is a crowd to pycocotools
            filled["iscrowd_text"] += 1
        ann["iscrowd"] = int(bool(crowd))  # 1.0, true, "1" as 1; "0" as 0 (true to COCOeval)
        if usable_area(ann.get("area")):
            continue
        filled["area"] += 1
        area = None
        seg = ann.get("segmentation")
        h, w = sizes.get(ann.get("image_id"), (None, None))
        if (
            seg
            and isinstance(h, int)
            and isinstance(w, int)
            and not segmentation_problem(seg, h, w)
        ):
            try:
                area = float(mask_utils.area(segmentation_rle(seg, h, w)))
            except Exception:  # an unusable segmentation: fall back to the box
                area = None
        if area is None:
            bbox = ann.get("bbox") or [0, 0, 0, 0]
            area = float(max(bbox[2], 0) * max(bbox[3], 0))
        ann["area"] = area
    if bad:
        more = f"; {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(
            f"{source}: {counted(len(bad), 'annotation')} with a bad iscrowd: "
            f"{'; '.join(bad[:10])}{more}"
        )
    return filled
