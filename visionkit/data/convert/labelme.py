"""LabelMe folders to COCO: one LabelMe ``.json`` file per image, as LabelMe saves them.

Layout::

    SRC/IMG_0001.jpg
    SRC/IMG_0001.json        # beside its image, or in any folder below SRC
    SRC/splits/<split>.txt   # optional: one json file per line (visionkit split SRC)

Each json file holds ``imagePath`` (relative to the json file's folder; Windows backslashes
read as ``/``), ``imageHeight``, ``imageWidth`` and ``shapes``
(:mod:`~visionkit.data.convert.labelme_shapes`: polygons, rectangles, oriented rectangles,
circles and masks are objects; shapes of one ``(label, group_id)`` are one instance).
``imageData`` (the image as base64, optional) is not read: the image file is. Its image is
``imagePath`` where that is a file under ``SRC``, else the file of that name beside the json
file (a folder moved from another machine, an absolute ``C:\\...`` path), else the image of
the json file's own name beside it, with a warning naming both; none of them is a problem
naming the places looked in. A json file that is not a LabelMe file (no ``shapes``: a COCO
file written into the folder, say) is left out, with a warning; one that cannot be read as
json is a problem. Files are read by :func:`read_json_file`, the one reading ``visionkit
split`` shares (UTF-8, a byte-order mark allowed).

Classes: the labels of the objects, **sorted** (as VOC's object names are): the order does
not depend on the order the files are listed in, so the same labels give the same class ids
on every machine. A split read alone takes the labels of its own files: give
``class_names`` (``visionkit split`` prints those of every file under the folder) so that a
split without some label numbers the others as the other splits do. A label outside given
``class_names`` is a problem. LabelMe's own ``labels.txt`` may be given as it is: its
``__ignore__`` and ``_background_`` lines are no classes and are left out, with a log line.

Shapes labelled ``__ignore__`` are **ignore regions** (``labelme2voc`` paints them -1,
ignored; ``labelme2coco`` leaves them out): each is written as a crowd region
(``iscrowd: 1``) of every class, read as any COCO crowd is: evaluation ignores the
detections inside it (COCO ignores a crowd's detections per class, hence one per class), a
semantic target paints it 255 (ignored), detection and instance heads do not learn it as an
object.

Each instance's ``bbox`` is the extent of its shapes, clipped to the image (a clip of more than
a pixel is reported), its ``area`` that of its mask as pycocotools draws it (see
:mod:`~visionkit.data.convert.labelme_shapes` for how ``labelme2coco``'s differ); its
``segmentation`` its polygons, or an RLE where a ``mask`` shape is part of it.

>>> conversion = labelme_to_coco("photos")  # doctest: +SKIP
>>> conversion.coco["categories"]  # doctest: +SKIP
[{'id': 1, 'name': 'cat'}, {'id': 2, 'name': 'dog'}]
"""

from __future__ import annotations

import glob
import json
import logging
import os
import posixpath
from collections import Counter
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
from visionkit.data.convert.labelme_shapes import (
    IGNORE_LABEL,
    NOT_CLASSES,
    OBJECT_SHAPES,
    instance_rle,
    polygons_extent,
    read_instances,
)
from visionkit.data.io import read_image_size
from visionkit.errors import DataError, ImageDecodeError, counted

logger = logging.getLogger(__name__)


def is_labelme(data: Any) -> bool:
    """Whether a json file's content is a LabelMe file (an object with a ``shapes`` list)."""
    return isinstance(data, dict) and isinstance(data.get("shapes"), list)


