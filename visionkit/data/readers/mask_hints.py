"""What the mask-folder reader (:mod:`visionkit.data.readers.mask_folder`) says when its
settings and the files disagree: the label file named otherwise beside a missing one (CamVid's
``_L``, Cityscapes' suffixes), a JPEG label, and an ``ignore_index`` that is one of the
classes; and ``classes.txt`` read, its lines numbered or not (:func:`read_class_names`)."""

from __future__ import annotations

import csv
import difflib
import glob
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visionkit.data.batch import IGNORE_PIXEL
from visionkit.data.readers.lossy_labels import LOSSLESS, looks_lossy
from visionkit.data.readers.palette import Palette, published_palette
from visionkit.errors import DataError

#: Extensions a label file may have (the formats :func:`~visionkit.data.io.read_label_image`
#: decodes: PNG and TIFF).
MASK_EXTENSIONS = (".png", ".tif", ".tiff")


#: The class list of Roboflow's "Semantic Segmentation Masks" export: lines ``Pixel Value,
#: Class`` then ``0, background``, ``1, cat``, ... beside the images and their ``_mask.png``.
ROBOFLOW_CLASSES = "_classes.csv"

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
        if not keys:  # the name but for the extension's case: a.Png (a.PNG is read)
            upper = mask_path.with_suffix(mask_ext.upper()).name
            return (
                f" ({where_of(other, root)} is there: only the case of its extension differs; "
                f"rename it {mask_path.name} (or {upper}))"
            )
        return f" ({where_of(other, root)} is there: set {', '.join(keys)} in the dataset's entry)"
    jpeg = _named_like(folder, base, JPEG_EXTENSIONS)
    if jpeg:
        return f" ({where_of(jpeg[0][0], root)} is there, but {JPEG_LABELS})"
    cuts = [i for i in range(len(base) - 1, 0, -1) if base[i] in "_-."]
    for i in cuts:  # the longest stem first: "a_000_leftImg8bit" → "a_000", then "a"
        other = folder / f"{base[:i]}{mask_suffix}{mask_ext}"
        keys = []
        if not other.is_file():  # and another label suffix: Cityscapes' two, neither set
            found = label_file_like(folder, base[:i], mask_suffix, mask_ext)
            numbered = r"[_\-.]*\d"  # "a_0001" + "_0002.png": another image's label
            if found is None or any(re.match(numbered, s) for s in (found[0].stem[i:], base[i:])):
                continue
            other, keys = found
        return (
            f" ({where_of(other, root)} is there: the image names carry a suffix the label "
            f"files lack; set {', '.join([f'image_suffix: {base[i:]}', *keys])} in the "
            "dataset's entry)"
        )
    return ""


def label_path(
    image: Path,
    image_dir: Path,
    mask_dir: Path,
    mask_suffix: str = "",
    mask_ext: str = ".png",
    image_suffix: str = "",
) -> Path | None:
    """The label file of ``image`` (below ``image_dir``): ``<stem><mask_suffix><mask_ext>``
    in the same relative folder of ``mask_dir``, ``<stem>`` the image's name less its
    extension and less ``image_suffix`` (``None`` when it does not end with it); the
    extension in upper case where only that file is there (``0001.PNG``, as cameras and
    Windows name). The reader's rule, which ``visionkit split`` follows too."""
    relative = image.relative_to(image_dir)
    stem = relative.stem
    if image_suffix:
        if not stem.endswith(image_suffix):
            return None
        stem = stem[: -len(image_suffix)]
    path = mask_dir / relative.with_name(f"{stem}{mask_suffix}{mask_ext}")
    upper = path.with_suffix(mask_ext.upper())
    return upper if not path.is_file() and upper.is_file() else path


def beside_images(
    files: list[Path], other_than: tuple[str, str] | None = None
) -> tuple[str, str, Path, Path] | None:
    """Where images and their label files share a folder (Roboflow's ``a.jpg`` beside
    ``a_mask.png``): the ``(mask_suffix, mask_ext)`` by which most of the first 20 of
    ``files`` name another file there, with one such ``(image, label)``; ``None`` when none
    does. Every file counts, a label file too (it names none), so ``a.png`` beside ``a_2.png``,
    ``a_mask.png`` and ``a_2_mask.png`` is read by ``_mask`` (two images), not ``_2``.
    ``other_than``: a naming left out (the second naming of labels named two ways)."""
    counts: Counter[tuple[str, str]] = Counter()
    pairs: dict[tuple[str, str], tuple[Path, Path]] = {}
    for image in files[:20]:
        for other, suffix in _named_like(image.parent, image.stem, MASK_EXTENSIONS):
            key = (suffix, other.suffix.lower())
            if other != image and key != other_than:
                counts[key] += 1
                pairs.setdefault(key, (image, other))
    if not counts:
        return None
    key = counts.most_common(1)[0][0]  # of equal counts, the first found
    return (*key, *pairs[key])


