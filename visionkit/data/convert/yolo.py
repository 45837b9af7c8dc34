"""YOLO txt labels to COCO.

Layout::

    SRC/
      images/<name>.jpg             # or images/<split>/... with split="<split>"
      labels/<name>.txt             # same relative path and stem as its image
      classes.txt                   # one class name per line, or
      data.yaml                     # names: [a, b] or names: {0: a, 1: b}

Every image under ``images/`` (recursively) is converted; an image without a label file, or
with an empty one, is a negative (no annotations). A label file without an image is an error.
A ``classes.txt`` inside ``labels/`` (as LabelImg writes it) is not read as labels. Hidden
files and folders (names starting with ``.``, such as macOS ``._a.jpg``) are ignored.

Each line of a label file is ``class cx cy w h`` (a box) or ``class x1 y1 x2 y2 x3 y3 ...``
(a polygon of at least 3 points), all coordinates normalised to ``[0, 1]`` by the upright
image's width and height. A box becomes COCO ``bbox = [(cx - w/2) W, (cy - h/2) H, w W, h H]``;
a polygon becomes a ``segmentation`` polygon in pixels, its ``bbox`` the polygon's extent and
its ``area`` the polygon's area. Class ``k`` gets category id ``k + 1``. How each line is
checked (values outside ``[0, 1]``, boxes clipped to the image) is in
:mod:`~visionkit.data.convert.yolo_labels`.

CVAT's "YOLO 1.1" export (``obj.data``, label files beside the images) is read by
:mod:`~visionkit.data.convert.darknet`'s lists.

A pose dataset (``kpt_shape`` in its ``data.yaml``) has the keypoints after each box (``class cx
cy w h x1 y1 [v1] ...``): they become COCO ``keypoints`` and the categories' keypoint names
(:mod:`~visionkit.data.convert.yolo_pose`).

>>> conversion = yolo_to_coco("my_yolo", split="train")  # doctest: +SKIP
>>> conversion.coco["images"][0]["file_name"]  # doctest: +SKIP
'images/train/0001.jpg'
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from visionkit.data.batch import (
    HEIF_ADVICE,
    HEIF_EXTENSIONS,
    IMAGE_EXTENSIONS,
    dataset_root,
    list_files,
)
from visionkit.data.convert.coco_builder import (
    CocoBuilder,
    Conversion,
    read_class_names,
    relative_posix,
)
from visionkit.data.convert.darknet import darknet_class_names, darknet_file, darknet_split
from visionkit.data.convert.yolo_labels import add_label_line, read_label_lines, without_duplicates
from visionkit.data.convert.yolo_pose import POSE_KEYS, PoseFormat, pose_format
from visionkit.data.io import read_image_size
from visionkit.errors import DataError, ImageDecodeError, counted

NAME_FILES = ("classes.txt", "data.yaml", "data.yml")


def yolo_to_coco(
    root: str | os.PathLike,
    split: str | None = None,
    class_names: Sequence[str] | None = None,
    problems: list[str] | None = None,
    skip_bad: bool = False,
) -> Conversion:
    """Convert a YOLO folder, or one split of an Ultralytics ``data.yaml``, to a COCO object
    (nothing is written).

    Args:
        root: the folder holding ``images/``, ``labels/`` and the class names; or an
            Ultralytics dataset file (``.yaml``/``.yml``, see :func:`ultralytics_split`).
        split: convert ``images/<split>`` and ``labels/<split>`` only; for a ``data.yaml``, the
            entry to read (``train``, ``val`` or ``test``; required).
        class_names: the classes in index order (default: ``root/classes.txt`` or
            ``root/data.yaml``; the ``names`` of a ``data.yaml``).
        problems: a list to append the problems to instead of raising them (as
            :func:`~visionkit.data.convert.voc.voc_to_coco`).
        skip_bad: leave out each image whose label file has a problem (a bad line, an
            unreadable file or image), and label files without an image, keeping their
            problems in the result's ``dropped`` (``on_bad_label: skip``, as Ultralytics
            ignores a corrupt label file).

    Returns:
        The COCO object (``file_name`` relative to the dataset folder, e.g.
        ``images/train/a.jpg``), the list of skipped objects and the problems of the files
        left out.

    Raises:
        DataError: the layout is wrong (missing folders, no images, no or conflicting class
            names, a ``data.yaml`` without the split).
        AnnotationError: one error listing every bad line, label file without an image and
            unreadable image.
    """
    if Path(root).suffix.lower() in (".yaml", ".yml"):
        base, images, folders = ultralytics_split(root, split)
        names = list(class_names) if class_names is not None else read_class_names(Path(root))
        info: dict[str, Any] = {"format": "yolo", "source": str(root), "split": split}
        info["root"] = str(base)  # file_name entries are relative to the dataset folder
        pose = pose_format(_read_dataset_file(Path(root))[0], root)
        return _convert(base, images, folders, names, info, problems, skip_bad, pose)
    root = dataset_root(root)
    if darknet_file(root):  # CVAT's YOLO 1.1 export
        images, folders = darknet_split(root, split)
        names = list(class_names) if class_names is not None else darknet_class_names(root)
        info = {"format": "yolo", "source": str(root), "split": split}
        return _convert(root, images, folders, names, info, problems, skip_bad, labels_beside=True)
    img_dir, lbl_dir = root / "images", root / "labels"
    if split is not None:
        img_dir, lbl_dir = img_dir / split, lbl_dir / split
    for folder in (img_dir, lbl_dir):
        if not folder.is_dir():
            raise DataError(
                f"{folder} does not exist: a YOLO folder holds images/"
                f"{split + '/' if split else ''} and labels/{split + '/' if split else ''} "
                "with the same relative paths, and classes.txt or data.yaml"
                + export_file_hint(root, split)
            )
    names = list(class_names) if class_names is not None else yolo_class_names(root)
    images = list_files(img_dir)
    if not images:
        raise DataError(f"{img_dir} holds no images ({' '.join(IMAGE_EXTENSIONS)})")
    info = {"format": "yolo", "source": str(root), "split": split}
    dataset_file = folder_dataset_file(root)
    pose = pose_format(_read_dataset_file(dataset_file)[0], dataset_file) if dataset_file else None
    return _convert(root, images, [(img_dir, lbl_dir)], names, info, problems, skip_bad, pose)


def folder_dataset_file(root: Path) -> Path | None:
    """A YOLO folder's ``data.yaml`` (or ``data.yml``), ``None`` without one."""
    return next((root / n for n in NAME_FILES[1:] if (root / n).is_file()), None)


