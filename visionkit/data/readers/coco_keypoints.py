"""COCO keypoints: the keypoint definition of the categories and each annotation's
``[x1, y1, v1, ..., xK, yK, vK]``, checked, for :class:`~visionkit.data.readers.coco.CocoDataset`
(``keypoints=True``).

The definition is the categories' ``keypoints`` (names) and ``skeleton`` (1-based pairs, as
in COCO). Every category that gives ``keypoints`` must give the same list: one keypoint head
predicts K points per object whatever its class. Annotations of a category without
``keypoints`` (and annotations without a ``keypoints`` field) are labelled with K points of
visibility 0: they train the boxes, not the keypoints.

Visibility follows COCO: ``0`` not labelled, ``1`` labelled but hidden (occluded), ``2``
labelled and visible. ``num_keypoints``, when present, must count the points with ``v > 0``
(``COCOeval`` uses it to ignore objects without keypoints).

Flip pairs (what a horizontal flip swaps) come from the names: ``left_eye`` and
``right_eye``, ``left`` and ``right``: a name and the same name with ``left`` and ``right``
exchanged, or a part ``l`` and ``r`` (MPII's ``l_ankle`` and ``r_ankle``). :func:`flip_index`
gives the permutation; a name of one side without its other (``left_hand`` beside
``right_arm``) is a warning, since a flip then leaves it where it is.

Coordinates are COCO's pixel indices (``0..W-1``), the convention albumentations' keypoint
transforms use (a horizontal flip maps ``x`` to ``W - 1 - x``).

>>> flip_index(["nose", "left_eye", "right_eye"])
[0, 2, 1]
>>> flip_index(["head", "l_ankle", "r_ankle"])
[0, 2, 1]
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visionkit.data.batch import onto_last_pixel
from visionkit.data.checks import DataReport

_SIDE = re.compile(r"left|right|Left|Right|LEFT|RIGHT")
_SWAP = {"left": "right", "right": "left", "Left": "Right", "Right": "Left"}
_SWAP.update({"LEFT": "RIGHT", "RIGHT": "LEFT"})


_TOKENS = re.compile(r"([_\-\s.])")  # a name's parts: l_ankle, hand_R, L.knee
_SIDE_TOKENS = {"l": "r", "r": "l", "L": "R", "R": "L"}


def mirrored(name: str) -> str:
    """The name of the other side: ``left`` and ``right`` exchanged (``left_eye``), else a
    part ``l`` / ``r`` (``l_ankle``, MPII's; ``hand_R``); the name itself when it has no side."""
    swapped = _SIDE.sub(lambda m: _SWAP[m.group(0)], name)
    if swapped != name:
        return swapped
    return "".join(_SIDE_TOKENS.get(part, part) for part in _TOKENS.split(name))


def flip_index(names: Sequence[str]) -> list[int]:
    """``out[k]``: the keypoint that ``k`` becomes under a horizontal flip (its other side by
    name, :func:`mirrored`, else itself)."""
    position = {name: k for k, name in enumerate(names)}
    return [position.get(mirrored(name), k) for k, name in enumerate(names)]


@dataclass
class KeypointSchema:
    """The keypoint definition of a dataset.

    Attributes:
        names: the K keypoint names, in order.
        skeleton: 1-based ``[a, b]`` pairs of connected keypoints (COCO's convention).
        flip: :func:`flip_index` of ``names``.
        sigmas: the OKS sigma of each keypoint when the category gives them
            (``kpt_oks_sigmas``, visionkit's key, written by ``visionkit convert`` from an
            Ultralytics pose file's), else ``None``.
        dims: the numbers per keypoint of the labels the data came from: 2 for an Ultralytics
            pose set of ``kpt_shape: [K, 2]`` (``x y``, the category's ``kpt_dims``), else 3
            (``x y v``); the YOLO lines ``predict --save-txt`` writes follow it.
        categories: the category ids that define keypoints.
        refused: the ids of categories whose definition differs (an error of its own: their
            annotations' keypoints are not reported again).
    """

    names: list[str]
    skeleton: list[list[int]] = field(default_factory=list)
    flip: list[int] = field(default_factory=list)
    sigmas: list[float] | None = None
    dims: int = 3
    categories: set[int] = field(default_factory=set)
    refused: set[Any] = field(default_factory=set)  # categories of another definition


def keypoint_schema(
    categories: Sequence[dict[str, Any]], report: DataReport
) -> KeypointSchema | None:
    """The definition shared by the categories, or ``None`` when none defines keypoints
    (recorded in ``report`` as an error: keypoints were asked for)."""
    schema: KeypointSchema | None = None
    for cat in categories:
        names = cat.get("keypoints")
        if names is None:
            continue
        where = f"category id {cat.get('id')} ({cat.get('name')!r})"
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            report.add("bad keypoints", where, f"keypoints {names!r}: expected a list of names")
            continue
        if schema is None:
            schema = KeypointSchema(list(names), flip=flip_index(names))
            schema.skeleton = _skeleton(cat.get("skeleton") or [], len(names), where, report)
            schema.sigmas = _sigmas(cat.get("kpt_oks_sigmas"), len(names), where, report)
            dims = cat.get("kpt_dims")  # null, as a json writer puts a missing value: 3
            schema.dims = 3 if dims is None else _dims(dims, where, report)
            for k, name in enumerate(names):
                if mirrored(name) != name and schema.flip[k] == k:
                    report.add(
                        "unpaired keypoint",
                        where,
                        f"{name!r} has no {mirrored(name)!r} among the keypoints: a horizontal "
                        "flip leaves it in place instead of swapping it",
                        severity="warning",
                    )
        elif names != schema.names:
            report.add(
                "bad keypoints",
                where,
                f"keypoints {names} differ from {schema.names} (of category id "
                f"{min(schema.categories)}); one keypoint head needs one definition",
            )
            schema.refused.add(cat.get("id"))
            continue
        schema.categories.add(int(cat["id"]))
    if schema is None:
        report.add(
            "bad keypoints",
            "categories",
            "keypoints were asked for (a keypoint head), but no category has a 'keypoints' "
            "list of names (COCO keypoint format)",
        )
    return schema


def _sigmas(sigmas: Any, count: int, where: str, report: DataReport) -> list[float] | None:
    if sigmas is None:
        return None
    if not (
        isinstance(sigmas, list)
        and len(sigmas) == count
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in sigmas)
        and all(math.isfinite(v) and v > 0 for v in sigmas)
    ):
        report.add(
            "bad keypoints",
            where,
            f"kpt_oks_sigmas {sigmas!r}: expected {count} positive numbers, the OKS sigma of "
            "each keypoint",
        )
        return None
    return [float(v) for v in sigmas]


