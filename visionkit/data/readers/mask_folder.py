"""Mask-folder layout (Pascal VOC style) for semantic segmentation.

::

    root/
      images/<name>.jpg|png|...
      masks/<name>.png          # one label image per image, same relative path, same size
      classes.txt               # one class name per line, in label order (optional)
      splits/train.txt          # image paths (relative to images/), one a line (optional)

A label image is a PNG (or a TIFF, ``mask_ext: .tif``) in one of two kinds:

* **Class indices**: a palette ("P") image, whose palette *indices* are the labels (as in VOC,
  whose masks are coloured for viewing but store indices), or a single-channel ("L", 16-bit)
  image whose values are the labels. Label ``k`` is class ``class_names[k]``;
  ``ignore_index`` is the value of the dataset's unlabelled pixels (VOC's 255 object
  boundaries, CamVid's 11 "void").
* **Colours** (``palette: FILE``): an RGB image with one colour per class, as CamVid's
  ``_L`` PNGs (or an opaque RGBA one, as Cityscapes' ``_gtFine_color``). The palette file
  lists the colours in class order (:func:`read_palette`); an
  entry named ``void`` (any case), or the colour ``void_color``, marks unlabelled pixels. A
  colour the palette does not list is an error naming the file, the colour and its pixels.

Either way the reader gives unlabelled pixels :data:`~visionkit.data.batch.IGNORE_PIXEL` (255)
in every label map it returns (samples and ``load_semantic``): this is the one place that
decides it, so the heads and the evaluators, which ignore ``IGNORE_PIXEL``, need no setting.

Label file names follow the image's: ``<stem><mask_suffix><mask_ext>`` in the same relative
folder, where ``<stem>`` is the image's name less its extension and less ``image_suffix``.
CamVid: ``0001TP_006690.png`` → ``0001TP_006690_L.png`` (``mask_suffix: _L``); Cityscapes:
``aachen_000000_000019_leftImg8bit.png`` → ``aachen_000000_000019_gtFine_labelTrainIds.png``
(``image_suffix: _leftImg8bit``, ``mask_suffix: _gtFine_labelTrainIds``).

Class names come from ``class_names``, else ``root/classes.txt``, else the palette.

Pascal VOC's segmentation layout (VOC2012, CVAT's "Segmentation mask" export) is read as it
is: ``JPEGImages/`` and ``SegmentationClass/`` stand in for ``images/`` and ``masks/`` when
those are absent, and CVAT's ``labelmap.txt`` is a palette file.

``split: train`` reads only the images listed in ``root/splits/train.txt``, else in VOC's
``root/ImageSets/Segmentation/train.txt`` (a value ending in
``.txt`` names another list file, relative to ``root`` or absolute): one image path per line,
relative to the images folder, with or without its extension (``visionkit split ROOT --val 0.2``
writes these lists; mmsegmentation's ``ann_file`` lists of stems read as they are).

>>> ds = MaskFolderDataset("data/voc_like", class_names=["background", "cat", "dog"])  # doctest: +SKIP
>>> ds[0]["semantic"].shape  # uint8 [H, W], same size as ds[0]["image"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from visionkit.data.batch import IGNORE_PIXEL, Sample, dataset_root, list_files
from visionkit.data.checks import (
    IMAGE_CHECKS,
    DataReport,
    ImageFile,
    Problem,
    check_image_files,
    policy,
    read_or_skip,
    where_of,
)
from visionkit.data.io import read_image, read_label_image, read_label_image_header
from visionkit.data.readers import mask_label_files
from visionkit.data.readers.lossy_labels import label_file_reason
from visionkit.data.readers.mask_hints import (
    JPEG_EXTENSIONS,
    JPEG_LABELS,
    MASK_EXTENSIONS,
    black_and_white,
    ignored_class,
    images_beside_labels,
    label_path,
    label_values_problem,
    mask_class_names,
    missing_label_hint,
    pixel_shares,
)
from visionkit.data.readers.palette import Palette, palette_source, read_palette
from visionkit.data.readers.voc_segmentation import voc_segmentation_folders
from visionkit.data.readers.voc_segmentation import write_mask_png as write_mask_png
from visionkit.errors import AnnotationError, ConfigError, DataError, ImageDecodeError
from visionkit.registry import DATASETS

#: Label maps decoded at most, with headers only, to find one of a class above 0 (label images
#: saved black and white hold none).
BLACK_AND_WHITE_SAMPLE = 32


@DATASETS.register("mask_folder")
class MaskFolderDataset:
    """Images and their label images; samples carry ``semantic`` (uint8 ``[H, W]``).

    Args:
        root: the dataset folder.
        images: sub-folder of the images (``images``, else VOC's ``JPEGImages``).
        masks: sub-folder of the label images (named as in the module docstring; ``masks``,
            else VOC's ``SegmentationClass``).
        class_names: names of the labels ``0..C-1`` (default: ``root/classes.txt``, else the
            palette's names).
        ignore_index: the label value of the files that marks unlabelled pixels (returned as
            :data:`~visionkit.data.batch.IGNORE_PIXEL`; ``None``: the default 255); not used
            with a ``palette``. It may not be a class (``0..C-1``): an ignored class is
            never learnt and scores nothing, so that is an error naming the class.
        on_bad_image: ``"error"`` (default) or ``"skip"`` (an image that cannot be read is
            left out with its mask); see :class:`visionkit.data.readers.coco.CocoDataset`.
        on_bad_label: ``"error"`` (default): a missing or unreadable label file, one of
            another size than its image, or (``check-data``, which decodes them) one of values
            that are no class stops construction, every such file listed; ``"skip"``: such
            images are left out, counted, logged and listed by ``check-data`` as warnings.
        mask_suffix: added to the image's stem to name its label file (CamVid ``_L``,
            Cityscapes ``_gtFine_labelTrainIds``).
        image_suffix: taken off the image's stem first (Cityscapes ``_leftImg8bit``); an image
            whose stem does not end with it is an error.
        mask_ext: the label files' extension: ``.png`` (default), ``.tif`` or ``.tiff``.
        palette: a file listing the class colours of RGB label images, relative to ``root``
            or absolute, or ``voc`` / ``cityscapes`` (built in; :func:`read_palette`); ``None``: the
            label images hold class indices.
        void_color: ``[R, G, B]`` of unlabelled pixels in RGB label images (with ``palette``;
            a palette entry of that colour is no class).
        split: read only the images a list file names (see the module docstring):
            ``train`` is ``root/splits/train.txt`` (else VOC's
            ``root/ImageSets/Segmentation/train.txt``); ``None`` (default): every image.
        reduce_zero_label: the label files number the classes from 1 and 0 marks pixels of
            no class (ADE20K's "other"; mmsegmentation's setting of the same name): value 0 is
            unlabelled, value ``k`` is class ``k - 1`` (``ignore_index`` stays a file value).
        image_check: ``"header"`` (default) or ``"decode"`` (:data:`~visionkit.data.checks.
            IMAGE_CHECKS`); ``"decode"`` also decodes every label image and checks its values.

    Construction opens every image and every label image and reads their headers (size, mode);
    all problems are reported together (:mod:`visionkit.data.checks`). Label values (or
    colours) are checked when a mask is read (and by ``visionkit check-data``, which decodes
    them all).
    """

    #: The argument that names the dataset folder.
    location: ClassVar[str] = "root"
    #: The Sample targets it produces: the semantic label map.
    targets: ClassVar[tuple[str, ...]] = ("semantic",)
    #: Target → flag argument switched on when a head needs it (none: it always has label maps).
    target_flags: ClassVar[Mapping[str, str]] = {}
    #: How its label files are read: the same in every split (``build/label_settings.py``).
    label_settings = ("ignore_index", "reduce_zero_label", "palette", "void_color")
    #: Which label files an entry reads, and a setting as the reader applies it.
    label_files = staticmethod(mask_label_files.label_files)
    label_setting = staticmethod(mask_label_files.label_setting)

    def __init__(
        self,
        root: str | None = None,
        images: str = "images",
        masks: str = "masks",
        class_names: list[str] | None = None,
        ignore_index: int | None = IGNORE_PIXEL,
        on_bad_image: Literal["error", "skip"] = "error",
        on_bad_label: Literal["error", "skip"] = "error",
        mask_suffix: str = "",
        image_suffix: str = "",
        mask_ext: str = ".png",
        palette: str | None = None,
        void_color: list[int] | None = None,
        split: str | None = None,
        reduce_zero_label: bool = False,
        *,
        image_check: Literal["header", "decode"] = "header",
    ) -> None:
        self.on_bad_image = policy(on_bad_image, "on_bad_image", ("error", "skip"))
        self.on_bad_label = policy(on_bad_label, "on_bad_label", ("error", "skip"))
        self.image_check = policy(image_check, "image_check", IMAGE_CHECKS)
        if mask_ext.lower() in JPEG_EXTENSIONS:
            raise ConfigError(
                f"mask_ext: {mask_ext!r} is not one of {', '.join(MASK_EXTENSIONS)}: {JPEG_LABELS}"
            )
        self.mask_ext = policy(mask_ext.lower(), "mask_ext", MASK_EXTENSIONS)
        self.mask_suffix = mask_suffix
        self.image_suffix = image_suffix
        self.root = dataset_root(root)
        images, masks = voc_segmentation_folders(self.root, images, masks)
        self.image_dir = self.root / images
        self.mask_dir = self.root / masks
        self.ignore_index = IGNORE_PIXEL if ignore_index is None else int(ignore_index)
        self.reduce_zero_label = bool(reduce_zero_label)
        for folder in (self.image_dir, self.mask_dir):
            if not folder.is_dir():
                present = sorted(p.name + "/" for p in self.root.iterdir() if p.is_dir())
                raise DataError(
                    f"{folder} does not exist: a mask folder holds {images}/ and {masks}/ "
                    f"(here: {', '.join(present) or 'no sub-folders'}; the entry's images: and "
                    "masks: name others, docs/datasets.md#mask-folder)"
                    + images_beside_labels(self.root)
                )
        self.palette = self._palette(palette, void_color)
        #: Where the class names come from, for messages comparing class lists.
        self.class_source = f"class_names of {self.root}"
        if class_names:
            names = list(class_names)
        else:
            names, self.class_source = mask_class_names(self.root, self.mask_dir, self.palette)
        self.label_names: dict[str, list[str]] = {"semantic": names}
        if self.palette is not None and len(names) != len(self.palette.names):
            raise DataError(
                f"{self.class_source} names {len(names)} classes but the palette "
                f"{self.palette.path} has {len(self.palette.names)} "
                f"({', '.join(self.palette.names)}): give as many names as class colours"
            )
        #: An ignore_index that is one of the classes (never learnt, never scored): training
        #: refuses it (build_dataset), evaluation of an earlier version's run is warned.
        self.ignored_class = None
        #: The problem of label files that leave every class but 0 unlabelled (saved black and
        #: white), all of them decoded: training refuses it (build_dataset), other splits warn.
        self.unlearnt: Problem | None = None
        lowest = int(self.reduce_zero_label)  # the file's value of class 0
        if self.palette is None and lowest <= self.ignore_index < len(names) + lowest:
            self.ignored_class = ignored_class(self.ignore_index, names, self.class_source, lowest)
        self.paths = list_files(self.image_dir)
        # label files among the images (one folder for both, as Roboflow exports a.jpg beside
        # a_mask.png, or masks/ inside the images folder) are no images
        masks = {p: self._mask_path(p) for p in self.paths}  # each looked up once
        labels = {m for p, m in masks.items() if m not in (None, p)}
        self.label_files_listed = len(labels & set(self.paths))
        self.paths = [p for p in self.paths if p not in labels]
        if not self.paths:
            raise DataError(f"no images found in {self.image_dir}")
        if split is not None:
            from visionkit.data.split_masks import listed_images  # split imports the readers

            self.paths = listed_images(
                self.root, split, self.paths, self.image_dir, self.image_suffix
            )
        self.mask_paths = [masks[p] for p in self.paths]
        self.report = self._check_files()
        self.index_of_id = {i + 1: i for i in range(len(self.paths))}

    def _palette(self, palette: str | None, void_color: Sequence[int] | None) -> Palette | None:
        """The palette of colour labels, or ``None`` (class-index labels)."""
        if palette is not None and self.reduce_zero_label:
            raise ConfigError(
                "reduce_zero_label: only for label images of class indices; with a palette "
                "(RGB colour labels) name the colour of pixels of no class void (void_color)"
            )
        if palette is None:
            if void_color is not None:
                raise ConfigError(
                    "void_color: only with a palette (RGB colour labels); label images of "
                    "class indices mark unlabelled pixels with ignore_index"
                )
            return None
        if self.ignore_index != IGNORE_PIXEL:
            raise ConfigError(
                f"ignore_index: {self.ignore_index} is not used with a palette (RGB colour "
                "labels), whose unlabelled pixels are marked by void_color or a palette entry "
                "named void: leave ignore_index out of this entry, or set it to null (the "
                "default, 255)"
            )
        return read_palette(palette_source(self.root, palette), void_color)

    def _mask_path(self, image_path: Path) -> Path | None:
        """The label file of an image (``None`` when its stem lacks ``image_suffix``)."""
        return label_path(
            image_path,
            self.image_dir,
            self.mask_dir,
            self.mask_suffix,
            self.mask_ext,
            self.image_suffix,
        )

    def _check_files(self) -> DataReport:
        """Every image and label file opened (headers); missing, unreadable, mode and size
        problems all in one report, raised together (those of label files as warnings, the
        image left out, under ``on_bad_label: skip``)."""
        report = DataReport(str(self.root), "mask_folder")
        report.num_images = len(self.paths)
        if self.label_files_listed:
            report.notes.append(
                f"{self.label_files_listed} label files in the images' folder "
                f"({self.image_dir}) are read as labels, not images"
            )
        if self.ignored_class:  # training refuses it (build_dataset)
            where = f"ignore_index {self.ignore_index}"
            report.add("ignored class", where, self.ignored_class, "warning")
        files = [ImageFile(p, where_of(p, self.root)) for p in self.paths]
        severity = "warning" if self.on_bad_image == "skip" else "error"
        sizes = check_image_files(
            files, report, self.image_check, bad_image_severity=severity, oriented_is_error=True
        )
        report.image_sizes.clear()
        skip_labels = self.on_bad_label == "skip"
        keep, unread, missing = [], 0, 0
        tallies = np.zeros((2, IGNORE_PIXEL + 1), dtype=np.int64)  # pixels, images per value
        for image_path, mask_path, size in zip(self.paths, self.mask_paths, sizes, strict=True):
            if size is None:
                keep.append(self.on_bad_image != "skip")
                unread += not keep[-1]
                continue
            report.image_sizes[size] += 1
            problem = self._label_problem(image_path, mask_path, size, tallies, not missing)
            missing += problem is not None and problem[0] == "missing label file"
            if problem is not None:
                report.add(*problem, "warning" if skip_labels else "error")
            keep.append(problem is None or not skip_labels)
        self._note_class_statistics(report, tallies[0], tallies[1])
        if self.palette is None and not self.reduce_zero_label and self.ignore_index == 255:
            self._check_black_and_white(report, tallies)
        if not all(keep):
            self.paths = [p for p, k in zip(self.paths, keep, strict=True) if k]
            self.mask_paths = [p for p, k in zip(self.mask_paths, keep, strict=True) if k]
            if unread:
                report.notes.append(
                    f"left out {unread} missing or unreadable images (on_bad_image: skip)"
                )
            if keep.count(False) > unread:
                report.notes.append(
                    f"left out {keep.count(False) - unread} images whose label file is missing "
                    "or unusable (on_bad_label: skip)"
                )
            if not self.paths and not report.errors:
                report.add(
                    "empty dataset",
                    str(self.image_dir),
                    f"0 of {len(keep)} images kept: {unread} unreadable (on_bad_image: skip), "
                    f"{keep.count(False) - unread} without a usable label file (on_bad_label: "
                    "skip)",
                )
        report.num_kept = len(self.paths)
        report.raise_for_errors()
        return report

    def _check_black_and_white(self, report: DataReport, tallies: np.ndarray) -> None:
        """Label maps of 0 and 255 only (saved black and white): a warning in ``report``, and
        ``unlearnt`` set, which training refuses, where every label file was decoded
        (``tallies`` counted, or a sample that is all of them); with headers only, label maps
        spread over the files are decoded for this check until one holds a class above 0
        (:data:`BLACK_AND_WHITE_SAMPLE` at most)."""
        names = self.label_names["semantic"]
        sampled = 0
        if not tallies[0].any():  # headers only: a few label maps decoded for this check
            labels = [m for m in self.mask_paths if m is not None]
            step = max(len(labels) // BLACK_AND_WHITE_SAMPLE, 1)
            for path in labels[::step][:BLACK_AND_WHITE_SAMPLE]:
                with contextlib.suppress(AnnotationError):
                    _tally(self._read_mask_file(path), tallies[0], tallies[1])
                    sampled += 1
                if tallies[0][1 : len(names)].any():
                    break
            sampled *= sampled < len(labels)  # a sample of every label file is all of them
        warning, error = black_and_white(tallies[0], names, sampled)
        if warning:
            where = where_of(self.mask_dir, self.root) + "/"
            report.add("only 0 and 255", where, warning, "warning")
            self.unlearnt = None if sampled else Problem("only 0 and 255", where, error)

    def _label_problem(
        self,
        image_path: Path,
        mask_path: Path | None,
        size: tuple[int, int],
        tallies: np.ndarray,
        first: bool,
    ) -> tuple[str, str, str] | None:
        """The ``(kind, where, detail)`` of an image's label file that is missing, unreadable,
        of another size or (decoding) of values that are no class; ``None`` when it is usable
        (its pixels then added to ``tallies`` when decoded). ``first``: no label file was
        missing before; the first missing one says how the label files are named."""
        if mask_path is None:
            detail = f"the image name does not end with image_suffix {self.image_suffix!r}"
            return (
                "missing label file",
                where_of(image_path, self.root),
                f"{detail}, so it names no label file",
            )
        where = where_of(mask_path, self.root)
        kind = "PNG" if self.mask_ext == ".png" else "TIFF"
        if not mask_path.is_file():
            hint = (
                missing_label_hint(mask_path, self.root, self.mask_suffix, self.mask_ext)
                if first
                else ""
            )
            return "missing label file", where, f"no label {kind} for {image_path.name}{hint}"
        try:
            _, (h, w) = read_label_image_header(mask_path, colour=self.palette is not None)
        except ImageDecodeError as err:
            return "bad label file", where, label_file_reason(mask_path, err.reason)
        if (h, w) != size:
            detail = (
                f"label {kind} is {h}x{w} but its image {image_path.name} is {size[0]}x{size[1]}"
            )
            detail += (
                " (height x width; swapped: if the image has an EXIF orientation, it is turned "
                "upright when read, and its label must be drawn on the upright image)"
                if (w, h) == size
                else " (height x width)"
            )
            return "size mismatch", where, detail
        if self.image_check == "decode":
            try:
                _tally(self._read_mask_file(mask_path), tallies[0], tallies[1])
            except AnnotationError as err:
                return "bad label file", where, str(err).removeprefix(f"{mask_path}: ")
        return None

    def path_of(self, index: int) -> str:
        """The image file of sample ``index`` (without reading it)."""
        return str(self.paths[index])

    def _note_class_statistics(
        self, report: DataReport, pixels: np.ndarray, images_with: np.ndarray
    ) -> None:
        """Images per class and each class's share of the pixels (counted per label value)
        into ``report``; nothing when no label map was counted."""
        if not pixels.any():
            return
        names = self.label_names["semantic"]
        report.class_counts["semantic"] = Counter(
            {name: int(images_with[k]) for k, name in enumerate(names)}
        )
        void = f"ignore_index {self.ignore_index}" if self.palette is None else "void colour"
        void += " and 0, reduce_zero_label" if self.reduce_zero_label else ""
        report.notes.append(f"pixels per class (semantic): {pixel_shares(pixels, names, void)}")

    def class_statistics(self, report: DataReport) -> None:
        """Add to ``report`` what ``check-data`` (``image_check="decode"``) counts: the
        images holding each class and each class's share of the pixels, reading every label
        map (``show-data`` on a dataset built with header checks); unreadable maps, which
        ``check-data`` reports, are left out."""
        pixels = np.zeros(IGNORE_PIXEL + 1, dtype=np.int64)
        images_with = np.zeros(IGNORE_PIXEL + 1, dtype=np.int64)
        for index in range(len(self)):
            with contextlib.suppress(AnnotationError):
                _tally(self.read_mask(index), pixels, images_with)
        self._note_class_statistics(report, pixels, images_with)

    def __len__(self) -> int:
        return len(self.paths)

    def read_mask(self, index: int) -> np.ndarray:
        """The label map of sample ``index``: uint8 ``[H, W]``, values checked."""
        return self._read_mask_file(self.mask_paths[index])

    def _read_mask_file(self, path: Path) -> np.ndarray:
        try:
            mask = read_label_image(path, colour=self.palette is not None)
        except ImageDecodeError as err:
            raise AnnotationError(f"{path}: {label_file_reason(path, err.reason)}") from None
        if self.palette is not None:
            return self.palette.labels_of(mask, path)
        num_classes = len(self.label_names["semantic"])
        lowest = int(self.reduce_zero_label)  # the file's value of class 0
        key = getattr(self, "config_key", "data.train")  # set by build_dataset
        problem = label_values_problem(mask, num_classes, self.ignore_index, key, lowest)
        if problem:
            raise AnnotationError(f"{path}: {problem}")
        if not lowest and self.ignore_index == IGNORE_PIXEL:
            return mask.astype(np.uint8)
        void = mask == self.ignore_index  # as the one value samples use for "no label"
        if lowest:  # ADE20K: 0 is "other", file values 1..C are classes 0..C-1
            void |= mask == 0
            mask = mask - 1
        return np.where(void, IGNORE_PIXEL, mask).astype(np.uint8)

    def load_semantic(self, image_id: int) -> np.ndarray:
        """The label map of the image with this id (ids are 1-based positions)."""
        return self.read_mask(self.index_of_id[int(image_id)])

    def __getitem__(self, index: int) -> Sample:
        return read_or_skip(self._load, index, len(self), self.on_bad_image)

    def _load(self, index: int) -> Sample:
        image = read_image(self.paths[index])
        mask = self.read_mask(index)
        if mask.shape != image.shape[:2]:
            raise AnnotationError(
                f"{self.mask_paths[index]}: label image is {mask.shape[0]}x{mask.shape[1]} but "
                f"its image {self.paths[index].name} is {image.shape[0]}x{image.shape[1]}"
            )
        return {
            "image": image,
            "image_id": index + 1,
            "orig_size": image.shape[:2],
            "path": str(self.paths[index]),
            "semantic": mask,
        }


def _tally(mask: np.ndarray, pixels: np.ndarray, images_with: np.ndarray) -> None:
    """Add a label map's pixels per value to ``pixels`` and one image to each value it holds
    in ``images_with``."""
    counts = np.bincount(mask.ravel(), minlength=len(pixels))
    pixels += counts
    images_with += counts > 0