def naming_keys(mask_suffix: str, mask_ext: str) -> list[str]:
    """The entry's keys for label files named by ``mask_suffix`` and ``mask_ext`` where they
    are not the defaults (``["mask_suffix: _mask"]``)."""
    return [f"mask_suffix: {mask_suffix}"] * bool(mask_suffix) + [f"mask_ext: {mask_ext}"] * (
        mask_ext != ".png"
    )


def images_beside_labels(root: Path) -> str:
    """For a mask folder without its image and label folders: where ``root`` (or one of its
    sub-folders, Roboflow's ``train/``) holds images beside label files named by them
    (``a.jpg`` and ``a_mask.png``, :func:`beside_images`), the entry that reads them (``";
    root/train holds ..."``); ``""`` when it does not."""
    from visionkit.data.batch import list_files

    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        found = beside_images(list_files(folder, recursive=False))
        if found is None:
            continue
        suffix, ext, image, label = found
        name = "." if folder == root else folder.name
        return (
            f"; {folder} holds the images and their label files together "
            f"({image.name}, {label.name}): read them with "
            + ", ".join([f"images: {name}", f"masks: {name}", *naming_keys(suffix, ext)])
        )
    return ""


def label_values_problem(
    mask: np.ndarray, num_classes: int, ignore_index: int, key: str, lowest: int
) -> str:
    """What is wrong with a label map ``mask`` (as stored) holding values that are no class
    of ``num_classes`` (class 0's file value ``lowest``) nor ``ignore_index``, with what to
    set (:func:`label_values_hint`); ``""`` when every value is one of them."""
    top = num_classes - 1 + lowest
    if not ((mask > top) & (mask != ignore_index)).any():  # every sample read: no sort
        return ""
    values, pixels = np.unique(mask, return_counts=True)  # counts for the hint only
    bad = values[(values > top) & (values != ignore_index)].tolist()
    return (
        f"label values {bad[:10]} are not classes {lowest}..{top}"
        + (" (reduce_zero_label: 0 is no class)" if lowest else "")
        + f" nor the ignore index {ignore_index}"
        + label_values_hint(bad, num_classes, ignore_index, key, lowest, (values, pixels))
    )


def label_values_hint(
    bad: list[int],
    num_classes: int,
    ignore_index: int,
    key: str,
    lowest: int,
    counts: tuple[np.ndarray, np.ndarray],
) -> str:
    """What to set when label values ``bad`` (sorted) are no class of ``num_classes`` (class
    0's file value ``lowest``): the ``ignore_index`` of one void value (CamVid's 11, VOC's 255
    borders), ``reduce_zero_label`` where the one value is ``num_classes`` (ADE20K's
    1..150 with 0 = "other"); ``key`` is the dataset's entry (``data.train``). ``counts``:
    the label map's ``(values, pixels)``, which tell compression noise
    (:func:`~visionkit.data.readers.lossy_labels.looks_lossy`) from a short class list."""
    values, pixels = counts
    off = np.isin(values, bad)
    inside = (values >= lowest) & (values < lowest + num_classes)
    class_pixels = np.zeros(num_classes, np.int64)
    class_pixels[values[inside] - lowest] = pixels[inside]
    classes = np.arange(lowest, lowest + num_classes)
    void = [ignore_index, *[0] * lowest]
    if looks_lossy(values[off], pixels[off], classes, class_pixels, void):
        return f"; {len(bad)} values near the classes' own look like compression noise: {LOSSLESS}"
    void = bad[0]
    # with another ignore_index set, only VOC's 255 borders are hinted at (a stray 7 beside
    # CamVid's 11 is no void: replacing 11 would make every 11 an error)
    unset = ignore_index == 255
    if len(bad) != 1 or not (unset or void == 255):
        return ""
    _, split, *name = key.split(".") if key.count(".") else ("data", "train")
    other = ".".join(["data", "val" if split == "train" else "train", *name])
    hint = (
        f"; if {void} marks void (unlabelled) pixels, as CamVid's 11 and VOC's 255 borders do, "
        f"set ignore_index: {void} in this dataset's entry"
        + ("" if unset else f" instead of {ignore_index}")
        + f" (e.g. {key}.ignore_index={void}, and {other}.ignore_index={void})"
    )
    if void == num_classes and not lowest:
        hint += (
            f"; if the label files number the classes 1..{num_classes} and 0 marks pixels of "
            "no class (ADE20K's 'other'), set reduce_zero_label: true in both entries"
        )
    return hint


#: How label images saved black and white are rewritten as class indices.
BLACK_AND_WHITE_FIX = (
    "Label images hold class indices: masks saved black and white (255 = object) must hold 0 "
    "and 1, e.g. rewrite each with Image.fromarray((np.array(Image.open(f)) > 127)"
    ".astype(np.uint8)).save(f)"
)


