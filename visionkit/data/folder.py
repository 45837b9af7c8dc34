"""ImageFolder layout: ``root/<class name>/<image>``; one image-level class per image.

>>> ds = ImageFolderDataset("path/to/root")  # doctest: +SKIP
>>> ds.label_names["class"]  # sorted sub-folder names  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from visionkit.data.base import IMAGE_EXTENSIONS, Sample, dataset_root
from visionkit.data.io import read_image
from visionkit.errors import DataError
from visionkit.registry import DATASETS


class ImageFolderDataset:
    """Images in one sub-folder per class. Image ids are 1-based positions in sorted order.

    Args:
        root: the folder holding one sub-folder per class.
        class_names: the class order to use (e.g. the training set's, for a validation set
            that lacks some classes); default: sorted sub-folder names.
        extensions: file suffixes counted as images (case-insensitive).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        class_names: Sequence[str] | None = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.root = dataset_root(root)
        found = sorted(
            d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        names = list(class_names) if class_names is not None else found
        unknown = sorted(set(found) - set(names))
        if unknown:
            raise DataError(
                f"{self.root}: class folders not in the given class_names {names}:", unknown
            )
        exts = tuple(e.lower() for e in extensions)
        self.items = [
            (path, index)
            for index, name in enumerate(names)
            if (self.root / name).is_dir()
            for path in sorted((self.root / name).rglob("*"))
            if path.suffix.lower() in exts and path.is_file()
        ]
        if not self.items:
            raise DataError(
                f"no images found under {self.root} (expected root/<class>/<image> with one of "
                f"{', '.join(exts)}; found {len(found)} class folders)"
            )
        self.label_names = {"class": names}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        path, label = self.items[index]
        image = read_image(path)
        return {
            "image": image,
            "image_id": index + 1,
            "orig_size": image.shape[:2],
            "class": label,
            "path": str(path),
        }


@DATASETS.register
def folder(root: str | None = None, class_names: list[str] | None = None) -> ImageFolderDataset:
    """ImageFolder layout (``root/<class>/<image>``)."""
    return ImageFolderDataset(root, class_names=class_names)
