"""The ids of a COCO file: of the right kind (numbers or text, an annotation's ``id``,
``image_id`` and ``category_id``), each once, and no annotation id 0, which pycocotools never
matches.

>>> from visionkit.data.checks import DataReport
>>> report = DataReport("a.json", "coco")
>>> check_ids({"annotations": [{"id": 1}, {"id": 1}]}, report)
>>> [p.kind for p in report.problems]
['duplicate id']
"""

from __future__ import annotations

import posixpath
from typing import Any

from visionkit.data.checks import DataReport
from visionkit.data.readers.coco_fields import is_crowd
from visionkit.data.readers.segmentation_checks import is_number

#: The kinds of value an id can be (``None``: absent, said elsewhere).
ID_TYPES = (int, float, str, type(None))


def check_ids(data: dict[str, Any], report: DataReport, crowds_are_objects: bool = False) -> None:
    """Of a COCO file's ``data``: ids (and image file names) that appear more than once are
    errors; annotation id 0 (or 0.0) of an object a warning: pycocotools' ``COCOeval`` reads it
    as "no match", so a detection that finds that object counts as a false positive
    (pycocotools by hand scores the file so too). A crowd's id 0 is harmless while crowds are
    ignored (``crowds_are_objects`` false): a detection on a crowd is not counted either way.

    An annotation's ``id``, ``image_id`` or ``category_id`` that is no number or text (a list,
    an object) is an error, raised at once with those found so far: nothing could be matched.

    Raises:
        AnnotationError: ids of the wrong kind.
    """

    def dicts(items: Any) -> list[dict[str, Any]]:
        return [x for x in items or [] if isinstance(x, dict)]

    images, annotations, categories = (data.get(k) for k in ("images", "annotations", "categories"))
    for k, ann in enumerate(annotations or []):
        for key in ("id", "image_id", "category_id"):
            if isinstance(ann, dict) and not isinstance(ann.get(key), ID_TYPES):
                where = f"annotations[{k}]"
                report.add("bad id", where, f"{key} {ann[key]!r}: expected a number or text")
    if report.counts_by_kind("error").get("bad id"):
        report.raise_for_errors()
    for what, items, key in (
        ("image id", dicts(images), "id"),
        ("image file_name", dicts(images), "file_name"),
        ("annotation id", dicts(annotations), "id"),
        ("category id", dicts(categories), "id"),
    ):
        spellings: dict[Any, list[Any]] = {}
        for item in items:
            if item.get(key) is not None and isinstance(item[key], ID_TYPES):
                value = item[key]
                same = _same_file(value) if key == "file_name" else value
                spellings.setdefault(same, []).append(value)
        for value, written in spellings.items():
            if len(written) > 1:
                as_written = sorted(set(map(repr, written)))
                detail = f"appears {len(written)} times" + (
                    f" (as {', '.join(as_written)})" if len(as_written) > 1 else ""
                )
                report.add("duplicate id", f"{what} {value!r}", detail)
    if any(
        is_number(a.get("id"))
        and a["id"] == 0
        and (crowds_are_objects or not is_crowd(a.get("iscrowd")))
        for a in dicts(annotations)
    ):
        report.add(
            "annotation id 0",
            "annotation id 0",
            "COCO evaluation (pycocotools) reads id 0 as 'no match': a detection that finds "
            "this object counts as a false positive; number the annotations from 1",
            severity="warning",
        )


def _same_file(file_name: Any) -> Any:
    """``file_name`` as the file it names: ``images\\a.jpg``, ``./images/a.jpg`` and
    ``images/a.jpg`` are one file."""
    if not isinstance(file_name, str):
        return file_name
    return posixpath.normpath(file_name.replace("\\", "/"))
