"""The keys of a training mix's entries that visionkit reads itself (``weight``,
``annotated_classes``): refused on one dataset (:func:`mix_keys_of_one`); and settings given
to a split without a ``format`` (:func:`loose_settings`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visionkit.config.paths import is_dataset_mix

#: The keys of an entry of a training mix (``data.train.NAME``), never given to the reader:
#: ``weight`` (its share of the draws) and ``annotated_classes`` (the box classes it labels).
MIX_ENTRY_KEYS = ("weight", "annotated_classes")
#: Every key of a dataset entry that visionkit reads itself: ``synthetic`` (generation) too.
MIX_KEYS = ("synthetic", *MIX_ENTRY_KEYS)


def mix_keys_of_one(spec: Mapping[str, Any], path: str) -> list[str]:
    """The problems of a single dataset entry ``spec`` (at ``path``) given the keys of a mix's
    entries.

    >>> mix_keys_of_one({"format": "coco", "weight": 2}, "data.train")[0][:47]
    'data.train.weight: a sampling weight is a key o'
    """
    problems = []  # a key set to null is unset (a mix entry's config written out, then reused)
    if spec.get("weight") is not None:
        problems.append(
            f"{path}.weight: a sampling weight is a key of a dataset of a mix ({path}: "
            "{photos: {format: ..., weight: 2}, extra: {format: ...}}); one dataset fills "
            "every batch (docs/multitask.md)"
        )
    if spec.get("annotated_classes") is not None:
        problems.append(
            f"{path}.annotated_classes: the box classes a set annotates are a key of a dataset "
            f"of a training mix ({path}: {{pets: {{format: ..., annotated_classes: [cat, dog]}}, "
            "roads: {format: ...}}); one dataset annotates its every class "
            "(docs/multitask.md#partial-labels)"
        )
    return problems


def loose_settings(path: str, loose: list[str], data: Mapping[str, Any]) -> str:
    """The problem of ``path`` given settings (``loose``) without a ``format``: one dataset
    needs its ``format``; a mix, one mapping per named dataset, as another split's mix."""
    given = ", ".join(f"{path}.{key}" for key in loose)
    names = next(
        (list(v) for k, v in data.items() if is_dataset_mix(v) and f"data.{k}" != path), None
    )
    if names:
        sets = " ".join(f"{path}.{name}.{loose[0]}=..." for name in names)
        return (
            f"{given}: the other splits are mixes of named datasets ({', '.join(names)}); "
            f"give {path} the same way, e.g. {sets}"
        )
    return (
        f"{given}: one dataset needs {path}.format (e.g. {path}.format=coco); a mix gives "
        f"each named dataset as a mapping ({path}.NAME.format=...)"
    )
