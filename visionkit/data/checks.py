"""Dataset checks: every problem of a dataset and its statistics, in one report.

The readers (``coco``, ``folder``, ``mask_folder``) fill a :class:`DataReport` while they are
built: every annotation is read, and every image file is opened and its header read (no
pixel decoding), so a dataset with problems fails *before* the model is built, with one
error listing all of them. ``visionkit check-data`` builds the same readers and prints the
same report, by default decoding every image in full as well (which also finds truncated
files): the readers take the check as their ``image_check`` argument (:data:`IMAGE_CHECKS`).

Two severities:

* **error** — the dataset cannot be used as it is: a missing or unreadable image file (under
  ``on_bad_image: error``), duplicate ids, an unknown ``category_id``, a malformed box, an
  image whose size differs from the one in the annotation file, a path outside the dataset
  root, a segmentation that pycocotools cannot decode safely (``bad segmentation``: RLE
  counts that do not make up the image, polygon coordinates that are not finite numbers near
  it; :mod:`visionkit.data.readers.segmentation_checks`). The reader raises :class:`~visionkit.errors.DataError` (or
  :class:`~visionkit.errors.AnnotationError`) carrying the report.
* **warning** — the reader repairs it and says so: boxes clipped to the image, boxes of zero
  area dropped, instances with unusable polygons dropped, images skipped under
  ``on_bad_image: skip``, annotations of images that do not exist.

``check-data`` exits 1 when there is an error, and on warnings too with ``--strict``.

>>> report = DataReport("demo.json")
>>> report.add("missing file", "images/a.png (image id 3)")
>>> report.add("box clipped", "annotation id 9", "x2 80.5 > width 80", severity="warning")
>>> print(report.problem_lines()[0])
missing file: images/a.png (image id 3)
>>> len(report.errors), len(report.warnings)
(1, 1)
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from visionkit.data.io import read_image, read_image_header
from visionkit.errors import (
    AnnotationError,
    ConfigError,
    DataError,
    ImageDecodeError,
    counted,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ANNOTATION_KINDS",
    "DataReport",
    "ImageFile",
    "Problem",
    "check_image_files",
    "IMAGE_CHECKS",
    "inspect_samples",
]

#: Problem kinds that are faults of the annotation file (raised as ``AnnotationError`` when
#: they are the only errors); all other kinds concern the image files (``DataError``).
ANNOTATION_KINDS = frozenset(
    {
        "bad entry",
        "duplicate id",
        "unknown category",
        "bad box",
        "bad iscrowd",
        "bad segmentation",
        "size mismatch",
        "path outside root",
        "orphan annotation",
        "bad class",
        "bad keypoints",
        "bad identity",
        "missing label file",
        "bad label file",
        "bad annotation file",  # a VOC XML / YOLO txt the converter could not use
    }
)

MAX_SHOWN_PER_KIND = 10

#: How a reader checks its image files (its ``image_check`` argument): ``"header"`` (open each
#: file and read its header: size, format, pixel limit; what training does) or ``"decode"``
#: (decode every image in full, which also finds truncated files: what ``check-data`` does).
IMAGE_CHECKS = ("header", "decode")


@dataclass(frozen=True)
class Problem:
    """One problem: its ``kind`` (``"missing file"``, ``"duplicate id"``, ...), ``where``
    (the file and/or ids at fault), a ``detail`` (what was expected, what was found) and its
    ``severity`` (``"error"`` or ``"warning"``)."""

    kind: str
    where: str
    detail: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.where}: {self.detail}" if self.detail else self.where


@dataclass
class DataReport:
    """Problems and statistics of one dataset.

    Args:
        source: what was checked (the annotation file, or the dataset folder).
        format: the reader's format name.

    Attributes:
        problems: every :class:`Problem` found, in the order found.
        num_images: images listed by the dataset (before any was skipped).
        num_kept: images the reader kept (after ``on_bad_image: skip`` / ``keep_negatives``).
        num_annotations: annotations (boxes, masks) kept.
        class_counts: label family → class name → count (:func:`count_unit`: instances for
            ``"instances"``, images holding the class for ``"class"`` and ``"semantic"``).
        image_sizes: ``(H, W)`` → number of images.
        boxes_per_image: number of boxes of each image with box labels.
        empty_images: the images without any box (``file (image id N)``).
        notes: other lines for the report (e.g. what a policy removed).
        hints: what to change, for the last lines of the report and of its error (e.g.
            the folder where the missing images are).
    """

    source: str
    format: str = ""
    problems: list[Problem] = field(default_factory=list)
    num_images: int = 0
    num_kept: int = 0
    num_annotations: int = 0
    class_counts: dict[str, Counter] = field(default_factory=dict)
    image_sizes: Counter = field(default_factory=Counter)
    boxes_per_image: list[int] = field(default_factory=list)
    empty_images: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    def add(self, kind: str, where: str, detail: str = "", severity: str = "error") -> None:
        """Record a problem."""
        if severity not in ("error", "warning"):
            raise ValueError(f"severity must be 'error' or 'warning', got {severity!r}")
        self.problems.append(Problem(kind, where, detail, severity))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def problem_lines(
        self, severity: str | None = None, max_per_kind: int = MAX_SHOWN_PER_KIND
    ) -> list[str]:
        """``"kind: where: detail"`` lines grouped by kind, at most ``max_per_kind`` of each
        kind, then ``"... and N more (<kind>)"``."""
        groups: dict[str, list[Problem]] = defaultdict(list)
        for p in self.problems:
            if severity is None or p.severity == severity:
                groups[p.kind].append(p)
        lines = []
        for kind, items in groups.items():
            lines += [f"{kind}: {p}" for p in items[:max_per_kind]]
            if len(items) > max_per_kind:
                lines.append(f"... and {len(items) - max_per_kind} more ({kind})")
        return lines

    def counts_by_kind(self, severity: str | None = None) -> Counter:
        return Counter(p.kind for p in self.problems if severity in (None, p.severity))

    def log_warnings(self) -> None:
        """One log line per kind of repaired problem (what training does about it)."""
        groups: dict[str, list[Problem]] = defaultdict(list)
        for p in self.warnings:
            groups[p.kind].append(p)
        for kind, items in groups.items():
            # a problem of the dataset's own folder is said once, not as "root: ... root: ..."
            first = "; ".join(p.detail if p.where == self.source else str(p) for p in items[:3])
            more = f" (and {len(items) - 3} more)" if len(items) > 3 else ""
            count = f"{len(items)} x " if len(items) > 1 else ""
            logger.warning("%s: %s%s: %s%s", self.source, count, kind, first, more)

    def error(self) -> DataError:
        """The exception that stops training: every error of the report (up to 10 per kind),
        an ``AnnotationError`` when all of them are annotation faults. It carries the report
        as ``.report``."""
        errors = self.errors
        counts = ", ".join(f"{kind}: {n}" for kind, n in self.counts_by_kind("error").items())
        message = f"{self.source}: {counted(len(errors), 'problem')} ({counts}):"
        kinds = {p.kind for p in errors}
        cls = AnnotationError if kinds <= ANNOTATION_KINDS else DataError
        err = cls(message, self.problem_lines("error"), max_shown=10**9, hints=self.hints)
        err.report = self
        return err

    def raise_for_errors(self) -> None:
        """Raise :meth:`error` when the report has errors; log the warnings otherwise."""
        if self.errors:
            raise self.error()
        self.log_warnings()

    def render(self) -> str:
        """The human-readable report that ``check-data`` prints."""
        head = f"{self.format} dataset {self.source}" if self.format else str(self.source)
        lines = [head]
        kept = f" ({self.num_kept} kept)" if self.num_kept != self.num_images else ""
        if self.num_images or not self.counts_by_kind("error")["bad annotation file"]:
            lines.append(f"  images: {self.num_images}{kept}")
        else:  # not "images: 0": every VOC XML / label file naming an image was unusable
            lines.append("  images: none read: every annotation file has errors (below)")
        if self.boxes_per_image:
            per = self.boxes_per_image
            lines.append(
                f"  boxes: {self.num_annotations} (per image: min {min(per)}, "
                f"median {statistics.median(per):g}, max {max(per)})"
            )
            shown = ", ".join(self.empty_images[:5])
            more = (
                f", ... ({len(self.empty_images) - 5} more)" if len(self.empty_images) > 5 else ""
            )
            empty = f": {shown}{more}" if self.empty_images else ""
            lines.append(f"  images without boxes: {len(self.empty_images)}{empty}")
        if self.image_sizes:
            common = self.image_sizes.most_common(5)
            text = ", ".join(f"{h}x{w}: {n}" for (h, w), n in common)
            if len(self.image_sizes) > 5:
                text += f", ... ({len(self.image_sizes) - 5} more sizes)"
            lines.append(f"  image sizes (HxW): {text}")
        for family, counts in self.class_counts.items():
            what = count_unit(family)
            text = ", ".join(f"{name} {n}" for name, n in counts.items())
            lines.append(f"  {what} per class ({family}): {text or 'none'}")
        lines += [f"  {note}" for note in self.notes]
        if not self.problems:
            lines.append("  no problems found")
            return "\n".join(lines)
        for severity, title in (
            ("error", "errors (training stops)"),
            ("warning", "warnings (training goes on)"),
        ):
            found = self.counts_by_kind(severity)
            if found:
                lines.append(f"  {title}: {sum(found.values())}")
                lines += [f"    {line}" for line in self.problem_lines(severity)]
        lines += [f"  hint: {hint}" for hint in self.hints]
        return "\n".join(lines)


def count_unit(family: str) -> str:
    """What ``DataReport.class_counts[family]`` counts: ``"instances"`` (boxes, masks) for
    ``"instances"``, else ``"images"`` (an image's class, the images a class's pixels are in)."""
    return "instances" if family == "instances" else "images"


@dataclass(frozen=True)
class ImageFile:
    """An image file to check: its ``path``, a ``where`` text naming it in reports (e.g.
    ``"images/a.png (image id 3)"``) and the size ``(H, W)`` the annotations declare, if
    any."""

    path: str | os.PathLike
    where: str
    declared: tuple[int, int] | None = None


def _inspect_one(item: ImageFile, decode: bool) -> tuple[str, str, tuple[int, int] | None, int]:
    """``("ok" | "missing file" | "unreadable image", reason, (H, W), EXIF orientation)``."""
    try:
        height, width, orientation = read_image_header(item.path)
        if decode:
            read_image(item.path)
        return "ok", "", (height, width), orientation
    except ImageDecodeError as err:
        kind = "missing file" if err.reason == "file not found" else "unreadable image"
        return kind, err.reason, None, 1


def check_image_files(
    items: Sequence[ImageFile],
    report: DataReport,
    mode: str = "header",
    bad_image_severity: str = "error",
    workers: int | None = None,
    oriented_is_error: bool = False,
) -> list[tuple[int, int] | None]:
    """Open every image: missing files, unreadable images (by header, or by full decode with
    ``mode="decode"``), and sizes that differ from the declared ones go to ``report``.

    Args:
        items: the files.
        report: where problems are recorded; ``image_sizes`` counts the readable ones.
        mode: one of :data:`IMAGE_CHECKS`: ``"header"`` (default) or ``"decode"``.
        bad_image_severity: of missing and unreadable files (``"warning"``: ``skip``).
        workers: threads (default: up to 8); Pillow releases the GIL while it decodes.
        oriented_is_error: an EXIF orientation other than 1 that a size check cannot tell
            from the stored pixels (a flip or half turn, or any on a square image) is an
            error: label images carry none, so one drawn on the stored pixels would not line
            up. A quarter turn of a non-square image is left to the caller, whose label image
            must have the upright size; otherwise only a square image with one is reported,
            as a warning (a size check cannot tell whether its annotations are upright).

    Returns:
        The size ``(H, W)`` of each readable image (EXIF orientation applied), ``None`` for
        the others. A size mismatch is an error whatever the policy: the annotations of that
        image cannot be trusted.
    """
    decode = policy(mode, "image_check", IMAGE_CHECKS) == "decode"
    workers = workers or min(8, os.cpu_count() or 1)
    if len(items) < 64 or workers == 1:
        results = [_inspect_one(item, decode) for item in items]
    else:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda item: _inspect_one(item, decode), items))
    sizes: list[tuple[int, int] | None] = []
    for item, (status, reason, size, orientation) in zip(items, results, strict=True):
        if status != "ok":
            report.add(status, item.where, reason, severity=bad_image_severity)
            sizes.append(None)
            continue
        assert size is not None
        if item.declared is not None and tuple(item.declared) != tuple(size):
            dh, dw = item.declared
            detail = (
                f"the annotation file says {dh}x{dw} (height x width), the image is "
                f"{size[0]}x{size[1]}"
            )
            if (dw, dh) == tuple(size) and orientation in (5, 6, 7, 8):  # turned 90°
                detail += (
                    f" (width and height swapped: the photo's size as stored, which the decoder "
                    f"turns upright by its EXIF orientation {orientation}; if the boxes were drawn "
                    "on it unturned, as labelImg shows it, remove that tag so that it is read as "
                    "stored, e.g. exiftool -Orientation= FILE; else label the upright photo)"
                )
            elif (dw, dh) == tuple(size):
                detail += " (width and height swapped in the annotation file)"
            report.add("size mismatch", item.where, detail)
        elif orientation != 1 and oriented_is_error and not quarter_turn(orientation, size):
            report.add(
                "image with an EXIF orientation",
                item.where,
                f"orientation {orientation}: the decoder turns the pixels upright, and its "
                "label image (which has no orientation) keeps its size either way, so nothing "
                "tells whether the labels were drawn on the upright image; save the image "
                "upright (e.g. PIL.ImageOps.exif_transpose) and its labels to match",
            )
        elif orientation != 1 and size[0] == size[1]:
            report.add(
                "square image with an EXIF orientation",
                item.where,
                f"orientation {orientation}: the decoder turns the pixels upright, and a square "
                "image keeps its size, so a size check cannot tell whether the annotations "
                "describe the upright image or the stored pixels; check that they do the former",
                severity="warning",
            )
        report.image_sizes[size] += 1
        sizes.append(size)
    return sizes


def quarter_turn(orientation: int, size: tuple[int, int]) -> bool:
    """Whether an EXIF ``orientation`` turns an image of upright ``size`` (H, W) by a
    quarter and it is not square: its stored pixels then have the other size, so a label
    image's size tells which of the two it was drawn on."""
    return orientation in (5, 6, 7, 8) and size[0] != size[1]


