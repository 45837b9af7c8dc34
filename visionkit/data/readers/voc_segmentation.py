"""Pascal VOC's segmentation layout, as VOC2012 and CVAT's "Segmentation mask" export publish
it: ``JPEGImages/`` + ``SegmentationClass/`` (label PNGs) and the split lists in
``ImageSets/Segmentation/<split>.txt``. The mask-folder reader and ``visionkit split`` read it
as it is (:mod:`visionkit.data.readers.mask_folder`, :mod:`visionkit.data.split_masks`).
"""

from __future__ import annotations

from pathlib import Path

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
