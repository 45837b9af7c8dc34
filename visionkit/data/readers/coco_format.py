"""The COCO json format, read and checked: the file, its ``images`` / ``categories`` entries,
boxes, polygons and RLE segmentations (what :class:`~visionkit.data.readers.coco.CocoDataset`
builds on)."""

from __future__ import annotations

import json
import math
import os
import posixpath
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from visionkit.data.batch import read_from
from visionkit.data.checks import DataReport
from visionkit.data.convert.coco_builder import CLIP_TOLERANCE
from visionkit.data.readers.coco_fields import is_crowd, usable_area
from visionkit.data.readers.coco_identities import IDENTITY_FIELD
from visionkit.data.readers.segmentation_checks import segmentation_rle
from visionkit.errors import AnnotationError


def fill_missing_sizes(images: list[Any], root: Path, report: DataReport) -> dict[int, str]:
    """Give an image entry without ``width`` / ``height`` (LabelMe's and some other tools'
    COCO exports) those of the upright image, read from its header, with a warning each.

    Returns:
        Why the size could not be read, by entry index, for the entries whose image cannot
        be read (they stay as they are, and :func:`valid_images` reports them with it).
    """
    from visionkit.data.batch import resolve_under_root
    from visionkit.data.io import read_image_header

    unread = {}
    for i, img in enumerate(images):
        # absent or null ("width": null, as some exporters write an unknown size)
        missing = [k for k in ("width", "height") if isinstance(img, dict) and img.get(k) is None]
        if not missing or not isinstance(img.get("file_name"), str):
            continue
        try:
            path = resolve_under_root(root, img["file_name"])
            height, width, orientation = read_image_header(path)
        except Exception as err:  # outside the root, missing, unreadable
            unread[i] = f"its image cannot be read for them: {err}"
            continue
        read = {"height": height, "width": width}
        img.update({k: read[k] for k in missing})  # a declared one is still checked
        turned = f" (upright: EXIF orientation {orientation})" if orientation != 1 else ""
        detail = f"no {' / '.join(missing)} in the file: {height}x{width} (height x width) of "
        report.add(
            "size from the image",
            f"images[{i}] (id {img.get('id')})",
            detail + f"the image{turned}",
            severity="warning",
        )
    return unread


def resolve_paths(
    root: Path, images: list[dict[str, Any]], report: DataReport
) -> list[Path | None]:
    """Each image's file under ``root``; ``None``, with a problem, for a ``file_name`` that
    leads outside it (``..``, an absolute path elsewhere)."""
    from visionkit.data.batch import resolve_under_root

    paths: list[Path | None] = []
    refused = []  # the file names of the paths refused
    for img in images:
        try:
            paths.append(resolve_under_root(root, img["file_name"]))
        except ValueError:
            report.add(
                "path outside root",
                f"image id {img['id']}: file_name {img['file_name']!r}",
                f"resolves outside the dataset root {os.path.abspath(root)} "
                "('..' and absolute paths elsewhere are refused)",
            )
            paths.append(None)
            refused.append(posixpath.basename(str(img["file_name"]).replace("\\", "/")))
    if refused:
        report.hints += _refused_names_hint(root, refused)
    return paths


def _refused_names_hint(root: Path, names: list[str]) -> list[str]:
    """Where the images of refused ``file_name`` entries are, by their file names: in
    ``root`` itself or in one of its sub-folders (a json of another machine: Label Studio
    writes its upload folder, ``/data/upload/1/a.jpg``, beside an ``images/`` folder)."""
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []
    for folder in folders:
        found = sum((folder / name).is_file() for name in names)
        if not found:
            continue
        where = "itself" if folder == root else ""
        named = "the file name alone" if folder == root else f"{folder.name}/<file name>"
        return [
            f"{found} of these file names are in {folder} {where}".rstrip()
            + ": the json names the images where it was written (Label Studio's upload folder, "
            f"another machine); write file_name relative to the image folder ({named}, e.g. "
            f"{(folder / names[0]).relative_to(root).as_posix()}) to read them"
        ]
    return []


def listed_ids(images: list[Any]) -> set[int | str]:
    """The ids of every image entry of the file that has one, valid entries or not."""
    return {
        img["id"]
        for img in images
        if isinstance(img, dict) and isinstance(img.get("id"), int | str)
    }


