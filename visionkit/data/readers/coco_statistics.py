"""What ``check-data`` reports of a COCO file beyond its problems (the reader's statistics)."""

from __future__ import annotations

import logging
from typing import Any

from visionkit.data.checks import count_classes
from visionkit.data.convert.labelme_shapes import ignore_regions
from visionkit.data.readers.coco_identities import identity_statistics
from visionkit.data.readers.coco_keypoints import keypoint_statistics
from visionkit.errors import counted

logger = logging.getLogger(__name__)


def record_statistics(dataset: Any, keep: list[bool]) -> None:
    """The statistics of a :class:`~visionkit.data.readers.coco.CocoDataset`'s ``report``
    (what ``check-data`` prints) over the images that ``keep`` keeps: boxes per image, images
    without boxes, counts per class, crowd regions, keypoints labelled, identities, and the
    image-class images without boxes of a file with boxes."""
    report = dataset.report
    report.num_kept = sum(keep)
    kept = [t for t, k in zip(dataset.targets, keep, strict=True) if k]
    if dataset.instances:
        labels = []
        for i, target in enumerate(dataset.targets):
            if not keep[i]:
                continue
            n = len(target["boxes"])
            report.boxes_per_image.append(n)
            report.num_annotations += n
            labels += target["labels"].tolist()
            if n == 0:
                report.empty_images.append(dataset._where(i))
        report.class_counts["instances"] = count_classes(labels, dataset.label_names["instances"])
        crowds = sum(len(t["crowd_index"]) for t in kept)
        voc = getattr(dataset, "format_name", None) == "voc"  # crowds: <difficult>1 objects
        labelme = getattr(dataset, "format_name", None) == "labelme"  # __ignore__ regions
        if labelme:  # one __ignore__ shape is a crowd region of each class: counted once
            crowds = ignore_regions(crowds, len(dataset.label_names["instances"]))
        if crowds:  # neither trained on nor counted as objects; scored as COCO ignores them
            what, read_as = (
                ("difficult object", "<difficult>1, read as iscrowd: 1")
                if voc
                else ("ignore region", "__ignore__ shapes, each an iscrowd: 1 of every class")
                if labelme
                else ("crowd region", "iscrowd: 1")
            )
            note = (
                f"{counted(crowds, what)} ({read_as}): not boxes to learn; evaluation ignores "
                "detections inside them, as COCO does"
            )
            if crowds >= report.num_annotations and not (voc or labelme):  # a tool's masks?
                note += (
                    f" ({crowds} of {crowds + report.num_annotations} annotations; if they are "
                    "objects, as CVAT's COCO 1.0 export writes masks drawn with its brush, read "
                    "them as objects: crowds: objects in the dataset entry)"
                )
                logger.warning("%s: %s", dataset.ann_path, note)
            report.notes.append(note)
    if dataset.keypoints and dataset.keypoint_schema is not None:
        report.notes += keypoint_statistics(kept, dataset.keypoint_schema.names)
    if dataset.identities:
        report.notes += identity_statistics(kept, dataset.label_names["identity"])
    if dataset.class_field is not None:
        classes = [c for c, k in zip(dataset.classes, keep, strict=True) if k and c >= 0]
        report.class_counts["class"] = count_classes(classes, dataset.label_names["class"])
        boxless = report.num_annotations and sum(  # partial labels COCO cannot say
            k and c >= 0 and not len(t["boxes"])
            for c, k, t in zip(dataset.classes, keep, dataset.targets, strict=True)
        )
        if boxless:
            report.notes.append(
                f"{boxless} images with a {dataset.class_field!r} class and no boxes: box "
                "heads learn them as images with no object (a set of their own with "
                "instances: false, if their objects are not annotated: docs/multitask.md)"
            )
