"""``visionkit split`` of a LabelMe folder (one LabelMe json file per image, anywhere below
it): ``splits/train.txt``, ``val.txt`` (``test.txt``), one json file per line relative to the
folder, for ``split: train`` of ``format: labelme`` (see :mod:`visionkit.data.split`). Json
files that are not LabelMe files (a COCO file written into the folder) are not listed.
"""

from __future__ import annotations

from pathlib import Path

from visionkit.choices import SPLITS
from visionkit.data.batch import list_files
from visionkit.data.convert.labelme import labelme_file
from visionkit.data.split import SplitReport, assign, refuse_existing, write_lists
from visionkit.errors import DataError


def is_labelme_folder(root: Path) -> bool:
    """Whether the first json file below ``root`` is a LabelMe file."""
    files = list_files(root, (".json",))
    return bool(files) and labelme_file(files[0])


def split_labelme(root: Path, val: float, test: float, seed: int, overwrite: bool) -> SplitReport:
    ids = [p.relative_to(root).as_posix() for p in list_files(root, (".json",)) if labelme_file(p)]
    if not ids:
        raise DataError(f"{root} holds no LabelMe json files to split")
    parts = assign(ids, val, test, seed)
    every = {s: root / "splits" / f"{s}.txt" for s in SPLITS}
    refuse_existing(every, overwrite)
    files = write_lists(every, parts)
    return SplitReport("labelme", files, {s: len(parts[s]) for s in files})
