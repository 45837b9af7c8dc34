"""Label images that went through lossy compression (saved as JPEG, or a JPEG converted to
PNG): told apart from other wrong values, so that the message says why the values are there.
Compression noise is a few pixels of many values near the classes' own, at their edges; a
class list a few names short (Cityscapes' raw ``_labelIds`` read with its 19 train-id names)
leaves whole regions of a value, which is never noise.

>>> looks_lossy([3, 4, 5, 251, 253], [9, 8, 7, 6, 5], [0, 1, 2], [500, 900, 300], void=[255])
True
>>> looks_lossy([20, 21, 23, 24, 26], [90, 900, 700, 40, 300], range(19), [100] * 19)
False
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

#: Values (and colours, per channel) off the classes' own by at most this much, found in
#: numbers, are read as the noise of lossy compression (JPEG rounds class edges into them).
NOISE_DISTANCE = 24

#: Colours off a class's by at most this much (per channel) are the class's own, rounded:
#: JPEG's subsampled chroma shifts whole flat areas of a colour by a few levels.
COLOUR_SHIFT = 3

#: Compression noise is at most this share of a label image's pixels (class edges).
NOISE_SHARE = 0.2

#: What to do about label images that went through lossy compression.
LOSSLESS = (
    "label images must be lossless (PNG): one saved as JPEG, or with lossy compression, "
    "gets values in between the classes at the edges of each class, and converting it to PNG "
    "keeps them; export the labels again as PNG from the tool that drew them"
)


def looks_lossy(
    off: ArrayLike,
    off_pixels: ArrayLike,
    classes: ArrayLike,
    class_pixels: ArrayLike,
    void: ArrayLike = (),
) -> bool:
    """Whether the values (or ``[N, 3]`` colours) ``off`` that are no class, of ``off_pixels``
    pixels each, look like compression noise around the ``classes`` (of ``class_pixels``
    each) and the ``void`` values: five or more of them, four in five of their pixels within
    :data:`NOISE_DISTANCE` of a class or void value, and, of those that are not a class's
    colour rounded (:data:`COLOUR_SHIFT`, counted as the class), at most :data:`NOISE_SHARE`
    of the labelled pixels, each value rarer than every class present (a region of one value
    is a class the list lacks, never noise)."""
    off, off_pixels = np.asarray(off, np.int64), np.asarray(off_pixels, np.int64)
    class_pixels = np.array(class_pixels, np.int64)
    if len(off) < 5 or not len(class_pixels):
        return False
    off = off.reshape(len(off), 1, -1)  # [N, 1, channels]
    classes = np.asarray(classes, np.int64).reshape(len(class_pixels), -1)
    near = np.concatenate([classes, np.asarray(void, np.int64).reshape(-1, off.shape[2])])
    distance = np.abs(off - near[None]).max(axis=2).min(axis=1)  # [N]
    if off_pixels[distance <= NOISE_DISTANCE].sum() < 0.8 * off_pixels.sum():
        return False
    edges = np.ones(len(off_pixels), bool)  # values at class edges, not a rounded area
    if off.shape[2] > 1:
        to_class = np.abs(off - classes[None]).max(axis=2)  # [N, classes]
        edges = to_class.min(axis=1) > COLOUR_SHIFT
        np.add.at(class_pixels, to_class.argmin(axis=1)[~edges], off_pixels[~edges])
    noise = off_pixels[edges]
    present = class_pixels[class_pixels > 0]
    return bool(
        len(present)
        and noise.sum() <= NOISE_SHARE * (noise.sum() + class_pixels.sum())
        and (not len(noise) or noise.max() < present.min())
    )


def label_file_reason(path: Path, reason: str) -> str:
    """``reason`` why a label file cannot be read, or, where the file is a JPEG (by its first
    bytes) named otherwise (``a.png``), that it is one and must be lossless."""
    try:
        with open(path, "rb") as f:
            jpeg = f.read(3) == b"\xff\xd8\xff"
    except OSError:
        return reason
    return f"{path.name} is a JPEG (named {path.suffix}): {LOSSLESS}" if jpeg else reason
