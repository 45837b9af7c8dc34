"""Pascal VOC XML to COCO.

Layout::

    SRC/
      Annotations/<id>.xml
      JPEGImages/<id>.jpg
      ImageSets/Main/<split>.txt    # optional: one id per line (``split="train"``)

Coordinates. VOC boxes are 1-based and pixel-inclusive: ``xmin = 1`` is the first pixel
column and ``xmax`` is the last column *inside* the box. visionkit's boxes are continuous
(0 is the left edge of the first pixel), so a VOC box becomes ``x0 = xmin - 1``,
``y0 = ymin - 1``, ``x1 = xmax``, ``y1 = ymax``: COCO ``bbox = [xmin - 1, ymin - 1,
xmax - xmin + 1, ymax - ymin + 1]``, and ``area = w * h``. Boxes are then clipped to the image;
a box with no area left is skipped (and reported). Fractional coordinates are accepted.

``difficult``. Objects with ``<difficult>1</difficult>`` are kept with ``iscrowd: 1``:
pycocotools' ``COCOeval`` treats crowd annotations as ignore regions (a detection that matches
one is neither a true nor a false positive; missing it is no error), and visionkit's COCO
reader does not train on them. The annotation also keeps ``difficult``, ``truncated`` and
``pose``.

Missing optional tags get defaults: ``difficult`` 0, ``truncated`` 0, ``pose``
``"Unspecified"``, ``size`` from the image header (upright, as
:func:`visionkit.data.io.read_image_size` reads it). The image of ``<id>.xml`` is
``JPEGImages/<id>.<ext>`` (files paired by name, as torchvision pairs them); ``filename`` only
where there is none.

XML is parsed with the standard library (no external entities are fetched; the bundled expat
refuses entity-expansion bombs).

>>> conversion = voc_to_coco("VOCdevkit/VOC2007", split="trainval")  # doctest: +SKIP
>>> conversion.coco["categories"][:2]  # doctest: +SKIP
[{'id': 1, 'name': 'aeroplane'}, {'id': 2, 'name': 'bicycle'}]
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from visionkit.data.batch import IMAGE_EXTENSIONS, dataset_root, list_files, resolve_under_root
from visionkit.data.convert.coco_builder import (
    CLIP_TOLERANCE,
    CocoBuilder,
    Conversion,
    relative_posix,
    warn_case_variants,
)
from visionkit.data.io import read_image_size
from visionkit.errors import DataError, ImageDecodeError

logger = logging.getLogger(__name__)

#: Sub-folders tried, in order, when the caller names none: VOC's own names, then the
#: lower-case layout many published sets use (``annotations/`` + ``images/``).
ANNOTATION_DIRS = ("Annotations", "annotations")
IMAGE_DIRS = ("JPEGImages", "images", "Images")


def voc_folders(
    root: Path, annotations: str | None = None, images: str | None = None
) -> tuple[Path, Path]:
    """The XML folder and the image folder of a VOC-style dataset: the ones named, else the
    first of :data:`ANNOTATION_DIRS` / :data:`IMAGE_DIRS` that exists, else, when ``root``
    itself holds XML files (labelImg saves each beside its image), ``root`` for both.

    Raises:
        DataError: ``root`` or a named folder does not exist, or none of the usual names does.
    """
    root = dataset_root(root)
    beside = not (annotations or images) and not any((root / c).is_dir() for c in ANNOTATION_DIRS)
    if beside and list_files(root, (".xml",), recursive=False):
        return root, root
    found = []
    for named, usual, what in (
        (annotations, ANNOTATION_DIRS, "XML"),
        (images, IMAGE_DIRS, "image"),
    ):
        candidates = (named,) if named else usual
        folder = next((root / c for c in candidates if (root / c).is_dir()), None)
        if folder is None:
            looked = ", ".join(f"{c}/" for c in candidates)
            yolo = (root / "labels").is_dir() and (root / "images").is_dir()
            jsons = sorted(p.name for p in root.glob("*.json"))
            coco = (
                f"; it holds {jsons[0]}: a COCO json is read with {{format: coco, images: {root}, "
                f"annotations: {root / jsons[0]}}}"
                if jsons and not yolo
                else ""
            )
            raise DataError(
                f"{root}: no {what} folder ({looked} not found); a VOC folder holds the XML "
                "files and the images in two sub-folders (Annotations/ + JPEGImages/, or "
                "annotations/ + images/; name others with annotations= / images=), or both "
                "in one folder (as labelImg saves them), and optionally "
                "ImageSets/Main/<split>.txt"
                + ("; its images/ + labels/ are a YOLO folder: format: yolo" if yolo else "")
                + coco
            )
        found.append(folder)
    return found[0], found[1]


def voc_to_coco(
    root: str | os.PathLike,
    split: str | None = None,
    class_names: Sequence[str] | None = None,
    annotations: str | None = None,
    images: str | None = None,
    problems: list[str] | None = None,
    skip_bad: bool = False,
) -> Conversion:
    """Convert a VOC folder to a COCO object (nothing is written).

    Args:
        root: the folder holding the XML files and the images in two sub-folders
            (:func:`voc_folders`: ``Annotations/`` + ``JPEGImages/`` as in VOC, or
            ``annotations/`` + ``images/`` as many published sets have them).
        split: read only the ids listed in ``ImageSets/Main/<split>.txt``.
        class_names: the categories in order (id ``k + 1`` for ``class_names[k]``); default:
            the sorted distinct object names of the converted files.
        annotations, images: the two sub-folders, when they have other names.
        problems: a list to append the problems to (the usable files converted) instead of
            raising them: the reader adds them to its report, so that ``check-data`` lists
            them with every problem of the images.
        skip_bad: leave out each XML file with a problem (malformed, an unknown class, its
            image missing, ...) and its image, keeping its problems in the result's
            ``dropped`` (``on_bad_label: skip``).

    Returns:
        The COCO object (``file_name`` relative to ``root``, e.g. ``JPEGImages/000001.jpg``),
        the list of skipped objects and the problems of the files left out.

    Raises:
        DataError: the layout is wrong (missing folders, split file, no XML files).
        AnnotationError: one error listing every malformed file or object, unknown class and
            missing image.
    """
    root = dataset_root(root)
    ann_dir, img_dir = voc_folders(root, annotations, images)
    builder = CocoBuilder([])
    parsed = []
    for path in _xml_files(root, ann_dir, split, builder):
        with builder.one_file(skip_bad, path):
            parsed.append((path, _parse(path, root, builder)))
    stems = {path: path.relative_to(ann_dir).with_suffix("").as_posix() for path, _ in parsed}
    if class_names is None:
        names = {obj["name"] for _, record in parsed if record for obj in record["objects"]}
        class_names = sorted(n for n in names if n)
        _warn_case_variants(parsed, root)
    builder.class_names = list(class_names)
    label_of = {name: i for i, name in enumerate(builder.class_names)}
    seen: dict[str, str] = {}  # image file_name -> the XML file that named it
    for xml_path, record in parsed:
        if record is not None:
            with builder.one_file(skip_bad, xml_path):
                _add(builder, root, img_dir, xml_path, stems[xml_path], record, label_of, seen)
    in_files = builder.in_files("XML file")
    builder.raise_problems(f"{root}: cannot convert the VOC annotations{in_files}", problems)
    info: dict[str, Any] = {"format": "voc", "source": str(root), "split": split}
    return builder.conversion(info)


def _warn_case_variants(parsed: list[tuple[Path, dict[str, Any] | None]], root: Path) -> None:
    """Log object names that differ only in case or spaces (:func:`warn_case_variants`)."""
    files: dict[str, set[str]] = {}
    for xml_path, record in parsed:
        for obj in record["objects"] if record else ():
            if obj["name"]:
                files.setdefault(obj["name"], set()).add(relative_posix(xml_path, root))
    warn_case_variants(files, root, "object names")


def xml_files(ann_dir: Path) -> dict[str, Path]:
    """The XML files below ``ann_dir`` by id, sub-folders included (CVAT writes
    ``Annotations/<folder>/<name>.xml`` for images in folders): an id is the file's path relative
    to it, ``/``-separated, without its ``.xml`` / ``.XML`` suffix; sorted, hidden files left
    out."""
    return {
        p.relative_to(ann_dir).with_suffix("").as_posix(): p for p in list_files(ann_dir, (".xml",))
    }


def split_id(line: str, files: dict[str, Path]) -> str:
    """The id of one line of an ``ImageSets/Main`` list: the whole line when it names an XML
    file of ``files`` (ids may hold spaces: ``IMG_0001 2``), else the line less a VOC class
    list's trailing flag (``000005 -1``)."""
    flagged = re.fullmatch(r"(.+?)\s+-?[01]", line)
    if flagged and line not in files:
        return flagged.group(1)
    return line