def export_file_hint(root: Path, split: str | None) -> str:
    """For a folder that is no YOLO folder: the dataset file of the export it is, or is a
    split folder of (Roboflow's ``data.yaml`` beside ``train/``, ``valid/``, ``test/``), with
    the entry that reads it; ``""`` without one."""
    for folder, part in ((root, split), (root.parent, root.name)):
        dataset_file = folder_dataset_file(folder)
        try:
            data = _read_dataset_file(dataset_file)[0] if dataset_file else None
        except DataError:  # not the problem at hand
            data = None
        if data is None:
            continue
        entries = [k for k in ("train", "val", "test") if data.get(k)]
        entry = {"valid": "val"}.get(part or "train", part or "train")
        chosen = f"split: {entry}" if entry in entries else f"split: one of {entries}"
        return (
            f"; {dataset_file} is the dataset file of this export: read it with format: yolo, "
            f"root: {dataset_file}, {chosen}"
        )
    return ""


def pose_keys(root: Path) -> dict[str, Any]:
    """The keypoint definition (:data:`~visionkit.data.convert.yolo_pose.POSE_KEYS`) of a
    YOLO folder's dataset file, for one written beside it (``visionkit split``'s
    ``autosplit.yaml``); ``{}`` without one."""
    dataset_file = folder_dataset_file(root)
    data = _read_dataset_file(dataset_file)[0] if dataset_file else {}
    return {key: data[key] for key in POSE_KEYS if key in data}


def ultralytics_folder(data_yaml: str | os.PathLike) -> Path:
    """The dataset folder of an Ultralytics dataset file (its ``path``, relative to the
    file's folder; default: that folder), resolved.

    Raises:
        DataError: the file is unreadable or not a mapping.
    """
    return _read_dataset_file(Path(data_yaml))[1]


def _read_dataset_file(path: Path) -> tuple[dict[str, Any], Path]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise DataError(f"Ultralytics dataset file {path} cannot be read: {err}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with path, train, val and names")
    base = Path(str(data.get("path") or "."))
    return data, (base if base.is_absolute() else path.parent / base).resolve()


