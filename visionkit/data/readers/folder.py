"""ImageFolder layout: ``root/<class name>/<image>``; one image-level class per image.

>>> ds = ImageFolderDataset("path/to/root")  # doctest: +SKIP
>>> ds.label_names["class"]  # sorted sub-folder names  # doctest: +SKIP
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal

from visionkit.data.batch import IMAGE_EXTENSIONS, Sample, dataset_root, list_files, skipped_name
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
from visionkit.errors import DataError, counted
from visionkit.registry import DATASETS


class ClassifiedImages:
    """Samples of an ``items`` list of ``(image file, class index)``, each image decoded when
    its sample is read (unreadable ones under ``on_bad_image``): what the folder and CSV
    classification readers share."""

    items: list[tuple[Path, int]]
    on_bad_image: str

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


@DATASETS.register("folder")
class ImageFolderDataset(ClassifiedImages):
    """Images in one sub-folder per class. Image ids are 1-based positions in sorted order.

    Args:
        root: the folder holding one sub-folder per class.
        class_names: the class order to use (e.g. the training set's, for a validation set
            that lacks some classes); default: sorted sub-folder names, each of which
            must hold images (as in torchvision's ``ImageFolder``).
        split: read only the images listed in ``root/splits/<split>.txt`` (or a ``.txt``
            path), one ``<class>/<image>`` per line, as ``visionkit split ROOT`` writes them;
            default: every image.
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
    #: Whether its folders are classes a model learns (an empty one is refused) or, as
    #: identities of a verification set, only names.
    classes_learned: ClassVar[bool] = True
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
        split: str | None = None,
        *,
        image_check: Literal["header", "decode"] = "header",
    ) -> None:
        self.on_bad_image = policy(on_bad_image, "on_bad_image", ("error", "skip"))
        image_check = policy(image_check, "image_check", IMAGE_CHECKS)
        self.root = dataset_root(root)
        exts = tuple(e.lower() for e in extensions)
        found = class_folders(self.root, exts)
        loose = list_files(self.root, exts, recursive=False)
        names = list(class_names) if class_names is not None else found
        folders = folders_of(self.root, names, found)  # None: no folder
        unknown = sorted(set(found) - set(folders))
        if unknown:
            folded = {n.casefold(): n for n in names}
            raise DataError(
                f"{self.root}: class folders not in the class list {names} (class_names, or "
                "for a validation or test set the training set's class folders): the model "
                "has no output for them, so each of their images would count as an error; "
                "add their images to the training set, or move them out of this folder:",
                [
                    u
                    + (
                        f" (did you mean {folded[u.casefold()]}? names differ in case)"
                        if u.casefold() in folded
                        else ""
                    )
                    for u in unknown
                ],
            )
        self.items = [
            (path, index)
            for index, folder in enumerate(folders)
            if folder is not None
            for path in list_files(self.root / folder, exts)
        ]
        # images directly in the root, with no class folder or one (a class folder given as
        # the root); beside two or more class folders they are only left out (a warning)
        if loose and split is None and len(found) < 2 and len(loose) >= len(self.items):
            refuse_single_class_folder(self.root, loose, found, len(self.items))
        if class_names is None:
            counts = Counter(names[index] for _, index in self.items)
            check_class_folders(self.root, found, counts if self.classes_learned else None)
        held = Counter(index for _, index in self.items)  # per class, in its folder
        if split is not None:
            self.items = listed_items(self.root, split, self.items)
        listed = Counter(index for _, index in self.items)  # per class, of the split's list
        if not self.items:
            raise DataError(
                f"no images found under {self.root} (expected root/<class>/<image> with one of "
                f"{', '.join(exts)}; found {len(found)} class folders)"
            )
        self.label_names = {"class": names}
        self.report = report = DataReport(str(self.root), "folder")
        report.num_images = len(self.items)
        if loose and split is None:  # a split's list names the images it reads
            report.add(
                "image in no sub-folder",
                str(self.root),
                f"{counted(len(loose), 'image')} directly in the root (e.g. {loose[0].name}) "
                "left out: each class's images go in root/<class>/",
                severity="warning",
            )
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
        absent = [k for k, n in enumerate(names) if not report.class_counts["class"].get(n)]
        # a sorted set's folders all hold images: one it reads none of was left out by the
        # split's list or by on_bad_image: skip
        if absent and self.classes_learned:
            from visionkit.data.split import split_list_file  # split imports the readers

            why = {k: "missing" if folders[k] is None else "empty" for k in absent}
            for k in (k for k in absent if held[k]):  # the images are there: left out
                why[k] = (
                    f"{counted(held[k], 'image')} in it, none listed in "
                    f"{where_of(split_list_file(self.root, str(split)), self.root)}"
                    if not listed[k]
                    else f"its {counted(listed[k], 'image')} unreadable, left out: on_bad_image: "
                    "skip"
                )
            report.add(
                "class without images",
                str(self.root),
                "no images in the class folders "
                + ", ".join(f"{names[k]}/ ({why[k]})" for k in absent)
                + ": in a validation or test set their recall is not measured (nan in the "
                "per-class table) and top-1 counts the other classes' images only; in a "
                "training set they are never learnt",
                severity="warning",
            )
        report.raise_for_errors()