def inspect_samples(dataset: Any, source: str, format: str = "") -> DataReport:
    """A report for a reader that does not make one itself: reads every sample (decoding
    each image) and records failures with the index and file, and the statistics."""
    report = DataReport(source, format)
    report.num_images = report.num_kept = len(dataset)
    names: Mapping[str, Sequence[str]] = getattr(dataset, "label_names", {}) or {}
    counts: dict[str, Counter] = defaultdict(Counter)
    for i in range(len(dataset)):
        try:
            sample = dataset[i]
        except ImageDecodeError as err:
            kind = "missing file" if err.reason == "file not found" else "unreadable image"
            report.add(kind, f"sample {i} ({err.path})", err.reason)
            continue
        except Exception as err:  # a reader's own failure: report it with the sample index
            report.add("unreadable sample", f"sample {i}", f"{type(err).__name__}: {err}")
            continue
        report.image_sizes[tuple(int(s) for s in sample["image"].shape[:2])] += 1
        if "boxes" in sample:
            labels = [int(x) for x in sample.get("labels", [])]
            report.boxes_per_image.append(len(labels))
            report.num_annotations += len(labels)
            if not labels:
                report.empty_images.append(
                    f"{sample.get('path', i)} (image id {sample['image_id']})"
                )
            _count(counts["instances"], labels, names.get("instances"))
        if "class" in sample:
            _count(counts["class"], [int(sample["class"])], names.get("class"))
    report.class_counts = dict(counts)
    return report