def dataset_file_splits(data_yaml: str | os.PathLike) -> list[str]:
    """The splits an Ultralytics dataset file names (``train``, ``val``, ``test``, in that
    order); none when it cannot be read (reading a split says why)."""
    try:
        data, _ = _read_dataset_file(Path(data_yaml))
    except DataError:
        return []
    return [k for k in ("train", "val", "test") if data.get(k)]


def ultralytics_split(
    data_yaml: str | os.PathLike, split: str | None
) -> tuple[Path, list[Path], list[tuple[Path, Path]]]:
    """The images of one split of an Ultralytics dataset file, as Ultralytics reads it.

    ``path`` is the dataset folder (relative to the yaml file's folder; default: that folder);
    ``train`` / ``val`` / ``test`` is a folder of images, a ``.txt`` file listing image paths,
    or a list of those, relative to ``path`` (one that starts with ``../`` and is not there is
    looked for without it, as Ultralytics does for Roboflow's exports). The label file of
    ``.../images/.../a.jpg`` is
    ``.../labels/.../a.txt`` (the last ``images`` folder of the path becomes ``labels``).

    Returns:
        The dataset folder (``path``), the image files, and the (image folder, label folder)
        pairs whose label files must each have an image.

    Raises:
        DataError: the file is unreadable, has no such split, or a listed folder/file is missing.
    """
    path = Path(data_yaml)
    data, base = _read_dataset_file(path)
    if not base.is_dir():
        beside = [
            k for k in ("train", "val") if data.get(k) and (path.parent / str(data[k])).exists()
        ]
        fix = (
            f"delete the path: line (the {', '.join(beside)} entries are there, beside {path.name})"
            if beside
            else "correct it, or delete it to read the entries beside the file"
        )
        raise DataError(
            f"{path}: path: {data.get('path')} does not exist (the dataset folder, which "
            f"train / val / test are relative to: {base}); {fix}"
        )
    splits = [k for k in ("train", "val", "test") if data.get(k)]
    if split is None:
        raise DataError(
            f"{path}: an Ultralytics dataset file: give the split to read, one of {splits} "
            f"(a dataset entry's split: {splits[0] if splits else 'train'}, or convert's "
            f"--split {splits[0] if splits else 'train'})"
        )
    if not data.get(split):
        raise DataError(f"{path}: no {split!r} entry; the file lists {splits}")
    entries = data[split] if isinstance(data[split], list) else [data[split]]
    images: list[Path] = []
    folders: list[tuple[Path, Path]] = []
    for entry in entries:
        where = base / str(entry)
        if not where.exists() and str(entry).startswith("../"):  # Roboflow's exports, as
            where = base / str(entry)[3:]  # Ultralytics reads them: beside the yaml file
        if where.is_dir():
            found = list_files(where)
            if not found:
                raise DataError(f"{path}: {split}: {where} holds no images")
            images += found
            folders.append((where, label_path_of(where / "x").parent))
        elif where.is_file() and where.suffix.lower() == ".txt":
            lines = where.read_text(encoding="utf-8").splitlines()
            listed = [Path(line.strip()) for line in lines if line.strip()]
            images += [p if p.is_absolute() else (base / p).resolve() for p in listed]
        elif where.exists():
            raise DataError(
                f"{path}: {split}: {where} is neither a folder of images nor a .txt list of them"
            )
        else:  # a folder named otherwise (images/valid for images/val)
            raise DataError(
                f"{path}: {split}: {entry} does not exist (looked for {where}: a folder of "
                f"images or a .txt list of them, relative to the dataset folder, path:)"
            )
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise DataError(f"{path}: {split}: listed images do not exist", missing)
    return base, images, folders


