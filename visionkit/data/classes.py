"""The class lists of datasets and checkpoints: compared (:func:`compare_classes`,
:func:`match_classes`), merged for a mix (:func:`merge_classes`), and a dataset's labels moved
into another class order (:func:`relabel`, :class:`RelabelledDataset`), and a checkpoint's
compared with a run's data (:func:`check_checkpoint_classes`).

A label means a class only through a list: a COCO file's categories (ids and names, labels in
ascending id order), a mask folder's ``classes.txt``, a class folder's sub-folder names, a
checkpoint's ``label_names`` and ``category_ids``. Two lists that disagree shift labels
silently, so the builders compare them (:mod:`visionkit.build.data`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from visionkit.checkpoint import load_checkpoint
from visionkit.errors import CheckpointError, DataError

logger = logging.getLogger(__name__)

#: The Sample key that carries the labels of each label family.
LABEL_KEYS: dict[str, str] = {
    "class": "class",
    "instances": "labels",
    "semantic": "semantic",
    "identity": "identity",
}
#: The key of label 0 of a semantic family made from COCO categories.
BACKGROUND = "background"


@dataclass(frozen=True)
class ClassList:
    """The classes of one label family as its files define them: label ``i`` is class
    ``names[i]``, written in the files as ``keys[i]``: the COCO category id when ``by_id``
    (:data:`BACKGROUND` for label 0 of a semantic family made from COCO categories), else
    the label index itself (a mask PNG's value, a position in ``classes.txt``)."""

    names: tuple[str, ...]
    keys: tuple[Any, ...]
    by_id: bool

    def entry(self, i: int) -> str:
        """Label ``i`` in messages: ``category id 7 ('dog')`` or ``label 2 ('dog')``."""
        if self.by_id and self.keys[i] != BACKGROUND:
            return f"category id {self.keys[i]} ({self.names[i]!r})"
        return f"label {i} ({self.names[i]!r})"

    def describe(self, limit: int = 12) -> str:
        """``[id 1 'cat', id 2 'dog']`` (by id) or ``['background', 'cat']``, cut after
        ``limit`` entries."""
        items = [
            f"id {key} {name!r}" if self.by_id and key != BACKGROUND else repr(name)
            for key, name in zip(self.keys, self.names, strict=True)
        ]
        more = f", ... ({len(items)} in all)" if len(items) > limit else ""
        return "[" + ", ".join(items[:limit]) + more + "]"


def class_lists(
    label_names: Mapping[str, Sequence[str]] | None, category_ids: Sequence[int] | None = None
) -> dict[str, ClassList]:
    """Each label family's :class:`ClassList`, from a dataset's (or a checkpoint's)
    ``label_names`` and COCO ``category_ids``: ``instances`` is keyed by category id, and so
    is a ``semantic`` family made from it (``["background", *instances]``); every other list
    by label index."""
    names = {family: tuple(str(n) for n in v) for family, v in (label_names or {}).items()}
    ids = tuple(int(i) for i in category_ids or ())
    instances = names.get("instances")
    keyed = bool(ids) and instances is not None and len(ids) == len(instances)
    out = {}
    for family, items in names.items():
        if keyed and family == "instances":
            out[family] = ClassList(items, ids, True)
        elif keyed and family == "semantic" and items == (BACKGROUND, *instances):
            out[family] = ClassList(items, (BACKGROUND, *ids), True)
        else:
            out[family] = ClassList(items, tuple(range(len(items))), False)
    return out


def classes_of(dataset: Any) -> dict[str, ClassList]:
    """The :class:`ClassList` of each label family ``dataset`` carries."""
    return class_lists(
        getattr(dataset, "label_names", None), getattr(dataset, "category_ids", None)
    )


def class_source(dataset: Any) -> str:
    """Where ``dataset``'s classes come from, for messages: its ``class_source`` (a mask
    folder's ``classes.txt``, the parts of a mix), else its annotation file or folder."""
    for attr in ("class_source", "ann_path", "root"):
        value = getattr(dataset, attr, None)
        if value:
            return str(value)
    return type(dataset).__name__


def compare_classes(
    reference: ClassList, candidate: ClassList, names: tuple[str, str]
) -> tuple[list[int], list[str]]:
    """Where each label of ``candidate`` sits in ``reference``, and what does not match.

    When both are keyed by COCO category id, every id of ``candidate`` must be one of
    ``reference``'s with the same name; otherwise every class name of ``candidate`` must be
    one of ``reference``'s (as :func:`merge_classes` merges a training mix by name). Either
    way ``candidate`` holds a subset of the classes, in any order, whose labels the mapping
    moves to their place in ``reference``.

    Args:
        reference, candidate: the two lists.
        names: how messages call them, ``(reference, candidate)`` (e.g. ``"data.train"``).

    Returns:
        ``(mapping, problems)``: ``mapping[i]`` is the ``reference`` label of ``candidate``
        label ``i`` (empty when there are problems); one line per label that does not match.
    """
    ref_name, name = names
    problems = []
    if reference.by_id and candidate.by_id:
        position = {key: i for i, key in enumerate(reference.keys)}
        for i, key in enumerate(candidate.keys):
            j = position.get(key)
            if j is None:
                problems.append(f"{candidate.entry(i)} of {name} is not a class of {ref_name}")
            elif reference.names[j] != candidate.names[i]:
                problems.append(
                    f"{candidate.entry(i)} of {name} is {reference.names[j]!r} in {ref_name}"
                )
        mapping = [position.get(key, -1) for key in candidate.keys]
    else:
        position = {label: j for j, label in enumerate(reference.names)}
        for i, label in enumerate(candidate.names):
            if label not in position:
                problems.append(
                    f"label {i} ({label!r}) of {name} is not a class of {ref_name} "
                    f"({reference.describe()})"
                )
        mapping = [position.get(label, -1) for label in candidate.names]
    return ([] if problems else mapping), problems


def match_classes(dataset: Any, reference: Mapping[str, ClassList], names: tuple[str, str]) -> Any:
    """``dataset`` checked against reference class lists (the training set's, or a
    checkpoint's), family by family (:func:`compare_classes`).

    Returns ``dataset`` itself when its labels mean the same classes as the reference's, a
    :class:`RelabelledDataset` when it holds a subset of the classes (by COCO category id,
    else by name) whose labels sit elsewhere in the reference.

    Raises:
        DataError: a label would mean another class; names both lists and their files.
    """
    ref_name, name = names
    where = f"{name} ({class_source(dataset)})"
    mappings, problems, lists = {}, [], []
    unmatched = getattr(dataset, "unmatched_families", ())  # identities: never seen in training
    for family, own in classes_of(dataset).items():
        theirs = reference.get(family)
        if theirs is None or family in unmatched:
            continue
        mapping, found = compare_classes(theirs, own, names)
        if found:
            lists.append(
                f"{family} classes: {where} has {own.describe()}; "
                f"{ref_name} has {theirs.describe()}"
            )
            problems += found
        elif mapping != list(range(len(mapping))):
            mappings[family] = mapping
    if problems:
        raise DataError(
            f"the classes of {name} do not match those of {ref_name}: its labels would be read "
            "as other classes. A set may hold fewer classes, in any order, where each keeps "
            "its name (and its COCO category id, where both have ids); give it the same "
            "class list (classes.txt, categories, class_names)",
            lists + problems,
        )
    if not mappings:
        return dataset
    label_names = {
        family: list(reference[family].names) if family in mappings else list(own)
        for family, own in dataset.label_names.items()
    }
    category_ids = getattr(dataset, "category_ids", None) or []
    if "instances" in mappings and reference["instances"].by_id:
        category_ids = list(reference["instances"].keys)
    elif "instances" in mappings and category_ids:  # matched by name: the file's own ids
        own = dataset.label_names["instances"]
        spare = iter(range(max(category_ids) + 1, 2**31))  # classes the file lacks
        category_ids = [
            category_ids[own.index(n)] if n in own else next(spare)
            for n in reference["instances"].names
        ]
    return RelabelledDataset(dataset, mappings, label_names, category_ids)


def merge_classes(
    parts: Mapping[str, Any],
) -> tuple[dict[str, list[str]], list[int], dict[str, dict[str, list[int]]]]:
    """The class lists of mixed datasets merged by name, family by family.

    A family every part keys by COCO category id is merged by id (ascending, as the COCO
    reader orders them); a class must then have one id, and an id one name, in every part.
    Other families are merged by name, in order of first appearance.

    Returns:
        ``(label_names, category_ids, mappings)``: the merged lists, the merged ``instances``
        category ids (``[]`` without), and part → family → ``mapping`` for the parts whose
        labels move (``mapping[i]``: the merged label of the part's label ``i``).

    Raises:
        DataError: parts give one class two category ids, or one id two names; names both
            parts and their files.
    """
    lists = {name: classes_of(dataset) for name, dataset in parts.items()}
    sources = {name: f"{name} ({class_source(dataset)})" for name, dataset in parts.items()}
    merged: dict[str, ClassList] = {}
    problems: list[str] = []
    for family in dict.fromkeys(f for own in lists.values() for f in own):
        carrying = {name: own[family] for name, own in lists.items() if family in own}
        if all(c.by_id for c in carrying.values()):
            merged[family] = _merge_by_id(carrying, sources, problems)
        else:
            found = tuple(dict.fromkeys(n for c in carrying.values() for n in c.names))
            merged[family] = ClassList(found, tuple(range(len(found))), False)
    if problems:
        converted = [n for n, d in parts.items() if getattr(d, "format_name", "coco") != "coco"]
        hints = [
            f"{', '.join(converted)}: a VOC, YOLO or LabelMe set numbers its classes 1..N in "
            "the order of its class_names (default: sorted names for VOC and LabelMe, "
            "data.yaml's names for YOLO); "
            "give class_names in the order of the COCO file's category ids"
        ] * bool(converted)
        raise DataError(
            "the mixed datasets disagree on their classes (a class needs one COCO category "
            "id, and an id one name, in every part):",
            list(dict.fromkeys(problems)),
            hints=hints,
        )
    mappings: dict[str, dict[str, list[int]]] = {}
    for name, own in lists.items():
        for family, c in own.items():
            into = merged[family]
            keys, index = (into.keys, c.keys) if into.by_id else (into.names, c.names)
            mapping = [keys.index(k) for k in index]
            if mapping != list(range(len(mapping))):
                mappings.setdefault(name, {})[family] = mapping
    instances = merged.get("instances")
    category_ids = list(instances.keys) if instances is not None and instances.by_id else []
    return {f: list(c.names) for f, c in merged.items()}, category_ids, mappings


def _merge_by_id(
    carrying: Mapping[str, ClassList], sources: Mapping[str, str], problems: list[str]
) -> ClassList:
    """The union of id-keyed class lists, ascending by id (background first); conflicts
    between two parts appended to ``problems``."""
    name_of: dict[Any, tuple[str, str]] = {}  # key → (name, part)
    key_of: dict[str, tuple[Any, str]] = {}  # name → (key, part)
    for part, c in carrying.items():
        for key, name in zip(c.keys, c.names, strict=True):
            first, owner = name_of.setdefault(key, (name, part))
            if first != name and owner != part:
                problems.append(
                    f"category id {key} is {first!r} in {sources[owner]} but {name!r} in "
                    f"{sources[part]}"
                )
            known, owner = key_of.setdefault(name, (key, part))
            if known != key and owner != part:
                problems.append(
                    f"{name!r} is category id {known} in {sources[owner]} but id {key} in "
                    f"{sources[part]}"
                )
    keys = sorted(name_of, key=lambda k: (-1, 0) if k == BACKGROUND else (0, k))
    return ClassList(tuple(name_of[k][0] for k in keys), tuple(keys), True)


def relabel(sample: dict[str, Any], mappings: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """``sample`` with the labels of each family in ``mappings`` moved: label ``i`` becomes
    ``mapping[i]``; other values (a negative class, :data:`~visionkit.data.batch.
    IGNORE_PIXEL`) are kept."""
    for family, mapping in mappings.items():
        key = LABEL_KEYS.get(family)
        if key in sample and len(mapping):
            sample[key] = _moved(sample[key], mapping)
    return sample


def _moved_map(label_map: Any, mapping: Sequence[int]) -> Any:
    """A label map moved by ``mapping``; ``None`` (an image without one) as it is."""
    return None if label_map is None else _moved(label_map, mapping)


def _moved(labels: Any, mapping: Sequence[int]) -> Any:
    table = np.asarray(mapping, dtype=np.int64)
    array = np.asarray(labels)
    inside = (array >= 0) & (array < len(table))
    moved = np.where(inside, table[np.clip(array, 0, len(table) - 1)], array)
    return int(moved) if array.ndim == 0 else moved.astype(array.dtype)


class RelabelledDataset(Dataset):
    """A dataset whose labels are moved into another class order as they are read (a
    validation set holding a subset of the training set's COCO categories).

    Samples' ``class`` / ``labels`` / ``semantic`` and the maps of ``load_semantic`` are
    moved by ``mappings`` (family → ``mapping``, see :func:`relabel`); ``label_names`` and
    ``category_ids`` are those of the new order; every other attribute is the wrapped
    dataset's (``ann_path``, ``report``, ``path_of``, ...).
    """

    def __init__(
        self,
        dataset: Any,
        mappings: Mapping[str, Sequence[int]],
        label_names: Mapping[str, Sequence[str]],
        category_ids: Sequence[int],
    ) -> None:
        self.dataset = dataset
        self.mappings = {family: list(m) for family, m in mappings.items()}
        self.label_names = {family: list(v) for family, v in label_names.items()}
        self.category_ids = list(category_ids)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "dataset":  # unpickling, before __dict__ is set
            raise AttributeError(name)
        value = getattr(self.dataset, name)
        if name == "load_semantic" and "semantic" in self.mappings:
            mapping = self.mappings["semantic"]
            return lambda image_id: _moved_map(value(image_id), mapping)
        return value

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return relabel(self.dataset[index], self.mappings)


def check_checkpoint_classes(
    datasets: Mapping[str, Any], checkpoint: str | os.PathLike | None, *, resume: bool
) -> None:
    """Compare the classes of a visionkit ``checkpoint`` with those of the run's data.

    Resuming (``resume``) needs the very classes the checkpoint was trained on. For
    ``model.init_from`` (where the weights of a head are loaded when its number of classes
    is the same), the same classes in another order are an error, and classes shared at
    other labels a warning: their weights would start from another class's. A file without
    visionkit metadata (a timm or torchvision file) is not compared; one that cannot be read
    is left to the loader to report.

    Raises:
        DataError: naming both class lists, the checkpoint and the data's files.
    """
    if checkpoint is None:
        return
    try:
        meta = load_checkpoint(checkpoint).get("visionkit")
    except CheckpointError:
        return
    if not isinstance(meta, Mapping) or not meta.get("label_names"):
        return
    train = datasets.get("train")
    if train is None:
        return
    theirs = class_lists(meta["label_names"], meta.get("category_ids"))
    ours = classes_of(train)
    key = "resume" if resume else "model.init_from"
    where = f"data.train ({class_source(train)})"
    problems = []
    for family, own in ours.items():
        old = theirs.get(family)
        if old is None:
            continue
        lists = f"{family} classes {old.describe()}, but {where} has {own.describe()}"
        if resume and (old.names != own.names or (old.by_id and own.by_id and old != own)):
            problems.append(f"the checkpoint was trained on {lists}")
        elif not resume and len(old.names) == len(own.names):
            moved = [
                f"{name!r} {old.names.index(name)} -> {i}"
                for i, name in enumerate(own.names)
                if name in old.names and old.names.index(name) != i
            ]
            if moved and set(old.names) == set(own.names):
                problems.append(
                    f"the checkpoint was trained on {lists}: the same classes in another "
                    f"order, so each class would start from another's weights ({', '.join(moved)})"
                )
            elif moved:
                logger.warning(
                    "%s: %s was trained on %s; the classes they share sit at other labels (%s), "
                    "so their weights start from other classes' weights",
                    key,
                    checkpoint,
                    lists,
                    ", ".join(moved),
                )
            elif old.names != own.names:
                renamed = [
                    f"{a!r} -> {b!r}" for a, b in zip(old.names, own.names, strict=True) if a != b
                ]
                logger.info(
                    "%s: %s was trained on %s: as many classes, so each label's weights are "
                    "loaded as they are, and a new class starts from the old one at its label "
                    "(%s)",
                    key,
                    checkpoint,
                    lists,
                    ", ".join(renamed[:8]) + (", ..." if len(renamed) > 8 else ""),
                )
    if problems:
        fix = (
            "a resumed run keeps its classes; to train on other classes, start a new run "
            f"with model.init_from={checkpoint}"
            if resume
            else "give the data the checkpoint's class order (class_names, classes.txt or the "
            "categories' ids)"
        )
        raise DataError(f"{key}: {checkpoint}: the classes do not match ({fix}):", problems)
    if not resume:  # a resumed run's keypoint names are its config's: checked when built
        _check_keypoint_order(meta, train, checkpoint, where)


def _check_keypoint_order(
    meta: Mapping[str, Any], train: Any, checkpoint: str | os.PathLike, where: str
) -> None:
    """``model.init_from`` of a keypoint head trained on as many keypoints as the data's,
    named otherwise: the same names in another order are an error (each point's weights
    would start from another point's), names shared at other places a warning."""
    parts = getattr(train, "parts", None)
    sets = parts.values() if isinstance(parts, Mapping) else [train]
    schema = next((s.keypoint_schema for s in sets if getattr(s, "keypoint_schema", None)), None)
    heads = ((meta.get("config") or {}).get("model") or {}).get("heads") or {}
    if schema is None or not isinstance(heads, Mapping):
        return
    ours = list(schema.names)
    for name, spec in heads.items():
        old = spec.get("keypoint_names") if isinstance(spec, Mapping) else None
        if not isinstance(old, list) or len(old) != len(ours) or old == ours:
            continue
        moved = [
            f"{n!r} {old.index(n)} -> {i}"
            for i, n in enumerate(ours)
            if n in old and old.index(n) != i
        ]
        if not moved:  # other names: loaded in order, as classes are
            continue
        said = (
            f"model.init_from: {checkpoint}: head {name!r} was trained on the keypoints {old}, "
            f"but {where} names {ours}"
        )
        if set(old) == set(ours):
            raise DataError(
                f"{said}: the same keypoints in another order, so each would start from "
                f"another's weights ({', '.join(moved)}); give the data the checkpoint's order "
                "(the categories' keypoints and every annotation's points)"
            )
        logger.warning(
            "%s; the keypoints they share sit at other places (%s), so their "
            "weights start from other keypoints' weights",
            said,
            ", ".join(moved),
        )
