"""A CSV of ``(image, label)`` rows as Kaggle and most classification sets publish it, read
into cells: its delimiter (``,`` ``;`` tab ``|``, found by :class:`csv.Sniffer`), a UTF-8
byte-order mark and Windows line ends, whether its first row is a header, which columns hold
the image and the label, and label columns in one-hot form (refused: one label column is
read). What the rows mean is :mod:`visionkit.data.readers.csv_labels`' business.

>>> table = read_table("train.csv")  # doctest: +SKIP
>>> table.delimiter, table.rows[0]  # doctest: +SKIP
(',', (1, ['id', 'label']))
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from visionkit.data.batch import IMAGE_EXTENSIONS, resolve_under_root
from visionkit.errors import ConfigError, DataError

#: The delimiters a CSV is sniffed for (Excel in a comma-decimal locale writes ``;``).
DELIMITERS = ",;\t|"
#: Header cells that name the image column (compared case-folded).
IMAGE_WORDS = frozenset(
    {
        *("id", "image", "image_id", "imageid", "img", "image_name", "filename", "file_name"),
        *("file", "path", "image_path", "filepath", "name", "fname"),
    }
)
#: Header cells that name the label column (compared case-folded).
LABEL_WORDS = frozenset(
    {"label", "labels", "class", "class_name", "category", "target", "y", "breed", "species"}
    | {"diagnosis"}
)
#: First-row cells that name a column of an image / label table.
HEADER_WORDS = IMAGE_WORDS | LABEL_WORDS
INTEGER = re.compile(r"[+-]?\d+")


@dataclass
class Table:
    """The cells of a CSV file.

    Attributes:
        path: the file.
        rows: ``(line number, cells)`` of each non-blank row, the header row included (the
            line number is where the row ends, 1-based, as :mod:`csv` counts it).
        delimiter: the delimiter found.
    """

    path: Path
    rows: list[tuple[int, list[str]]]
    delimiter: str


def read_table(path: Path) -> Table:
    """The rows of the CSV ``path`` (a byte-order mark, ``\\r\\n`` line ends, quoted fields and
    blank lines read as Excel and pandas read them).

    Raises:
        DataError: the file is missing, not UTF-8 text, or holds no rows.
    """
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob("*.csv")) if path.parent.is_dir() else []
        beside = f" (CSV files in {path.parent}: {', '.join(near[:8])})" if near else ""
        raise DataError(f"CSV file {path} does not exist{beside}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save it as CSV UTF-8 "
            "(Excel: Save As > CSV UTF-8)"
        ) from None
    delimiter = sniff_delimiter(text)
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    rows = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):  # blank lines (a last empty line) are no rows
                rows.append((reader.line_num, [c.strip() for c in cells]))
    except csv.Error as err:
        raise DataError(f"{path}, line {reader.line_num}: not readable as CSV ({err})") from None
    if not rows:
        raise DataError(f"{path}: no rows (expected one row per image: image,label)")
    return Table(path, rows, delimiter)


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV's ``text``: :class:`csv.Sniffer`'s pick among
    :data:`DELIMITERS` on its first lines, else ``,``."""
    sample = "\n".join(text.splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:  # one column, or nothing it can tell: the common case
        return ","


def sniffed_header(
    table: Table,
    columns: Sequence[int],
    exists: Callable[[str], bool],
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> bool:
    """Whether the first row of ``table`` is a header, given the image and label
    ``columns`` and ``exists(cell)`` (an image cell names a file): not when its image cell
    names a file or ends with one of ``extensions``, nor when it is the only row; yes when its
    cells are header words (``id``, ``label``, ``filename``, ...); not when its label cell is
    also a label of the next rows (a first row whose image is missing); yes when its image cell
    is no file while the next rows' are, when its label is not a number while every other label
    is, or when :meth:`csv.Sniffer.has_header` says so."""
    first = table.rows[0][1]
    rest = [cells for _, cells in table.rows[1:21]]
    image, label = columns
    if len(table.rows) == 1 or image >= len(first):
        return False
    if has_suffix(first[image], extensions) or exists(first[image]):
        return False
    if (
        len(first) > max(columns)
        and {first[image].casefold(), first[label].casefold()} & HEADER_WORDS
    ):
        return True
    cells = [r for r in rest if len(r) > max(columns)]
    if len(first) > label and any(r[label] == first[label] for r in cells):
        return False  # its label is one of the rows' labels: a row whose image is missing
    if cells and sum(exists(r[image]) for r in cells) > len(cells) / 2:
        return True
    if (
        cells
        and len(first) > label
        and not INTEGER.fullmatch(first[label])
        and all(INTEGER.fullmatch(r[label]) for r in cells)
    ):
        return True
    sample = "\n".join(table.delimiter.join(c) for _, c in table.rows[:21])
    try:
        return csv.Sniffer().has_header(sample)
    except csv.Error:
        return False


def column_of(
    value: int | str | None, default: int, header: list[str] | None, key: str, path: Path
) -> int:
    """The 0-based index of the column ``value`` names (a header name, or an index), or
    ``default`` when it is ``None``.

    Raises:
        ConfigError: a name without a header, a name the header lacks, a negative index.
    """
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{key}: {value} is not a column index (0 is the first column)")
        return value
    text = str(value)
    if header is None:
        raise ConfigError(
            f"{key}: {text!r} names a column, but {path} is read without a header row (give "
            f"the column's 0-based index, e.g. {key}: 0, or header: true)"
        )
    if text in header:
        return header.index(text)
    folded = [h.casefold() for h in header]
    if text.casefold() in folded:
        return folded.index(text.casefold())
    raise ConfigError(
        f"{key}: no column {text!r} in the header of {path} (its columns: "
        f"{', '.join(header)}; or give a 0-based index)"
    )


@dataclass
class Columns:
    """The image and label columns of a table, and how they were chosen.

    Attributes:
        image, label: 0-based column indices.
        notes: which column the header chose, for the report.
        from_header: the label column is the header's one label-word column.
    """

    image: int
    label: int
    notes: list[str]
    from_header: bool = False


def table_columns(
    table: Table,
    header: bool,
    image_column: int | str | None,
    label_column: int | str | None,
    keys: tuple[str, str] = ("image_column", "label_column"),
) -> Columns:
    """The image and label columns of ``table`` (``header``: its first row names them):
    ``image_column`` / ``label_column`` (a name or an index); unset, the header's one column
    named as a label (:data:`LABEL_WORDS`: ``label``, ``class``, ``diagnosis`` ...) and its one
    column named as an image (:data:`IMAGE_WORDS`: ``image``, ``id``, ``filename`` ...), else the
    first two columns.

    Raises:
        ConfigError: a name the header lacks, a name without a header, an index beyond the
            file's columns, both the same column (named as ``keys`` say: ``--image-column``
            on a command line).
    """
    path = table.path
    image_key, label_key = keys
    head = table.rows[0][1] if header else None
    notes: list[str] = []
    fixed_image = (
        None if image_column is None else column_of(image_column, 0, head, image_key, path)
    )
    fixed_label = (
        None if label_column is None else column_of(label_column, 0, head, label_key, path)
    )
    image_pick, label_pick = _named(head, IMAGE_WORDS), _named(head, LABEL_WORDS)
    if fixed_label is None and label_pick is not None and label_pick != fixed_image:
        fixed_label = label_pick
        notes.append(
            f"label column {label_pick} ({head[label_pick]}): the header's label column "
            f"({label_key}: to choose another)"
        )
    if fixed_image is None and image_pick is not None and image_pick != fixed_label:
        fixed_image = image_pick
        if image_pick != 0:
            notes.append(
                f"image column {image_pick} ({head[image_pick]}): the header's image column "
                f"({image_key}: to choose another)"
            )
    image = fixed_image if fixed_image is not None else (0 if fixed_label != 0 else 1)
    label = fixed_label if fixed_label is not None else (1 if image != 1 else 0)
    if image == label:
        raise ConfigError(f"{image_key} and {label_key}: both are column {image} of {path}")
    width = max(len(cells) for _, cells in table.rows)
    for key, column, given in ((image_key, image, image_column), (label_key, label, label_column)):
        if column >= width:
            shown = ", ".join(
                f"{i} ({name})" if head else str(i) for i, name in enumerate(head or range(width))
            )
            default = "" if given is not None else f" (the default: give {key})"
            raise ConfigError(
                f"{key}: column {column}{default} is beyond the columns of {path}, which has "
                f"{width} ({shown}; 0 is the first)"
            )
    return Columns(image, label, notes, from_header=label_column is None and label_pick == label)


def _named(header: list[str] | None, words: frozenset[str]) -> int | None:
    """The index of ``header``'s one cell among ``words`` (``None``: none, or several)."""
    found = [i for i, cell in enumerate(header or []) if cell.casefold() in words]
    return found[0] if len(found) == 1 else None


def one_hot_columns(table: Table, start: int, image: int) -> list[int]:
    """The columns of ``table``'s data rows (from row ``start``) besides ``image`` when they
    all hold only 0 and 1 and either each row has exactly one 1 across them (a label in
    one-hot form, Kaggle's ``image_id,healthy,rust,scab``) or there are three or more (a
    multi-label table); ``[]`` otherwise (``id,label,fold`` with 0/1 labels and folds)."""
    rows = [cells for _, cells in table.rows[start:]]
    if not rows:
        return []
    width = min(len(r) for r in rows)
    others = [c for c in range(width) if c != image]
    if len(others) < 2:
        return []
    ones = {"1", "1.0"}
    one_hot = True
    for cells in rows:
        values = [cells[c] for c in others]
        if any(v not in ("0", "0.0", *ones) for v in values):
            return []
        one_hot = one_hot and sum(v in ones for v in values) == 1
    return others if one_hot or len(others) >= 3 else []


def image_column_elsewhere(
    table: Table, image: int, exists: Callable[[str], bool], rows: int = 20
) -> int | None:
    """When no cell of column ``image`` in the first ``rows`` rows names an image
    (``exists(cell)``), the one other column where most of them do (an index column first,
    ``,patient,image_name,age,diagnosis``); ``None`` otherwise."""
    cells = [c for _, c in table.rows[:rows]]
    if any(len(r) > image and exists(r[image]) for r in cells):
        return None
    width = max(len(r) for r in cells)
    found = [
        c
        for c in range(width)
        if c != image and sum(len(r) > c and exists(r[c]) for r in cells) > len(cells) / 2
    ]
    return found[0] if len(found) == 1 else None


def refuse_image_column(
    table: Table,
    image: int,
    found: int,
    root: Path,
    keys: tuple[str, str] = ("image_column", "label_column"),
    label: int | None = None,
    label_given: bool = False,
) -> ConfigError:
    """The error of a table whose guessed ``image`` column names no image where column
    ``found`` does (:func:`image_column_elsewhere`): which columns to name (``keys``), the
    label column only where it was not given (``label_given``), by its header name where the
    header's label word chose it (``label``)."""
    rows = [c for _, c in table.rows]
    head = rows[0] if len(rows) > 1 and len(rows[0]) > found else None
    named = head is not None and head[found] and not has_suffix(head[found], IMAGE_EXTENSIONS)
    head = head if named else None
    width = max(len(r) for r in rows)
    shown = ", ".join(
        f"{i} ({head[i]})" if head and i < len(head) and head[i] else str(i) for i in range(width)
    )
    which = head[found] if head else found
    example = next((r[image] for r in rows[1 if head else 0 :] if len(r) > image), "")
    image_key, label_key = keys
    say = " " if image_key.startswith("--") else ": "  # a command line's flag, a config's key
    labels = "the column of the labels"
    if label is not None and label != found and len(rows[0]) > label:
        labels = rows[0][label]  # the header's label word
    give = f"{image_key}{say}{which}"
    give += "" if label_given else f" and {label_key}{say}{labels}"
    return ConfigError(
        f"{table.path}: {image_key} not set, and the first columns were guessed: column "
        f"{image} names no image under {root} (e.g. {example!r}) where column {found} does; "
        f"give {give} (its columns: {shown}; a name or a 0-based index)"
    )


class ImageFinder:
    """``finder(cell)``: the image file an image cell names under ``root`` (with the first of
    ``extensions`` that exists, in any case, when the cell has none of them: Kaggle's ids), or
    ``None``; each folder is listed once."""

    def __init__(self, root: Path, extensions: Sequence[str]) -> None:
        self.root, self.extensions = root, tuple(extensions)
        self._listings: dict[Path, dict[str, str]] = {}

    def __call__(self, cell: str) -> Path | None:
        try:
            path = resolve_under_root(self.root, cell)
        except ValueError:
            return None
        if has_suffix(cell, self.extensions):
            return path if path.is_file() else None
        listing = self._listings.get(path.parent)
        if listing is None:
            try:
                names = os.listdir(path.parent)
            except OSError:
                names = []
            listing = self._listings[path.parent] = {n.casefold(): n for n in names}
        for ext in self.extensions:
            name = listing.get((path.name + ext).casefold())
            if name is not None and (path.parent / name).is_file():
                return path.parent / name
        return None


def has_suffix(cell: str, extensions: Sequence[str]) -> bool:
    """Whether an image cell ends with one of ``extensions``."""
    return Path(cell).suffix.lower() in extensions
