"""``visionkit split`` of a CSV of ``(image, label)`` rows (what ``format: csv`` reads):
``<stem>_train.csv``, ``<stem>_val.csv`` (``<stem>_test.csv``) beside it, each with the
header and the delimiter of the source, the labels in the same proportions in each split
(stratified, :func:`~visionkit.data.split_shares.class_shares`), for ``csv:`` of ``format:
csv`` (see :mod:`visionkit.data.split`). The label column is ``--label-column``, else the
reader's default (:func:`~visionkit.data.readers.csv_table.table_columns`: the header's one
label column, such as ``label`` or ``diagnosis``, else the first that is not the images', which
the summary names); the rows are copied as they are, so a bad row reaches the reader, which
names it. The files keep the source's suffix (``.tsv``).
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

from visionkit.checkpoint import write_atomic
from visionkit.choices import SPLITS
from visionkit.data.batch import IMAGE_EXTENSIONS
from visionkit.data.readers.csv_table import (
    ImageFinder,
    image_column_elsewhere,
    read_table,
    refuse_image_column,
    sniffed_header,
    table_columns,
)
from visionkit.data.split import SplitReport, _remove_stale, refuse_existing
from visionkit.data.split_shares import class_shares
from visionkit.errors import DataError

#: How ``visionkit split`` names the two columns.
FLAGS = ("--image-column", "--label-column")


def split_csv(
    path: Path,
    val: float,
    test: float,
    seed: int,
    overwrite: bool,
    images: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> SplitReport:
    """Each label's rows shuffled and cut by :func:`class_shares`, written beside ``path``;
    ``images`` (default the CSV's folder) is where the header sniff looks for the images;
    ``image_column`` / ``label_column``: a header name or a 0-based index, as ``format: csv``
    takes them (unset: its guess, refused where another column holds the images)."""
    table = read_table(path)
    root = Path(images) if images else path.parent
    if not root.is_dir():
        raise DataError(f"--images: {root} is not a folder (the folder of the CSV's images)")
    finder = ImageFinder(root, IMAGE_EXTENSIONS)
    exists = lambda cell: finder(cell) is not None  # noqa: E731
    given = [int(c) if c is not None and c.isdigit() else c for c in (image_column, label_column)]
    named = any(isinstance(c, str) for c in given)
    guess = [c if isinstance(c, int) else d for c, d in zip(given, (0, 1), strict=True)]
    header = named or sniffed_header(table, guess, exists)
    rows = table.rows[1:] if header else table.rows
    if not rows:
        raise DataError(f"{path}: only a header row, no images to split")
    columns = table_columns(table, header, *given, keys=FLAGS)
    if image_column is None:  # a guess: the label column too, unless another holds the images
        found = image_column_elsewhere(table, columns.image, exists)
        if found is not None:
            raise refuse_image_column(
                table,
                columns.image,
                found,
                root,
                keys=FLAGS,
                label=columns.label if columns.from_header else None,
                label_given=label_column is not None,
            )
    label = columns.label
    by_label: dict[str, list[tuple[int, list[str]]]] = {}
    for line, cells in rows:
        by_label.setdefault(cells[label] if len(cells) > label else "", []).append((line, cells))
    shares = class_shares({label: len(r) for label, r in by_label.items()}, val, test)
    parts: dict[str, list[tuple[int, list[str]]]] = {s: [] for s in SPLITS}
    for label, labelled in sorted(by_label.items()):
        random.Random(f"{seed}/{label}").shuffle(labelled)
        start = 0
        for split in SPLITS:
            parts[split] += labelled[start : start + shares[label][split]]
            start += shares[label][split]
    every = {s: path.with_name(f"{path.stem}_{s}{path.suffix}") for s in SPLITS}
    refuse_existing(every, overwrite)
    files = {s: every[s] for s in SPLITS if parts[s]}
    for split, target in files.items():
        out = io.StringIO()
        writer = csv.writer(out, delimiter=table.delimiter, lineterminator="\n")
        if header:
            writer.writerow(table.rows[0][1])
        writer.writerows(cells for _, cells in sorted(parts[split]))  # in file order
        text = out.getvalue()
        write_atomic(target, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    _remove_stale(every, files)
    report = SplitReport("csv", files, {s: len(parts[s]) for s in files})
    report.folders = f", images: {images}" if images else ""
    for key, value in (("image_column", image_column), ("label_column", label_column)):
        if value is not None:  # the reader reads the columns the split was made by
            report.folders += f", {key}: {value}"
    if label_column is None:  # which column the labels came from, where not given
        name = f" ({table.rows[0][1][columns.label]})" if header else ""
        how = "the header's label column" if columns.from_header else "a guess"
        report.notes.append(
            f"split by the labels of column {columns.label}{name}, {how} ({len(by_label)} labels in "
            f"{len(rows)} rows, each split in the same proportions); --label-column COL to "
            "name another"
        )
    return report