def label_path_of(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the
    suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _same_stem(stem: Path) -> list[Path]:
    """The files named ``<stem>.<any extension>``."""
    return sorted(stem.parent.glob(f"{glob.escape(stem.name)}.*")) if stem.parent.is_dir() else []


def _convert(
    root: Path,
    images: list[Path],
    folders: list[tuple[Path, Path]],
    names: list[str],
    info: dict[str, Any],
    problems: list[str] | None = None,
    skip_bad: bool = False,
    pose: PoseFormat | None = None,
    labels_beside: bool = False,
) -> Conversion:
    """Every image with its label file (:func:`label_path_of`; with ``labels_beside``, the
    ``.txt`` beside it, Darknet's rule); a label file in one of the (image folder, label
    folder) pairs without an image is an error (left out under ``skip_bad``, as
    :func:`yolo_to_coco` says). With ``pose``, lines hold keypoints."""
    builder = CocoBuilder(names)
    label_of = (lambda p: p.with_suffix(".txt")) if labels_beside else label_path_of
    label_of_image = {p: label_of(p) for p in images}
    claimed: dict[Path, Path] = {}
    for image, label in label_of_image.items():
        if label in claimed:
            builder.problem(
                relative_posix(label, root),
                f"label file of two images: {relative_posix(claimed[label], root)} and "
                f"{relative_posix(image, root)}",
            )
        claimed[label] = image
    for img_dir, lbl_dir in folders:
        for label in list_files(lbl_dir, (".txt",)) if lbl_dir.is_dir() else []:
            if label.relative_to(lbl_dir) == Path("classes.txt") or label in claimed:
                continue
            stem = img_dir / label.relative_to(lbl_dir).with_suffix("")
            heif = [p for p in _same_stem(stem) if p.suffix.lower() in HEIF_EXTENSIONS]
            what = (
                f"its image {relative_posix(heif[0], root)} cannot be read: {HEIF_ADVICE}"
                if heif
                else f"no image for this label file ({relative_posix(stem, root)}.*)"
            )
            with builder.one_file(skip_bad, label):
                builder.problem(relative_posix(label, root), what)
    unlabelled = [relative_posix(i, root) for i, lbl in label_of_image.items() if not lbl.is_file()]
    if images and len(unlabelled) == len(images):
        image, label = next(iter(label_of_image.items()))
        builder.problem(
            relative_posix(label.parent, root),
            f"no label files (for {len(images)} image{'s' * (len(images) > 1)}): the label file of "
            f"{relative_posix(image, root)} is {relative_posix(label, root)} (the last images/ "
            "folder of the path becomes labels/, the suffix .txt)",
        )
    for image in images:  # a file: the label file, or an image without one
        label = label_of_image[image]
        with builder.one_file(skip_bad, label if label.is_file() else image):
            _add_image(builder, root, image, label, pose)
    in_files = builder.in_files("file")
    builder.raise_problems(f"{info['source']}: cannot convert the YOLO labels{in_files}", problems)
    if pose and pose.unpaired:
        builder.warnings.append(pose.unpaired)
    conversion = builder.conversion(info, unlabelled)
    for category in conversion.coco["categories"] if pose else ():
        category["keypoints"], category["skeleton"] = list(pose.names), []
        category["kpt_dims"] = pose.dims  # x y (kpt_shape [K, 2]) or x y v: predict --save-txt
        if pose.sigmas is not None:  # the keypoint head's kpt_oks_sigmas (coco_keypoints.py)
            category["kpt_oks_sigmas"] = list(pose.sigmas)
    return conversion


def yolo_class_names(root: str | os.PathLike) -> list[str]:
    """The class names of a YOLO folder: ``classes.txt`` or ``data.yaml`` (``data.yml``).
    When several exist they must agree."""
    root = Path(root)
    found = {name: read_class_names(root / name) for name in NAME_FILES if (root / name).is_file()}
    if not found:
        raise DataError(
            f"{root}: no class names; write classes.txt (one name per line, class 0 first) or "
            "data.yaml (names: [...]) there, or give them: class_names: [...] in the dataset "
            "entry (visionkit convert: --classes FILE)" + export_file_hint(root, None)
        )
    first, *others = found.items()
    for name, names in others:
        if names != first[1]:
            raise DataError(
                f"{root}: {first[0]} and {name} list different classes: {first[1]} vs {names}"
            )
    return first[1]


def _add_image(
    builder: CocoBuilder, root: Path, image: Path, label: Path, pose: PoseFormat | None
) -> None:
    where = relative_posix(image, root)
    try:
        height, width = read_image_size(image)
    except ImageDecodeError as err:
        builder.problem(where, err.reason)
        return
    lines, removed = without_duplicates(read_label_lines(builder, root, label))
    if removed:
        builder.warnings.append(
            (
                "duplicate labels removed",
                f"{relative_posix(label, root)}: {counted(len(removed), 'duplicate label')} "
                f"removed (line{'s' * (len(removed) > 1)} {', '.join(map(str, removed))}: "
                "the same as an earlier line), as Ultralytics removes them",
            )
        )
    image_id = builder.add_image(where, width, height)
    for number, line in lines:
        where = f"{relative_posix(label, root)} line {number}"
        add_label_line(builder, where, image_id, line, width, height, pose)