def _xml_files(root: Path, ann_dir: Path, split: str | None, builder: CocoBuilder) -> list[Path]:
    every = xml_files(ann_dir)
    if split is None:
        if not every:
            raise DataError(f"{ann_dir} holds no .xml files")
        return list(every.values())
    from visionkit.data.split import read_list

    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    files = []
    for line in read_list(split_file, root):
        image_id = split_id(line, every)
        if image_id in every:
            files.append(every[image_id])
        else:
            missing = relative_posix(ann_dir / f"{image_id}.xml", root)
            named = f"id {image_id!r}" + (f" (line {line!r})" if image_id != line else "")
            builder.problem(relative_posix(split_file, root), f"{named}: {missing} is missing")
    return files


def _parse(path: Path, root: Path, builder: CocoBuilder) -> dict[str, Any] | None:
    """The fields of one XML file, or ``None`` (with problems recorded) when it is unusable."""
    where = relative_posix(path, root)
    try:
        tree = ET.parse(path)
    except ET.ParseError as err:
        builder.problem(where, f"malformed XML ({err})")
        return None
    ann = tree.getroot()
    for element in ann.iter():  # an xmlns="..." of the exporting tool: tags read without it
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.partition("}")[2]
    if ann.tag != "annotation":
        cvat = (
            " (CVAT's 'CVAT for images' export, one file for every image: export the task as "
            "'Pascal VOC 1.1' or 'COCO 1.0')"
            if ann.tag == "annotations"
            else ""
        )
        builder.problem(where, f"root element is <{ann.tag}>; expected <annotation>{cvat}")
        return None
    count = len(builder.problems)
    size = {}
    for key in ("width", "height"):
        text = (ann.findtext(f"size/{key}") or "").strip()
        if text:
            value = _number(text)
            if value is None or value < 0 or value != int(value):
                builder.problem(where, f"<size><{key}> is {text!r}; expected a whole number")
            else:
                size[key] = int(value)
    objects = []
    for j, obj in enumerate(ann.findall("object"), 1):
        objects.append(_parse_object(obj, f"{where} object {j}", builder))
    if len(builder.problems) > count:
        return None
    return {
        "filename": (ann.findtext("filename") or "").strip(),
        "width": size.get("width", 0),
        "height": size.get("height", 0),
        "objects": objects,
    }


