"""Which label files a mask-folder entry of a config reads, and its label settings as the
reader will apply them, worked out from the entry alone (no file read): what
``build/label_settings.py`` compares between ``data.train`` and the evaluation splits. Two
entries of one ``root`` may read different label files (Cityscapes keeps ``_gtFine_color``
and ``_gtFine_labelTrainIds`` in one folder), and one palette file may be written two ways
(``colours.txt``, ``/data/camvid/colours.txt``).

>>> files = label_files({"root": "/data/cs", "mask_suffix": "_gtFine_color"})
>>> files[1:]
('_gtFine_color', '.png')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visionkit.data.readers.palette import palette_source
from visionkit.data.readers.voc_segmentation import voc_segmentation_folders


def label_files(entry: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """``(label folder, mask_suffix, mask_ext)`` of the entry: the folder resolved as the
    reader resolves it (``masks``, else VOC's ``SegmentationClass``) and absolute; ``None``
    without a ``root``."""
    root = entry.get("root")
    if not isinstance(root, str):
        return None
    masks = entry.get("masks") or "masks"
    folder = Path(root) / voc_segmentation_folders(Path(root), "images", masks)[1]
    ext = entry.get("mask_ext") or ".png"
    return _absolute(folder), entry.get("mask_suffix") or "", str(ext).lower()


def label_setting(entry: Mapping[str, Any], key: str, value: Any) -> Any:
    """A label setting's ``value`` as the reader applies it: ``palette`` the file it names,
    absolute (or the built-in name); the others as they are."""
    if key != "palette" or not isinstance(value, str) or not isinstance(entry.get("root"), str):
        return value
    source = palette_source(entry["root"], value)
    return source if isinstance(source, str) else _absolute(source)


def _absolute(path: str | os.PathLike) -> str:
    return os.path.normpath(os.path.abspath(path))
