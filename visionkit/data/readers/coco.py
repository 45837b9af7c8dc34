"""COCO-format datasets: boxes and labels by an explicit category mapping, instance masks and
semantic label maps from the annotations' ``segmentation``, an optional image-level class field.

Category ids of the file (any integers, e.g. 3, 7, 42) map to contiguous labels ``0..C-1`` in
ascending id order; ``category_ids[label]`` maps back. That list is stored in every checkpoint.

Semantic label maps (``semantic=True``) use the family ``"semantic"``: ``background`` is
``0`` and category label ``k`` is ``k + 1``. Where objects overlap, the smaller (by mask area)
is painted last and wins, so a small object in front of a large one stays visible; ``iscrowd``
regions are :data:`~visionkit.data.batch.IGNORE_PIXEL` (255), which heads and evaluators ignore.
Instance masks (``masks=True``) are ``uint8 [N, H, W]``, one per box, in the same order.

The image-level class (for classification) is read from a per-image field named by
``class_field`` (e.g. ``"background"`` in the shapes dataset). Its class order is the
top-level ``image_classes[class_field]`` list when the file has one, else the sorted distinct
values. Values may be names or integer indices into that list.

>>> ds = CocoDataset("data/shapes/train", class_field="background")  # doctest: +SKIP
>>> ds[0]["boxes"].shape  # float32 [N, 4], absolute-pixel xyxy  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from visionkit.data.batch import IGNORE_PIXEL, Sample, dataset_root
from visionkit.data.checks import (
    IMAGE_CHECKS,
    DataReport,
    ImageFile,
    check_image_files,
    policy,
    read_or_skip,
)
from visionkit.data.io import read_image
from visionkit.data.readers.coco_categories import (
    category_name,
    has_text_ids,
    report_unknown_categories,
    valid_categories,
)
from visionkit.data.readers.coco_fields import bad_crowd_detail, is_crowd, report_text_crowds
from visionkit.data.readers.coco_format import (
    clip_boxes,
    decode_segmentation,
    default_annotations,
    fill_missing_sizes,
    is_box,
    kept_ground_truth,
    listed_ids,
    missing_files_hint,
    read_image_classes,
    read_json,
    resolve_paths,
    switched_on,
    valid_images,
)
from visionkit.data.readers.coco_identities import read_identities
from visionkit.data.readers.coco_ids import check_ids
from visionkit.data.readers.coco_keypoints import attach_keypoints
from visionkit.data.readers.coco_statistics import record_statistics
from visionkit.data.readers.segmentation_boxes import (
    DerivedBox,
    bad_box_detail,
    box_from_segmentation,
    report_boxes_from_segmentation,
)
from visionkit.data.readers.segmentation_checks import check_segmentations
from visionkit.errors import AnnotationError
from visionkit.registry import DATASETS

logger = logging.getLogger(__name__)


@DATASETS.register("coco")
class CocoDataset:
    """A COCO json file plus the images it names, resolved under ``images``.

    Construction reads every annotation and every image header and checks them all (see
    :mod:`visionkit.data.checks`); problems that make the dataset unusable raise one
    :class:`~visionkit.errors.DataError` listing every offender, before a model is built.
    The report is kept as :attr:`report`.

    Args:
        images: the image folder; ``file_name`` entries are resolved under it and may not
            escape it.
        annotations: the json file (default ``images/annotations.json``, or
            ``images/_annotations.coco.json`` as Roboflow exports a split).
        class_field: per-image field holding the image-level class, or ``None``.
        class_names: image-level class order to use (default: from the file).
        instances: whether samples carry ``boxes`` and ``labels``.
        masks: whether samples carry instance ``masks`` (from ``segmentation``, polygons or RLE; an
            image with an annotation without a usable one keeps its boxes and gives no masks, with
            a warning). ``"auto"``: when an annotation of the file has a ``segmentation``
            (:func:`~visionkit.data.readers.coco_format.switched_on`). ``None`` (the default) is
            "when a head needs them": :func:`visionkit.build.build_dataset` sets it to ``"auto"``
            (see :attr:`target_flags`), so a set without segmentations mixed with one that has them
            gives boxes only; left ``None``, it is off.
        semantic: whether samples carry a ``semantic`` label map; ``None`` as for ``masks``.
        keypoints, identities: whether samples carry ``keypoints`` (COCO keypoint format) /
            ``identities`` (checked by ``coco_keypoints`` / ``coco_identities``); as ``masks``.
        ignore_index: accepted so that older configs and checkpoints still load; ``iscrowd``
            regions of the ``semantic`` map are always
            :data:`~visionkit.data.batch.IGNORE_PIXEL` (another value is logged as unused).
        on_bad_image: ``"error"`` (default): a missing or unreadable image stops
            construction (and, found only when decoding, training); ``"skip"``: such images
            are left out at construction, and an image that fails to decode later is replaced
            by the next one, counted and reported at the end of the epoch.
        keep_negatives: keep images without any box (default ``True``: they are valid
            negative samples); ``False`` leaves them out, with a count in the log. Validation
            sets built from a config always keep them.
        strict: annotations of images that do not exist are an error instead of a warning.
        crowds: what ``iscrowd: 1`` annotations are: ``"ignore"`` (default, COCO's meaning):
            regions neither learnt nor scored (detections inside them are not false
            positives); ``"objects"``: objects like any other, learnt and scored (CVAT's
            COCO 1.0 export writes masks drawn with its brush as ``iscrowd: 1`` RLE; VOC's
            ``difficult`` objects, read as crowds, are learnt too).
        image_check: ``"header"`` (default) or ``"decode"`` (:data:`~visionkit.data.checks.
            IMAGE_CHECKS`): how construction checks the image files.
    """

    #: The argument that names the dataset folder.
    location: ClassVar[str] = "images"
    #: The arguments that are paths of their own (not names under the folder), each checked
    #: to exist when a checkpoint is evaluated on the data its config saved.
    path_arguments: ClassVar[tuple[str, ...]] = ("images", "annotations")
    #: The Sample targets it can produce.
    targets: ClassVar[tuple[str, ...]] = (
        *("boxes", "masks", "semantic", "class", "keypoints", "identities"),
    )
    #: Target → the flag argument that switches it on when a head needs it and the config
    #: leaves it ``None`` (``boxes`` are on by default: ``instances``; ``class`` needs a
    #: ``class_field``).
    target_flags: ClassVar[Mapping[str, str]] = {
        "masks": "masks",
        "semantic": "semantic",
        "keypoints": "keypoints",
        "identities": "identities",
    }

    def __init__(
        self,
        images: str | None = None,
        annotations: str | None = None,
        class_field: str | None = None,
        class_names: list[str] | None = None,
        instances: bool = True,
        masks: bool | Literal["auto"] | None = None,
        semantic: bool | Literal["auto"] | None = None,
        ignore_index: int = IGNORE_PIXEL,
        on_bad_image: Literal["error", "skip"] = "error",
        keep_negatives: bool = True,
        strict: bool = False,
        keypoints: bool | Literal["auto"] | None = None,
        identities: bool | Literal["auto"] | None = None,
        crowds: Literal["ignore", "objects"] = "ignore",
        *,
        image_check: Literal["header", "decode"] = "header",
    ) -> None:
        self.on_bad_image = policy(on_bad_image, "on_bad_image", ("error", "skip"))
        self.crowds = policy(crowds, "crowds", ("ignore", "objects"))
        image_check = policy(image_check, "image_check", IMAGE_CHECKS)
        self.root = dataset_root(images)
        self.ann_path = Path(annotations) if annotations else default_annotations(self.root)
        data = self.read_annotations()
        annotations_list = data.get("annotations") or []
        masks = switched_on(masks, annotations_list, "masks")
        semantic = switched_on(semantic, annotations_list, "semantic")
        keypoints = switched_on(keypoints, annotations_list, "keypoints")
        identities = switched_on(identities, annotations_list, "identities")
        self.class_field = class_field
        self.instances = instances
        self.masks = masks
        self.semantic = semantic
        self.ignore_index = int(ignore_index)
        if self.ignore_index != IGNORE_PIXEL:
            logger.warning(
                "%s: ignore_index %d is not used: crowd regions of the semantic map are always "
                "%d, which heads and metrics ignore",
                self.ann_path,
                self.ignore_index,
                IGNORE_PIXEL,
            )
        self.report = report = DataReport(str(self.ann_path), self.format_name)
        self.add_source_problems(report)
        check_ids(data, report, crowds_are_objects=self.crowds == "objects")
        report_text_crowds(annotations_list, report)  # "0" / "1": read, and said
        unread = fill_missing_sizes(data["images"], self.root, report)
        self.images: list[dict[str, Any]] = valid_images(data["images"], report, unread)
        report.num_images = len(data["images"])
        categories = valid_categories(data.get("categories", []), report, annotations_list)
        self._text_category_ids = has_text_ids(data.get("categories"))  # for the advice
        self.category_ids = [int(c["id"]) for c in categories]
        self.cat_to_label = {cid: i for i, cid in enumerate(self.category_ids)}
        self.label_names: dict[str, list[str]] = {
            "instances": [category_name(c) for c in categories]
        }
        if semantic:
            self.label_names["semantic"] = ["background", *self.label_names["instances"]]
        self.paths = resolve_paths(self.root, self.images, report)
        inside = [i for i, path in enumerate(self.paths) if path is not None]
        files = [
            ImageFile(
                self.paths[i], self._where(i), (self.images[i]["height"], self.images[i]["width"])
            )
            for i in inside
        ]
        bad_severity = "warning" if self.on_bad_image == "skip" else "error"
        sizes: list[tuple[int, int] | None] = [None] * len(self.images)
        for i, size in zip(
            inside,
            check_image_files(files, report, image_check, bad_image_severity=bad_severity),
            strict=True,
        ):
            sizes[i] = size
        missing = [
            str(self.images[i]["file_name"])
            for i in inside
            if sizes[i] is None and not self.paths[i].exists()
        ]
        if missing:
            report.hints.append(missing_files_hint(self.root, missing))
        listed = listed_ids(data["images"])  # bad entries' too: their annotations are no orphans
        wrong_size = {  # reported as a size mismatch: its boxes cannot be checked
            i
            for i, (size, img) in enumerate(zip(sizes, self.images, strict=True))
            if size is not None and tuple(size) != (img["height"], img["width"])
        }
        self.targets = self._index_annotations(annotations_list, strict, listed, wrong_size)
        self.keypoints = bool(keypoints)
        if self.keypoints:  # names, skeleton, flip pairs; [N, K, 3] per image
            ids = [img["id"] for img in self.images]
            declared = [(img["height"], img["width"]) for img in self.images]
            self.keypoint_schema = attach_keypoints(
                self.targets, annotations_list, categories, ids, report, declared
            )
        self.identities = bool(identities)
        if self.identities:  # an identity index per box, the "identity" family
            read_identities(self, annotations_list, report)
        if masks or semantic:  # the geometry pycocotools will decode (segmentation_checks)
            check_segmentations(self.images, self.targets, self._where, report)
        if class_field is not None:
            self.classes, self.label_names["class"] = read_image_classes(
                data, self.images, class_field, class_names, self._where, report
            )
        keep = self._apply_policies([s is not None for s in sizes], keep_negatives)
        record_statistics(self, keep)
        report.raise_for_errors()
        self._select(keep)
        objects = any(len(t["boxes"]) for t in self.targets)
        if (masks or semantic) and objects and not self.gives_target("masks"):
            report.notes.append(
                "no image with objects gives masks or a label map: each has an annotation "
                "without a usable segmentation (boxes without masks): the set trains boxes only"
            )

    #: The format named in reports (subclasses that convert another format say theirs).
    format_name: ClassVar[str] = "coco"

    def add_source_problems(self, report: DataReport) -> None:
        """Problems of the files :meth:`read_annotations` read, for the report (a converting
        reader's unusable XML / txt files); a json file has none of its own."""

    def read_annotations(self) -> dict[str, Any]:
        """The COCO object: the json file. Readers of other formats (VOC XML, YOLO txt)
        override this to convert theirs in memory and reuse every check of this class."""
        return read_json(self.ann_path)

    # ------------------------------------------------------------------ construction checks

    def _where(self, index: int) -> str:
        img = self.images[index]
        return f"{img['file_name']} (image id {img['id']})"

    def _index_annotations(
        self, annotations: list[Any], strict: bool, listed: set[Any], wrong_size: set[int]
    ) -> list[dict[str, Any]]:
        """Each image's targets; ``listed``: the ids of every image entry of the file, those
        already reported as bad entries too (their annotations are not orphans);
        ``wrong_size``: images whose file has another size than their entry (an error of its
        own), whose boxes are not reported against the wrong size."""
        report = self.report
        index = {img["id"]: i for i, img in enumerate(self.images)}
        per_image: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        crowds: dict[int, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        self.boxes_from_segmentation: dict[int, DerivedBox] = {}  # by position in the file
        unknown: list[tuple[Any, Any, str]] = []  # (category_id, annotation id, where)
        for position, ann in enumerate(annotations):
            if not isinstance(ann, dict):
                report.add("bad box", f"annotation {str(ann)[:40]}", "not an object")
                continue
            image = self.images[index[ann["image_id"]]] if ann.get("image_id") in index else None
            derived = box_from_segmentation(ann, image)
            if derived is not None:  # read as if the file had it; the kept ground truth too
                self.boxes_from_segmentation[position] = derived
                ann = {**ann, "bbox": derived[0]}
            where = f"annotation id {ann.get('id')} (image id {ann.get('image_id')})"
            if ann.get("category_id") not in self.cat_to_label:  # reported once per id, below
                unknown.append((ann.get("category_id"), ann.get("id"), where))
            elif ann.get("image_id") not in index:
                if ann.get("image_id") in listed:  # its image's entry is reported already
                    continue
                report.add(
                    "orphan annotation",
                    f"annotation id {ann.get('id')}",
                    f"image_id {ann.get('image_id')!r} is not an image of the file",
                    severity="error" if strict else "warning",
                )
            elif not is_box(ann.get("bbox")):
                report.add("bad box", where, bad_box_detail(ann, image))
            elif (crowd := is_crowd(ann.get("iscrowd"))) is None:  # NaN, 2, "yes": not guessed
                report.add("bad iscrowd", where, bad_crowd_detail(ann.get("iscrowd")))
            elif crowd and self.crowds == "ignore":
                crowds[index[ann["image_id"]]].append((position, ann))
            else:
                per_image[index[ann["image_id"]]].append((position, ann))
        report_unknown_categories(unknown, self.category_ids, report, self._text_category_ids)
        report_boxes_from_segmentation(self.boxes_from_segmentation, annotations, report)
        targets = []
        for i, img in enumerate(self.images):
            positions, anns = [k for k, _ in per_image[i]], [a for _, a in per_image[i]]
            boxes, keep = clip_boxes(anns, img, None if i in wrong_size else report)
            labels = np.array([self.cat_to_label[a["category_id"]] for a in anns], dtype=np.int64)
            targets.append(
                {
                    "boxes": boxes[keep].astype(np.float32).reshape(-1, 4),
                    "labels": labels[keep],
                    "ann_ids": [a.get("id") for a, k in zip(anns, keep, strict=True) if k],
                    "ann_index": [k for k, kept in zip(positions, keep, strict=True) if kept],
                    "segmentations": [
                        a.get("segmentation") for a, k in zip(anns, keep, strict=True) if k
                    ],
                    "crowd_index": [k for k, _ in crowds[i]],
                    "crowd_segmentations": [a.get("segmentation") for _, a in crowds[i]],
                    "crowd_boxes": [a["bbox"] for _, a in crowds[i]],
                }
            )
        return targets

    def _apply_policies(self, readable: list[bool], keep_negatives: bool) -> list[bool]:
        """Which images stay: readable ones (under ``on_bad_image: skip``), with boxes unless
        ``keep_negatives``. An empty result is an error with the breakdown."""
        keep = list(readable) if self.on_bad_image == "skip" else [True] * len(self.images)
        unreadable = keep.count(False)
        negatives = 0
        if self.instances and not keep_negatives:
            for i, target in enumerate(self.targets):
                if keep[i] and len(target["boxes"]) == 0:
                    keep[i] = False
                    negatives += 1
            if negatives:
                self.report.notes.append(
                    f"left out {negatives} images without boxes (keep_negatives: false)"
                )
                logger.info(
                    "%s: left out %d images without boxes (keep_negatives: false)",
                    self.ann_path,
                    negatives,
                )
        if unreadable:
            self.report.notes.append(
                f"left out {unreadable} missing or unreadable images (on_bad_image: skip)"
            )
        total = self.report.num_images
        if not any(keep) and not self.report.errors:
            parts = [f"{unreadable} missing or unreadable (on_bad_image: skip)"] * bool(unreadable)
            parts += [f"{negatives} without boxes (keep_negatives: false)"] * bool(negatives)
            invalid = total - len(self.images)
            parts += [f"{invalid} invalid entries"] * bool(invalid)
            breakdown = f": {', '.join(parts)}" if parts else ""
            self.report.add(
                "empty dataset",
                str(self.ann_path),
                f"0 of {total} images kept{breakdown}" if total else "the file lists no images",
            )
        return keep

    def _select(self, keep: list[bool]) -> None:
        """Keep the images that passed the policies (images, paths, targets and classes
        together)."""
        if not all(keep):
            self.images = [x for x, k in zip(self.images, keep, strict=True) if k]
            self.paths = [x for x, k in zip(self.paths, keep, strict=True) if k]
            self.targets = [x for x, k in zip(self.targets, keep, strict=True) if k]
            if self.class_field is not None:
                self.classes = [x for x, k in zip(self.classes, keep, strict=True) if k]
        self.index_of_id = {int(img["id"]): i for i, img in enumerate(self.images)}

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
            out[decode_segmentation(seg, h, w) > 0] = IGNORE_PIXEL
        return out

    def load_semantic(self, image_id: int) -> np.ndarray | None:
        """The semantic label map of the image with this id, at its original size (what the
        semantic evaluator scores against); ``None`` for an image without one (an annotation
        of it has no segmentation: :func:`~visionkit.data.readers.segmentation_checks.
        check_segmentations`)."""
        index = self.index_of_id[int(image_id)]
        return self.semantic_mask(index) if self.has_masks(index) else None

    def has_masks(self, index: int) -> bool:
        """Whether every annotation of sample ``index`` has a usable segmentation (always
        ``True`` when segmentations are not read): only then does it give instance masks and
        a label map."""
        return self.targets[index].get("has_masks", True)

    def gives_target(self, target: str) -> bool:
        """Whether an image with objects gives ``target``: ``masks`` and ``semantic`` only
        where every annotation of the image has a usable segmentation (:meth:`has_masks`),
        so a file whose every such image holds a box without one gives neither; the other
        targets follow their flags alone (:func:`~visionkit.data.datasets.gives`)."""
        if target not in ("masks", "semantic"):
            return True
        return any(len(t["boxes"]) and t.get("has_masks", True) for t in self.targets)

    def coco_ground_truth(self) -> dict[str, Any]:
        """The COCO object of what this dataset kept, which its evaluator scores against
        rather than the raw file: the kept images, and the annotations left after every drop
        (zero-area boxes, ...) with the segmentation the reader uses, and the images whose
        masks are not scored (:func:`~visionkit.data.readers.coco_format.kept_ground_truth`),
        each box taken from a segmentation in place of a missing one."""
        names = self.label_names["instances"]
        categories = [{"id": c, "name": n} for c, n in zip(self.category_ids, names, strict=True)]
        checked = self.masks or self.semantic
        return kept_ground_truth(
            self.read_annotations(),
            self.images,
            self.targets,
            categories,
            checked,
            str(self.ann_path),
            self.boxes_from_segmentation,
        )

    # ------------------------------------------------------------------ access

    def path_of(self, index: int) -> str:
        """The image file of sample ``index`` (without reading it)."""
        return str(self.paths[index])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Sample:
        return read_or_skip(self._load, index, len(self), self.on_bad_image)

    def _load(self, index: int) -> Sample:
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
        if self.masks and self.has_masks(index):
            sample["masks"] = self.instance_masks(index)
        if self.keypoints:
            sample["keypoints"] = self.targets[index]["keypoints"].copy()
            sample["keypoint_flip"] = self.keypoint_schema.flip
        if self.identities:
            sample["identities"] = self.targets[index]["identities"].copy()
        if self.semantic and self.has_masks(index):
            sample["semantic"] = self.semantic_mask(index)
        if (self.masks or self.semantic) and image.shape[:2] != (info["height"], info["width"]):
            raise AnnotationError(
                f"{self.paths[index]} (image id {info['id']}): the image is "
                f"{image.shape[0]}x{image.shape[1]} but the annotation file says "
                f"{info['height']}x{info['width']} (height x width); its masks cannot be aligned"
            )
        if self.class_field is not None and self.classes[index] >= 0:
            sample["class"] = self.classes[index]
        return sample