def _parse_object(obj: ET.Element, where: str, builder: CocoBuilder) -> dict[str, Any]:
    name = (obj.findtext("name") or "").strip()
    if not name:
        builder.problem(where, "no <name>")
    record: dict[str, Any] = {"name": name, "pose": (obj.findtext("pose") or "").strip()}
    record["pose"] = record["pose"] or "Unspecified"
    for flag in ("difficult", "truncated"):
        text = (obj.findtext(flag) or "").strip()
        if text in ("", "0", "1"):
            record[flag] = int(text or 0)
        else:
            builder.problem(where, f"<{flag}> is {text!r}; expected 0 or 1")
    box = obj.find("bndbox")
    if box is None:
        builder.problem(where, "no <bndbox>")
        return record
    coords = {}
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = (box.findtext(key) or "").strip()
        value = _number(text)
        if value is None:
            builder.problem(where, f"<bndbox><{key}> is {text!r}; expected a number")
        coords[key] = value
    if None in coords.values():
        return record
    for lo, hi in (("xmin", "xmax"), ("ymin", "ymax")):
        if coords[hi] < coords[lo]:
            builder.problem(where, f"{hi} {coords[hi]:g} < {lo} {coords[lo]:g}")
    record["box"] = [coords["xmin"], coords["ymin"], coords["xmax"], coords["ymax"]]
    return record