def _dims(dims: Any, where: str, report: DataReport) -> int:
    if dims in (2, 3) and not isinstance(dims, bool):
        return int(dims)
    report.add(
        "bad keypoints",
        where,
        f"kpt_dims {dims!r}: expected 2 (x y per keypoint, an Ultralytics kpt_shape [K, 2]) "
        "or 3 (x y v)",
    )
    return 3


def _skeleton(pairs: Any, count: int, where: str, report: DataReport) -> list[list[int]]:
    ok = isinstance(pairs, list) and all(
        isinstance(p, list)
        and len(p) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= count for i in p)
        for p in pairs
    )
    if not ok:
        report.add(
            "bad keypoints",
            where,
            f"skeleton {pairs!r}: expected [[a, b], ...] pairs of 1-based keypoint indices "
            f"in 1..{count}",
        )
        return []
    return [list(p) for p in pairs]


def annotation_keypoints(
    ann: dict[str, Any], schema: KeypointSchema, where: str, report: DataReport
) -> np.ndarray:
    """float32 ``[K, 3]`` (x, y, v) of one annotation; zeros when it has none (or a problem,
    recorded in ``report``)."""
    count = len(schema.names)
    out = np.zeros((count, 3), np.float32)
    values = ann.get("keypoints")
    if values is None:
        return out
    if ann.get("category_id") in schema.refused:
        return out
    if ann.get("category_id") not in schema.categories:
        report.add(
            "bad keypoints",
            where,
            f"has keypoints but its category_id {ann.get('category_id')} defines none "
            f"(categories with keypoints: {sorted(schema.categories)})",
        )
        return out
    numbers = isinstance(values, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )
    if not numbers or len(values) != 3 * count:
        got = f"{len(values)} values" if isinstance(values, list) else repr(values)[:40]
        report.add(
            "bad keypoints",
            where,
            f"keypoints has {got}; expected 3 x {count} = {3 * count} finite numbers "
            f"([x, y, v] for each of {', '.join(schema.names)})",
        )
        return out
    points = np.asarray(values, np.float64).reshape(count, 3)
    bad = [k for k in range(count) if points[k, 2] not in (0, 1, 2)]
    if bad:
        shown = ", ".join(f"{schema.names[k]} (v={points[k, 2]:g})" for k in bad[:5])
        report.add(
            "bad keypoints",
            where,
            f"visibility must be 0 (not labelled), 1 (hidden) or 2 (visible); got {shown}",
        )
        return out
    labelled = int((points[:, 2] > 0).sum())
    stated = ann.get("num_keypoints")
    if stated is not None and stated != labelled:
        report.add(
            "bad keypoints",
            where,
            f"num_keypoints is {stated!r} but {labelled} keypoints have v > 0",
        )
        return out
    return points.astype(np.float32)


