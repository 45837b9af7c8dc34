"""Mask-folder layout (Pascal VOC style) for semantic segmentation.

::

    root/
      images/<name>.jpg|png|...
      masks/<name>.png          # one label PNG per image, same stem, same size
      classes.txt               # one class name per line, in label order (optional)

A mask PNG is either a palette ("P") image, whose palette *indices* are the labels (as in VOC,
whose masks are coloured for viewing but store indices), or a single-channel ("L") image whose
values are the labels. Label ``k`` is class ``class_names[k]``; ``ignore_index`` (VOC's 255
object boundaries) is not counted by the loss or the metrics. RGB masks are refused: their
colours would first have to be mapped to labels.

Class names come from ``class_names`` or, when not given, ``root/classes.txt``.

>>> ds = MaskFolderDataset("data/voc_like", class_names=["background", "cat", "dog"])  # doctest: +SKIP
>>> ds[0]["semantic"].shape  # uint8 [H, W], same size as ds[0]["image"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from visionkit.data.base import IMAGE_EXTENSIONS, Sample, dataset_root
from visionkit.data.io import read_image
from visionkit.errors import AnnotationError, DataError
from visionkit.registry import DATASETS


class MaskFolderDataset:
    """Images and their label PNGs; samples carry ``semantic`` (uint8 ``[H, W]``).

    Args:
        root: the dataset folder.
        images: sub-folder of the images.
        masks: sub-folder of the label PNGs (``<image stem>.png``).
        class_names: names of the labels ``0..C-1`` (default: ``root/classes.txt``).
        ignore_index: label value that marks unlabelled pixels.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        images: str = "images",
        masks: str = "masks",
        class_names: Sequence[str] | None = None,
        ignore_index: int = 255,
    ) -> None:
        self.root = dataset_root(root)
        self.image_dir = self.root / images
        self.mask_dir = self.root / masks
        self.ignore_index = int(ignore_index)
        for folder in (self.image_dir, self.mask_dir):
            if not folder.is_dir():
                raise DataError(
                    f"{folder} does not exist: a mask folder holds {images}/ and {masks}/ "
                    "(see visionkit/data/mask_folder.py)"
                )
        names = list(class_names) if class_names else self._read_class_names()
        self.label_names: dict[str, list[str]] = {"semantic": names}
        self.paths = sorted(
            p for p in self.image_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not self.paths:
            raise DataError(f"no images found in {self.image_dir}")
        self.mask_paths = [
            self.mask_dir / p.relative_to(self.image_dir).with_suffix(".png") for p in self.paths
        ]
        missing = [str(m) for m in self.mask_paths if not m.is_file()]
        if missing:
            raise AnnotationError(f"{self.mask_dir}: images without a label PNG:", missing)
        self.index_of_id = {i + 1: i for i in range(len(self.paths))}

    def _read_class_names(self) -> list[str]:
        path = self.root / "classes.txt"
        if not path.is_file():
            raise DataError(
                f"{self.root}: no class names; write one name per line (label order) in "
                f"{path}, or set class_names in the dataset config"
            )
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        return [n for n in names if n]

    def __len__(self) -> int:
        return len(self.paths)

    def read_mask(self, index: int) -> np.ndarray:
        """The label map of sample ``index``: uint8 ``[H, W]``, values checked."""
        path = self.mask_paths[index]
        try:
            with Image.open(path) as pil:
                if pil.mode not in ("P", "L", "I;16", "I"):
                    raise AnnotationError(
                        f"{path}: label PNG in mode {pil.mode}; expected a palette (P) or "
                        "single-channel (L) image whose values are class indices"
                    )
                mask = np.asarray(pil)
        except OSError as err:
            raise AnnotationError(f"{path}: unreadable label PNG: {err}") from None
        num_classes = len(self.label_names["semantic"])
        bad = np.unique(mask[(mask >= num_classes) & (mask != self.ignore_index)])
        if bad.size:
            raise AnnotationError(
                f"{path}: label values {bad.tolist()[:10]} are not classes 0..{num_classes - 1} "
                f"nor the ignore index {self.ignore_index}"
            )
        return mask.astype(np.uint8)

    def load_semantic(self, image_id: int) -> np.ndarray:
        """The label map of the image with this id (ids are 1-based positions)."""
        return self.read_mask(self.index_of_id[int(image_id)])

    def __getitem__(self, index: int) -> Sample:
        image = read_image(self.paths[index])
        mask = self.read_mask(index)
        if mask.shape != image.shape[:2]:
            raise AnnotationError(
                f"{self.mask_paths[index]}: label PNG is {mask.shape[0]}x{mask.shape[1]} but "
                f"its image {self.paths[index].name} is {image.shape[0]}x{image.shape[1]}"
            )
        return {
            "image": image,
            "image_id": index + 1,
            "orig_size": image.shape[:2],
            "path": str(self.paths[index]),
            "semantic": mask,
        }


@DATASETS.register
def mask_folder(
    root: str | None = None,
    images: str = "images",
    masks: str = "masks",
    class_names: list[str] | None = None,
    ignore_index: int = 255,
) -> MaskFolderDataset:
    """Images plus label PNGs (``root/images``, ``root/masks``, ``root/classes.txt``)."""
    return MaskFolderDataset(root, images, masks, class_names, ignore_index)


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
