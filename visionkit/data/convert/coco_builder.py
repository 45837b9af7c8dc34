"""What the VOC and YOLO converters share: building a COCO dict while collecting every problem,
and reading a list of class names.

The converters never stop at the first bad line: each problem is recorded with the file (and
line or object) it comes from, and :meth:`CocoBuilder.raise_problems` raises one
:class:`~visionkit.errors.AnnotationError` listing them all.

Conventions of every converted file:

* ``images[].id`` and ``annotations[].id`` count from 1 in the order the images are read;
* ``images[].file_name`` is relative to the *source folder* (the converter's ``SRC``), so a
  dataset config sets ``images: SRC`` and ``annotations: DST``;
* category ``k`` of the class list (0-based) has id ``k + 1`` and keeps its name;
* ``bbox`` is COCO ``[x, y, w, h]`` in continuous pixel coordinates (0 is the left edge of the
  first pixel), ``area`` the polygon area when there is a polygon, else ``w * h``.

>>> b = CocoBuilder(["cat", "dog"])
>>> image_id = b.add_image("images/a.png", width=64, height=32)
>>> b.add_annotation(image_id, 1, [0.0, 0.0, 10.0, 8.0])
>>> d = b.to_dict({"format": "example"})
>>> d["categories"], d["annotations"][0]["category_id"], d["annotations"][0]["area"]
([{'id': 1, 'name': 'cat'}, {'id': 2, 'name': 'dog'}], 2, 80.0)
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from visionkit.errors import AnnotationError, DataError, counted

logger = logging.getLogger(__name__)

GENERATOR = "visionkit convert"


CLIP_TOLERANCE = 1.0  # pixels a box may reach outside its image before it is reported


class Conversion(NamedTuple):
    """What a converter returns: the COCO object, the objects it left out (with why), under
    ``on_bad_label: skip`` the problems of each source file it left out, (YOLO) the images
    without a label file (``file_name`` of each: read as images without objects), and the
    boxes it clipped to their image by more than a pixel (with where), other warnings of
    the source as ``(kind, "where: what")`` (a pose dataset without flip pairs), and the
    annotation file of each image ``file_name`` where a reader's reports should name it
    (LabelMe's json files), and how many of the source files had errors
    (``"errors in 2 of 40 XML files"``; ``""``: none)."""

    coco: dict[str, Any]
    skipped: list[str]
    dropped: list[list[str]] = []
    unlabelled: list[str] = []
    clipped: list[str] = []
    warnings: list[tuple[str, str]] = []
    sources: dict[str, str] = {}
    errors_in: str = ""


class CocoBuilder:
    """Collects COCO images, annotations and problems for one conversion.

    Args:
        class_names: the categories, in label order; name ``class_names[k]`` gets id ``k + 1``.
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.skipped: list[str] = []
        self.clipped: list[str] = []
        self.dropped: list[list[str]] = []
        self.warnings: list[tuple[str, str]] = []  # (kind, "where: what"), see Conversion
        self.files: set[Any] = set()  # the sources given to one_file
        self.bad_files: set[Any] = set()  # those with a problem in self.problems
        self.errors_in = ""  # "errors in N of M files", said by in_files

    def add_image(self, file_name: str, width: int, height: int) -> int:
        """Add an image (``file_name`` relative to the source folder, POSIX separators);
        returns its id. A name that is not valid UTF-8 (bytes the file system decoded as
        surrogates) cannot be written to a json file: it is a problem naming the file."""
        try:
            file_name.encode("utf-8")
        except UnicodeEncodeError:
            shown = file_name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            self.problem(shown, "the file name is not valid UTF-8; rename the file")
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)}
        )
        return image_id

    def add_annotation(
        self,
        image_id: int,
        label: int,
        bbox: Sequence[float],
        segmentation: list[list[float]] | dict[str, Any] | None = None,
        area: float | None = None,
        iscrowd: int = 0,
        **extra: Any,
    ) -> None:
        """Add an annotation of 0-based class ``label`` with a COCO ``[x, y, w, h]`` box, and
        a ``segmentation`` of polygons (rounded) or an RLE (as it is)."""
        x, y, w, h = (round(float(v), 4) for v in bbox)
        ann: dict[str, Any] = {
            "id": len(self.annotations) + 1,
            "image_id": image_id,
            "category_id": label + 1,
            "bbox": [x, y, w, h],
            "area": round(float(area), 4) if area is not None else round(w * h, 4),
            "iscrowd": int(iscrowd),
        }
        if isinstance(segmentation, dict):
            ann["segmentation"] = segmentation
        elif segmentation is not None:
            ann["segmentation"] = [[round(float(v), 4) for v in poly] for poly in segmentation]
        ann.update(extra)
        self.annotations.append(ann)

    def problem(self, where: str, what: str) -> None:
        """Record a problem of the input (``where``: file, line or object)."""
        self.problems.append(f"{where}: {what}")

    def skip(self, where: str, what: str) -> None:
        """Record an object left out of the output on purpose (e.g. zero area)."""
        self.skipped.append(f"{where}: {what}")

    def clip(self, where: str, what: str) -> None:
        """Record a box clipped to its image by more than a pixel (kept, clipped)."""
        self.clipped.append(f"{where}: {what}")

    @contextlib.contextmanager
    def one_file(self, skip_bad: bool, source: Any = None) -> Iterator[None]:
        """Convert one source file (an XML or txt file and its image): with ``skip_bad``, a
        problem recorded inside leaves the file's image and objects out, its problems kept
        in :attr:`dropped` instead of :attr:`problems` (``on_bad_label: skip``). A ``source``
        (the file) is counted in :attr:`files`, and in :attr:`bad_files` with a problem that
        stays in :attr:`problems` (not one ``skip_bad`` moved to :attr:`dropped`)."""
        problems, images, annotations = len(self.problems), len(self.images), len(self.annotations)
        skipped, clipped, warnings = len(self.skipped), len(self.clipped), len(self.warnings)
        yield
        if source is not None:
            self.files.add(source)
            if len(self.problems) > problems and not skip_bad:
                self.bad_files.add(source)
        if skip_bad and len(self.problems) > problems:
            self.dropped.append(self.problems[problems:])
            del self.problems[problems:], self.images[images:], self.annotations[annotations:]
            del self.skipped[skipped:], self.clipped[clipped:], self.warnings[warnings:]

    def in_files(self, noun: str) -> str:
        """`` (errors in N of M <noun>s)`` of the sources given to :meth:`one_file`, when some
        have a problem (kept for :meth:`conversion`); ``""`` otherwise."""
        bad = len(self.bad_files)
        self.errors_in = f"errors in {bad} of {counted(len(self.files), noun)}" if bad else ""
        return f" ({self.errors_in})" if bad else ""

    def raise_problems(self, what: str, collect: list[str] | None = None) -> None:
        """Raise one :class:`AnnotationError` listing every recorded problem, if any; with a
        ``collect`` list, append them to it instead (a reader that reports them with the rest
        of its checks)."""
        if collect is not None:
            collect.extend(self.problems)
        elif self.problems:
            n = len(self.problems)
            raise AnnotationError(f"{what}: {n} problem{'s' if n > 1 else ''}:", self.problems)

    def conversion(
        self,
        info: dict[str, Any],
        unlabelled: Sequence[str] = (),
        sources: dict[str, str] | None = None,
    ) -> Conversion:
        """What the converter returns: :meth:`to_dict` of ``info`` with the objects skipped,
        the files dropped, the boxes clipped and the warnings recorded (``unlabelled`` and
        ``sources``: see :class:`Conversion`)."""
        return Conversion(
            self.to_dict(info),
            self.skipped,
            self.dropped,
            list(unlabelled),
            self.clipped,
            self.warnings,
            sources if sources is not None else {},
            self.errors_in,
        )

    def to_dict(self, info: dict[str, Any]) -> dict[str, Any]:
        """The COCO object (``info`` gets ``generator`` added)."""
        return {
            "info": {"generator": GENERATOR, **info},
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)],
        }


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names from a file: a ``.yaml``/``.yml`` file's ``names`` (a list, or a mapping
    ``{0: name, 1: name, ...}`` with keys ``0..C-1``), otherwise one name per line (blank lines
    and surrounding spaces ignored). Duplicates and an empty list are errors.

    Raises:
        DataError: the file is missing, unreadable or holds no usable list of names.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"class names file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"class names file {path} cannot be read: {err}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        names = _names_from_yaml(path, text)
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"class names file {path} holds no class names")
    dups = [n for n, c in Counter(names).items() if c > 1]
    if dups:
        raise DataError(f"class names file {path}: duplicate class names {dups}")
    return names