def attach_keypoints(
    targets: list[dict[str, Any]],
    annotations: list[Any],
    categories: Sequence[dict[str, Any]],
    image_ids: Sequence[Any],
    report: DataReport,
    image_sizes: Sequence[tuple[int, int]] | None = None,
) -> KeypointSchema | None:
    """Add ``keypoints`` (float32 ``[N, K, 3]``, in the order of each target's boxes) to the
    reader's per-image ``targets``; returns the schema (``None``: problems in ``report``).
    A labelled keypoint outside its image (``image_sizes``: ``(H, W)`` of each) is a warning:
    pycocotools scores predictions against it as it is."""
    schema = keypoint_schema(categories, report)
    if schema is None:
        return None
    for i, (target, image_id) in enumerate(zip(targets, image_ids, strict=True)):
        points = []
        for k, ann_id in zip(target["ann_index"], target["ann_ids"], strict=True):
            where = f"annotation id {ann_id} (image id {image_id})"
            found = annotation_keypoints(annotations[k], schema, where, report)
            if image_sizes is not None:  # a point on the far edge kept, on the last pixel
                _outside(found, image_sizes[i], schema.names, where, report)
                found = onto_last_pixel(found, image_sizes[i])
            points.append(found)
        target["keypoints"] = (
            np.stack(points) if points else np.zeros((0, len(schema.names), 3), np.float32)
        )
    return schema


def _outside(
    points: np.ndarray, size: tuple[int, int], names: Sequence[str], where: str, report: DataReport
) -> None:
    """A warning naming the labelled points (``v > 0``) of ``points`` ``[K, 3]`` that lie
    outside the ``(H, W)`` image, the points training drops (visibility 0): the pixels of
    indices ``0..W-1`` reach half a pixel beyond their centres (``x >= -0.5``), and a point up
    to the far edge (``x <= W``, ``y <= H``) is read on the last pixel
    (:func:`~visionkit.data.batch.onto_last_pixel`)."""
    h, w = size
    x, y, v = points[:, 0], points[:, 1], points[:, 2]
    out = np.flatnonzero((v > 0) & ((x < -0.5) | (y < -0.5) | (x > w) | (y > h)))
    if len(out):
        shown = ", ".join(f"{names[k]!r} at ({x[k]:g}, {y[k]:g})" for k in out)
        report.add(
            "keypoint outside the image",
            where,
            f"{shown} outside the {w}x{h} image (x in -0.5..{w}, y in -0.5..{h}): trained as "
            "not labelled (v = 0)",
            severity="warning",
        )


def keypoint_statistics(targets: Sequence[dict[str, Any]], names: Sequence[str]) -> list[str]:
    """``check-data``'s keypoint lines for the kept ``targets``: the boxes labelling each
    keypoint (``v > 0``) and the boxes labelling none (they train boxes only)."""
    points = [t["keypoints"] for t in targets if len(t.get("keypoints", ()))]
    stacked = np.concatenate(points) if points else np.zeros((0, len(names), 3), np.float32)
    labelled = (stacked[:, :, 2] > 0).sum(0)
    shown = ", ".join(f"{name} {int(n)}" for name, n in zip(names, labelled, strict=True))
    none = int((~(stacked[:, :, 2] > 0).any(1)).sum())
    return [
        f"keypoints: {len(names)} per box; boxes labelling each (v > 0): {shown}",
        f"boxes without a labelled keypoint: {none} of {len(stacked)}",
    ]