def _add(
    builder: CocoBuilder,
    root: Path,
    img_dir: Path,
    xml_path: Path,
    stem: str,
    record: dict[str, Any],
    label_of: dict[str, int],
    seen: dict[str, str],
) -> None:
    where = relative_posix(xml_path, root)
    image = _find_image(img_dir, stem, record["filename"])
    named = _under(img_dir, record["filename"]) if record["filename"] else None
    if image is not None and named is not None and named.is_file() and not named.samefile(image):
        builder.warnings.append(
            (
                "image by its name",
                f"{where}: <filename> {record['filename']!r} names another image; read "
                f"{relative_posix(image, root)}, the image of the XML file's name, as "
                "torchvision, mmdetection and Detectron2 pair VOC files (a stale <filename> "
                "of a renamed or copied file?)",
            )
        )
    if image is None:
        folder, filename = img_dir.name, record["filename"]
        if filename and _under(img_dir, filename) is None:
            builder.problem(
                where,
                f"<filename> {filename!r} points outside {folder}/ ('..' and absolute paths "
                f"elsewhere are refused), and there is no {folder}/{stem}.*",
            )
            return
        looked = f"{folder}/{filename} or " if filename else ""
        builder.problem(where, f"image not found (looked for {looked}{folder}/{stem}.*)")
        return
    width, height = record["width"], record["height"]
    if not (width and height):
        try:
            height, width = read_image_size(image)
        except ImageDecodeError as err:
            builder.problem(where, f"no <size> and the image cannot be read: {err.reason}")
            return
    unknown = [o["name"] for o in record["objects"] if o["name"] not in label_of]
    for j, obj in enumerate(record["objects"], 1):
        if obj["name"] not in label_of:
            builder.problem(
                f"{where} object {j}", f"unknown class {obj['name']!r} (classes: {list(label_of)})"
            )
    if unknown:
        return
    file_name = relative_posix(image, root)
    if file_name in seen:
        builder.problem(where, f"image {file_name} is also the image of {seen[file_name]}")
        return
    seen[file_name] = where
    image_id = builder.add_image(file_name, width, height)
    for j, obj in enumerate(record["objects"], 1):
        xmin, ymin, xmax, ymax = obj["box"]
        x0, y0 = min(max(xmin - 1, 0.0), width), min(max(ymin - 1, 0.0), height)
        x1, y1 = min(max(xmax, 0.0), width), min(max(ymax, 0.0), height)
        if x1 <= x0 or y1 <= y0:
            builder.skip(f"{where} object {j}", f"box {obj['box']} lies outside the image")
            continue
        if max(x0 - (xmin - 1), y0 - (ymin - 1), xmax - x1, ymax - y1) > CLIP_TOLERANCE:
            builder.clip(
                f"{where} object {j}",
                f"box {obj['box']} reaches outside the {width}x{height} image; clipped to it",
            )
        builder.add_annotation(
            image_id,
            label_of[obj["name"]],
            [x0, y0, x1 - x0, y1 - y0],
            iscrowd=obj["difficult"],
            difficult=obj["difficult"],
            truncated=obj["truncated"],
            pose=obj["pose"],
        )


def _under(img_dir: Path, filename: str) -> Path | None:
    """``img_dir / filename``, or ``None`` when it leads outside (``..``, an absolute path
    elsewhere)."""
    try:
        return resolve_under_root(img_dir, filename)
    except ValueError:
        return None


def _find_image(img_dir: Path, stem: str, filename: str) -> Path | None:
    """The image of the XML file's id (its path below the XML folder, without ``.xml``): by
    its ``<filename>`` when that has the id's name (any extension), else the image file of
    that name, else ``<filename>``'s image, where those exist (and stay inside)."""
    path = _under(img_dir, filename) if filename else None
    named = img_dir / os.path.normpath(filename) if path is not None and path.is_file() else None
    if named is not None and named.relative_to(img_dir).with_suffix("").as_posix() == stem:
        return named
    candidates = sorted(
        p for p in img_dir.glob(f"{glob.escape(stem)}.*") if p.suffix.lower() in IMAGE_EXTENSIONS
    )
    return candidates[0] if candidates else named


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
