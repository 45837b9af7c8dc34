"""A CSV of ``(image, label)`` rows, as Kaggle (``train.csv``: ``id,label``,
``image_id,label``, ``filename,class``) and most classification sets publish their labels; one
image-level class per image. The file is read by :mod:`visionkit.data.readers.csv_table`.

>>> ds = CsvDataset("data/leaves/train.csv")  # images beside it  # doctest: +SKIP
>>> ds = CsvDataset("train.csv", images="train_images", label_column="diagnosis")  # doctest: +SKIP
>>> ds.label_names["class"]  # sorted labels; integer labels 0..N-1 as their numbers  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal

from visionkit.data.batch import IMAGE_EXTENSIONS, dataset_root, resolve_under_root
from visionkit.data.checks import (
    IMAGE_CHECKS,
    DataReport,
    ImageFile,
    check_image_files,
    count_classes,
    policy,
)
from visionkit.data.readers.csv_table import (
    INTEGER,
    ImageFinder,
    has_suffix,
    image_column_elsewhere,
    one_hot_columns,
    read_table,
    refuse_image_column,
    sniffed_header,
    table_columns,
)
from visionkit.data.readers.folder import ClassifiedImages
from visionkit.errors import ConfigError, DataError, counted
from visionkit.registry import DATASETS


@DATASETS.register("csv")
class CsvDataset(ClassifiedImages):
    """Images listed in a CSV file with their class, one row per image. Image ids are
    1-based positions of the rows kept, in file order.

    Args:
        csv: the CSV file (``,`` ``;`` tab or ``|`` delimited, found by :class:`csv.Sniffer`;
            a UTF-8 byte-order mark and Windows line ends are read).
        images: the folder its image cells are relative to (and may not leave); default the
            CSV's folder.
        image_column, label_column: the columns of the image and of the label: a header name
            or a 0-based index; default the header's one label-word column (``label``,
            ``class``, ``diagnosis`` ...) and its one image-word column (``image``, ``id``,
            ``filename`` ...), else the first two columns. Label columns in one-hot
            form (``image_id,healthy,rust,scab``) are refused, naming them.
        class_names: the class order to use (e.g. the training set's, for a validation set);
            a label is a name of it, or an index into it when no name is an integer. Default: the sorted distinct labels,
            integer labels in numeric order (labels ``0..N-1`` are so their own indices).
        header: whether the first row names the columns; default: sniffed (not when its image
            cell names a file; yes when its cells read ``id`` / ``label`` / ``filename`` ...;
            not when its label is a label of the next rows; else as
            :meth:`csv.Sniffer.has_header` says).
        extensions: file suffixes counted as images (case-insensitive); an image cell without
            one (Kaggle's ``id``) is the file of that name with the first of them found.
        on_bad_image: ``"error"`` (default): a missing or unreadable image stops
            construction, every one listed; ``"skip"``: such images are left out, counted
            and logged (see :class:`visionkit.data.readers.coco.CocoDataset`).
        on_bad_label: ``"error"`` (default): a bad row (too few columns, an empty image or
            label cell, a label not in ``class_names``, an image file listed with two labels, a
            path leaving ``images``) stops construction, every one named by its line;
            ``"skip"``: such rows are left out, counted and logged.
        image_check: ``"header"`` (default) or ``"decode"`` (:data:`~visionkit.data.checks.
            IMAGE_CHECKS`): how construction checks the image files.

    A row repeating an earlier one (same image, same label) is left out with a warning.
    """

    #: The argument that names the dataset.
    location: ClassVar[str] = "csv"
    #: The arguments that are paths of their own.
    path_arguments: ClassVar[tuple[str, ...]] = ("csv", "images")
    #: The Sample targets it produces: the image-level class.
    targets: ClassVar[tuple[str, ...]] = ("class",)
    #: Target → flag argument (none: it always has classes).
    target_flags: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        csv: str | None = None,
        images: str | None = None,
        image_column: int | str | None = None,
        label_column: int | str | None = None,
        class_names: list[str] | None = None,
        header: bool | None = None,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        on_bad_image: Literal["error", "skip"] = "error",
        on_bad_label: Literal["error", "skip"] = "error",
        *,
        image_check: Literal["header", "decode"] = "header",
    ) -> None:
        self.on_bad_image = policy(on_bad_image, "on_bad_image", ("error", "skip"))
        self.on_bad_label = policy(on_bad_label, "on_bad_label", ("error", "skip"))
        image_check = policy(image_check, "image_check", IMAGE_CHECKS)
        if csv is None:
            raise ConfigError("csv: not set; give the CSV file of (image, label) rows")
        self.csv = path = Path(csv)
        if path.is_dir():
            found = sorted(p.name for p in path.glob("*.csv"))
            raise DataError(
                f"csv: {path} is a folder; give the CSV file"
                + (f" (in it: {', '.join(found[:8])})" if found else "")
            )
        table = read_table(path)
        self.root = dataset_root(images) if images is not None else path.parent
        self.extensions = tuple(e.lower() for e in extensions)
        self._find = ImageFinder(self.root, self.extensions)
        named = any(isinstance(c, str) for c in (image_column, label_column))
        if header is None:
            width = len(table.rows[0][1])  # an index beyond it is refused below, by name
            guess = [
                c if isinstance(c, int) and c < width else d
                for c, d in ((image_column, 0), (label_column, 1))
            ]
            header = named or sniffed_header(
                table, guess, lambda c: self._find(c) is not None, self.extensions
            )
            how = "named columns" if named else "sniffed; header: true / false to say"
        else:
            how = f"header: {str(header).lower()}"
        head = table.rows[0][1] if header else None
        chosen = table_columns(table, header, image_column, label_column)
        image_col, label_col = chosen.image, chosen.label
        start = 1 if header else 0
        if (
            label_column is None
            and not chosen.from_header
            and (hot := one_hot_columns(table, start, image_col))
        ):
            names = [head[c] if head else str(c) for c in hot]
            raise DataError(
                f"{path}: its label columns {', '.join(names)} hold 0 / 1 values (one-hot or "
                "multi-label), which format: csv does not read: it reads one label column. "
                "Write the class of each image in one column (e.g. with pandas: df['label'] = "
                "df[[...]].idxmax(axis=1)), or name the label column if these are no such "
                "columns (label_column: NAME)"
            )
        if image_column is None:  # guessed: refused where another column holds the images
            found = image_column_elsewhere(table, image_col, lambda c: self._find(c) is not None)
            if found is not None:
                raise refuse_image_column(
                    table,
                    image_col,
                    found,
                    self.root,
                    label=label_col if chosen.from_header else None,
                    label_given=label_column is not None,
                )
        self.report = report = DataReport(str(path), "csv")
        columns = f"image column {_name(head, image_col)}, label column {_name(head, label_col)}"
        delimiter = {",": "", ";": "; ';'-delimited", "\t": "; tab-delimited"}.get(
            table.delimiter, f"; {table.delimiter!r}-delimited"
        )
        report.notes.append(
            f"read {columns} ({'a header row' if header else 'no header row'}: {how}"
            f"{delimiter}) from {path}, images under {self.root}"
        )
        report.notes += chosen.notes
        rows = self._rows(table.rows[start:], image_col, label_col)
        report.num_images = len(table.rows) - start
        if class_names is None:
            names = sorted({label for *_, label in rows}, key=_label_order)
            integers = [int(n) for n in names if INTEGER.fullmatch(n)]
            if integers and len(integers) == len(names) and integers != list(range(len(names))):
                report.notes.append(
                    f"integer labels {names[0]}..{names[-1]} are not 0..{len(names) - 1}: class "
                    f"i is the i-th label in numeric order (label {names[0]} is class 0); give "
                    "class_names to number them otherwise"
                )
            spellings: dict[int, list[str]] = {}
            for name in names:
                if INTEGER.fullmatch(name):
                    spellings.setdefault(int(name), []).append(name)
            for number, spelled in spellings.items():
                if len(spelled) > 1:  # '01' and '1': two classes a reader would take for one
                    report.add(
                        "labels of one number",
                        f"{path.name}: {', '.join(repr(s) for s in spelled)}",
                        f"{len(spelled)} classes, each spelled as written; write {number} one way "
                        "(or give class_names)",
                        severity="warning",
                    )
        else:
            names = [str(n) for n in class_names]
        self.label_names = {"class": names}
        #: where the classes come from, for the class-list messages: the CSV, not ``root``
        self.class_source = str(path)
        self.items = self._classes(rows, names)
        self._check_images(image_check)
        report.num_kept = len(self.items)
        report.class_counts["class"] = count_classes([c for _, c in self.items], names)
        absent = [n for n in names if not report.class_counts["class"].get(n)]
        if class_names is not None and absent:
            report.add(
                "class without images",
                str(path),
                f"no rows of the classes {', '.join(absent)}: in a validation or test set their "
                "recall is not measured (nan in the per-class table); in a training set they "
                "are never learnt",
                severity="warning",
            )
        if not self.items and not report.errors:
            dropped = ", ".join(f"{n} {k}" for k, n in report.counts_by_kind().items())
            report.add(
                "empty dataset",
                str(path),
                f"0 of {counted(report.num_images, 'row')} kept ({dropped or 'none listed'})",
            )
        report.raise_for_errors()

    def _bad_row(self, line: int, detail: str) -> None:
        """A bad row: an error, or under ``on_bad_label: skip`` a warning (left out)."""
        severity = "warning" if self.on_bad_label == "skip" else "error"
        self.report.add("bad row", f"{self.csv.name}, line {line}", detail, severity=severity)

    def _rows(
        self, rows: list[tuple[int, list[str]]], image_col: int, label_col: int
    ) -> list[tuple[int, str, Path | None, str]]:
        """``(line, image cell, file or None, label)`` of each usable row, each image once."""
        need = max(image_col, label_col) + 1
        # the image file (``./a.jpg``, ``a.jpg``; ``b``, ``b.jpg``) → (line, cell, label) of its
        # first row
        first: dict[Path, tuple[int, str, str]] = {}
        kept: dict[Path, tuple[int, str, Path | None, str]] = {}
        conflicting: set[Path] = set()
        guessed: Counter = Counter()
        for line, cells in rows:
            if len(cells) < need:
                self._bad_row(
                    line,
                    f"{counted(len(cells), 'column')} ({', '.join(cells)}), expected at least "
                    f"{need}: the image in column {image_col}, the label in column {label_col}",
                )
                continue
            image, label = cells[image_col], cells[label_col]
            if not image or not label:
                what = "image" if not image else "label"
                self._bad_row(line, f"empty {what} ({', '.join(cells)})")
                continue
            try:
                written = resolve_under_root(self.root, image)
            except ValueError as err:
                self._bad_row(line, f"{err}; image paths are relative to images: {self.root}")
                continue
            found = self._find(image)
            key = found or written
            if key in first:
                line0, image0, label0 = first[key]
                spelt = "" if image0 == image else f" ({image0})"
                if label0 == label:
                    self.report.add(
                        "duplicate row",
                        f"{self.csv.name}, line {line}",
                        f"{image},{label} repeats line {line0}{spelt}: left out",
                        severity="warning",
                    )
                else:
                    self._bad_row(
                        line, f"{image} has label {label!r}, line {line0}{spelt} {label0!r}"
                    )
                    conflicting.add(key)
                continue
            first[key] = (line, image, label)
            if found is not None and not has_suffix(image, self.extensions):
                guessed[found.suffix] += 1
            kept[key] = (line, image, found, label)
        if guessed:
            shown = ", ".join(f"{ext} ({n})" for ext, n in guessed.most_common())
            self.report.notes.append(f"image cells without an extension: found as {shown}")
        return [row for key, row in kept.items() if key not in conflicting]

    def _classes(
        self, rows: list[tuple[int, str, Path | None, str]], names: list[str]
    ) -> list[tuple[Path, int]]:
        """``(file, class index)`` of each row whose label is a class and whose file exists;
        the others reported (a missing file under ``on_bad_image``)."""
        lookup = {name: i for i, name in enumerate(names)}
        # an integer label is an index into names only when no name is an integer itself
        # (names 1, 2, 4, 5: label 3 is no class, not class '5')
        indices = not any(INTEGER.fullmatch(name) for name in names)
        items, missing = [], []
        for line, image, found, label in rows:
            index = lookup.get(label)
            if (
                index is None
                and indices
                and INTEGER.fullmatch(label)
                and 0 <= int(label) < len(names)
            ):
                index = int(label)
            if index is None:
                self._bad_row(line, f"{image}: label {label!r} is not one of {names} (class_names)")
                continue
            if found is None:
                missing.append((line, image))
                continue
            items.append((found, index))
        severity = "warning" if self.on_bad_image == "skip" else "error"
        guessed = [image for _, image in missing if not has_suffix(image, self.extensions)]
        for line, image in missing:
            extended = "" if has_suffix(image, self.extensions) else " with any image extension"
            self.report.add(
                "missing file",
                f"{image} (line {line})",
                f"no such image in {self.root}{extended}",
                severity=severity,
            )
        if guessed:
            self.report.hints.append(
                f"image cells without an extension ({guessed[0]}) are looked up with each of "
                f"{', '.join(self.extensions)} (extensions: to give others)"
            )
        if missing:
            self.report.hints += self._missing_hint(missing[0][1])
            if self.on_bad_image == "skip":
                self.report.notes.append(
                    f"left out {counted(len(missing), 'row')} whose image is missing "
                    "(on_bad_image: skip)"
                )
        return items

    def _check_images(self, image_check: str) -> None:
        """Every listed image opened (``image_check``); an unreadable one is an error, or left
        out under ``on_bad_image: skip``."""
        files = [ImageFile(p, os.path.relpath(p, self.root)) for p, _ in self.items]
        severity = "warning" if self.on_bad_image == "skip" else "error"
        sizes = check_image_files(files, self.report, image_check, bad_image_severity=severity)
        if self.on_bad_image == "skip":
            kept = [item for item, size in zip(self.items, sizes, strict=True) if size]
            if len(kept) < len(self.items):
                self.report.notes.append(
                    f"left out {len(self.items) - len(kept)} unreadable images (on_bad_image: skip)"
                )
            self.items = kept

    def _missing_hint(self, image: str) -> list[str]:
        """Where the images are when a sub-folder of :attr:`root` (Kaggle's
        ``train_images/`` beside ``train.csv``) holds the first missing one."""
        if not self.root.is_dir():
            return []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if ImageFinder(folder, self.extensions)(image) is not None:
                return [
                    f"{image} is in {folder}: the image cells are relative to images: "
                    f"{self.root} (default the CSV's folder); give images: {folder}"
                ]
        return []


def _label_order(label: str) -> tuple[int, int, str]:
    """Integer labels in numeric order, before the others in text order."""
    return (0, int(label), label) if INTEGER.fullmatch(label) else (1, 0, label)


def _name(header: list[str] | None, column: int) -> str:
    """``0 (id)``: a column's index and, with a header, its name."""
    return f"{column} ({header[column]})" if header and column < len(header) else str(column)
