"""What every dataset reader shares: the ``Sample`` contract and safe path handling.

A dataset returns a *Sample* (before transforms), a dict with:

- ``image``: ``H×W×3 uint8`` RGB array (from :func:`visionkit.data.io.read_image`);
- ``image_id``: the dataset's integer id (never derived from a file name);
- ``orig_size``: ``(H, W)``;
- any of ``class`` (int), ``boxes`` (float32 ``[N, 4]`` absolute-pixel xyxy), ``labels``
  (int64 ``[N]``, contiguous ``0..C-1``).

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
    """Join ``relative`` to ``root``, refusing paths that escape it (``..``, absolute paths)."""
    root = root.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"{relative!r} resolves outside the dataset root {root}")
    return path


def check_files_exist(paths: list[Path], what: str) -> None:
    """Raise one :class:`DataError` listing every missing file."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(paths)} image files of {what} are missing:", missing
        )


def dataset_root(root: str | os.PathLike) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist or is not a folder")
    return root
