"""Identities on COCO annotations, for detection plus embedding (the ``fcos_embedding`` head):
an annotation's ``identity`` (an int or a string) names the person or object it shows, the
same identity in every image where it appears (a pedestrian across the frames of a video, one
product across photos). Read by :class:`~visionkit.data.readers.coco.CocoDataset` when
``identities=True`` (switched on when a head learns from them).

The identities of a file form the label family ``identity`` (``label_names["identity"]``: the
identities as strings, sorted, ints before strings, ints in numeric order); each box carries
its identity's index there, ``-1`` when its annotation has no ``identity`` (it still trains
the boxes). The family is never matched against the training set's (``unmatched_families``):
a validation set shows other people.

>>> targets = [{"ann_index": [0, 1], "ann_ids": [7, 8]}]
>>> anns = [{"id": 7, "identity": 12}, {"id": 8}]
>>> from visionkit.data.checks import DataReport
>>> attach_identities(targets, anns, [1], DataReport("a.json", "coco"))
['12']
>>> targets[0]["identities"].tolist()
[0, -1]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from visionkit.data.checks import DataReport

#: The annotation field that holds the identity.
IDENTITY_FIELD = "identity"


def identity_key(value: Any) -> str | None:
    """The identity an annotation's ``identity`` value names, as a string; ``None`` when the
    value is not an identity (a bool, a float, an empty string, a list ...)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _order(name: str) -> tuple[int, int, str]:
    """Sort key: integer identities first, in numeric order, then the others by name."""
    digits = name.lstrip("-").isdigit()
    return (0, int(name), "") if digits else (1, 0, name)


def attach_identities(
    targets: list[dict[str, Any]],
    annotations: Sequence[Any],
    image_ids: Sequence[Any],
    report: DataReport,
) -> list[str]:
    """Add ``identities`` (int64 ``[N]``, in the order of each target's boxes, ``-1`` without
    one) to the reader's per-image ``targets``; returns the identity names (the ``identity``
    family). Problems go to ``report`` as errors: an ``identity`` that is not an int or a
    non-empty string, and one identity on two boxes of the same image."""
    keys: list[list[str | None]] = []
    for target, image_id in zip(targets, image_ids, strict=True):
        row: list[str | None] = []
        seen: dict[str, Any] = {}
        for k, ann_id in zip(target["ann_index"], target["ann_ids"], strict=True):
            value = annotations[k].get(IDENTITY_FIELD)
            key = identity_key(value)
            where = f"annotation id {ann_id} (image id {image_id})"
            if value is not None and key is None:
                report.add(
                    "bad identity",
                    where,
                    f"identity {value!r}: expected an int or a non-empty string naming the "
                    "person or object (the same value in every image where it appears)",
                )
            elif key is not None and key in seen:
                report.add(
                    "bad identity",
                    where,
                    f"identity {value!r} is also on annotation id {seen[key]} of the same "
                    "image; an identity is one object, seen once per image",
                )
                key = None
            elif key is not None:
                seen[key] = ann_id
            row.append(key)
        keys.append(row)
    names = sorted({k for row in keys for k in row if k is not None}, key=_order)
    index = {name: i for i, name in enumerate(names)}
    for target, row in zip(targets, keys, strict=True):
        target["identities"] = np.array(
            [-1 if k is None else index[k] for k in row], dtype=np.int64
        ).reshape(-1)
    if not names:
        report.add(
            "bad identity",
            "annotations",
            f"identities were asked for (an fcos_embedding head), but no annotation has an "
            f"'{IDENTITY_FIELD}' field (an int or a string per object)",
        )
    return names


def read_identities(dataset: Any, annotations: Sequence[Any], report: DataReport) -> None:
    """The COCO reader's hook (``identities=True``): ``identities`` on each of its targets,
    ``label_names["identity"]``, and ``unmatched_families`` so that a validation set's other
    identities are not compared with the training set's."""
    ids = [img["id"] for img in dataset.images]
    dataset.label_names["identity"] = attach_identities(dataset.targets, annotations, ids, report)
    dataset.unmatched_families = ("identity",)


def identity_statistics(targets: Sequence[dict[str, Any]], names: Sequence[str]) -> list[str]:
    """``check-data``'s identity line for the kept ``targets``: identities, the boxes that
    have one, boxes per identity, and the identities seen on one box only (no pair to learn
    "same" from, no gallery match in evaluation)."""
    ids = np.concatenate([t["identities"] for t in targets] or [np.zeros(0, np.int64)])
    per = np.bincount(ids[ids >= 0], minlength=len(names))
    per = per[per > 0]
    if not len(per):
        return [f"identities: none of {len(ids)} boxes has one"]
    spread = f"min {per.min()}, median {float(np.median(per)):g}, max {per.max()}"
    return [
        f"identities: {len(per)} on {int((ids >= 0).sum())} of {len(ids)} boxes (boxes per "
        f"identity: {spread}; seen once: {int((per == 1).sum())})"
    ]
