"""The settings that say how a reader's label files are read (a mask folder's
``ignore_index``, ``reduce_zero_label``, ``palette``, ``void_color``: a reader's
``label_settings``), compared between ``data.train`` and the evaluation splits before any
data is read (by ``visionkit eval`` with the checkpoint's ``data.train``). Evaluated with
other settings than it was trained with, a split is scored on other labels than the model
learnt: a forgotten ``ignore_index: 11`` makes CamVid's void pixels errors, a forgotten
``reduce_zero_label`` shifts every class by one, silently where the last class is absent.

>>> train = {"format": "mask_folder", "root": "camvid", "ignore_index": 11}
>>> val = {"format": "mask_folder", "root": "camvid", "ignore_index": None}
>>> errors, warnings = label_setting_problems({"train": train, "val": val})
>>> errors[0].split(":")[0]
'data.val.ignore_index'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from visionkit.config import split_entries
from visionkit.data.batch import IGNORE_PIXEL
from visionkit.registry import DATASETS, UnknownNameError

#: The settings of colour labels only: no cause for a warning between colour label files and
#: class-index ones (Cityscapes' ``_gtFine_color`` and ``_gtFine_labelTrainIds``).
KINDS = ("palette", "void_color")

#: A setting's value when the entry leaves it out (``None`` stands for these too).
DEFAULTS = {"ignore_index": IGNORE_PIXEL, "reduce_zero_label": False}


def label_setting_problems(
    data: Any, splits: Sequence[str] = ("val", "test"), train: Any = None
) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` of the evaluation entries (``data.val``, ``data.test``, each
    set of a mix; of ``splits`` only) whose label settings differ from those of the training
    entry they follow: the one of the same name in a mix, else the one of the same format
    reading the same ``root``, else the one training entry of the same format. An error
    where both read the same label files (one dataset, read two ways: the reader's
    ``label_files``, a mask folder's label folder, ``mask_suffix`` and ``mask_ext``); a
    warning where they read other files, which may be written otherwise on purpose
    (Cityscapes' ``_gtFine_color`` and ``_gtFine_labelTrainIds``, in one folder). Settings
    are compared as the reader applies them (a palette file written relative or absolute
    is one file). ``data``: a validated ``data`` section or its mapping; ``train``: the
    training split's entry to compare with, where ``data`` has none of its own (a
    checkpoint's saved ``data.train``, for ``visionkit eval``)."""
    get = data.get if isinstance(data, Mapping) else lambda split: getattr(data, split, None)
    trained = get("train") if train is None else train
    train = [(w, e) for w, e in split_entries(trained, "data.train") if _settings(e)]
    errors, warnings = [], []
    for split in splits:
        for where, entry in split_entries(get(split), f"data.{split}"):
            keys = _settings(entry)
            match = _training_entry(where.removeprefix(f"data.{split}").lstrip("."), entry, train)
            if not keys or match is None:
                continue
            reference, trained = match
            files = _label_files(entry)
            one = files is not None and files == _label_files(trained)
            for key in keys:
                ours, theirs = _value(entry, key), _value(trained, key)
                if ours == theirs or (not one and key in KINDS and _kind(entry) != _kind(trained)):
                    continue  # colour labels and index ones are other files, read otherwise
                problem = (
                    f"{where}.{key}: {_said(entry, key)} but {reference}.{key}: "
                    f"{_said(trained, key)}"
                )
                said = trained.get(key) if _same_root(entry, trained) else theirs
                fix = f"write {key}: {_yaml(said)} in {where} too ({where}.{key}={_yaml(said)})"
                if one:
                    errors.append(
                        f"{problem}; both read the label files {_files(files)}, which are "
                        f"written one way: read two ways, {where} would be scored on other "
                        f"labels than {reference} trains on (wrong metrics); {fix}"
                    )
                else:
                    warnings.append(
                        f"{problem}: they read other label files ({_files(files)}; "
                        f"{_files(_label_files(trained))}); if those are written alike, "
                        f"{where}'s metrics will be wrong: {fix}"
                    )
    return errors, warnings


def _training_entry(
    name: str, entry: Mapping[str, Any], train: list[tuple[str, Any]]
) -> tuple[str, Any] | None:
    """The training entry an evaluation entry (``name``: its name in a mix, or ``""``)
    follows: of the same name, else of the same format and ``root``, else the one of the
    same format; ``None`` when none (or several) fit."""
    same = [(w, e) for w, e in train if e.get("format") == entry.get("format")]
    named = [(w, e) for w, e in same if name and w == f"data.train.{name}"]
    rooted = [(w, e) for w, e in same if _same_root(e, entry)]
    for found in (named, rooted, same):
        if len(found) == 1:
            return found[0]
    return None


def _label_files(entry: Mapping[str, Any]) -> Any:
    """What names the label files an entry reads (its reader's ``label_files``; else its
    folder), comparable between entries; ``None`` where unknown."""
    reader = DATASETS.component_class(entry["format"])
    if hasattr(reader, "label_files"):
        return reader.label_files(entry)
    where = entry.get(getattr(reader, "location", "root"))
    return (os.path.normpath(os.path.abspath(where)),) if isinstance(where, str) else None


def _files(files: Any) -> str:
    """``/data/cs/masks/*_gtFine_color.png`` of a mask folder's ``label_files``."""
    if isinstance(files, tuple) and len(files) == 3:
        return os.path.join(files[0], f"*{files[1]}{files[2]}")
    return str(files[0]) if files else "?"


def _kind(entry: Mapping[str, Any]) -> bool:
    """Whether an entry reads colour labels (a palette) rather than class indices."""
    return entry.get("palette") is not None


def _settings(entry: Any) -> tuple[str, ...]:
    """The label settings of an entry's reader (none for a reader that declares none)."""
    if not isinstance(entry, Mapping) or not isinstance(entry.get("format"), str):
        return ()
    try:
        return tuple(getattr(DATASETS.component_class(entry["format"]), "label_settings", ()))
    except UnknownNameError:
        return ()


def _value(entry: Mapping[str, Any], key: str) -> Any:
    """The setting as the reader applies it (its ``label_setting``), the default filled in."""
    value = entry.get(key)
    value = DEFAULTS.get(key) if value is None else value
    reader = DATASETS.component_class(entry["format"])
    return reader.label_setting(entry, key, value) if hasattr(reader, "label_setting") else value


def _said(entry: Mapping[str, Any], key: str) -> str:
    """``11``, or ``255 (the default)`` for a setting the entry leaves out."""
    value = _yaml(DEFAULTS.get(key) if entry.get(key) is None else entry.get(key))
    return value if entry.get(key) not in (None, DEFAULTS.get(key)) else f"{value} (the default)"


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _same_root(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two entries of one format read the same folder (or file)."""
    location = getattr(DATASETS.component_class(a["format"]), "location", "root")
    return _same_path(a.get(location), b.get(location))


def _same_path(a: Any, b: Any) -> bool:
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))
