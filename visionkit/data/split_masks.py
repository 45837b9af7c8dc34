"""``visionkit split`` of a mask folder (``images/`` + ``masks/``, VOC's ``JPEGImages/`` +
``SegmentationClass/``, or folders named with ``images=`` / ``masks=``): ``splits/train.txt``,
``val.txt`` (``test.txt``), one image path per line relative to the images folder, for
``split: train`` of ``format: mask_folder`` (see :mod:`visionkit.data.split`). A VOC folder
split already by ``ImageSets/Segmentation/`` is left as it is unless ``overwrite``.
"""

from __future__ import annotations

import bisect
import logging
from pathlib import Path

from visionkit.choices import SPLITS
from visionkit.data.batch import list_files
from visionkit.data.readers.voc_segmentation import (
    VOC_SEGMENTATION_LISTS,
    voc_segmentation_folders,
)
from visionkit.data.split import (
    SplitReport,
    read_list,
    refuse_existing,
    split_list_file,
    write_lists,
)
from visionkit.data.split_shares import assign
from visionkit.errors import DataError, counted

logger = logging.getLogger(__name__)


def is_mask_folder(root: Path, images: str | None) -> bool:
    """The images folder (``images/`` or ``images``) and ``masks/`` (or VOC's
    ``JPEGImages/`` and ``SegmentationClass/``), and no YOLO ``labels/`` nor VOC XML folder."""
    others = ("labels", "Annotations", "annotations")
    image_dir, mask_dir = voc_segmentation_folders(root, images or "images", "masks")
    return (
        (root / image_dir).is_dir()
        and (root / mask_dir).is_dir()
        and not any((root / d).is_dir() for d in others)
    )


def split_masks(
    root: Path,
    val: float,
    test: float,
    seed: int,
    overwrite: bool,
    images: str | None,
    masks: str | None,
) -> SplitReport:
    named = voc_segmentation_folders(root, images or "images", masks or "masks")
    image_dir, mask_dir = root / named[0], root / named[1]
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise DataError(f"{folder} does not exist: a mask folder holds images and masks")
    voc_lists = sorted((root / VOC_SEGMENTATION_LISTS).glob("*.txt"))
    if voc_lists and not overwrite:
        listed = ", ".join(
            f"{p.name} ({counted(len(read_list(p, root)), 'image')})" for p in voc_lists
        )
        raise DataError(
            f"{root}: split already, by {VOC_SEGMENTATION_LISTS}/ ({listed}): read them with "
            f"format: mask_folder, root: {root}, {_reading(root, voc_lists)}; --overwrite "
            f"writes a new random train / val split to splits/ instead (splits/ is read first, "
            f"{VOC_SEGMENTATION_LISTS}/ is kept)"
        )
    ids, naming = _images_only(image_dir, mask_dir)
    if not ids:
        raise DataError(f"{image_dir} holds no images to split")
    parts = assign(ids, val, test, seed)
    every = {s: root / "splits" / f"{s}.txt" for s in SPLITS}
    refuse_existing(every, overwrite)
    files = write_lists(every, parts)
    folders = (f", images: {images}" if images else "") + (f", masks: {masks}" if masks else "")
    folders += _label_naming(root, ids[0], mask_dir, naming)
    report = SplitReport("masks", files, {s: len(parts[s]) for s in files}, folders)
    unlabelled = _without_labels(ids, mask_dir)
    if unlabelled:  # listed all the same: the lists name images, the labels may come later
        shown = ", ".join(unlabelled[:3]) + (", ..." if len(unlabelled) > 3 else "")
        report.notes.append(
            f"warning: {counted(len(unlabelled), 'image')} of {image_dir.name}/ "
            f"{'has' if len(unlabelled) == 1 else 'have'} no label file in "
            f"{mask_dir.name}/ ({shown}): training stops on them unless on_bad_label: skip "
            "leaves them out"
        )
    return report


def _images_only(image_dir: Path, mask_dir: Path) -> tuple[list[str], list[str] | None]:
    """The images below ``image_dir`` (paths relative to it), less the label files lying among
    them: those of ``mask_dir`` inside it, and, where both are one folder (Roboflow's export:
    ``a.jpg`` beside ``a_mask.png``), each file the reader takes for another image's label
    (``<image stem><mask_suffix><mask_ext>``, the naming that most files follow:
    :func:`~visionkit.data.readers.mask_hints.beside_images`); and that naming's entry keys
    (``["mask_suffix: _mask"]``), ``None`` where the folders differ or no file names another."""
    from visionkit.data.readers.mask_hints import beside_images, label_path, naming_keys

    files = [
        p for p in list_files(image_dir) if mask_dir == image_dir or not p.is_relative_to(mask_dir)
    ]
    found = beside_images(files) if mask_dir == image_dir else None
    if found is None:
        return [p.relative_to(image_dir).as_posix() for p in files], None
    suffix, ext = found[:2]

    def labels_of(files: list[Path], suffix: str, ext: str) -> set[tuple[Path, str]]:
        named = {label_path(p, image_dir, mask_dir, suffix, ext) for p in files} - {None}
        return {_case_free(p) for p in named} & {_case_free(p) for p in files}

    labels = labels_of(files, suffix, ext)
    files = [p for p in files if _case_free(p) not in labels]
    second = beside_images(
        files, (suffix, ext)
    )  # x_color.png and x_label.png beside x.jpg: both labels
    if second is not None and len(others := labels_of(files, *second[:2])) >= len(labels):
        files = [p for p in files if _case_free(p) not in others]
        logger.warning(
            "%s: images beside label files named two ways (%s, %s): neither is listed as an "
            "image; the entry below reads the first (mask_suffix: %s for the others)",
            image_dir,
            found[3].name,
            second[3].name,
            second[0],
        )
    return [p.relative_to(image_dir).as_posix() for p in files], naming_keys(suffix, ext)


