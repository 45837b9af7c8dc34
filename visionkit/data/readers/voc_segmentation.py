"""Pascal VOC's segmentation layout, as VOC2012 and CVAT's "Segmentation mask" export publish
it: ``JPEGImages/`` + ``SegmentationClass/`` (label PNGs) and the split lists in
``ImageSets/Segmentation/<split>.txt``; and its label PNGs, palette images of VOC's colour
map (:func:`write_mask_png` writes them). The mask-folder reader and ``visionkit split`` read it
as it is (:mod:`visionkit.data.readers.mask_folder`, :mod:`visionkit.data.split_masks`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

#: The default sub-folders of a mask folder, and their names in VOC's segmentation layout.
VOC_SEGMENTATION_FOLDERS = {"images": "JPEGImages", "masks": "SegmentationClass"}

#: Where VOC keeps the image lists of its segmentation splits.
VOC_SEGMENTATION_LISTS = Path("ImageSets") / "Segmentation"


def voc_segmentation_folders(root: Path, images: str, masks: str) -> tuple[str, str]:
    """``images`` and ``masks``, each default (``images``, ``masks``) that ``root`` lacks
    replaced by VOC's name when that folder is there (``JPEGImages``, ``SegmentationClass``)."""
    named = {"images": images, "masks": masks}
    for key, voc in VOC_SEGMENTATION_FOLDERS.items():
        if named[key] == key and not (root / key).is_dir() and (root / voc).is_dir():
            named[key] = voc
    return named["images"], named["masks"]


def write_mask_png(path: str | os.PathLike, mask: np.ndarray, palette: bool = True) -> None:
    """Save a label map as a PNG: a palette image (VOC colours) or a plain ``L`` image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    size = (mask.shape[1], mask.shape[0])
    image = Image.frombytes("P" if palette else "L", size, mask.tobytes())
    if palette:
        image.putpalette(_voc_palette())
    image.save(path)


def _voc_palette() -> list[int]:
    """The Pascal VOC colour map (256 entries)."""
    palette = []
    for label in range(256):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette
