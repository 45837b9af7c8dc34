"""What the mask-folder reader (:mod:`visionkit.data.readers.mask_folder`) says when its
settings and the files disagree: the label file named otherwise beside a missing one (CamVid's
``_L``, Cityscapes' suffixes), a JPEG label, and an ``ignore_index`` that is one of the
classes; and ``classes.txt`` read, its lines numbered or not (:func:`read_class_names`)."""

from __future__ import annotations

import difflib
import glob
import re
from pathlib import Path

#: Extensions a label file may have (the formats :func:`~visionkit.data.io.read_label_image`
#: decodes: PNG and TIFF).
MASK_EXTENSIONS = (".png", ".tif", ".tiff")


#: Extensions of JPEG files, which are never label files: JPEG is lossy.
JPEG_EXTENSIONS = (".jpg", ".jpeg")

#: Why a label file may not be a JPEG.
JPEG_LABELS = (
    "JPEG labels are lossy: compression changes the class values (the edges of each class get "
    "values in between); save the labels as PNG from the tool that drew them (a JPEG converted "
    "to PNG keeps the changed values)"
)


def _named_like(folder: Path, base: str, extensions: tuple[str, ...]) -> list[tuple[Path, str]]:
    """``(file, suffix)`` of each file in ``folder`` named ``base`` + a suffix + one of
    ``extensions`` (a suffix starting with a letter or digit is another image's name:
    ``0001`` is not ``000`` + ``1``)."""
    found = []
    for other in sorted(folder.glob(glob.escape(base) + "*")):
        ext = other.suffix.lower()
        suffix = other.name[len(base) : -len(ext)]
        if ext in extensions and not suffix[:1].isalnum() and other.is_file():
            found.append((other, suffix))
    return found


def label_file_like(
    folder: Path, base: str, mask_suffix: str = "", mask_ext: str = ".png"
) -> tuple[Path, list[str]] | None:
    """The label file in ``folder`` named ``base`` + a suffix + a label extension that is
    likeliest meant, and the entry keys naming it where they differ from ``mask_suffix`` /
    ``mask_ext`` (``["mask_suffix: _L"]``); ``None`` when there is none. Likeliest: the suffix
    closest to ``mask_suffix`` (a typo ``_gtFine_labelTrainId`` means ``_gtFine_labelTrainIds``,
    not ``_gtFine_labelIds``), then one of extension ``mask_ext``, then Cityscapes'
    ``_labelTrainIds`` (what training takes) before its other label files."""
    found = _named_like(folder, base, MASK_EXTENSIONS)
    if not found:
        return None

    def rank(item: tuple[Path, str]) -> tuple[float, bool, bool]:
        other, suffix = item
        likeness = difflib.SequenceMatcher(None, suffix, mask_suffix).ratio()
        return -likeness, other.suffix.lower() != mask_ext, not suffix.endswith("TrainIds")

    other, suffix = min(found, key=rank)  # min keeps the first (sorted) of equal ranks
    ext = other.suffix.lower()
    keys = [] if suffix == mask_suffix else [f"mask_suffix: {suffix or repr('')}"]
    return other, keys + ([] if ext == mask_ext else [f"mask_ext: {ext}"])


def missing_label_hint(mask_path: Path, root: Path, mask_suffix: str, mask_ext: str) -> str:
    """For a missing label file: what lies there instead, and the settings that name it (``"
    (masks/a_L.png is there: set mask_suffix: _L in the dataset's entry)"``): a label file
    named otherwise, a JPEG label (refused: lossy), or a label file named by the image's stem
    less a suffix the images carry (Cityscapes' ``_leftImg8bit``: ``image_suffix``); ``""``
    when there is none."""
    from visionkit.data.checks import where_of

    folder = mask_path.parent
    base = mask_path.name[: -len(mask_suffix + mask_ext)]
    found = label_file_like(folder, base, mask_suffix, mask_ext)
    if found is not None:
        other, keys = found
        return f" ({where_of(other, root)} is there: set {', '.join(keys)} in the dataset's entry)"
    jpeg = _named_like(folder, base, JPEG_EXTENSIONS)
    if jpeg:
        return f" ({where_of(jpeg[0][0], root)} is there, but {JPEG_LABELS})"
    cuts = [i for i in range(len(base) - 1, 0, -1) if base[i] in "_-."]
    for i in cuts:  # the longest stem first: "a_000_leftImg8bit" → "a_000", then "a"
        other = folder / f"{base[:i]}{mask_suffix}{mask_ext}"
        if other.is_file():
            return (
                f" ({where_of(other, root)} is there: the image names carry a suffix the label "
                f"files lack; set image_suffix: {base[i:]} in the dataset's entry)"
            )
    return ""


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


def read_class_names(path: Path) -> list[str]:
    """The class names of a ``classes.txt``: one a line, in label order (blank lines left
    out), or, where every line is ``<index> <name>`` with the indices each of ``0..C-1`` once
    (``0 sky``), the names of labels ``0..C-1`` by their index. Numbered otherwise (``1
    cent``, ``2 cent``, ``5 cent``: names that begin with a number), the lines are the names.
    """
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    numbered = [re.fullmatch(r"(\d+)\s+(\S.*)", n) for n in names]
    if not names or not all(numbered):
        return names
    by_index = {int(m.group(1)): m.group(2).strip() for m in numbered if m}
    if sorted(by_index) != list(range(len(names))) or len(by_index) != len(names):
        return names
    return [by_index[k] for k in range(len(names))]