def _names_from_yaml(path: Path, text: str) -> list[str]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DataError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict) or "names" not in data:
        raise DataError(f"{path}: expected a mapping with a 'names' key (a list of class names)")
    names = data["names"]
    if isinstance(names, dict):
        try:
            by_index = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DataError(
                f"{path}: 'names' keys must be class indices 0, 1, ...; got {list(names)}"
            ) from None
        if sorted(by_index) != list(range(len(by_index))):
            raise DataError(
                f"{path}: 'names' keys must be the indices 0..{len(by_index) - 1} without gaps; "
                f"got {sorted(by_index)}"
            )
        names = [by_index[i] for i in range(len(by_index))]
    elif not isinstance(names, list):
        raise DataError(f"{path}: 'names' must be a list or a mapping index -> name")
    names = [str(n) for n in names]
    nc = data.get("nc")
    if nc is not None and nc != len(names):
        raise DataError(f"{path}: nc is {nc} but 'names' lists {len(names)} classes")
    return names


def warn_case_variants(files: dict[str, set[str]], root: Path, what: str) -> None:
    """Log names (of ``files``: name -> the files that write it) that differ only in case or
    spaces (``Raccoon`` beside ``raccoon``), each with the files that write it: they become
    separate classes, and the class lists of the splits then differ (training stops there,
    naming the classes but not the files). ``what`` names them (``"object names"``)."""
    variants: dict[str, list[str]] = {}
    for name in files:
        variants.setdefault(name.strip().lower(), []).append(name)
    for names in variants.values():
        if len(names) < 2:
            continue
        each = "; ".join(
            f"{n!r} in {counted(len(files[n]), 'file')} ({', '.join(sorted(files[n])[:3])}"
            f"{', ...' if len(files[n]) > 3 else ''})"
            for n in sorted(names, key=lambda n: (len(files[n]), n))  # the odd one first
        )
        logger.warning(
            "%s: %s that differ only in case or spaces are separate classes: %s; fix the "
            "files, or give the classes (class_names: [...]; visionkit convert: --classes)",
            root,
            what,
            each,
        )


def relative_posix(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with ``/`` separators (``path`` itself if outside)."""
    for p, r in ((path, root), (path.resolve(), root.resolve())):
        try:
            return p.relative_to(r).as_posix()
        except ValueError:
            pass
    return str(path)