def read_json_file(path: Path) -> tuple[Any, str | None]:
    """A json file's content and ``None``, or ``None`` and why it cannot be read: the one
    reading of the reader, the converter and ``visionkit split`` (UTF-8, with or without a
    byte-order mark, as Windows tools write it)."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig")), None
    except (OSError, ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        return None, f"not a readable json file ({err})"


def labelme_file(path: Path) -> bool:
    """Whether ``path`` is a readable LabelMe json file (for hints: never raises)."""
    data, why = read_json_file(path)
    return why is None and is_labelme(data)


def labelme_files(
    root: Path, split: str | None = None, warnings: list[tuple[str, str]] | None = None
) -> list[Path]:
    """The json files below ``root`` (sorted, hidden ones and ``splits/`` left out), or those
    a ``split`` list names (:func:`~visionkit.data.split.split_list_file`: a name is
    ``root/splits/<split>.txt``; a line is a json file relative to ``root``, ``.json``
    optional), each once: a file the list names more than once is read once, with a warning
    appended to ``warnings``.

    Raises:
        DataError: no json file, a missing split list, or a line naming no json file.
    """
    if split is None:
        files = list_files(root, (".json",))
        if not files:
            raise DataError(
                f"{root} holds no .json files: a LabelMe folder holds one json file per image "
                "(LabelMe saves each beside its image)"
            )
        return files
    from visionkit.data.split import read_list, split_list_file

    list_file = split_list_file(root, split)
    files, missing = [], []
    for line in read_list(list_file, root):
        name = line.replace("\\", "/")
        name = name if name.lower().endswith(".json") else f"{name}.json"
        try:
            path = resolve_under_root(root, name)
        except ValueError:
            path = None
        (files if path is not None and path.is_file() else missing).append(path or line)
    if missing:
        shown = ", ".join(str(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise DataError(
            f"{list_file}: {counted(len(missing), 'line')} name no json file under {root}: "
            f"{shown} (a line is a json file relative to {root}, as visionkit split writes)"
        )
    repeated = {p: n for p, n in Counter(files).items() if n > 1}
    if repeated and warnings is not None:
        each = [f"{relative_posix(p, root)} ({n} times)" for p, n in repeated.items()]
        shown = ", ".join(each[:5]) + (f", ... ({len(each)} files)" if len(each) > 5 else "")
        warnings.append(("listed twice", f"{list_file}: each read once: {shown}"))
    return list(dict.fromkeys(files))


def labelme_to_coco(
    root: str | os.PathLike,
    split: str | None = None,
    class_names: Sequence[str] | None = None,
    problems: list[str] | None = None,
    skip_bad: bool = False,
) -> Conversion:
    """Convert a LabelMe folder to a COCO object (nothing is written).

    Args:
        root: the folder holding the json files and their images (sub-folders too).
        split: read only the json files of ``root/splits/<split>.txt`` (or of that list file).
        class_names: the categories in order (id ``k + 1`` for ``class_names[k]``); default:
            the sorted labels of the objects.
        problems: a list to append the problems to (the usable files converted) instead of
            raising them (the reader reports them with the rest of its checks).
        skip_bad: leave out each json file with a problem (and its image), keeping its problems
            in the result's ``dropped`` (``on_bad_label: skip``).

    Returns:
        The COCO object (``file_name`` relative to ``root``), the shapes skipped for lack of
        area, the boxes clipped, and as warnings the shapes left out by type and the images
        found by another name than ``imagePath``.

    Raises:
        DataError: ``root`` is not a folder, or holds no json file.
        AnnotationError: one error listing every unusable file, shape, unknown label and
            missing image.
    """
    root = Path(os.path.abspath(dataset_root(root)))  # relative_to between the paths found
    builder = CocoBuilder([])
    records = []
    not_labelme = []
    for path in labelme_files(root, split, builder.warnings):
        with builder.one_file(skip_bad, relative_posix(path, root)):
            record = _read(path, root, builder, not_labelme)
            if record is not None:
                records.append(record)
    if not_labelme:
        shown = ", ".join(not_labelme[:5]) + (", ..." if len(not_labelme) > 5 else "")
        builder.warnings.append(
            (
                "not a LabelMe file",
                f"{root}: {counted(len(not_labelme), 'json file')} without 'shapes' left out: "
                f"{shown}",
            )
        )
    if not records and not builder.problems and not builder.dropped:
        raise DataError(f"{root}: no LabelMe json file (an object with 'shapes') in it")
    if class_names is None:
        files: dict[str, set[str]] = {}  # label -> the json files that write it
        for record in records:
            for instance in record["shapes"].instances:
                if instance.label != IGNORE_LABEL:
                    files.setdefault(instance.label, set()).add(record["where"])
        class_names = sorted(files)
        warn_case_variants(files, root, "labels")
    elif set(NOT_CLASSES) & set(class_names):  # LabelMe's labels.txt, as it is
        logger.info(
            "%s: class names %s left out: LabelMe's labels.txt lines for ignore regions and "
            "the background, no classes",
            root,
            [n for n in class_names if n in NOT_CLASSES],
        )
        class_names = [n for n in class_names if n not in NOT_CLASSES]
    builder.class_names = list(class_names)
    _warn_only_ignored(records, root, builder)
    label_of = {name: k for k, name in enumerate(builder.class_names)}
    seen: dict[str, str] = {}  # image file_name -> the json file that named it
    for record in records:
        with builder.one_file(skip_bad, record["where"]):
            _add(builder, record, label_of, seen)
    in_files = builder.in_files("json file")
    builder.raise_problems(f"{root}: cannot convert the LabelMe files{in_files}", problems)
    info: dict[str, Any] = {"format": "labelme", "source": str(root), "split": split}
    return builder.conversion(info, sources=seen)


def _warn_only_ignored(records: list[dict[str, Any]], root: Path, builder: CocoBuilder) -> None:
    """A warning counting the json files whose shapes are all ``__ignore__`` regions: images
    without objects, their regions written as crowds of every class (none without a class)."""
    only = [
        r["where"]
        for r in records
        if r["shapes"].instances and all(i.label == IGNORE_LABEL for i in r["shapes"].instances)
    ]
    if not only:
        return
    shown = ", ".join(only[:5]) + (", ..." if len(only) > 5 else "")
    written = (
        "each region written as a crowd annotation of every class, which evaluation ignores"
        if builder.class_names
        else "their regions written nowhere: a region is a crowd annotation of each class, "
        "and no file names a class"
    )
    builder.warnings.append(
        (
            "only ignore regions",
            f"{root}: {counted(len(only), 'json file')} held only {IGNORE_LABEL} regions, no "
            f"object: {shown}; read as images without objects, {written}; label their "
            "objects, or leave the files out if they hold none",
        )
    )


def _read(
    path: Path, root: Path, builder: CocoBuilder, not_labelme: list[str]
) -> dict[str, Any] | None:
    """One json file: its image, size and instances, or ``None`` (problems recorded)."""
    where = relative_posix(path, root)
    data, why = read_json_file(path)
    if why is not None:
        builder.problem(where, why)
        return None
    if not is_labelme(data):
        not_labelme.append(where)
        return None
    image = _find_image(path, root, data, builder, where)
    if image is None:
        return None
    height, width = data.get("imageHeight"), data.get("imageWidth")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        try:
            height, width = read_image_size(image)
        except ImageDecodeError as err:
            builder.problem(
                where, f"no imageHeight / imageWidth and the image cannot be read: {err.reason}"
            )
            return None
    shapes = read_instances(data["shapes"], height, width)
    for at, what in shapes.problems:
        builder.problem(f"{where} {at}", what)
    if shapes.problems:
        return None
    for at, what in shapes.skipped:
        builder.skip(f"{where} {at}", what)
    if shapes.left_out:
        kinds = ", ".join(shapes.left_out[:5]) + (", ..." if len(shapes.left_out) > 5 else "")
        objects = f"{', '.join(OBJECT_SHAPES[:-1])} or {OBJECT_SHAPES[-1]}"
        builder.warnings.append(
            (
                "shape left out",
                f"{where}: {counted(len(shapes.left_out), 'shape')} left out (not a {objects}): "
                f"{kinds}",
            )
        )
    return {"where": where, "image": image, "root": root, "size": (height, width), "shapes": shapes}


def _find_image(
    path: Path, root: Path, data: dict[str, Any], builder: CocoBuilder, where: str
) -> Path | None:
    """The image of a json file (see the module docstring), or ``None`` with a problem."""
    named = data.get("imagePath")
    named = named.replace("\\", "/") if isinstance(named, str) else ""
    folder = path.parent.relative_to(root).as_posix()
    looked, outside = [], False
    if named:
        relative = posixpath.normpath(posixpath.join(folder, named))
        is_absolute = named.startswith("/") or (len(named) > 1 and named[1] == ":")
        try:
            candidate = None if is_absolute else resolve_under_root(root, relative)
        except ValueError:
            candidate, outside = None, True
        if candidate is not None and candidate.is_file():
            return candidate
        looked.append(named)
    beside = [path.parent / posixpath.basename(named)] if named else []
    beside += sorted(
        p
        for p in path.parent.glob(f"{glob.escape(path.stem)}.*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
    )
    for candidate in beside:
        if candidate.is_file():
            if named:
                builder.warnings.append(
                    (
                        "image by its name",
                        f"{where}: imagePath {data['imagePath']!r} names no file under {root}; "
                        f"read {relative_posix(candidate, root)}, beside the json file",
                    )
                )
            return candidate
        looked.append(relative_posix(candidate, root))
    stem = relative_posix(path.parent / path.stem, root)
    looked.append(f"{stem}.<{'|'.join(e[1:] for e in IMAGE_EXTENSIONS[:3])}|...>")
    why = f"image not found (looked for {', '.join(dict.fromkeys(looked))})"
    if outside:
        why += (
            f"; imagePath {data['imagePath']!r} leads outside {root} ('..' is refused): give "
            "as root the folder that holds both the json files and the images"
        )
    if data.get("imageData"):
        why += "; the json embeds the image (imageData), which is not read: keep the image file"
    builder.problem(where, why)
    return None


def _add(
    builder: CocoBuilder, record: dict[str, Any], label_of: dict[str, int], seen: dict[str, str]
) -> None:
    where, (height, width) = record["where"], record["size"]
    instances = record["shapes"].instances
    unknown = [i for i in instances if i.label not in label_of and i.label != IGNORE_LABEL]
    for instance in unknown:
        builder.problem(
            f"{where} {', '.join(instance.shapes)}",
            f"label {instance.label!r} is not one of the classes {list(label_of)}",
        )
    if unknown:
        return
    file_name = relative_posix(record["image"], record["root"])
    if file_name in seen:
        builder.problem(where, f"image {file_name} is also the image of {seen[file_name]}")
        return
    seen[file_name] = where
    image_id = builder.add_image(file_name, width, height)
    from pycocotools import mask as mask_utils

    for instance in instances:
        at = f"{where} {', '.join(instance.shapes)}"
        rle = instance_rle(instance, height, width)
        area = float(mask_utils.area(rle))
        if instance.masks:
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            extent = (x, y, x + w, y + h)
        else:
            extent = polygons_extent(instance.polygons)
        x0, y0 = min(max(extent[0], 0.0), width), min(max(extent[1], 0.0), height)
        x1, y1 = min(max(extent[2], 0.0), width), min(max(extent[3], 0.0), height)
        if area <= 0 or x1 <= x0 or y1 <= y0:
            builder.skip(
                at, f"{instance.label!r}: no pixel of it inside the {width}x{height} image"
            )
            continue
        if max(x0 - extent[0], y0 - extent[1], extent[2] - x1, extent[3] - y1) > CLIP_TOLERANCE:
            builder.clip(
                at,
                f"{instance.label!r} reaches outside the {width}x{height} image; its box clipped to it",
            )
        if instance.masks:
            segmentation: Any = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        else:
            segmentation = instance.polygons
        ignored = instance.label == IGNORE_LABEL  # a crowd of every class (module docstring)
        for label in range(len(label_of)) if ignored else [label_of[instance.label]]:
            box = [x0, y0, x1 - x0, y1 - y0]
            builder.add_annotation(image_id, label, box, segmentation, area, iscrowd=ignored)
