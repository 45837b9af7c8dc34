"""Label images that went through lossy compression (saved as JPEG, or a JPEG converted to
PNG): told apart from other wrong values, so that the message says why the values are there.

>>> looks_lossy(np.array([3, 4, 5, 251, 253]), np.array([0, 1, 2, 255]))
True
>>> looks_lossy(np.array([10, 40, 80, 120, 150]), np.arange(10))
False
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Values (and colours, per channel) off the classes' own by at most this much, found in
#: numbers, are read as the noise of lossy compression (JPEG rounds class edges into them).
NOISE_DISTANCE = 24

#: What to do about label images that went through lossy compression.
LOSSLESS = (
    "label images must be lossless (PNG): one saved as JPEG, or with lossy compression, "
    "gets values in between the classes at the edges of each class, and converting it to PNG "
    "keeps them; export the labels again as PNG from the tool that drew them"
)


def looks_lossy(off: np.ndarray, valid: np.ndarray, pixels: np.ndarray | None = None) -> bool:
    """Whether the values (or ``[N, 3]`` colours) ``off`` that are no class look like
    compression noise around the ``valid`` ones: five or more, four in five of them (of their
    ``pixels``, when given each one's count) within :data:`NOISE_DISTANCE` of one (a class
    list short of a few names gives fewer; ADE20K's 150 values read with 10 names are mostly
    far from every class)."""
    off, valid = np.asarray(off, np.int64), np.asarray(valid, np.int64)
    if len(off) < 5 or not len(valid):
        return False
    off = off.reshape(len(off), -1)[:, None, :]  # [N, 1, channels]
    distance = np.abs(off - valid.reshape(len(valid), -1)[None]).max(axis=2).min(axis=1)
    weights = np.ones(len(distance)) if pixels is None else np.asarray(pixels, np.float64)
    return bool(weights[distance <= NOISE_DISTANCE].sum() >= 0.8 * weights.sum())


def label_file_reason(path: Path, reason: str) -> str:
    """``reason`` why a label file cannot be read, or, where the file is a JPEG (by its first
    bytes) named otherwise (``a.png``), that it is one and must be lossless."""
    try:
        with open(path, "rb") as f:
            jpeg = f.read(3) == b"\xff\xd8\xff"
    except OSError:
        return reason
    return f"{path.name} is a JPEG (named {path.suffix}): {LOSSLESS}" if jpeg else reason
