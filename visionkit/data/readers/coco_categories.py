"""A COCO file's categories: checked (an integer ``id``; a placeholder category left out),
named (:func:`category_name`, one rule for a ``name`` that is not text), and the
annotations whose ``category_id`` names none of them, reported once per id."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from visionkit.data.checks import DataReport
from visionkit.errors import counted


def valid_categories(
    categories: list[Any], report: DataReport, annotations: Sequence[Any] = ()
) -> list[dict[str, Any]]:
    """The entries with an integer ``id``, sorted by it; the others are errors. A placeholder
    is left out, with a warning: a category no annotation uses whose name every other
    category gives as its ``supercategory`` (Roboflow's COCO exports start with one, id 0,
    named after the project), which would be a class the model never sees."""
    valid = []
    for i, cat in enumerate(categories):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
            given = cat.get("id") if isinstance(cat, dict) else cat
            number = text_id(given)  # "1": write 1
            fix = f" (text: write {number}, unquoted)" if number is not None else ""
            report.add(
                "bad entry", f"categories[{i}]", f"needs an integer 'id', got {given!r}{fix}"
            )
            continue
        valid.append(cat)
    used = {a.get("category_id") for a in annotations if isinstance(a, dict)}
    for cat in valid:
        others = [c for c in valid if c is not cat]
        if (
            others
            and cat["id"] not in used
            and cat.get("name")
            and all(c.get("supercategory") == cat["name"] for c in others)
        ):
            report.add(
                "placeholder category",
                f"category id {cat['id']} {cat['name']!r}",
                "no annotation uses it and it is the supercategory of every other category "
                "(as Roboflow's exports have): left out of the classes",
                "warning",
            )
            valid.remove(cat)
            break
    ids_of = defaultdict(list)
    for cat in valid:
        name = cat.get("name")
        ids_of[category_name(cat)].append(cat["id"])  # 1 and "1" are one name to a reader
        if not isinstance(name, str):  # the class is named all the same, as it says
            said = "has no 'name' key" if "name" not in cat else f"name {name!r} is not a string"
            report.add(
                "bad category name",
                f"category id {cat['id']}",
                f"{said}: the class is named {category_name(cat)!r}"
                + (" (its id)" if name is None else ""),
                "warning",
            )
    for name, ids in ids_of.items():
        if len(ids) > 1:  # two classes to the model, one to every report of them
            report.add(
                "duplicate category name",
                f"category ids {', '.join(map(str, sorted(ids)))}",
                f"all named {name!r}: separate classes to the model, one name in check-data's "
                "counts, per-class metrics and drawn predictions (give each its own name, or "
                "its annotations one category_id)",
                "warning",
            )
    return sorted(valid, key=lambda c: c["id"])


def category_name(category: Mapping[str, Any]) -> str:
    """The class name of a (valid) COCO category: its ``name`` as text (``1`` is ``"1"``),
    its id where it has none (no ``name``, or ``null``, which was the class ``"None"``)."""
    name = category.get("name")
    return str(category["id"] if name is None else name)


def text_id(value: Any) -> int | None:
    """The number an id written as text stands for (``"1"``: 1), else ``None``.

    >>> text_id(" 7"), text_id(7), text_id("cat")
    (7, None, None)
    """
    return int(value) if isinstance(value, str) and value.strip().isdecimal() else None


def has_text_ids(categories: Any) -> bool:
    """Whether some entry of a file's ``categories`` has a number written as text for ``id``."""
    entries = categories if isinstance(categories, list) else []
    return any(isinstance(c, dict) and text_id(c.get("id")) is not None for c in entries)


def report_unknown_categories(
    unknown: Sequence[tuple[Any, Any, str]],
    known: Sequence[int],
    report: DataReport,
    text_ids: bool = False,
) -> None:
    """The annotations of ``unknown`` (``category_id``, annotation id, ``where``), whose
    ``category_id`` names no valid category, as one error per ``category_id`` with their
    count, and one for all whose ``category_id`` is a number written as text that is a known
    id, or any such number where the categories' ids are text too (``text_ids``: each a bad
    entry): they were one error each. A text number that is no category is reported as
    the number (``"7"`` and ``7`` together).

    >>> report = DataReport("a.json")
    >>> unknown = [("1", 5, "a"), ("2", 6, "b"), (77, 7, "c"), ("7", 8, "d")]
    >>> report_unknown_categories(unknown, [1, 2], report)
    >>> [p.where for p in report.problems]
    ['2 annotations (annotation ids 5, 6)', 'c', 'd']
    >>> [p.detail for p in report.problems][1:]
    ['category_id 77 is not in categories [1, 2]', 'category_id 7 is not in categories [1, 2]']
    """
    groups: dict[str, list[tuple[Any, Any, str]]] = defaultdict(list)
    for item in unknown:
        number = text_id(item[0])
        if number is not None and (text_ids or number in known):
            groups["text"].append(item)
        else:
            groups[repr(item[0]) if number is None else str(number)].append(item)
    for key, items in groups.items():
        where = items[0][2]
        if len(items) > 1:
            ids = ", ".join(str(a) for _, a, _ in items[:5]) + (", ..." if len(items) > 5 else "")
            where = f"{counted(len(items), 'annotation')} (annotation ids {ids})"
        if key == "text":
            values = sorted({v for v, _, _ in items}, key=int)
            shown = ", ".join(map(repr, values[:5])) + (", ..." if len(values) > 5 else "")
            detail = (
                f"category_id {shown} is text, not an integer id of categories {list(known)}: "
                "write the numbers unquoted" + (", here and in categories" if text_ids else "")
            )
        else:
            detail = f"category_id {key} is not in categories {list(known)}"
        report.add("unknown category", where, detail)
