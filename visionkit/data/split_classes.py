"""``visionkit split`` of a folder of class folders (``<class>/<image>``, what ``format:
folder`` reads): ``splits/train.txt``, ``val.txt`` (``test.txt``), one ``<class>/<image>`` per
line, the classes in the same proportions in each split (stratified, :func:`class_shares`), for
``split: train`` of ``format: folder`` (see :mod:`visionkit.data.split`).
"""

from __future__ import annotations

import random
from pathlib import Path

from visionkit.choices import SPLITS
from visionkit.data.split import SplitReport, refuse_existing, write_lists
from visionkit.data.split_shares import class_shares
from visionkit.errors import counted


def is_class_folders(root: Path) -> bool:
    """Two or more visible sub-folders (``splits/`` aside), some holding images, none of them
    a split (``train/``, ``val/``: split already)."""
    from visionkit.data.batch import IMAGE_EXTENSIONS, list_files
    from visionkit.data.readers.folder import SPLIT_FOLDERS, class_folders

    found = class_folders(root, IMAGE_EXTENSIONS)
    return (
        len(found) > 1
        and not {f.lower() for f in found} & SPLIT_FOLDERS
        and any(list_files(root / f) for f in found)
    )


def split_classes(root: Path, val: float, test: float, seed: int, overwrite: bool) -> SplitReport:
    """Each class's images shuffled and cut by :func:`class_shares`; an empty class folder is
    refused as the reader refuses it."""
    from visionkit.data.batch import IMAGE_EXTENSIONS, list_files
    from visionkit.data.readers.folder import check_class_folders, class_folders

    ids = {
        name: sorted(p.relative_to(root).as_posix() for p in list_files(root / name))
        for name in class_folders(root, IMAGE_EXTENSIONS)
    }
    check_class_folders(root, list(ids), {name: len(v) for name, v in ids.items()})
    shares = class_shares({name: len(v) for name, v in ids.items()}, val, test)
    parts: dict[str, list[str]] = {s: [] for s in SPLITS}
    for name, names in ids.items():
        random.Random(f"{seed}/{name}").shuffle(names)
        start = 0
        for split in SPLITS:
            parts[split] += sorted(names[start : start + shares[name][split]])
            start += shares[name][split]
    every = {s: root / "splits" / f"{s}.txt" for s in SPLITS}
    refuse_existing(every, overwrite)
    files = write_lists(every, parts)
    report = SplitReport("classes", files, {s: len(parts[s]) for s in files})
    unreadable = unreadable_images(root, [i for names in ids.values() for i in names])
    if unreadable:  # listed all the same: the reader names them when it reads them
        shown = "; ".join(unreadable[:5]) + ("; ..." if len(unreadable) > 5 else "")
        report.notes.append(
            f"warning: {counted(len(unreadable), 'image')} cannot be read (image header "
            f"checked), listed all the same: {shown}; training stops on them unless "
            f"on_bad_image: skip leaves them out: replace or remove them, then visionkit "
            f"split {root} --overwrite writes the lists anew"
        )
    return report


def unreadable_images(root: Path, ids: list[str]) -> list[str]:
    """``"<id> (why)"`` of each of the images ``ids`` (paths relative to ``root``) whose
    header cannot be read: an empty or truncated file."""
    from visionkit.data.checks import DataReport, ImageFile, check_image_files

    report = DataReport(str(root), "folder")
    check_image_files([ImageFile(root / i, i) for i in ids], report, "header")
    return [f"{p.where} ({p.detail})" for p in report.problems if p.kind == "unreadable image"]
