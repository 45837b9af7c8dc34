"""CVAT's "YOLO 1.1" export: Darknet's layout, read as Datumaro (CVAT's own reader) reads it.

Layout::

    SRC/
      obj.data                  # classes = 2, train = data/train.txt, names = data/obj.names
      obj.names                 # one class name per line, class 0 first
      train.txt                 # data/obj_train_data/a.jpg: one image per line
      obj_train_data/a.jpg      # and a.txt, its label file, beside it (YOLO lines)

``obj.data`` names the class names file and one image list per subset (``train``,
``valid``, ...). Its paths start with ``data/``, the folder Darknet runs the export from: a
path that is not there is looked for without it. The label file of an image is beside it,
as Ultralytics finds it for a path without an ``images`` folder
(:func:`~visionkit.data.convert.yolo.label_path_of`).

>>> images, folders = darknet_split(Path("cvat_export"), "train")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from visionkit.data.convert.coco_builder import read_class_names
from visionkit.errors import DataError

DARKNET_FILE = "obj.data"
#: ``obj.data`` keys that are not subsets.
SETTINGS = ("classes", "names", "backup", "eval")
#: Split names Darknet and Ultralytics spell differently.
SPLIT_ALIASES = {"val": "valid", "valid": "val"}


def darknet_file(root: Path) -> Path | None:
    """The ``obj.data`` of a folder in Darknet's layout (one without ``images/``), else
    ``None``."""
    path = root / DARKNET_FILE
    return path if path.is_file() and not (root / "images").is_dir() else None


def darknet_split(root: Path, split: str | None) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """The images of one subset of ``root/obj.data`` (every subset when ``split`` is
    ``None``; ``val`` reads ``valid``), and the (image folder, label folder) pairs whose
    label files must each have an image (a folder is both: the labels lie beside the images).

    Raises:
        DataError: ``obj.data`` is malformed, has no such subset, or a listed file is missing.
    """
    path = root / DARKNET_FILE
    entries = _read_obj_data(path)
    subsets = [key for key in entries if key not in SETTINGS]
    if split is None:
        chosen = subsets
    else:
        key = split if split in subsets else SPLIT_ALIASES.get(split)
        if key not in subsets:
            raise DataError(f"{path}: no {split!r} subset; it lists {subsets} (split: ...)")
        chosen = [key]
    images: list[Path] = []
    for key in chosen:
        listed = _local(root, entries[key])
        if not listed.is_file():
            raise DataError(f"{path}: {key} = {entries[key]}: {listed} does not exist")
        lines = listed.read_text(encoding="utf-8").splitlines()
        images += [_local(root, line.strip()) for line in lines if line.strip()]
    if not images:
        raise DataError(f"{path}: the image lists of {chosen} name no images")
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise DataError(f"{path}: listed images do not exist", missing)
    folders = sorted({p.parent for p in images})
    return images, [(folder, folder) for folder in folders]


def darknet_class_names(root: Path) -> list[str]:
    """The class names of ``root/obj.data``: its ``names`` file (default ``obj.names``),
    as many as its ``classes`` says.

    Raises:
        DataError: the names file is missing or disagrees with ``classes``.
    """
    path = root / DARKNET_FILE
    entries = _read_obj_data(path)
    names = read_class_names(_local(root, entries.get("names", "obj.names")))
    count = entries.get("classes")
    if count is not None and count != str(len(names)):
        raise DataError(f"{path}: classes = {count}, but its names file lists {names}")
    return names


def _read_obj_data(path: Path) -> dict[str, str]:
    """``key = value`` lines (blank lines and ``#`` comments skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} cannot be read: {err}") from None
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not (sep and key and value):
            raise DataError(f"{path} line {number}: expected 'key = value', got {line!r}")
        entries[key.lower()] = value
    return entries


def _local(root: Path, value: str) -> Path:
    """A path of ``obj.data`` or of an image list: relative to ``root``, where Darknet's
    ``data/`` is ``root`` itself."""
    path = Path(value.replace("\\", "/"))
    if path.is_absolute():
        return path
    if not (root / path).exists() and path.parts[:1] == ("data",):
        return root.joinpath(*path.parts[1:])
    return root / path
