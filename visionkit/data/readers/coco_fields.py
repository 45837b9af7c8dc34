"""What an annotation's ``iscrowd`` and ``area`` say, read one way by the COCO reader, the
ground truth it keeps for evaluation and the evaluator's fills
(:func:`~visionkit.evaluation.coco_fills.fill_gt_defaults`).

``iscrowd``: ``1`` (``true``, ``1.0``, the text ``"1"``) marks a crowd region, ``0``
(``false``, ``0.0``, the text ``"0"``), ``null`` or no key an object. Any other value
(``NaN``, ``inf``, ``2``, ``-1``, ``"yes"``, ``"2"``) is not guessed: the reader reports it
as an error naming the annotation (``bad iscrowd``), and the evaluator given such a file
refuses it. pycocotools reads ``iscrowd`` twice, as a truth value (to ignore detections) and
through ``int()`` (the crowd IoU): ``NaN`` is true there and ``int(nan)`` raises, ``"0"``
is true and ``int("0")`` is 0. So pycocotools never sees the file's value: the evaluator's
fill (:func:`~visionkit.evaluation.coco_fills.fill_gt_defaults`) writes every ``iscrowd`` as
the integer 0 or 1 this module reads, the text ``"0"`` and ``"1"`` that exporters write from a
table as 0 and 1 (pycocotools on the file as it is would ignore a ``"0"`` object). That text is
said, never passed silently: a ``check-data`` warning (``iscrowd as text``,
:func:`report_text_crowds`), a warning of the evaluation and ``eval --json``'s
``iscrowd_text`` count (:func:`text_crowd_note`).

``area``: a finite number above 0 is used as it is; anything else (``null``, ``"64"``, ``0``,
``NaN``) is filled with the area of the annotation's segmentation (or box) where a fill is
needed.

>>> [is_crowd(v) for v in (1, True, 1.0, "1", 0, False, None, "0")]
[True, True, True, True, False, False, False, False]
>>> [is_crowd(v) for v in (float("nan"), 2, "2", "true", "")]
[None, None, None, None, None]
>>> text_crowd_note(2).split(";")[0]
'2 annotations with iscrowd written as text, read as 0/1'
>>> [usable_area(v) for v in (64, 0.5, 0, float("nan"), float("inf"), "64", None, True)]
[True, True, False, False, False, False, False, False]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from visionkit.data.readers.segmentation_checks import is_number
from visionkit.errors import counted

#: What a bad ``iscrowd`` is told to be instead.
CROWD_VALUES = "0 (an object), 1 (a crowd region, ignored), or no iscrowd key (0)"

#: The most annotation ids the ``iscrowd as text`` warning names.
MAX_IDS_SHOWN = 10


def is_crowd(value: Any) -> bool | None:
    """Whether an annotation's ``iscrowd`` value marks a crowd region: ``True`` for 1 (or
    ``"1"``), ``False`` for 0 (or ``"0"``) or ``None`` (absent, ``null``), ``None`` for any
    other value (a problem: see the module docstring)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str):  # a table's column written as text: "0" / "1" only
        return {"0": False, "1": True}.get(value.strip())
    if is_number(value) and value in (0, 1):  # 1.0 as 1; NaN and inf are neither
        return bool(value)
    return None


def bad_crowd_detail(value: Any) -> str:
    """Why an ``iscrowd`` value that :func:`is_crowd` does not read is refused."""
    return f"iscrowd is {value!r}; expected {CROWD_VALUES}"


def usable_area(value: Any) -> bool:
    """Whether an annotation's ``area`` is usable as it is: a finite number above 0."""
    return is_number(value) and math.isfinite(value) and value > 0


def is_text_crowd(value: Any) -> bool:
    """Whether an ``iscrowd`` value is the text ``"0"`` or ``"1"``, read as the number but
    a crowd to pycocotools on the file as it is (any non-empty text is true)."""
    return isinstance(value, str) and is_crowd(value) is not None


def text_crowd_note(n: int) -> str:
    """What ``n`` annotations with ``iscrowd`` written as text are told (the reader's
    ``iscrowd as text`` warning, the evaluation's)."""
    return (
        f"{counted(n, 'annotation')} with iscrowd written as text, read as 0/1; pycocotools on "
        'the file as it is treats any non-empty text as crowd (ignores a "0" object); write '
        "integers"
    )


def report_text_crowds(annotations: Sequence[Any], report: Any) -> None:
    """One ``iscrowd as text`` warning of a :class:`~visionkit.data.checks.DataReport` for the
    annotations whose ``iscrowd`` is the text ``"0"`` / ``"1"``, naming their ids (the first
    :data:`MAX_IDS_SHOWN`)."""
    ids = [
        a.get("id") for a in annotations if isinstance(a, dict) and is_text_crowd(a.get("iscrowd"))
    ]
    if ids:
        shown = ", ".join(map(str, ids[:MAX_IDS_SHOWN]))
        more = f" and {len(ids) - MAX_IDS_SHOWN} more" if len(ids) > MAX_IDS_SHOWN else ""
        detail = f"{text_crowd_note(len(ids))}: annotation ids {shown}{more}"
        report.add("iscrowd as text", report.source, detail, "warning")
