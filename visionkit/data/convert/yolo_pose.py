"""Ultralytics pose labels: the keypoint definition of a dataset file and the keypoints of
each label line, as COCO keypoints.

A pose dataset file has ``kpt_shape: [K, D]`` (``D`` = 2: ``x y`` per keypoint, 3: ``x y v``),
optionally ``flip_idx`` (the keypoint each one becomes under a horizontal flip),
``kpt_names`` (``{class: [name, ...]}`` or a list; one list for every class) and
``kpt_oks_sigmas`` (K positive OKS sigmas, as Ultralytics' validation reads them; they become
the keypoint head's ``kpt_oks_sigmas`` unless the config sets those). Each label line
is ``class cx cy w h`` followed by ``D`` numbers per keypoint, coordinates normalised to
``[0, 1]`` as the box's.

Read as Ultralytics reads them: with ``D = 3``, ``v`` is COCO's visibility (0 not labelled,
1 labelled but hidden, 2 visible); with ``D = 2`` every keypoint is labelled. A keypoint's
pixel position is ``x W``, ``y H`` (the inverse of Ultralytics' COCO-to-YOLO conversion:
COCO's own coordinates), kept inside the image (``0..W-1``).

Keypoint names carry the flip pairs in visionkit (``left_eye`` and ``right_eye``:
:func:`~visionkit.data.readers.coco_keypoints.flip_index`): names given must pair the
keypoints as ``flip_idx`` does; without names, each keypoint that ``flip_idx`` leaves in place
is ``point<k>`` and each pair ``pair<n>_left`` / ``pair<n>_right`` (the lower index left);
names that pair the keypoints otherwise than ``flip_idx`` are followed, with a warning.

>>> pose = pose_format({"kpt_shape": [3, 3], "flip_idx": [0, 2, 1]}, "data.yaml")
>>> pose.names
['point0', 'pair1_left', 'pair1_right']
>>> pose.keypoints([0.5, 0.5, 2, 0.25, 0.5, 1, 0.0, 0.0, 0], width=100, height=40)
[50.0, 20.0, 2, 25.0, 20.0, 1, 0.0, 0.0, 0]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from visionkit.errors import DataError

TOLERANCE = 1e-3  # as the boxes' (visionkit.data.convert.yolo_labels.TOLERANCE)

#: The keys of a dataset file that define its keypoints.
POSE_KEYS = ("kpt_shape", "flip_idx", "kpt_names", "kpt_oks_sigmas")


@dataclass(frozen=True)
class PoseFormat:
    """The keypoint definition of an Ultralytics pose dataset: ``count`` keypoints of
    ``dims`` numbers each, their ``names`` (whose left / right pairs are ``flip_idx``'s) and
    OKS ``sigmas`` (``None``: the file gives none)."""

    count: int
    dims: int
    names: list[str]
    unpaired: tuple[str, str] | None = None  # (kind, "where: what"): no flip pairs, or two
    sigmas: list[float] | None = None

    @property
    def fields(self) -> int:
        """Numbers on a label line: the class, the box and the keypoints."""
        return 5 + self.count * self.dims

    def layout(self) -> str:
        point = "x y v" if self.dims == 3 else "x y"
        return (
            f"class cx cy w h, then {point} for each of the {self.count} keypoints "
            f"(kpt_shape [{self.count}, {self.dims}]): {self.fields} numbers"
        )

    def keypoints(self, values: Sequence[float], width: int, height: int) -> list[float] | str:
        """COCO ``[x1, y1, v1, ...]`` in pixels of one line's keypoint numbers, or what is
        wrong with them."""
        out: list[float] = []
        for k in range(self.count):
            x, y, *rest = values[k * self.dims : (k + 1) * self.dims]
            v = rest[0] if rest else 2
            if v not in (0, 1, 2):
                return (
                    f"keypoint {k} ({self.names[k]}): visibility {v:g}; expected 0 (not "
                    "labelled), 1 (hidden) or 2 (visible)"
                )
            if v == 0:
                out += [0.0, 0.0, 0]
                continue
            if not (-TOLERANCE <= x <= 1 + TOLERANCE and -TOLERANCE <= y <= 1 + TOLERANCE):
                return (
                    f"keypoint {k} ({self.names[k]}) at ({x:g}, {y:g}): coordinates outside "
                    "[0, 1] (normalised)"
                )
            px = min(max(x * width, 0.0), width - 1.0)
            py = min(max(y * height, 0.0), height - 1.0)
            out += [round(px, 4), round(py, 4), int(v)]
        return out


def pose_format(data: Mapping[str, Any], where: Any) -> PoseFormat | None:
    """The keypoint definition of a dataset file's contents ``data`` (``None`` without
    ``kpt_shape``); ``where`` names the file in errors.

    Names that pair the keypoints otherwise than ``flip_idx`` (Ultralytics' own tiger-pose
    and hand-keypoints files) are followed, with a warning (``unpaired``).

    Raises:
        DataError: ``kpt_shape``, ``flip_idx``, ``kpt_names`` or ``kpt_oks_sigmas`` is
            malformed.
    """
    shape = data.get("kpt_shape")
    if shape is None:
        return None
    if not (
        isinstance(shape, list)
        and len(shape) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
        and shape[0] > 0
        and shape[1] in (2, 3)
    ):
        raise DataError(
            f"{where}: kpt_shape {shape!r}: expected [K, 2] or [K, 3] (K keypoints of x y, or "
            "x y visibility)"
        )
    count, dims = shape
    pose = _paired(data, count, dims, where)
    return replace(pose, sigmas=_sigmas(data.get("kpt_oks_sigmas"), count, where))


def _paired(data: Mapping[str, Any], count: int, dims: int, where: Any) -> PoseFormat:
    """The names of the keypoints (``kpt_names``, else made from ``flip_idx``)."""
    from visionkit.data.readers.coco_keypoints import flip_index  # readers import converters

    flip = _flip_idx(data.get("flip_idx"), count, where)
    names = _names(data.get("kpt_names"), count, where)
    if names is None and flip is None:  # Ultralytics turns its flips off then
        unpaired = (
            "unpaired keypoint",
            (
                f"{where}: no flip_idx (nor kpt_names): a horizontal flip leaves each keypoint its "
                "index, so a left point on the mirrored image stays 'left'; give flip_idx (the "
                "keypoint each one becomes), or train without HorizontalFlip"
            ),
        )
        return PoseFormat(count, dims, _names_of_pairs(list(range(count))), unpaired)
    if names is None:
        return PoseFormat(count, dims, _names_of_pairs(flip))
    by_names = flip_index(names)
    if flip is not None and by_names != flip:  # Ultralytics' tiger-pose and hand-keypoints
        k = next(i for i in range(count) if by_names[i] != flip[i])
        said = (
            f"{where}: flip_idx pairs keypoint {k} ({names[k]}) with {flip[k]} "
            f"({names[flip[k]]}), its name with {by_names[k]} ({names[by_names[k]]}); "
            "visionkit flips keypoints by their left / right names, so it follows kpt_names"
        )
        return PoseFormat(count, dims, names, ("keypoint flip pairs", said))
    return PoseFormat(count, dims, names)


def _sigmas(sigmas: Any, count: int, where: Any) -> list[float] | None:
    if sigmas is None:
        return None
    ok = (
        isinstance(sigmas, list)
        and len(sigmas) == count
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
            for v in sigmas
        )
    )
    if not ok:
        raise DataError(
            f"{where}: kpt_oks_sigmas {sigmas!r}: expected {count} positive numbers (kpt_shape), "
            "the OKS sigma of each keypoint"
        )
    return [float(v) for v in sigmas]


def _flip_idx(flip: Any, count: int, where: Any) -> list[int] | None:
    if flip is None:
        return None
    ok = (
        isinstance(flip, list)
        and len(flip) == count
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < count for v in flip)
    )
    if not ok:
        raise DataError(
            f"{where}: flip_idx {flip!r}: expected {count} keypoint indices in 0..{count - 1} "
            "(the keypoint each one becomes under a horizontal flip)"
        )
    unpaired = [k for k in range(count) if flip[flip[k]] != k]
    if unpaired:
        k = unpaired[0]
        raise DataError(
            f"{where}: flip_idx {flip}: keypoint {k} becomes {flip[k]}, which becomes "
            f"{flip[flip[k]]}; a flip swaps pairs (flip_idx[flip_idx[k]] == k)"
        )
    return flip


def _names(names: Any, count: int, where: Any) -> list[str] | None:
    if names is None:
        return None
    lists = list(names.values()) if isinstance(names, Mapping) else [names]
    for given in lists:
        if not (
            isinstance(given, list)
            and len(given) == count
            and all(isinstance(n, str) for n in given)
        ):
            raise DataError(
                f"{where}: kpt_names {given!r}: expected a list of {count} names (kpt_shape) "
                "for each class"
            )
    if any(given != lists[0] for given in lists):
        raise DataError(
            f"{where}: kpt_names differ between classes; one keypoint head predicts one "
            "definition of keypoints whatever the class"
        )
    if len(set(lists[0])) != count:
        raise DataError(f"{where}: kpt_names {lists[0]}: the names must differ")
    return list(lists[0])


def _names_of_pairs(flip: list[int]) -> list[str]:
    names = [f"point{k}" for k in range(len(flip))]
    pair = 0
    for k, j in enumerate(flip):
        if k < j:
            pair += 1
            names[k], names[j] = f"pair{pair}_left", f"pair{pair}_right"
    return names