#: Folder names that are splits, not classes (a root given one level too high).
SPLIT_FOLDERS = frozenset({"train", "val", "valid", "validation", "test"})


def nfc(name: str) -> str:
    """``name`` in Unicode's composed form (NFC), to match folder names across systems."""
    return unicodedata.normalize("NFC", name)


def folders_of(root: Path, names: list[str], found: list[str]) -> list[str | None]:
    """The folder of each class of ``names`` among the class folders ``found`` in ``root``
    (``None``: it has none): the folder of its name, else one spelling it in the other Unicode
    form that no class takes by its own name (macOS writes "café" as "cafe" + a combining
    accent, other systems with one "é"; both look the same), each folder one class's.

    Raises:
        DataError: two folders of ``root`` whose names differ in their Unicode form only.
    """
    forms: dict[str, list[str]] = {}
    for folder in found:
        forms.setdefault(nfc(folder), []).append(folder)
    twins = [same for same in forms.values() if len(same) > 1]
    if twins:
        raise DataError(
            f"{root}: class folders whose names differ in their Unicode form only (one written "
            "with composed letters, 'é', one decomposed, 'e' + a combining accent, as macOS "
            "writes them; they look the same): move each one's images into the other:",
            [" and ".join(ascii(f) for f in same) for same in twins],
        )
    folders: list[str | None] = [n if n in found else None for n in names]
    free = {nfc(f): f for f in set(found) - set(folders)}
    return [
        f if f is not None else free.pop(nfc(n), None) for f, n in zip(folders, names, strict=True)
    ]


def class_folders(root: Path, extensions: tuple[str, ...]) -> list[str]:
    """The class sub-folders of ``root``, sorted: every visible folder but ``splits/`` holding
    split lists only (:func:`listed_items`), hidden folders and
    :data:`~visionkit.data.batch.SYSTEM_FOLDERS` (``@eaDir``, ``__MACOSX``)."""
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir()
        and not skipped_name(d.name)
        and not (d.name == "splits" and not list_files(d, extensions))
    )


def refuse_single_class_folder(root: Path, loose: list[Path], found: list[str], held: int) -> None:
    """Refuse a root holding its images directly (``loose``), at least as many as its
    ``found`` sub-folders hold (``held``): one class's folder given for the folder of classes.

    Raises:
        DataError: saying so, and to give its parent folder.
    """
    folders = "sub-folder" if len(found) == 1 else "sub-folders"
    inside = f"{counted(held, 'image')} in its {folders} {', '.join(f + '/' for f in found)}"
    others = f", {inside}" if found else ", no class sub-folders"
    raise DataError(
        f"{root}: looks like a single class folder ({counted(len(loose), 'image')} directly in "
        f"it, e.g. {loose[0].name}{others}); expected the folder holding one sub-folder per "
        f"class (root/<class>/<image>): give its parent folder, {root.parent}, as the root"
    )


def check_class_folders(
    root: Path, found: list[str], images: Mapping[str, int] | None = None
) -> None:
    """The class folders of a dataset that defines its classes: not the splits of a folder
    one level up, and, given the number of ``images`` of each, none empty (each would be a
    class never seen).

    Raises:
        DataError: saying which and what to give instead.
    """
    if found and {f.lower() for f in found} <= SPLIT_FOLDERS:
        raise DataError(
            f"{root}: its folders {', '.join(f + '/' for f in found)} are splits, not classes: "
            f"give each split's own folder as its root: {', '.join(str(root / f) for f in found)}"
        )
    empty = [f"{f}/" for f in found if images is not None and not images.get(f)]
    if empty:
        raise DataError(
            f"{root}: class folders without images, each a class the model would never see "
            "(remove them or add images):",
            empty,
        )


def listed_items(root: Path, split: str, items: list[tuple[Path, int]]) -> list[tuple[Path, int]]:
    """The ``items`` whose ``<class>/<image>`` path the split's list names (its order kept)."""
    from visionkit.data.split import read_list, split_list_file

    file = split_list_file(root, split)
    names = {n.removeprefix("./") for n in read_list(file, root)}
    kept = [(p, c) for p, c in items if p.relative_to(root).as_posix() in names]
    missing = names - {p.relative_to(root).as_posix() for p, _ in kept}
    if missing:  # moved or removed since the split
        raise DataError(
            f"{file} names images that are not in a class folder of {root} (expected each "
            f"line's <class>/<image> there; if they were removed or moved, visionkit split "
            f"{root} --overwrite writes the lists anew):",
            sorted(missing),
        )
    return kept
