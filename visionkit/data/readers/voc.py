"""Pascal VOC XML and YOLO txt datasets, read as they are published.

Both convert their annotations to a COCO object in memory (the converters of
:mod:`visionkit.data.convert`, nothing written) and hand it to
:class:`~visionkit.data.readers.coco.CocoDataset`, so every check, policy and report of
that reader applies, and evaluation sees the same COCO ground truth as for a converted
dataset. Boxes the converter leaves out (zero area) or clips to their image are warnings
of the dataset's report (``box dropped``, ``box clipped``), as the COCO reader's own.

>>> ds = VocDataset("raccoon")  # annotations/ + images/, or Annotations/ + JPEGImages/  # doctest: +SKIP
>>> ds = YoloDataset("coco8/data.yaml", split="val")  # an Ultralytics dataset file  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from visionkit.data.checks import policy
from visionkit.data.convert.coco_builder import Conversion
from visionkit.data.convert.voc import voc_folders, voc_to_coco
from visionkit.data.convert.yolo import yolo_to_coco
from visionkit.data.readers.coco import CocoDataset
from visionkit.errors import ConfigError, counted
from visionkit.registry import DATASETS


class _ConvertedDataset(CocoDataset):
    """A :class:`CocoDataset` whose COCO object a converter makes from another format."""

    location: ClassVar[str] = "root"
    targets: ClassVar[tuple[str, ...]] = ("boxes", "masks", "semantic")
    path_arguments: ClassVar[tuple[str, ...]] = ("root",)  # annotations, images: names in it
    _source_problems: Sequence[str] = ()  # the converter's, set by read_annotations
    _dropped: Sequence[Sequence[str]] = ()  # the problems of each file left out (skip)
    _boxes: Sequence[tuple[str, str]] = ()  # (kind, "where: what"): boxes dropped / clipped, ...
    _sources: Mapping[str, str] = {}  # image file_name -> the annotation file to name (LabelMe)

    def _reader_options(
        self, on_bad_label: str, kwargs: dict[str, Any], instead: str | None = None
    ) -> None:
        """Check ``on_bad_label``; with ``instead``, refuse :class:`CocoDataset`'s ``images``
        and ``annotations`` in ``kwargs`` (this reader finds its files itself), saying to give
        ``instead``."""
        self.on_bad_label = policy(on_bad_label, "on_bad_label", ("error", "skip"))
        for key in ("images", "annotations") if instead else ():
            if kwargs.pop(key, None) is not None:
                raise ConfigError(f"format {self.format_name} takes no {key!r}: give {instead}")

    def _convert(self, converter: Callable[..., Conversion], *args: Any) -> Conversion:
        """``converter(*args)`` under ``on_bad_label``, its problems kept for the report."""
        self._source_problems: list[str] = []  # reported with the image checks
        skip_bad = self.on_bad_label == "skip"
        return converter(*args, problems=self._source_problems, skip_bad=skip_bad)

    def _converted(self, conversion: Conversion) -> dict[str, Any]:
        self._dropped = conversion.dropped
        self._sources = conversion.sources
        self._errors_in = conversion.errors_in
        self._boxes = [
            *(("box dropped", s) for s in conversion.skipped),
            *(("box clipped", s) for s in conversion.clipped),
            *conversion.warnings,
        ]
        return conversion.coco

    def _where(self, index: int) -> str:
        """An image in reports: its annotation file first where that is not the image's own
        (a LabelMe json: what to fix when its ``imageHeight`` is wrong), then the image."""
        img = self.images[index]
        source = self._sources.get(img["file_name"])
        if source is None:
            return super()._where(index)
        return f"{source} (image {img['file_name']}, image id {img['id']})"

    def add_source_problems(self, report: Any) -> None:
        """The files the converter could not use, as errors of the report: ``check-data``
        lists them with every problem of the images, and training stops on them."""
        for problem in self._source_problems:
            where, _, what = problem.partition(": ")
            report.add("bad annotation file", where, what)
        for problems in self._dropped:
            for problem in problems:
                where, _, what = problem.partition(": ")
                report.add("bad annotation file", where, f"{what} (left out)", "warning")
        for kind, problem in self._boxes:  # as the COCO reader reports the boxes it changes
            where, _, what = problem.partition(": ")
            report.add(kind, where, what, "warning")
        if self._source_problems and self._errors_in:  # as convert's error says
            report.notes.append(f"annotation files: {self._errors_in}")
        if self._dropped:
            files = counted(len(self._dropped), "annotation file")
            report.notes.append(f"left out {files} with problems (on_bad_label: skip)")


@DATASETS.register("voc")
class VocDataset(_ConvertedDataset):
    """A Pascal VOC folder: one XML file per image, read directly (no conversion step).

    Args:
        root: the dataset folder.
        annotations: the XML folder's name under ``root`` (default: ``Annotations`` or
            ``annotations``, whichever exists, else ``root`` itself when it holds XML files,
            each beside its image as labelImg saves them); sub-folders are read too.
        images: the image folder's name under ``root`` (default: ``JPEGImages``, ``images``
            or ``Images``).
        split: read only the ids of ``ImageSets/Main/<split>.txt``.
        class_names: the classes in order. Give them whenever the splits are read
            separately: by default each split takes the sorted object names it holds, and a
            split without some class would number the others differently (the training and
            validation lists are compared when datasets are built).
        on_bad_label: ``"error"`` (default): a malformed XML file, an unknown class or a
            missing image stops construction, with every such problem listed; ``"skip"``:
            each such file is left out with its image, counted, logged and listed by
            ``check-data`` as a warning.
        **kwargs: the options of :class:`CocoDataset` (``on_bad_image``, ``keep_negatives``,
            ``masks``, ``semantic``, ...).
    """

    format_name: ClassVar[str] = "voc"

    def __init__(
        self,
        root: str | None = None,
        annotations: str | None = None,
        images: str | None = None,
        split: str | None = None,
        class_names: Sequence[str] | None = None,
        on_bad_label: Literal["error", "skip"] = "error",
        **kwargs: Any,
    ) -> None:
        self._reader_options(on_bad_label, kwargs)
        self._source = (annotations, images, split, class_names)
        xml_dir, _ = voc_folders(Path(str(root)), annotations, images)
        super().__init__(images=root, annotations=str(xml_dir), **kwargs)

    def read_annotations(self) -> dict[str, Any]:
        annotations, images, split, class_names = self._source
        conversion = self._convert(voc_to_coco, self.root, split, class_names, annotations, images)
        return self._converted(conversion)


@DATASETS.register("yolo")
class YoloDataset(_ConvertedDataset):
    """YOLO txt labels, read directly: a folder (``images/`` + ``labels/`` + ``classes.txt``
    or ``data.yaml``) or an Ultralytics dataset file.

    Args:
        root: the YOLO folder, or the ``data.yaml`` of an Ultralytics dataset (its ``path``,
            ``train`` / ``val`` / ``test`` entries and ``names`` are read as Ultralytics reads
            them; a pose dataset's ``kpt_shape``, ``flip_idx`` and ``kpt_names`` too), or
            CVAT's YOLO 1.1 export (``obj.data``, :mod:`~visionkit.data.convert.darknet`).
        split: the sub-folder ``images/<split>`` of a folder; the entry of a ``data.yaml``
            (required there); the subset of an ``obj.data``.
        class_names: the classes in index order (default: the dataset's own list).
        on_bad_label: ``"error"`` (default): a bad line, an unreadable label file or a label
            file without an image stops construction, with every such problem listed;
            ``"skip"``: each such file is left out with its image, counted, logged and listed
            by ``check-data`` as a warning (Ultralytics ignores a corrupt label file).
        **kwargs: the options of :class:`CocoDataset`.
    """

    format_name: ClassVar[str] = "yolo"
    targets: ClassVar[tuple[str, ...]] = (*_ConvertedDataset.targets, "keypoints")  # pose

    def __init__(
        self,
        root: str | None = None,
        split: str | None = None,
        class_names: Sequence[str] | None = None,
        on_bad_label: Literal["error", "skip"] = "error",
        **kwargs: Any,
    ) -> None:
        self._reader_options(
            on_bad_label, kwargs, "root (the YOLO folder or a data.yaml) and split"
        )
        self._conversion = conversion = self._convert(
            yolo_to_coco, Path(str(root)), split, class_names
        )
        base = conversion.coco["info"].get("root") or str(root)
        super().__init__(images=base, annotations=str(root), **kwargs)

    def read_annotations(self) -> dict[str, Any]:
        return self._converted(self._conversion)

    def add_source_problems(self, report: Any) -> None:
        """The converter's problems, and a note of the images without a label file (read as
        images without objects, as Ultralytics reads them, but also what a label file of
        another name leaves), apart from those whose label file is empty."""
        super().add_source_problems(report)
        kept = {im["file_name"] for im in self._conversion.coco["images"]}
        unlabelled = [name for name in self._conversion.unlabelled if name in kept]
        if unlabelled:
            shown = ", ".join(unlabelled[:3]) + (", ..." if len(unlabelled) > 3 else "")
            report.notes.append(
                f"{counted(len(unlabelled), 'image')} without a label file, read as images "
                f"without objects: {shown}"
            )
