"""COCO-format datasets: boxes and labels through an explicit category mapping, instance
masks and semantic label maps from the annotations' ``segmentation``, and an optional
image-level class field.

Category ids of the file (any integers, e.g. 3, 7, 42) map to contiguous labels ``0..C-1`` in
ascending id order; ``category_ids[label]`` maps back. That list is stored in every checkpoint.

Semantic label maps (``semantic=True``) use the family ``"semantic"``: ``background`` is
``0`` and category label ``k`` is ``k + 1``. Where objects overlap, the smaller object (by
mask area) is painted last and wins, so a small object in front of a large one stays visible;
``iscrowd`` regions are painted ``ignore_index`` (not counted by the loss or the metrics).
Instance masks (``masks=True``) are ``uint8 [N, H, W]``, one per box, in the same order.

The image-level class (for classification) is read from a per-image field named by
``class_field`` (e.g. ``"background"`` in the shapes dataset). Its class order is the
top-level ``image_classes[class_field]`` list when the file has one, else the sorted distinct
values. Values may be names or integer indices into that list.

>>> ds = CocoDataset("data/shapes/train", class_field="background")  # doctest: +SKIP
>>> ds[0]["boxes"].shape  # float32 [N, 4], absolute-pixel xyxy  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.data.base import Sample, check_files_exist, dataset_root, resolve_under_root
from visionkit.data.io import read_image
from visionkit.errors import AnnotationError
from visionkit.registry import DATASETS

logger = logging.getLogger(__name__)


class CocoDataset:
    """A COCO json file plus the images it names, resolved under ``images``.

    Args:
        images: the image folder; ``file_name`` entries are resolved under it and may not
            escape it.
        annotations: the json file (default ``images/annotations.json``).
        class_field: per-image field holding the image-level class, or ``None``.
        class_names: image-level class order to use (default: from the file).
        instances: whether samples carry ``boxes`` and ``labels``.
        masks: whether samples carry instance ``masks`` (needs ``segmentation`` on every
            annotation; polygons or RLE).
        semantic: whether samples carry a ``semantic`` label map.
        ignore_index: the ``semantic`` value of ``iscrowd`` regions.
    """

    def __init__(
        self,
        images: str | os.PathLike,
        annotations: str | os.PathLike | None = None,
        class_field: str | None = None,
        class_names: Sequence[str] | None = None,
        instances: bool = True,
        masks: bool = False,
        semantic: bool = False,
        ignore_index: int = 255,
    ) -> None:
        self.root = dataset_root(images)
        self.ann_path = Path(annotations) if annotations else self.root / "annotations.json"
        data = _read_json(self.ann_path)
        self.images: list[dict[str, Any]] = data["images"]
        self.class_field = class_field
        self.instances = instances
        self.masks = masks
        self.semantic = semantic
        self.ignore_index = int(ignore_index)

        categories = sorted(data.get("categories", []), key=lambda c: c["id"])
        self.category_ids = [int(c["id"]) for c in categories]
        self.cat_to_label = {cid: i for i, cid in enumerate(self.category_ids)}
        self.label_names: dict[str, list[str]] = {
            "instances": [str(c.get("name", c["id"])) for c in categories]
        }
        if semantic:
            self.label_names["semantic"] = ["background", *self.label_names["instances"]]
        self._check_ids(data)
        self.paths = self._resolve_paths()
        check_files_exist(self.paths, str(self.ann_path))
        self.targets = self._index_annotations(data.get("annotations", []))
        self.index_of_id = {int(img["id"]): i for i, img in enumerate(self.images)}
        if masks or semantic:
            self._check_segmentations()
        if class_field is not None:
            self.classes = self._read_classes(data, class_field, class_names)

    # ------------------------------------------------------------------ construction checks

    def _check_ids(self, data: dict[str, Any]) -> None:
        incomplete = [
            f"image {i} (id {img.get('id')}): missing {', '.join(missing)}"
            for i, img in enumerate(self.images)
            if (missing := [k for k in ("id", "file_name", "width", "height") if k not in img])
        ]
        if incomplete:
            raise AnnotationError(f"{self.ann_path}: images without required fields:", incomplete)
        problems = []
        for what, items, key in (
            ("image id", self.images, "id"),
            ("image file_name", self.images, "file_name"),
            ("annotation id", data.get("annotations", []), "id"),
            ("category id", data.get("categories", []), "id"),
        ):
            counts = Counter(item.get(key) for item in items)
            dups = [k for k, n in counts.items() if n > 1]
            if dups:
                problems.append(f"duplicate {what}s: {dups[:10]}{' ...' if len(dups) > 10 else ''}")
        if problems:
            raise AnnotationError(f"{self.ann_path}: duplicate ids:", problems)

    def _resolve_paths(self) -> list[Path]:
        paths, bad = [], []
        for img in self.images:
            try:
                paths.append(resolve_under_root(self.root, img["file_name"]))
            except ValueError as err:
                bad.append(f"image id {img.get('id')}: {err}")
        if bad:
            raise AnnotationError(f"{self.ann_path}: image paths outside the dataset root:", bad)
        return paths

    def _index_annotations(self, annotations: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        index = {img["id"]: i for i, img in enumerate(self.images)}
        per_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
        crowds: dict[int, list[dict[str, Any]]] = defaultdict(list)
        unknown_cat, orphans = [], []
        for ann in annotations:
            if ann.get("category_id") not in self.cat_to_label:
                unknown_cat.append(
                    f"annotation id {ann.get('id')}: category_id {ann.get('category_id')}"
                )
            elif ann.get("image_id") not in index:
                orphans.append(ann.get("id"))
            elif ann.get("iscrowd", 0):
                crowds[index[ann["image_id"]]].append(ann)
            else:
                per_image[index[ann["image_id"]]].append(ann)
        if unknown_cat:
            raise AnnotationError(
                f"{self.ann_path}: category ids not in 'categories' {self.category_ids}:",
                unknown_cat,
            )
        if orphans:
            logger.warning(
                "%s: %d annotations refer to images that do not exist (first ids: %s)",
                self.ann_path,
                len(orphans),
                orphans[:10],
            )
        targets, dropped = [], 0
        for i, img in enumerate(self.images):
            anns = per_image.get(i, [])
            xywh = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
            boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, img["width"])
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, img["height"])
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            dropped += int((~keep).sum())
            labels = np.array([self.cat_to_label[a["category_id"]] for a in anns], dtype=np.int64)
            targets.append(
                {
                    "boxes": boxes[keep],
                    "labels": labels[keep],
                    "segmentations": [
                        a.get("segmentation") for a, k in zip(anns, keep, strict=True) if k
                    ],
                    "crowd_segmentations": [a.get("segmentation") for a in crowds.get(i, [])],
                }
            )
        if dropped:
            logger.warning(
                "%s: dropped %d boxes of zero area after clipping", self.ann_path, dropped
            )
        return targets

    def _read_classes(
        self, data: dict[str, Any], field: str, class_names: Sequence[str] | None
    ) -> list[int]:
        values = [img.get(field) for img in self.images]
        missing = [img["id"] for img, v in zip(self.images, values, strict=False) if v is None]
        if missing:
            raise AnnotationError(
                f"{self.ann_path}: {len(missing)} images have no {field!r} field (image ids):",
                [str(m) for m in missing],
            )
        names = list(class_names or data.get("image_classes", {}).get(field) or [])
        if not names:
            names = sorted({str(v) for v in values})
        lookup = {name: i for i, name in enumerate(names)}
        classes, bad = [], []
        for img, value in zip(self.images, values, strict=False):
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
                classes.append(value)
            elif str(value) in lookup:
                classes.append(lookup[str(value)])
            else:
                bad.append(f"image id {img['id']}: {field}={value!r}")
        if bad:
            raise AnnotationError(f"{self.ann_path}: image-level classes not in {names}:", bad)
        self.label_names["class"] = names
        return classes

    def _check_segmentations(self) -> None:
        """Every kept annotation has a usable ``segmentation`` of its image's size."""
        problems = []
        for img, target in zip(self.images, self.targets, strict=True):
            for seg in target["segmentations"] + target["crowd_segmentations"]:
                problem = _segmentation_problem(seg, img["height"], img["width"])
                if problem:
                    problems.append(f"image id {img['id']} ({img['file_name']}): {problem}")
        if problems:
            raise AnnotationError(
                f"{self.ann_path}: annotations without a usable segmentation (needed for masks):",
                problems,
            )

    def instance_masks(self, index: int) -> np.ndarray:
        """``uint8 [N, H, W]`` masks of sample ``index``'s boxes, at the original size."""
        img, target = self.images[index], self.targets[index]
        h, w = int(img["height"]), int(img["width"])
        if not target["segmentations"]:
            return np.zeros((0, h, w), np.uint8)
        return np.stack([decode_segmentation(s, h, w) for s in target["segmentations"]])

    def semantic_mask(self, index: int) -> np.ndarray:
        """``uint8 [H, W]`` label map of sample ``index`` at the original size (see the module
        docstring for the overlap rule)."""
        img, target = self.images[index], self.targets[index]
        h, w = int(img["height"]), int(img["width"])
        out = np.zeros((h, w), np.uint8)
        masks = [decode_segmentation(s, h, w) for s in target["segmentations"]]
        order = sorted(range(len(masks)), key=lambda j: -int(masks[j].sum()))
        for j in order:
            out[masks[j] > 0] = int(target["labels"][j]) + 1
        for seg in target["crowd_segmentations"]:
            out[decode_segmentation(seg, h, w) > 0] = self.ignore_index
        return out

    def load_semantic(self, image_id: int) -> np.ndarray:
        """The semantic label map of the image with this id, at its original size (what the
        semantic evaluator scores against)."""
        return self.semantic_mask(self.index_of_id[int(image_id)])

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        info = self.images[index]
        image = read_image(self.paths[index])
        sample: Sample = {
            "image": image,
            "image_id": int(info["id"]),
            "orig_size": image.shape[:2],
            "path": str(self.paths[index]),
        }
        if self.instances:
            sample["boxes"] = self.targets[index]["boxes"].copy()
            sample["labels"] = self.targets[index]["labels"].copy()
        if self.masks:
            sample["masks"] = self.instance_masks(index)
        if self.semantic:
            sample["semantic"] = self.semantic_mask(index)
        if (self.masks or self.semantic) and image.shape[:2] != (info["height"], info["width"]):
            raise AnnotationError(
                f"{self.paths[index]} (image id {info['id']}): the image is "
                f"{image.shape[0]}x{image.shape[1]} but the annotation file says "
                f"{info['height']}x{info['width']} (height x width); its masks cannot be aligned"
            )
        if self.class_field is not None:
            sample["class"] = self.classes[index]
        return sample


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE or uncompressed RLE) as a ``uint8 [H, W]`` mask."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        counts = segmentation["counts"]
        rle = {
            "size": segmentation["size"],
            "counts": counts.encode() if isinstance(counts, str) else counts,
        }
    return mask_utils.decode(rle).astype(np.uint8)