def _case_free(path: Path) -> tuple[Path, str]:
    """``path`` compared as the reader finds a label file: its extension in any case
    (``x_mask.Png`` is ``x_mask.png``)."""
    return path.parent, path.stem + path.suffix.lower()


def _reading(root: Path, lists: list[Path]) -> str:
    """``split: train (split: val for val.txt)``: the ``split`` value that reads each of
    ``lists`` (its name, or its path where ``splits/`` holds a list of that name)."""
    from visionkit.data.split import split_list_file

    values = [
        p.stem if split_list_file(root, p.stem) == p else p.relative_to(root).as_posix()
        for p in lists
    ]
    first = f"split: {values[0]}"
    others = [f"split: {v} for {p.name}" for v, p in zip(values[1:], lists[1:], strict=True)]
    return first + (f" ({', '.join(others)})" if others else "")


def missing_split(root: Path, split: str, file: Path) -> str | None:
    """Why a mask folder's ``split`` list ``file`` is missing, when split lists exist under
    other names in ``splits/`` or VOC's ``ImageSets/Segmentation/`` (CVAT's ``default.txt``):
    each of them with the ``split`` value that reads it; ``None`` when there are none (the
    message of :func:`~visionkit.data.split.read_list` then says how to write them)."""
    voc = root / VOC_SEGMENTATION_LISTS
    lists = sorted((root / "splits").glob("*.txt")) + sorted(voc.glob("*.txt"))
    if not lists or not sorted(voc.glob("*.txt")):
        return None
    nor = f" (nor {VOC_SEGMENTATION_LISTS / file.name})" if file.parent == root / "splits" else ""
    held = "; ".join(
        f"{p.parent.relative_to(root).as_posix()}/ holds {p.name} "
        f"({counted(len(read_list(p, root)), 'image')}): {_reading(root, [p])}"
        for p in lists
    )
    return (
        f"split file {file} does not exist{nor}; split lists in {root}: {held}; or write a "
        f"random train / val split to splits/ with: visionkit split {root} --val 0.2 "
        f"--overwrite ({VOC_SEGMENTATION_LISTS}/ is kept)"
    )


def _without_labels(ids: list[str], mask_dir: Path) -> list[str]:
    """The images of ``ids`` (paths relative to the image folder) with no file in the same
    folder of ``mask_dir`` whose name starts with the image's stem (whatever the label's suffix
    and extension); each folder is listed once and searched by bisection."""
    listed: dict[Path, list[str]] = {}
    missing = []
    for image in ids:
        folder, stem = (mask_dir / image).parent, Path(image).stem
        if folder not in listed:
            listed[folder] = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        names = listed[folder]
        at = bisect.bisect_left(names, stem)
        if at == len(names) or not names[at].startswith(stem):
            missing.append(image)
    return missing


def _label_naming(root: Path, image: str, mask_dir: Path, naming: list[str] | None) -> str:
    """The entry's keys that name the labels as they lie, for the summary's entry: those of
    ``naming`` (images and labels in one folder, :func:`_images_only`), else the
    ``mask_suffix`` / ``mask_ext`` of the first image's label file when it is not
    ``<stem>.png`` (CamVid's ``<stem>_L.png``), and a ``palette`` file of
    :data:`~visionkit.data.readers.palette.PALETTE_FILES` in ``root``; ``""`` when neither."""
    from visionkit.data.readers.mask_hints import label_file_like
    from visionkit.data.readers.palette import published_palette

    relative = Path(image)
    if naming is None:
        found = None
        if not (mask_dir / relative.with_suffix(".png")).exists():
            found = label_file_like(mask_dir / relative.parent, relative.stem)
        naming = found[1] if found else []
    palette = published_palette(root)
    keys = [*naming, *([f"palette: {palette}"] if palette else [])]
    return "".join(f", {key}" for key in keys)


def listed_images(
    root: Path, split: str, paths: list[Path], image_dir: Path, image_suffix: str = ""
) -> list[Path]:
    """The images of ``paths`` (below ``image_dir``) that the list file of ``split`` names
    (sorted, each once): a line is an image's path relative to ``image_dir``, with or without
    its extension (and ``image_suffix``); what ``split:`` of a mask folder reads.

    Raises:
        DataError: no such list file, a listed image that is not there, or a name that two
            images answer to.
    """
    file = split_list_file(root, split)
    missing = None if file.is_file() else missing_split(root, split, file)
    if missing:
        raise DataError(missing)
    names = [n.removeprefix("./") for n in read_list(file, root)]
    by_name: dict[str, set[Path]] = {}
    for path in paths:  # its relative path, and without the extension (and image_suffix)
        relative = path.relative_to(image_dir).as_posix()
        stem = relative[: -len(path.suffix)] if path.suffix else relative
        keys = {relative, stem}
        if image_suffix and stem.endswith(image_suffix):
            keys.add(stem[: -len(image_suffix)])
        for key in keys:
            by_name.setdefault(key, set()).add(path)
    missing = [n for n in names if n not in by_name]
    if missing:
        raise DataError(
            f"split file {file}: {len(missing)} of {len(names)} listed images are not in "
            f"{image_dir}: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
            + " (one image path per line, relative to that folder)"
        )
    ambiguous = {n: sorted(by_name[n]) for n in names if len(by_name[n]) > 1}
    if ambiguous:
        name, found = next(iter(ambiguous.items()))
        raise DataError(
            f"split file {file}: {name!r} names {len(found)} images "
            f"({', '.join(p.name for p in found)}): give the extension"
        )
    return sorted({next(iter(by_name[n])) for n in names})
