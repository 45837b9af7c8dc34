"""The settings that say how a reader's label files are read (a mask folder's
``ignore_index``, ``reduce_zero_label``, ``palette``, ``void_color``: a reader's
``label_settings``), compared between ``data.train`` and the evaluation splits before any
data is read. Evaluated with other settings than it was trained with, a split is scored on
other labels than the model learnt: a forgotten ``ignore_index: 11`` makes CamVid's void
pixels errors, a forgotten ``reduce_zero_label`` shifts every class by one, silently where
the last class is absent.

>>> train = {"format": "mask_folder", "root": "camvid", "ignore_index": 11}
>>> val = {"format": "mask_folder", "root": "camvid", "ignore_index": None}
>>> errors, warnings = label_setting_problems({"train": train, "val": val})
>>> errors[0].split(":")[0]
'data.val.ignore_index'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from visionkit.config import split_entries
from visionkit.data.batch import IGNORE_PIXEL
from visionkit.registry import DATASETS, UnknownNameError

#: A setting's value when the entry leaves it out (``None`` stands for these too).
DEFAULTS = {"ignore_index": IGNORE_PIXEL, "reduce_zero_label": False}


def label_setting_problems(data: Any) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` of the evaluation entries (``data.val``, ``data.test``, each
    set of a mix) whose label settings differ from those of the training entry they follow:
    the one of the same name in a mix, else the one training entry of the same format.
    An error where both read the same folder (``root``: one dataset, read two ways); a
    warning where they read different folders, which may be labelled differently on purpose.
    ``data``: a validated ``data`` section or its mapping."""
    get = data.get if isinstance(data, Mapping) else lambda split: getattr(data, split, None)
    train = [(w, e) for w, e in split_entries(get("train"), "data.train") if _settings(e)]
    errors, warnings = [], []
    for split in ("val", "test"):
        for where, entry in split_entries(get(split), f"data.{split}"):
            keys = _settings(entry)
            if not keys:
                continue
            name = where.removeprefix(f"data.{split}").lstrip(".")
            same = [(w, e) for w, e in train if e.get("format") == entry.get("format")]
            named = [(w, e) for w, e in same if w == f"data.train.{name}"]
            if not (named or len(same) == 1):
                continue
            reference, trained = (named or same)[0]
            location = getattr(DATASETS.component_class(entry["format"]), "location", "root")
            one = _same_path(entry.get(location), trained.get(location))
            for key in keys:
                ours, theirs = _value(entry, key), _value(trained, key)
                if ours == theirs:
                    continue
                problem = (
                    f"{where}.{key}: {_said(entry, key)} but {reference}.{key}: "
                    f"{_said(trained, key)}"
                )
                if one:
                    errors.append(
                        f"{problem}; both read {entry.get(location)}, whose label files are "
                        f"written one way: read two ways, {where} would be scored on other "
                        f"labels than {reference} trains on (wrong metrics); write "
                        f"{key}: {_yaml(theirs)} in {where} too ({where}.{key}={_yaml(theirs)})"
                    )
                else:
                    warnings.append(
                        f"{problem}: their label files are read differently; if both folders "
                        f"are labelled alike, {where}'s metrics will be wrong: write "
                        f"{key}: {_yaml(theirs)} in {where} too ({where}.{key}={_yaml(theirs)})"
                    )
    return errors, warnings


def _settings(entry: Any) -> tuple[str, ...]:
    """The label settings of an entry's reader (none for a reader that declares none)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("format"), str):
        return ()
    try:
        return tuple(getattr(DATASETS.component_class(entry["format"]), "label_settings", ()))
    except UnknownNameError:
        return ()


def _value(entry: Mapping[str, Any], key: str) -> Any:
    value = entry.get(key)
    return DEFAULTS.get(key) if value is None else value


def _said(entry: Mapping[str, Any], key: str) -> str:
    """``11``, or ``255 (the default)`` for a setting the entry leaves out."""
    value = _yaml(_value(entry, key))
    return value if entry.get(key) not in (None, DEFAULTS.get(key)) else f"{value} (the default)"


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _same_path(a: Any, b: Any) -> bool:
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))
