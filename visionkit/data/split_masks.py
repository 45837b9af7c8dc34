"""``visionkit split`` of a mask folder (``images/`` + ``masks/``, VOC's ``JPEGImages/`` +
``SegmentationClass/``, or folders named with ``images=`` / ``masks=``): ``splits/train.txt``,
``val.txt`` (``test.txt``), one image path per line relative to the images folder, for
``split: train`` of ``format: mask_folder`` (see :mod:`visionkit.data.split`). A VOC folder
split already by ``ImageSets/Segmentation/`` is left as it is unless ``overwrite``.
"""

from __future__ import annotations

import bisect
from pathlib import Path

from visionkit.choices import SPLITS
from visionkit.data.batch import list_files
from visionkit.data.readers.voc_segmentation import (
    VOC_SEGMENTATION_LISTS,
    voc_segmentation_folders,
)
from visionkit.data.split import SplitReport, assign, read_list, refuse_existing, write_lists
from visionkit.errors import DataError, counted


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
            f"format: mask_folder, root: {root}, split: train (split: val for val); "
            "--overwrite writes a new random split to splits/ instead (read first)"
        )
    ids = [p.relative_to(image_dir).as_posix() for p in list_files(image_dir)]
    if not ids:
        raise DataError(f"{image_dir} holds no images to split")
    parts = assign(ids, val, test, seed)
    every = {s: root / "splits" / f"{s}.txt" for s in SPLITS}
    refuse_existing(every, overwrite)
    files = write_lists(every, parts)
    folders = (f", images: {images}" if images else "") + (f", masks: {masks}" if masks else "")
    folders += _label_naming(root, ids[0], mask_dir)
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


def _label_naming(root: Path, image: str, mask_dir: Path) -> str:
    """The entry's keys that name the labels as they lie, for the summary's entry: the
    ``mask_suffix`` / ``mask_ext`` of the first image's label file when it is not
    ``<stem>.png`` (CamVid's ``<stem>_L.png``), and a ``palette`` file of
    :data:`~visionkit.data.readers.palette.PALETTE_FILES` in ``root``; ``""`` when neither."""
    from visionkit.data.readers.mask_hints import label_file_like
    from visionkit.data.readers.palette import published_palette

    relative = Path(image)
    found = None
    if not (mask_dir / relative.with_suffix(".png")).exists():
        found = label_file_like(mask_dir / relative.parent, relative.stem)
    palette = published_palette(root)
    keys = [*(found[1] if found else []), *([f"palette: {palette}"] if palette else [])]
    return "".join(f", {key}" for key in keys)
