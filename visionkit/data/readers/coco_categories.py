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
            text = isinstance(given, str) and given.strip().isdecimal()  # "1": write 1
            fix = f" (text: write {int(given)}, unquoted)" if text else ""
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
            report.add(
                "bad category name",
                f"category id {cat['id']}",
                f"name {name!r} is not a string: the class is named {category_name(cat)!r}"
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


def report_unknown_categories(
    unknown: Sequence[tuple[Any, Any, str]], known: Sequence[int], report: DataReport
) -> None:
    """The annotations of ``unknown`` (``category_id``, annotation id, ``where``), whose
    ``category_id`` names no valid category, as one error per ``category_id`` with their
    count, and one for all whose ``category_id`` is a number written as text (``"1"``: the
    categories' own ids are then text too, each a bad entry): they were one error each.

    >>> report = DataReport("a.json")
    >>> report_unknown_categories([("1", 5, "a"), ("2", 6, "b"), (77, 7, "c")], [1, 2], report)
    >>> [p.where for p in report.problems]
    ['2 annotations (annotation ids 5, 6)', 'c']
    >>> report.problems[1].detail
    'category_id 77 is not in categories [1, 2]'
    """
    groups: dict[str, list[tuple[Any, Any, str]]] = defaultdict(list)
    for item in unknown:
        given = item[0]
        text = isinstance(given, str) and given.strip().isdecimal()
        groups["text" if text else repr(given)].append(item)
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
                "write the numbers unquoted, here and in categories"
            )
        else:
            detail = f"category_id {key} is not in categories {list(known)}"
        report.add("unknown category", where, detail)
