"""What the mask-folder reader (:mod:`visionkit.data.readers.mask_folder`) says when its
settings and the files disagree: the label file named otherwise beside a missing one (CamVid's
``_L``, Cityscapes' suffixes), and an ``ignore_index`` that is one of the classes."""

from __future__ import annotations

import glob
from pathlib import Path

#: Extensions a label file may have (the formats :func:`~visionkit.data.io.read_label_image`
#: decodes: PNG and TIFF).
MASK_EXTENSIONS = (".png", ".tif", ".tiff")


def label_file_like(
    folder: Path, base: str, mask_suffix: str = "", mask_ext: str = ".png"
) -> tuple[Path, list[str]] | None:
    """The first label file in ``folder`` named ``base`` + a suffix + a label extension (a
    suffix starting with a letter or digit is another image's name: ``0001`` is not
    ``000`` + ``1``), and the entry keys naming it where they differ from ``mask_suffix`` /
    ``mask_ext`` (``["mask_suffix: _L"]``); ``None`` when there is none."""
    for other in sorted(folder.glob(glob.escape(base) + "*")):
        ext = other.suffix.lower()
        suffix = other.name[len(base) : -len(ext)]
        if ext not in MASK_EXTENSIONS or suffix[:1].isalnum() or not other.is_file():
            continue
        keys = [] if suffix == mask_suffix else [f"mask_suffix: {suffix or repr('')}"]
        return other, keys + ([] if ext == mask_ext else [f"mask_ext: {ext}"])
    return None


def ignored_class(k: int, names: list[str], class_source: str) -> str:
    """Why ``ignore_index`` ``k`` may not be one of the classes ``names`` (read from
    ``class_source``), and the fixes: an ignored class is never learnt and scores nothing."""
    source = "class_names" if class_source.startswith("class_names") else "classes.txt"
    fix = (
        f"drop it from {source} (the void label then is no class) or give another ignore_index"
        if k == len(names) - 1
        else f"give the ignore_index that marks the label files' unlabelled pixels (255, the "
        f"default, when none do); if {k} does mark them, its name cannot be dropped from "
        f"{source} without shifting the classes after it: renumber the label files"
    )
    return (
        f"ignore_index {k} is class {k} {names[k]!r} of {class_source}: a class that is ignored "
        f"is never learnt and scores nothing (its pixels are left out of the loss and of mIoU); "
        f"{fix}"
    )
