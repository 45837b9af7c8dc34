"""``visionkit split`` of a LabelMe folder (one LabelMe json file per image, anywhere below
it): ``splits/train.txt``, ``val.txt`` (``test.txt``), one json file per line relative to the
folder, for ``split: train`` of ``format: labelme`` (see :mod:`visionkit.data.split`).

Each json file is read as the reader reads it (:func:`~visionkit.data.convert.labelme.
read_json_file`). Json files that are not LabelMe files (a COCO file written into the folder)
are left out of the lists, and json files that cannot be read are listed all the same (the
reader names them when it reads them, as it does without a split); both are named in a
warning. The labels of every LabelMe file, sorted, are printed as the ``class_names`` to give
each split, so that a split without some label numbers the others as the rest do.
"""

from __future__ import annotations

from pathlib import Path

from visionkit.choices import SPLITS
from visionkit.data.batch import list_files
from visionkit.data.convert.labelme import is_labelme, labelme_file, read_json_file
from visionkit.data.convert.labelme_shapes import object_labels
from visionkit.data.split import SplitReport, refuse_existing, write_lists
from visionkit.data.split_shares import assign
from visionkit.errors import DataError, counted


def is_labelme_folder(root: Path) -> bool:
    """Whether any json file below ``root`` is a LabelMe file (an ``annotations.json`` that
    ``visionkit convert`` wrote beside them sorts before ``frame_0001.json``)."""
    return any(labelme_file(p) for p in list_files(root, (".json",)))


def split_labelme(root: Path, val: float, test: float, seed: int, overwrite: bool) -> SplitReport:
    ids: list[str] = []
    labels: set[str] = set()
    unreadable: list[str] = []  # "name (why)": listed all the same
    other: list[str] = []  # json files that are no LabelMe files: left out
    for path in list_files(root, (".json",)):
        name = path.relative_to(root).as_posix()
        data, why = read_json_file(path)
        if why is not None:
            unreadable.append(f"{name} ({why})")
            ids.append(name)
        elif is_labelme(data):
            labels |= object_labels(data["shapes"])
            ids.append(name)
        else:
            other.append(name)
    if len(ids) == len(unreadable):
        raise DataError(f"{root} holds no LabelMe json files to split")
    parts = assign(ids, val, test, seed)
    every = {s: root / "splits" / f"{s}.txt" for s in SPLITS}
    refuse_existing(every, overwrite)
    files = write_lists(every, parts)
    report = SplitReport("labelme", files, {s: len(parts[s]) for s in files})
    report.classes = sorted(labels)
    if unreadable:
        shown = "; ".join(unreadable[:5]) + ("; ..." if len(unreadable) > 5 else "")
        report.notes.append(
            f"warning: {counted(len(unreadable), 'json file')} cannot be read, listed all the "
            f"same: {shown}; training stops on them unless on_bad_label: skip leaves them "
            f"out: fix or remove them, then visionkit split {root} --overwrite writes the "
            "lists anew"
        )
    if other:
        shown = ", ".join(other[:5]) + (", ..." if len(other) > 5 else "")
        report.notes.append(
            f"warning: {counted(len(other), 'json file')} without 'shapes' (not LabelMe "
            f"files) left out of the lists: {shown}"
        )
    return report
