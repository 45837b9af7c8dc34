"""``visionkit convert``: Pascal VOC, YOLO or LabelMe folders to a COCO json file, written next
to the data and never over it.

The source folder is only read. The output must be a ``.json`` file; an existing file inside
the source folder (or the class names file) is never replaced, and an existing file elsewhere
only with ``overwrite=True``. The file is written atomically
(:func:`visionkit.checkpoint.write_atomic`). ``file_name`` entries are relative to the source
folder, so the result is read with ``{format: coco, images: SRC, annotations: DST}``.

>>> report = convert("my_yolo", "my_yolo_train.json", "yolo", split="train")  # doctest: +SKIP
>>> print(report.summary())  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from visionkit.checkpoint import write_atomic
from visionkit.data.batch import dataset_root, read_from
from visionkit.data.convert.coco_builder import Conversion, read_class_names
from visionkit.data.convert.labelme import labelme_to_coco
from visionkit.data.convert.labelme_shapes import ignore_regions
from visionkit.data.convert.voc import voc_to_coco
from visionkit.data.convert.yolo import ultralytics_folder, yolo_to_coco
from visionkit.errors import DataError, counted

CONVERTERS: dict[str, Callable[..., Conversion]] = {
    "voc": voc_to_coco,
    "yolo": yolo_to_coco,
    "labelme": labelme_to_coco,
}
TARGETS = ("coco",)


@dataclass
class ConvertReport:
    """What one conversion wrote."""

    output: Path
    source_format: str
    images: int
    negatives: int  # images without objects (crowds aside), as check-data counts them
    per_class: dict[str, int]  # annotations per class name, in category order
    ignored: int  # annotations written with iscrowd 1 (VOC difficult, LabelMe __ignore__)
    skipped: list[str] = field(default_factory=list)
    images_root: Path | None = None  # the folder file_name entries are relative to
    split: str | None = None
    clipped: list[str] = field(default_factory=list)  # boxes clipped to their image (kept)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (kind, "where: what")
    # LabelMe: the __ignore__ shapes, each written as `ignored` / classes crowd annotations;
    # per_class then counts the objects only
    ignore_regions: int = 0

    def summary(self) -> str:
        """A few lines for the terminal."""
        total = sum(self.per_class.values())
        if self.ignore_regions:
            regions = counted(self.ignore_regions, "__ignore__ region")
            counts = (
                f"{counted(total, 'object')} and {regions} (written as "
                f"{counted(self.ignored, 'crowd annotation')}: one per class)"
            )
        else:
            counts = counted(total, "annotation") + (
                f" ({self.ignored} difficult, written as iscrowd 1)" if self.ignored else ""
            )
        lines = [
            f"converted {self.source_format} -> coco: {counted(self.images, 'image')} "
            f"({self.negatives} without objects), {counts}",
            f"{'objects' if self.ignore_regions else 'annotations'} per class:",
            *(f"  {name}: {n}" for name, n in self.per_class.items()),
            f"skipped: {len(self.skipped)}",
            *(f"  {s}" for s in self.skipped[:10]),
        ]
        if len(self.skipped) > 10:
            lines.append(f"  ... and {len(self.skipped) - 10} more")
        if self.clipped:  # kept, clipped to the image (as training reads them)
            lines.append(f"clipped to the image: {len(self.clipped)}")
            lines += [f"  {s}" for s in self.clipped[:10]]
            if len(self.clipped) > 10:
                lines.append(f"  ... and {len(self.clipped) - 10} more")
        if self.warnings:  # of the source: shapes left out, images found by their name, ...
            lines.append(f"warnings: {len(self.warnings)}")
            lines += [f"  {kind}: {what}" for kind, what in self.warnings[:10]]
            if len(self.warnings) > 10:
                lines.append(f"  ... and {len(self.warnings) - 10} more")
        kinds = len(self.skipped), len(self.clipped), len(self.warnings)
        if sum(kinds):  # the lines check-data prints of the annotations, counted as it does
            lines.append(
                f"check-data counts these as {counted(sum(kinds), 'warning')} (box dropped "
                "{}, box clipped {}, other {})".format(*kinds)
            )
        lines.append(f"wrote {self.output}")
        if self.images_root is not None:
            lines.append(
                f"read it with: data.{self.split if self.split in ('val', 'test') else 'train'}"
                f"='{{format: coco, images: {self.images_root}, annotations: {self.output}}}'"
            )
        return "\n".join(lines)


def to_coco(
    src: str | os.PathLike,
    source_format: str,
    split: str | None = None,
    classes: str | os.PathLike | None = None,
) -> Conversion:
    """Convert ``src`` in memory (nothing is written): a COCO object and the skipped objects.

    Args:
        src: the source folder (VOC: ``Annotations/``, ``JPEGImages/``; YOLO: ``images/``,
            ``labels/`` and ``classes.txt`` or ``data.yaml``; LabelMe: json files beside their
            images).
        source_format: ``"voc"``, ``"yolo"`` or ``"labelme"``.
        split: VOC: ``ImageSets/Main/<split>.txt``; YOLO: ``images/<split>``, ``labels/<split>``;
            LabelMe: ``splits/<split>.txt``.
        classes: a class names file (one per line, or a YAML file with ``names``), which sets
            the categories and their order.
    """
    if source_format not in CONVERTERS:
        raise DataError(
            f"unknown source format {source_format!r}; expected one of {list(CONVERTERS)}"
        )
    names = read_class_names(classes) if classes is not None else None
    return CONVERTERS[source_format](src, split=split, class_names=names)


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    source_format: str,
    target_format: str = "coco",
    split: str | None = None,
    classes: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> ConvertReport:
    """Convert the dataset in ``src`` and write COCO json to ``dst``.

    Raises:
        DataError: a bad destination (not ``.json``, a folder, an existing file inside ``src``
            or the class names file, an existing file without ``overwrite``) or a bad layout.
        AnnotationError: every problem of the annotations, in one report.
    """
    if target_format not in TARGETS:
        raise DataError(f"unknown target format {target_format!r}; expected one of {TARGETS}")
    source = _source(src, source_format)
    root = source.parent if source.is_file() else source
    out = _check_destination(root, Path(dst), classes, overwrite)
    images_root = ultralytics_folder(source) if source.is_file() else root
    if images_root != root:  # a data.yaml's dataset folder (its path:) is only read too
        _check_destination(images_root, Path(dst), classes, overwrite)
    conversion = to_coco(source, source_format, split, classes)
    coco, skipped = conversion.coco, conversion.skipped
    coco["info"]["source"] = str(source)
    write_atomic(out, lambda tmp: tmp.write_text(json.dumps(coco, ensure_ascii=False), "utf-8"))
    labelme = source_format == "labelme"  # its crowds: __ignore__ shapes, one per class each
    crowds = sum(1 for a in coco["annotations"] if a["iscrowd"])
    counts = Counter(
        a["category_id"] for a in coco["annotations"] if not (labelme and a["iscrowd"])
    )
    with_objects = {a["image_id"] for a in coco["annotations"] if not a["iscrowd"]}
    return ConvertReport(
        output=out,
        source_format=source_format,
        images=len(coco["images"]),
        negatives=len(coco["images"]) - len(with_objects),
        per_class={c["name"]: counts.get(c["id"], 0) for c in coco["categories"]},
        ignored=crowds,
        ignore_regions=ignore_regions(crowds, len(coco["categories"])) if labelme else 0,
        skipped=skipped,
        images_root=images_root,
        split=split,
        clipped=conversion.clipped,
        warnings=conversion.warnings,
    )


def _source(src: str | os.PathLike, source_format: str) -> Path:
    """The folder to convert, or for ``yolo`` an Ultralytics dataset file, resolved."""
    path = Path(src)
    if source_format == "yolo" and path.suffix.lower() in (".yaml", ".yml"):
        if not path.is_file():
            raise DataError(
                f"Ultralytics dataset file {src} does not exist{read_from(path, ' (', ')')}"
            )
        return path.resolve()
    return dataset_root(src).resolve()


def _check_destination(
    root: Path, dst: Path, classes: str | os.PathLike | None, overwrite: bool
) -> Path:
    out = dst.resolve()
    if out.is_dir():
        raise DataError(f"destination {dst} is a folder; give the path of a .json file")
    if out.suffix.lower() != ".json":
        raise DataError(f"destination {dst} must be a .json file")
    if not out.exists():
        return out
    if out.is_relative_to(root):
        raise DataError(
            f"refusing to overwrite {dst}: it is inside the source folder {root}, which convert "
            "never modifies; write to a new file"
        )
    if classes is not None and out == Path(classes).resolve():
        raise DataError(f"refusing to overwrite {dst}: it is the class names file")
    if not overwrite:
        raise DataError(f"{dst} already exists; pass --overwrite to replace it")
    return out