def count_classes(labels: Iterable[int], names: Sequence[str] | None) -> Counter:
    """Label → count, keyed by class name (every class listed, zeros included)."""
    counter: Counter = Counter({name: 0 for name in names or ()})
    _count(counter, labels, names)
    return counter


def _count(counter: Counter, labels: Iterable[int], names: Sequence[str] | None) -> None:
    for label in labels:
        key = names[label] if names is not None and 0 <= label < len(names) else str(label)
        counter[key] += 1


def where_of(path: str | os.PathLike, root: str | os.PathLike | None, **ids: Any) -> str:
    """``"images/a.png (image id 3)"``: the path relative to ``root`` and the ids given."""
    text = os.fspath(path)
    if root is not None:
        with contextlib.suppress(ValueError):  # another drive on Windows
            text = os.path.relpath(text, os.fspath(root))
    extra = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in ids.items())
    return f"{text} ({extra})" if extra else text


def policy(value: str, where: str, choices: Sequence[str]) -> str:
    """Validate a string policy argument of a reader."""
    if value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}")
    return value


SkipRecord = dict[str, Any]


#: What an image that fails to decode during training or evaluation adds to its message (a
#: dataset checks only the headers of its images when it is built, unless ``check-data``
#: decodes them); ``{where}``: the dataset's config entry (``data.val``).
BAD_IMAGE_HINT = (
    " (its header was readable when the dataset was built, the pixels are not); to leave "
    "unreadable images out, set on_bad_image: skip in its dataset's entry ({where}."
    "on_bad_image=skip); to find every one first, run visionkit check-data --config CONFIG "
    "(a run's config.yaml too), which decodes them all"
)