def valid_images(
    images: list[Any], report: DataReport, unread: dict[int, str] | None = None
) -> list[dict[str, Any]]:
    """The entries with an integer ``id``, a ``file_name`` and positive ``width`` /
    ``height``; the others are errors (with ``unread[i]``, why a missing size could not be
    read from the image, see :func:`fill_missing_sizes`)."""
    valid = []
    for i, img in enumerate(images):
        if not isinstance(img, dict):
            report.add("bad entry", f"images[{i}]", "not an object")
            continue
        for k in ("width", "height"):  # 640.0 (some tools write floats) is 640
            if isinstance(img.get(k), float) and img[k].is_integer():
                img[k] = int(img[k])
        missing = [k for k in ("id", "file_name", "width", "height") if k not in img]
        bad = [
            k
            for k in ("id", "width", "height")
            if k in img and (not isinstance(img[k], int) or isinstance(img[k], bool))
        ]
        bad += [k for k in ("width", "height") if k not in bad and img.get(k, 1) <= 0]
        if "file_name" in img and not isinstance(img["file_name"], str):
            bad.append("file_name")
        if missing or bad:
            detail = "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + [
                    f"{k}={img[k]!r} (expected "
                    f"{'a path' if k == 'file_name' else 'a positive integer'})"
                    for k in bad
                ]
                + ([unread[i]] if unread and i in unread else [])
            )
            report.add("bad entry", f"images[{i}] (id {img.get('id')})", detail)
            continue
        valid.append(img)
    return valid


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE or uncompressed RLE) as a ``uint8 [H, W]`` mask.

    Give it only what :func:`~visionkit.data.readers.segmentation_checks.segmentation_problem`
    accepts: pycocotools trusts its input (bad geometry can hang or crash the process)."""
    return mask_utils.decode(segmentation_rle(segmentation, height, width)).astype(np.uint8)


def clip_boxes(
    anns: list[dict[str, Any]], img: dict[str, Any], report: DataReport | None
) -> tuple[np.ndarray, np.ndarray]:
    """The xyxy boxes of ``anns`` clipped to their image (float64 ``[N, 4]``) and which
    are kept (area > 0). Boxes more than :data:`CLIP_TOLERANCE` pixels outside the image,
    and dropped boxes, are recorded in ``report`` as warnings (``None``: not recorded)."""
    xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    clipped = boxes.copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, img["width"])
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, img["height"])
    degenerate = (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
    outside = ~degenerate & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
    keep = ~(degenerate | outside)
    moved = keep & (np.abs(clipped - boxes).max(axis=1, initial=0) > CLIP_TOLERANCE)
    size = f"{img['width']}x{img['height']}"
    for j in np.flatnonzero(degenerate | outside | moved) if report is not None else ():
        ann = anns[j]
        where = f"annotation id {ann.get('id')} (image id {img['id']}, {img['file_name']})"
        if degenerate[j]:
            kind, detail = "box dropped", f"bbox {ann['bbox']}: width or height <= 0"
        elif outside[j]:
            kind = "box dropped"
            detail = f"bbox {ann['bbox']} lies outside the {size} image (zero area after clipping)"
        else:
            kind = "box clipped"
            detail = f"bbox {ann['bbox']} reaches outside the {size} image; clipped to it"
        report.add(kind, where, detail, "warning")
    return clipped, keep


def is_box(bbox: Any) -> bool:
    """A COCO ``[x, y, w, h]`` of 4 finite numbers."""
    return (
        isinstance(bbox, (list, tuple))
        and len(bbox) == 4
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in bbox
        )
    )


#: The annotation files a COCO image folder may hold, in the order looked for: visionkit's
#: default, and the one Roboflow writes into each split folder of a COCO export.
DEFAULT_ANNOTATION_FILES = ("annotations.json", "_annotations.coco.json")


def default_annotations(root: Path) -> Path:
    """The json file of an image folder given without ``annotations``: the first of
    :data:`DEFAULT_ANNOTATION_FILES` there (the first when neither is)."""
    found = (root / name for name in DEFAULT_ANNOTATION_FILES)
    return next((p for p in found if p.is_file()), root / DEFAULT_ANNOTATION_FILES[0])


def read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AnnotationError(
            f"annotation file {path} does not exist{read_from(path)}{_jsons_beside(path)}"
        ) from None
    except IsADirectoryError:
        raise AnnotationError(
            f"annotation file {path} is a folder; annotations: names the json file"
            f"{_jsons_beside(path / 'x')}"
        ) from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(f"annotation file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        from visionkit.data.convert.labelme import is_labelme

        labelme = (
            f" (a LabelMe file, one per image: read the folder of them with format: labelme, "
            f"root: {path.parent})"
            if is_labelme(data)
            else ""
        )
        raise AnnotationError(
            f"annotation file {path}: expected a COCO object with an 'images' list{labelme}"
        )
    return data


def missing_files_hint(root: Path, names: Sequence[str]) -> str:
    """Where the images of a COCO file are when none of ``names`` (``file_name`` entries,
    relative) is under the image folder ``root``: the folder above it or one of its
    sub-folders when that holds them (an export's ``file_name`` may or may not start with
    ``images/``); else where the first was looked for."""
    names = [n.replace("\\", "/") for n in names[:20]]
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in (root.parent, *folders):
        if all((folder / name).is_file() for name in names):
            return (
                f"the missing images are under {folder}, not {root} (file_name entries are "
                f"relative to the entry's images: folder): give images: {folder}"
            )
    return (
        f"file_name entries are relative to the entry's images: folder; {names[0]} was "
        f"looked for as {root / names[0]}"
    )


def _jsons_beside(path: Path) -> str:
    """For a missing json file, as a hint: the json files of its folder (up to 5; the
    LabelMe format when they are LabelMe files); else of
    an ``annotations/`` folder in it or beside it (CVAT's COCO export: ``annotations/`` beside
    ``images/``); else its sub-folders that each hold a default json (Roboflow's split folders).
    """
    from visionkit.data.convert.labelme import labelme_file

    folder = path.parent
    for where in (folder, folder / "annotations", folder.parent / "annotations"):
        found = sorted(p.name for p in where.glob("*.json")) if where.is_dir() else []
        labelme = next((name for name in found if labelme_file(where / name)), None)
        if labelme is not None:  # an annotations.json written beside them may sort first
            return (
                f" ({where} holds LabelMe files, {labelme}, ...: read them with format: "
                f"labelme, root: {where})"
            )
        if found:
            shown = ", ".join(found[:5]) + (" ..." if len(found) > 5 else "")
            return f" ({where} holds {shown}: give annotations: {where / found[0]})"
    splits = [p for p in sorted(folder.iterdir()) if p.is_dir()] if folder.is_dir() else []
    splits = [p for p in splits if default_annotations(p).is_file()]
    if not splits:
        return ""
    names = ", ".join(p.name for p in splits)
    example = next((p for p in splits if p.name == "train"), splits[0])
    return (
        f" (its sub-folders {names} each hold {default_annotations(example).name}, a split "
        f"each, as Roboflow exports them: give each split's folder, e.g. images: {example})"
    )


def kept_ground_truth(
    data: dict[str, Any],
    images: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    categories: list[dict[str, Any]],
    segmentations_checked: bool,
    source: str,
    boxes_from_segmentation: Mapping[int, tuple[list[float], float]] | None = None,
) -> dict[str, Any]:
    """The COCO object of what a reader kept, for ``COCOeval``: its ``images``, the
    ``categories`` and the annotations of ``data`` (the file as read again) that the reader
    kept, by their position (``ann_index``, ``crowd_index`` of each target) — without those
    it dropped (zero-area box, ...) and those of the images it left out (``on_bad_image:
    skip``), counted in ``info.left_out``. With
    ``segmentations_checked``, each annotation carries the segmentation the reader uses (bad
    polygons beside good ones removed; none where it has no usable one), and
    ``info.images_without_masks`` lists the images whose targets say ``has_masks`` False
    (scored for boxes, not masks); the annotations are copies, ``data`` is not modified.
    An annotation of ``boxes_from_segmentation`` (by position: its box and mask area, see
    :mod:`~visionkit.data.readers.segmentation_boxes`) carries that ``bbox`` (and that
    ``area`` where the file gives none above 0), counted in ``info.boxes_from_segmentation``.

    Raises:
        AnnotationError: ``data`` is not the file the reader read (an annotation id moved).
    """
    annotations = data.get("annotations") or []
    derived = boxes_from_segmentation or {}
    kept, from_segmentation = [], 0
    for target in targets:
        objects = zip(target["ann_index"], target["ann_ids"], target["segmentations"], strict=True)
        crowds = zip(target["crowd_index"], target["crowd_segmentations"], strict=True)
        entries = [*((k, i, seg, True) for k, i, seg in objects)]
        entries += [(k, None, seg, False) for k, seg in crowds]
        for k, ann_id, seg, is_object in entries:
            ann = annotations[k] if k < len(annotations) else None
            if not isinstance(ann, dict) or (ann_id is not None and ann.get("id") != ann_id):
                raise AnnotationError(
                    f"{source}: annotations[{k}] is not annotation id {ann_id} any more: the "
                    "file changed since the dataset was read; start again to read it anew"
                )
            ann = dict(ann)
            if is_object and is_crowd(ann.get("iscrowd")):  # read as an object (crowds: objects)
                ann["iscrowd"] = 0
            if k in derived:  # no usable bbox in the file
                ann["bbox"], area = derived[k]
                from_segmentation += 1
                if not usable_area(ann.get("area")):
                    ann["area"] = area  # the file's, from its zero box, would rank it small
            if segmentations_checked:
                ann["segmentation"] = seg
                if seg is None:
                    del ann["segmentation"]
            kept.append(ann)
    ids = listed_ids(data.get("images") or [])  # those of images left out (skipped) too
    in_file = sum(isinstance(a, dict) and a.get("image_id") in ids for a in annotations)
    info: dict[str, Any] = {"left_out": in_file - len(kept)}  # the file's, less orphans
    info["boxes_from_segmentation"] = from_segmentation
    if segmentations_checked:
        unmasked = [img["id"] for img, t in zip(images, targets, strict=True) if not t["has_masks"]]
        info["images_without_masks"] = unmasked  # scored for boxes only
    return {
        "images": list(images),
        "annotations": kept,
        "categories": list(categories),
        "info": info,
    }


#: The annotation key whose presence switches an ``"auto"`` flag of :class:`CocoDataset` on.
AUTO_FLAG_KEYS = {
    "masks": "segmentation",
    "semantic": "segmentation",
    "keypoints": "keypoints",
    "identities": IDENTITY_FIELD,
}


def switched_on(value: bool | str | None, annotations: Sequence[Any], flag: str) -> bool:
    """A target flag's value: ``True`` / ``False`` / ``None`` (off) as given; ``"auto"``:
    whether any annotation has the flag's key (:data:`AUTO_FLAG_KEYS`; an empty segmentation
    or keypoint list does not count, an identity of 0 does)."""
    if value != "auto":
        return bool(value)
    key = AUTO_FLAG_KEYS[flag]
    if key == IDENTITY_FIELD:
        return any(isinstance(a, dict) and a.get(key) is not None for a in annotations)
    return any(isinstance(a, dict) and a.get(key) for a in annotations)


def read_image_classes(
    data: dict[str, Any],
    images: list[dict[str, Any]],
    field: str,
    class_names: Sequence[str] | None,
    where: Callable[[int], str],
    report: DataReport,
) -> tuple[list[int], list[str]]:
    """The image-level class of each of ``images`` from its ``field``, and the class order
    (``class_names``, else the file's ``image_classes[field]``, else the sorted values). A
    value is a name or an index into the order; one that is neither is a ``bad class`` error.
    An image without the field has no class (``-1``: partial labels, it trains the other
    heads), counted in a note; when no image has it (a misspelt ``class_field``), an error."""
    values = [img.get(field) for img in images]
    names = list(class_names or data.get("image_classes", {}).get(field) or [])
    if not names:
        names = sorted({str(v) for v in values if v is not None})
    lookup = {name: i for i, name in enumerate(names)}
    classes = []
    for i, value in enumerate(values):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            classes.append(value)
        elif value is not None and str(value) in lookup:
            classes.append(lookup[str(value)])
        else:
            if value is not None:
                detail = f"{field}={value!r} is not one of {names} (nor an index into it)"
                report.add("bad class", where(i), detail)
            classes.append(-1)
    unlabelled = values.count(None)
    if values and unlabelled == len(values):
        report.add("bad class", report.source, f"no image has a {field!r} field (class_field)")
    elif unlabelled:
        report.notes.append(
            f"{unlabelled} images without a {field!r} field: no image-level class (they train "
            "the other heads)"
        )
    return classes, names