def black_and_white(pixels: np.ndarray, names: list[str], sampled: int = 0) -> tuple[str, str]:
    """What label maps that hold only 0 and 255 (``pixels``: their pixels per value) mean for
    the classes ``names`` (label images saved black and white, 255 = object, read with VOC's
    255 = unlabelled: every object pixel ignored): ``(warning, error)``, the warning's words
    fit any split and any share of the files decoded, the error's (a training set of which
    every label file was decoded) say that the classes would never be learnt; ``("", "")``
    when some map holds another class or no 255. ``sampled``: the maps were a sample of that
    many label files (0: every label file)."""
    share = pixels[255] / max(int(pixels.sum()), 1)
    if len(names) < 2 or pixels[1 : len(names)].any() or not pixels[255]:
        return "", ""
    found = (
        (f"in {sampled} sampled label files none" if sampled else "no label file")
        + f" holds a class other than 0 ({names[0]!r}): all other labelled pixels "
        f"({100 * share:.1f}%) are 255, which is unlabelled (ignore_index 255, VOC's object "
        "borders)"
    )
    warning = (
        f"{found}; if 255 marks objects (masks saved black and white), their pixels are read as "
        f"unlabelled and ignored. {BLACK_AND_WHITE_FIX}"
        + (" (visionkit check-data decodes every label file)" if sampled else "")
    )
    never = ", ".join(repr(n) for n in names[1:])
    return warning, f"{found}, so {never} would never be learnt. {BLACK_AND_WHITE_FIX}"


def ignored_class(value: int, names: list[str], class_source: str, lowest: int = 0) -> str:
    """Why ``ignore_index`` ``value`` may not be one of the classes ``names`` (read from
    ``class_source``; class 0 is the file value ``lowest``), and the fixes: an ignored class is
    never learnt and scores nothing."""
    k = value - lowest
    source = "class_names" if class_source.startswith("class_names") else "classes.txt"
    fix = (
        f"drop it from {source} (the void label then is no class) or give another ignore_index"
        if k == len(names) - 1
        else f"give the ignore_index that marks the label files' unlabelled pixels (255, the "
        f"default, when none do); if {value} does mark them, its name cannot be dropped from "
        f"{source} without shifting the classes after it: renumber the label files"
    )
    return (
        f"ignore_index {value} is class {k} {names[k]!r} of {class_source}: a class that is "
        f"ignored is never learnt and scores nothing (its pixels are left out of the loss and of "
        f"mIoU); {fix}"
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


def read_classes_csv(path: Path) -> list[str]:
    """The class names of a ``_classes.csv`` (Roboflow: rows ``<pixel value>, <name>`` under
    a header), by their pixel value, which must be each of ``0..C-1`` once.

    Raises:
        DataError: naming the file, when the values are not ``0..C-1`` or a row is no pair.
    """
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = [[c.strip() for c in row] for row in csv.reader(f) if any(c.strip() for c in row)]
    if rows and not rows[0][0].isdigit():
        rows = rows[1:]  # the header, "Pixel Value, Class"
    bad = [row for row in rows if len(row) != 2 or not row[0].isdigit()]
    names = {int(row[0]): row[1] for row in rows if row not in bad}
    if bad or not rows or sorted(names) != list(range(len(rows))):
        raise DataError(
            f"{path}: expected rows '<pixel value>, <class name>' whose values are each of "
            f"0..{max(len(rows), 1) - 1} once (Roboflow's _classes.csv), got "
            f"{'; '.join(', '.join(row) for row in (bad or rows)[:5]) or 'no rows'}; or write "
            "the names one per line in label order in classes.txt beside it"
        )
    return [names[k] for k in range(len(names))]


def mask_class_names(root: Path, mask_dir: Path, palette: Palette | None) -> tuple[list[str], str]:
    """The class names of a mask folder and the file they come from: ``root/classes.txt``
    (:func:`read_class_names`), else the ``palette``'s, else Roboflow's ``_classes.csv`` (in
    ``root`` or the label folder ``mask_dir``).

    Raises:
        DataError: there is none, saying where to write them.
    """
    path = root / "classes.txt"
    if path.is_file():
        return read_class_names(path), str(path)
    if palette is not None:
        return list(palette.names), str(palette.path)
    for csv_path in (root / ROBOFLOW_CLASSES, mask_dir / ROBOFLOW_CLASSES):
        if csv_path.is_file():
            return read_classes_csv(csv_path), str(csv_path)
    published = published_palette(root)
    hint = (
        f", or read the colour labels with their palette file: palette: {published}"
        if published
        else ", or give a palette file naming the classes (palette: FILE) for RGB labels"
    )
    raise DataError(
        f"{root}: no class names; write one name per line (label order) in {path}, or set "
        f"class_names in the dataset config{hint}"
    )


def pixel_shares(pixels: np.ndarray, names: Sequence[str], void: str) -> str:
    """``"sky 15.8%, building 23.1%, ..., unlabelled (ignore_index 11) 4.9%"``: the share of
    each class in the pixel counts ``pixels`` (a bincount of label values, ``IGNORE_PIXEL`` for
    unlabelled pixels), the unlabelled share with ``void`` saying how they are marked."""
    total = max(int(pixels.sum()), 1)
    parts = [f"{name} {100 * pixels[k] / total:.1f}%" for k, name in enumerate(names)]
    unlabelled = int(pixels[IGNORE_PIXEL]) if len(pixels) > IGNORE_PIXEL else 0
    if unlabelled:
        parts.append(f"unlabelled ({void}) {100 * unlabelled / total:.1f}%")
    return ", ".join(parts)