def read_or_skip(
    load: Callable[[int], dict[str, Any]],
    index: int,
    length: int,
    on_bad_image: str,
    max_tries: int = 16,
) -> dict[str, Any]:
    """``load(index)``; under ``on_bad_image="skip"`` an image that cannot be read is replaced
    by the next readable sample, and the sample returned carries a ``"skipped"`` list of
    ``{"index", "path", "reason"}`` records (counted and reported at the end of the epoch by
    the data module). An index outside ``-length..length-1`` is an ``IndexError``, as for a
    list (``for sample in dataset`` stops at the end)."""
    if not -length <= index < length:
        raise IndexError(f"sample {index} of a dataset of {length}")
    index %= length
    skipped: list[SkipRecord] = []
    for step in range(min(length, max_tries)):
        i = (index + step) % length
        try:
            sample = load(i)
        except ImageDecodeError as err:
            if on_bad_image != "skip":
                where = getattr(getattr(load, "__self__", None), "config_key", "data.train")
                hint = BAD_IMAGE_HINT.format(where=where)
                raise ImageDecodeError(err.path, err.reason + hint) from err
            skipped.append({"index": i, "path": err.path, "reason": err.reason})
            logger.warning("on_bad_image: skip: sample %d (%s): %s", i, err.path, err.reason)
            continue
        if skipped:
            sample["skipped"] = skipped
        return sample
    raise DataError(
        f"on_bad_image: skip: {len(skipped)} images in a row could not be read, from sample "
        f"{index}:",
        [f"sample {r['index']} ({r['path']}): {r['reason']}" for r in skipped],
    )
