"""ImageFolder layout: ``root/<class name>/<image>``; one image-level class per image.

>>> ds = ImageFolderDataset("path/to/root")  # doctest: +SKIP
>>> ds.label_names["class"]  # sorted sub-folder names  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from visionkit.data.batch import IMAGE_EXTENSIONS, Sample, dataset_root, list_files
from visionkit.data.checks import (
    IMAGE_CHECKS,
    DataReport,
    ImageFile,
    check_image_files,
    count_classes,
    policy,
    read_or_skip,
    where_of,
)
from visionkit.data.io import read_image
from visionkit.errors import DataError
from visionkit.registry import DATASETS


@DATASETS.register("folder")
class ImageFolderDataset:
    """Images in one sub-folder per class. Image ids are 1-based positions in sorted order.

    Args:
        root: the folder holding one sub-folder per class.
        class_names: the class order to use (e.g. the training set's, for a validation set
            that lacks some classes); default: sorted sub-folder names.
        extensions: file suffixes counted as images (case-insensitive).
        on_bad_image: ``"error"`` (default) or ``"skip"``; see
            :class:`visionkit.data.readers.coco.CocoDataset`.
        image_check: ``"header"`` (default) or ``"decode"`` (:data:`~visionkit.data.checks.
            IMAGE_CHECKS`): how construction checks the image files.

    Construction opens every image and reads its header (:mod:`visionkit.data.checks`); the
    report is kept as :attr:`report`.
    """

    #: The argument that names the dataset folder.
    location: ClassVar[str] = "root"
    #: The Sample targets it produces: the image-level class.
    targets: ClassVar[tuple[str, ...]] = ("class",)
    #: Target → flag argument switched on when a head needs it (none: it always has classes).
    target_flags: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        root: str | None = None,
        class_names: list[str] | None = None,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        on_bad_image: Literal["error", "skip"] = "error",
        *,
        image_check: Literal["header", "decode"] = "header",
    ) -> None:
        self.on_bad_image = policy(on_bad_image, "on_bad_image", ("error", "skip"))
        image_check = policy(image_check, "image_check", IMAGE_CHECKS)
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
            for path in list_files(self.root / name, exts)
        ]
        if not self.items:
            raise DataError(
                f"no images found under {self.root} (expected root/<class>/<image> with one of "
                f"{', '.join(exts)}; found {len(found)} class folders)"
            )
        self.label_names = {"class": names}
        self.report = report = DataReport(str(self.root), "folder")
        report.num_images = len(self.items)
        files = [ImageFile(path, where_of(path, self.root)) for path, _ in self.items]
        severity = "warning" if self.on_bad_image == "skip" else "error"
        sizes = check_image_files(files, report, image_check, bad_image_severity=severity)
        if self.on_bad_image == "skip":
            self.items = [item for item, size in zip(self.items, sizes, strict=True) if size]
            skipped = len(sizes) - len(self.items)
            if skipped:
                report.notes.append(
                    f"left out {skipped} missing or unreadable images (on_bad_image: skip)"
                )
            if not self.items and not report.errors:
                report.add(
                    "empty dataset",
                    str(self.root),
                    f"0 of {len(sizes)} images kept: {skipped} unreadable (on_bad_image: skip)",
                )
        report.num_kept = len(self.items)
        report.class_counts["class"] = count_classes([c for _, c in self.items], names)
        report.raise_for_errors()

    def path_of(self, index: int) -> str:
        """The image file of sample ``index`` (without reading it)."""
        return str(self.items[index][0])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        return read_or_skip(self._load, index, len(self), self.on_bad_image)

    def _load(self, index: int) -> Sample:
        path, label = self.items[index]
        image = read_image(path)
        return {
            "image": image,
            "image_id": index + 1,
            "orig_size": image.shape[:2],
            "class": label,
            "path": str(path),
        }
