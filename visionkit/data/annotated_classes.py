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

An image made of several samples (``Mosaic``, ``MixUp``) annotates the classes all of them
annotate (:func:`intersection`): a class one of them lacks may be in its part of the
picture, unlabelled. (``CopyPaste`` keeps the receiving sample's: what it pastes is the
labelled objects' pixels only.)

>>> annotated = annotated_by_part({"a": ["cat", "dog"], "b": ["car"]}, ["cat", "dog", "car"])
>>> {name: v.tolist() for name, v in annotated.items()}
{'a': [True, True, False], 'b': [False, False, True]}
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


def annotated_by_part(
    own: Mapping[str, Sequence[str]], merged: Sequence[str]
) -> dict[str, np.ndarray]:
    """Part name → bool ``[C]``: which of the ``merged`` instance classes each part annotates
    (``own``: part name → its instance class names); ``{}`` when every part annotates them
    all (the common case: nothing is masked)."""
    position = {name: i for i, name in enumerate(merged)}
    out = {}
    for part, names in own.items():
        vector = np.zeros(len(merged), dtype=bool)
        vector[[position[n] for n in names]] = True
        out[part] = vector
    return out if any(not v.all() for v in out.values()) else {}


def describe(annotated: Mapping[str, np.ndarray], merged: Sequence[str], where: str) -> str:
    """The log line saying which set annotates which classes, and what training does with it."""

    def classes(vector: np.ndarray) -> str:
        names = [merged[i] for i in np.flatnonzero(vector)]
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
        return shown or "none"

    sets = "; ".join(f"{name}: {classes(v)}" for name, v in annotated.items())
    return (
        f"{where}: the sets annotate different box classes ({sets}); the detection heads' "
        "classification loss of each image leaves out the classes its set does not annotate "
        "(an object of such a class in its photos is neither learnt as one nor as background); "
        "an image mixed from several sets (Mosaic, MixUp) counts the classes all of them annotate"
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
