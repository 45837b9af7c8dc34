"""Which box classes each image's set annotates, where the sets of a training mix annotate
different classes (the partial-annotation problem of multi-dataset detection).

Sets mixed under ``data.train`` are merged by class name under one detection head
(:func:`~visionkit.data.classes.merge_classes`): with set ``a`` labelling ``cat, dog`` and set
``b`` labelling ``car``, an unlabelled car in a photo of ``a`` is not background, only not
annotated. Each sample of such a mix then carries :data:`ANNOTATED`, bool ``[C]`` over the merged
``instances`` classes: the classes its set annotates. The batch stacks them into bool
``[B, C]`` (:func:`collate_annotated`), and the detection heads' focal loss leaves out the
classification terms of the other classes (the federated loss of Zhou et al., 2021,
"Probabilistic two-stage detection"; :func:`visionkit.models.heads._utils.focal_loss`).
A mix whose sets all annotate every class gives no :data:`ANNOTATED`, and nothing changes.

What a set annotates (:func:`annotated_labels`): the classes its entry's ``annotated_classes``
names, else those of its own class list (the merged labels its labels move to, so a file
naming two categories alike annotates both), else, for a set naming no class at all (photos
of backgrounds), every class: its images are negatives of all. Only the sets that give boxes
count: a set of image-level classes (``instances: false``) annotates no box class and carries
nothing. A set that lists a class but holds no box of it while another set has boxes of it is
warned of (:func:`unboxed_class_warnings`): converted VOC / YOLO / LabelMe sets share one class
list, and only ``annotated_classes`` says which of them each labels.

An image made of several samples (``Mosaic``, ``MixUp``) annotates the classes all of them
annotate (:func:`intersection`): a class one of them lacks may be in its part of the
picture, unlabelled. In a mix of sets annotating different classes these steps draw their
other images from the first image's own set (:meth:`~visionkit.data.datasets.MixedDataset.
partners_of`), so a mosaic annotates that set's classes rather than none. (``CopyPaste``
keeps the receiving sample's: what it pastes is the labelled objects' pixels only.)

>>> annotated = annotated_by_part({"a": [0, 1], "b": [2], "negatives": []}, 3)
>>> {name: v.tolist() for name, v in annotated.items()}
{'a': [True, True, False], 'b': [False, False, True], 'negatives': [True, True, True]}
>>> other = {ANNOTATED: np.array([True, False, True])}
>>> intersection([{ANNOTATED: annotated["a"]}, other]).tolist()
[True, False, False]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from visionkit.errors import DataError

#: The Sample (and batch) key: bool ``[C]`` per sample, ``[B, C]`` per batch.
ANNOTATED = "annotated_classes"


def gives_boxes(dataset: Any) -> bool:
    """Whether ``dataset`` (one set of a mix) gives boxes: it has an ``instances`` class list
    and its reader gives boxes (a COCO set read with ``instances: false`` for its image-level
    classes does not)."""
    from visionkit.data.datasets import gives

    names = getattr(dataset, "label_names", None) or {}
    return (
        "instances" in names
        and gives(dataset, "boxes")
        and getattr(dataset, "instances", True) is not False
    )


def annotated_labels(
    parts: Mapping[str, Any],
    merged: Sequence[str],
    mappings: Mapping[str, Mapping[str, Sequence[int]]],
    given: Mapping[str, Sequence[str] | None],
    where: str = "data.train",
) -> dict[str, list[int]]:
    """Set name → the merged ``instances`` labels it annotates (``[]``: every class), for the
    sets of ``parts`` that give boxes (:func:`gives_boxes`).

    Args:
        parts: set name → dataset.
        merged: the merged ``instances`` class names.
        mappings: set → family → mapping of its labels into the merged ones
            (:func:`~visionkit.data.classes.merge_classes`; a set absent keeps its labels).
        given: set name → its entry's ``annotated_classes`` (class names), or ``None``.
        where: the config path of the mix, for messages.

    Raises:
        DataError: an ``annotated_classes`` names a class of no set, is given to a set
            without boxes, or leaves out a class the set has boxes of.
    """
    problems, out = [], {}
    for name, dataset in parts.items():
        names = given.get(name)
        key = f"{where}.{name}.{ANNOTATED}"
        if not gives_boxes(dataset):
            if names is not None:
                problems.append(
                    f"{key}: {name} gives no boxes (an image-level or label-map set, or "
                    "instances: false); annotated_classes says which box classes a detection "
                    "set labels: leave it out here"
                )
            continue
        own = dataset.label_names["instances"]
        mapping = list(mappings.get(name, {}).get("instances", range(len(own))))
        if names is None:
            out[name] = sorted(set(mapping))
            continue
        unknown = [n for n in names if n not in merged]
        if unknown:
            problems.append(
                f"{key}: {', '.join(map(repr, unknown))} is not a class of {where} (its sets "
                f"have: {', '.join(merged)}); name classes of that list"
            )
            continue
        labels = sorted({i for i, n in enumerate(merged) if n in names})
        counts = box_counts(dataset, mapping, len(merged))
        left = [] if counts is None else np.flatnonzero(counts).tolist()
        left = [merged[i] for i in left if i not in labels]
        if left:
            problems.append(
                f"{key}: leaves out {', '.join(dict.fromkeys(left))}, of which {name} has "
                "boxes; a set annotates every class it labels: add them"
            )
            continue
        out[name] = labels
    if problems:
        raise DataError("the box classes its sets annotate (annotated_classes):", problems)
    return out


def annotated_by_part(own: Mapping[str, Sequence[int]], size: int) -> dict[str, np.ndarray]:
    """Set name → bool ``[size]``: the labels each set annotates (``own``: set name → its
    labels, ``[]`` for a set naming no class, which annotates every one); ``{}`` when every
    set annotates them all (the common case: nothing is masked)."""
    out = {}
    for part, labels in own.items():
        vector = np.zeros(size, dtype=bool) if len(labels) else np.ones(size, dtype=bool)
        vector[list(labels)] = True
        out[part] = vector
    return out if any(not v.all() for v in out.values()) else {}


def box_counts(dataset: Any, mapping: Sequence[int], size: int) -> np.ndarray | None:
    """int64 ``[size]``: the boxes of each merged class in ``dataset`` (its labels moved by
    ``mapping``), read from the reader's per-image ``targets`` (the COCO reader's, and those of
    the VOC, YOLO and LabelMe readers built on it); ``None`` for a reader without them."""
    targets = getattr(dataset, "targets", None)
    if not isinstance(targets, list):
        return None
    labels = [np.asarray(t.get("labels", ()), np.int64).reshape(-1) for t in targets]
    flat = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    table = np.asarray(mapping, np.int64)
    flat = flat[(flat >= 0) & (flat < len(table))]
    return np.bincount(table[flat], minlength=size)


def unboxed_class_warnings(
    parts: Mapping[str, Any],
    annotated: Mapping[str, np.ndarray],
    merged: Sequence[str],
    mappings: Mapping[str, Mapping[str, Sequence[int]]],
    where: str = "data.train",
) -> list[str]:
    """One warning per set of ``annotated`` (set name → bool ``[C]``, every set giving boxes)
    that annotates classes it has no box of while another set has boxes of them: its images
    teach that none is there. A set without any box (photos of backgrounds) is meant so."""
    counts = {}
    for name in annotated:
        own = parts[name].label_names["instances"]
        mapping = list(mappings.get(name, {}).get("instances", range(len(own))))
        found = box_counts(parts[name], mapping, len(merged))
        if found is not None:
            counts[name] = found
    warnings = []
    for name, found in counts.items():
        if not found.any():
            continue
        others = {o: c for o, c in counts.items() if o != name}
        unboxed = np.flatnonzero(annotated[name] & (found == 0))
        lacking = [int(i) for i in unboxed if any(c[i] for c in others.values())]
        if not lacking:
            continue
        boxed = [o for o, c in others.items() if c[lacking].any()]
        keep = dict.fromkeys(merged[i] for i in np.flatnonzero(annotated[name]) if i not in lacking)
        missing = ", ".join(dict.fromkeys(merged[i] for i in lacking))
        them = "it" if len(lacking) == 1 else "them"
        warnings.append(
            f"{where}.{name} has no box of {missing} ({', '.join(boxed)} "
            f"{'has' if len(boxed) == 1 else 'have'} some): its images teach the detection "
            f"heads that none is there; if {name} does not annotate {them}, write "
            f"{where}.{name}.{ANNOTATED}: [{', '.join(keep)}]"
        )
    return warnings


def describe(annotated: Mapping[str, np.ndarray], merged: Sequence[str], where: str) -> str:
    """The log line saying which set annotates which classes, and what training does with it."""

    def classes(vector: np.ndarray) -> str:
        if vector.all():  # (a set of backgrounds: negatives of every class)
            return "every class"
        names = [merged[i] for i in np.flatnonzero(vector)]
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
        return shown or "none"

    sets = "; ".join(f"{name}: {classes(v)}" for name, v in annotated.items())
    return (
        f"{where}: the sets annotate different box classes ({sets}); the detection heads' "
        "classification loss of each image leaves out the classes its set does not annotate "
        "(an object of such a class in its photos is neither learnt as one nor as background); "
        "Mosaic and MixUp mix each image with images of its own set"
    )


def intersection(samples: Sequence[Mapping[str, Any]]) -> Any:
    """The classes every sample of ``samples`` annotates (bool ``[C]``, of the type of the
    first sample's), the samples without :data:`ANNOTATED` annotating all; ``None`` when none
    carries it."""
    vectors = [s[ANNOTATED] for s in samples if s.get(ANNOTATED) is not None]
    if not vectors:
        return None
    out = np.logical_and.reduce([np.asarray(v, dtype=bool) for v in vectors])
    return torch.from_numpy(out) if isinstance(vectors[0], torch.Tensor) else out


def collate_annotated(samples: Sequence[Mapping[str, Any]]) -> torch.Tensor | None:
    """bool ``[B, C]``: each sample's :data:`ANNOTATED` (every class for a sample without);
    ``None`` when no sample carries it."""
    vectors = [s.get(ANNOTATED) for s in samples]
    sizes = {len(v) for v in vectors if v is not None}
    if not sizes:
        return None
    if len(sizes) > 1:
        raise DataError(
            f"the images of a batch carry {ANNOTATED} of {sorted(sizes)} classes; expected one "
            "size, that of the merged instance classes (a custom dataset or transform set it)"
        )
    (size,) = sizes
    return torch.stack(
        [
            torch.ones(size, dtype=torch.bool)
            if v is None
            else torch.as_tensor(np.asarray(v, dtype=bool))
            for v in vectors
        ]
    )