def _segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
    """Why ``segmentation`` cannot be decoded for an image of this size, or ``None``."""
    if segmentation is None or segmentation == []:
        return "no segmentation"
    if isinstance(segmentation, list):
        bad = [p for p in segmentation if not isinstance(p, list) or len(p) < 6 or len(p) % 2]
        if bad:
            return "polygon with fewer than 3 points or an odd number of coordinates"
        return None
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        return f"segmentation is neither polygons nor RLE: {str(segmentation)[:60]}"
    size = list(segmentation.get("size", []))
    if size != [height, width]:
        return f"RLE size {size} differs from the image size [{height}, {width}]"
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AnnotationError(f"annotation file {path} does not exist") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnnotationError(f"annotation file {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise AnnotationError(
            f"annotation file {path}: expected a COCO object with an 'images' list"
        )
    return data


@DATASETS.register
def coco(
    images: str | None = None,
    annotations: str | None = None,
    class_field: str | None = None,
    class_names: list[str] | None = None,
    instances: bool = True,
    masks: bool | None = None,
    semantic: bool | None = None,
    ignore_index: int = 255,
) -> CocoDataset:
    """COCO json (``annotations``, default ``images/annotations.json``) with the image files
    under ``images``. ``masks`` / ``semantic``: ``null`` reads them when a head learns from
    them."""
    return CocoDataset(
        images,
        annotations,
        class_field,
        class_names,
        instances,
        bool(masks),
        bool(semantic),
        ignore_index,
    )
