"""The one error that stops a run on bad data: each failed dataset's report under its config
key (``data.train``, ``data.val.streets``), then what to run or set (``check-data``, and
``on_bad_image: skip`` / ``on_bad_label: skip`` where they apply)."""

from __future__ import annotations

from collections.abc import Container, Mapping
from typing import Any

from visionkit.errors import AnnotationError, ConfigError, DataError

#: The last line of the error that stops a run on bad data; the second part where images are
#: missing or unreadable, the third where label files (VOC XML, YOLO txt, label images) are bad
#: (``{}``: the overrides of the entries that hold them), the fourth where a mask folder's are
#: (before training, their headers alone are read).
CHECK_DATA_HINT = (
    "hint: visionkit check-data with the same --config and overrides lists every problem of "
    "every split",
    "; on_bad_image: skip (e.g. {}) trains without the missing or unreadable images",
    "; on_bad_label: skip (e.g. {}) trains without the images whose label files are bad",
    " (a mask folder's missing, unreadable or mis-sized ones; not those of label values that are "
    "no class, which training finds only when it reads them, stopping at the first: visionkit "
    "check-data decodes every label file and lists them all)",
)


#: The problems of a dataset's label files (one per image) that on_bad_label: skip leaves
#: out with their image: VOC XML and YOLO txt files, a mask folder's label images.
LABEL_FILE_KINDS = ("bad annotation file", "missing label file", "bad label file", "size mismatch")


def data_errors(failed: Mapping[str, DataError]) -> DataError:
    """One error for the splits that failed (``where`` → error), each named by its config key,
    with :data:`CHECK_DATA_HINT` last (:func:`joined_errors`)."""
    reports = keyed_reports(failed)
    unreadable = [
        f"{where}.on_bad_image=skip"
        for where, r in reports.items()
        if {"unreadable image", "missing file"} & set(r.counts_by_kind("error"))
    ]
    bad_labels = [
        f"{where}.on_bad_label=skip"
        for where, r in reports.items()
        if r.format in ("voc", "yolo", "mask_folder")
        and set(LABEL_FILE_KINDS) & set(r.counts_by_kind("error"))
    ]
    masks = any(
        r.format == "mask_folder" and set(LABEL_FILE_KINDS) & set(r.counts_by_kind("error"))
        for r in reports.values()
    )
    hint = CHECK_DATA_HINT[0]
    hint += CHECK_DATA_HINT[1].format(" ".join(unreadable)) if unreadable else ""
    hint += CHECK_DATA_HINT[2].format(" ".join(bad_labels)) if bad_labels else ""
    hint += CHECK_DATA_HINT[3] * masks
    return joined_errors(failed, hint)


def keyed_reports(failed: Mapping[str, DataError]) -> dict[str, Any]:
    """The reports of the failed datasets (``where`` → error) by config key, those of a mix's
    parts (:func:`joined_errors`) by the part's own (``data.train.b``), for the overrides
    that name them."""
    reports = {}
    for where, err in failed.items():
        parts = getattr(err, "reports", None)
        reports.update(parts or ({where: err.report} if err.report is not None else {}))
    return reports


def joined_errors(failed: Mapping[str, DataError], last: str | None = None) -> DataError:
    """One error of several datasets' (``where`` → error), each section starting with its
    config key, then ``last``; an :class:`AnnotationError` when each is one, keeping the
    report of a single one, and each one's by its key as ``reports``."""
    sections = []
    for where, err in failed.items():
        text = str(err)
        sections.append(text if text.startswith(where) else f"{where}: {text}")
    each = all(isinstance(e, AnnotationError) for e in failed.values())
    error = (AnnotationError if each else DataError)("\n".join([*sections, *filter(None, [last])]))
    if len(failed) == 1:
        error.report = next(iter(failed.values())).report
    error.reports = keyed_reports(failed)
    return error


def keyed(error: ConfigError, where: str, arguments: Container[str]) -> ConfigError:
    """A reader's :class:`ConfigError` with each problem under the dataset's config key:
    ``data.val.ignore_index: ...`` for a problem that starts with one of its ``arguments``
    (``ignore_index: ...``), ``data.val: ...`` for another; problems naming a key already are
    kept. ``where`` is ``dataset`` (``check-data --format``): the problems are kept as they are.
    """
    if not where.startswith("data."):
        return error
    problems = []
    for problem in error.problems:
        key = problem.split(":", 1)[0]
        if problem.startswith(where):
            problems.append(problem)
        elif key in arguments:
            problems.append(f"{where}.{problem}")
        else:
            problems.append(f"{where}: {problem}")
    return ConfigError(problems, error.source)
