"""What every dataset reader shares: the ``Sample`` contract and safe path handling.

A dataset returns a *Sample* (before transforms), a dict with:

- ``image``: ``H×W×3 uint8`` RGB array (from :func:`visionkit.data.io.read_image`);
- ``image_id``: the dataset's integer id (never derived from a file name);
- ``orig_size``: ``(H, W)``;
- any of ``class`` (int), ``boxes`` (float32 ``[N, 4]`` absolute-pixel xyxy), ``labels``
  (int64 ``[N]``, contiguous ``0..C-1``);
- under ``on_bad_image: skip``, ``skipped``: the ``{"index", "path", "reason"}`` records of
  unreadable images this sample replaced (see :func:`visionkit.data.checks.read_or_skip`).

A key that is absent means "this image has no label for that task"; an empty ``[0, 4]`` means
"labelled, and there is nothing". Every reader also exposes ``label_names``: a dict from label
family (``"class"``, ``"instances"``) to the ordered class names of that family.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from visionkit.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")

Sample = dict[str, Any]


def resolve_under_root(root: Path, relative: str) -> Path:
    """Join ``relative`` to ``root``, refusing paths that escape it: ``..`` components that
    climb above it and absolute paths elsewhere (``ValueError``).

    The check is on the path as written (normalised, not resolved), so a folder the user
    symlinked into the dataset (``images -> /mnt/disk/images``) is followed, while an
    annotation file cannot reach outside the dataset by naming a path.
    """
    base = Path(os.path.abspath(root))
    path = Path(os.path.normpath(base / relative))
    if not path.is_relative_to(base):
        raise ValueError(f"{relative!r} resolves outside the dataset root {base}")
    return path


def dataset_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist or is not a folder")
    return root
