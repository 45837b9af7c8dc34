"""``class_weights: auto`` of a classification head: weights from the training set's images per
class, as scikit-learn's ``class_weight="balanced"`` computes them,
``n_images / (n_classes * images_of_class)`` (a class of half the average count weighs 2).
The images counted are those training draws: a mix's parts that carry the head's labels, each
part's counts taken by its sampling ``weight`` (:func:`drawn_counts`). A resumed run keeps the
weights its checkpoint was trained with.

>>> balanced_weights({"cat": 30, "dog": 10})
[0.6666666666666666, 2.0]
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

from visionkit.checkpoint import load_checkpoint
from visionkit.config import Config
from visionkit.data.datasets import carries_labels
from visionkit.errors import CheckpointError, ConfigError
from visionkit.evaluation.tasks import label_family
from visionkit.registry import HEADS

logger = logging.getLogger(__name__)

#: The value of ``class_weights`` that asks for the training set's balanced weights.
AUTO = "auto"


def balanced_weights(counts: Mapping[str, int]) -> list[float]:
    """``n / (C * count_c)`` for each class of ``counts`` (class name → images), in its order."""
    total = sum(counts.values())
    return [total / (len(counts) * n) for n in counts.values()]


def drawn_counts(train: Any, family: str) -> tuple[dict[str, float], list[str]]:
    """Images per class of ``family`` that training draws from ``train``, by class name, and
    the names of the parts that carry ``family`` without counting it (their reader has no
    ``report.class_counts``; a single dataset: ``["data.train"]``).

    A mix draws part ``d``'s samples in proportion to ``weight_d / len_d``
    (:meth:`~visionkit.data.datasets.MixedDataset.sample_weights`), so class ``c`` is counted
    ``weight_d * count_dc / len_d`` summed over the parts that carry ``family`` (the others
    are skipped), rescaled to those parts' images in all: a mix of one counting part, or of
    parts drawn as often as their size, gives the plain counts.
    """
    parts = getattr(train, "parts", None)
    if not isinstance(parts, Mapping):
        counts = _counts_of(train, family)
        return (dict(counts), []) if counts is not None else ({}, ["data.train"])
    drawn: dict[str, float] = {}
    images = 0
    uncounted = []
    for name, dataset in parts.items():
        if not carries_labels(dataset, family):
            continue
        counts = _counts_of(dataset, family)
        if counts is None:
            uncounted.append(f"data.train.{name}")
            continue
        images += sum(counts.values())
        share = getattr(train, "weights", {}).get(name, 1.0) / max(1, len(dataset))
        for cls, n in counts.items():
            drawn[cls] = drawn.get(cls, 0.0) + share * n
    scale = images / (sum(drawn.values()) or 1)
    return {cls: n * scale for cls, n in drawn.items()}, uncounted


def _counts_of(dataset: Any, family: str) -> Counter | None:
    """The images per class of ``family`` a dataset's reader counted (``None``: not counted)."""
    return getattr(getattr(dataset, "report", None), "class_counts", {}).get(family)


def stored_class_weights(checkpoint: str | os.PathLike | None) -> dict[str, list[float]]:
    """Head name → the ``class_weights`` list a checkpoint's run was trained with (heads
    without one left out; ``{}`` for no checkpoint, or one without a visionkit config)."""
    if checkpoint is None:
        return {}
    try:
        meta = load_checkpoint(checkpoint).get("visionkit") or {}
    except CheckpointError:  # the resume check reports it
        return {}
    heads = ((meta.get("config") or {}).get("model") or {}).get("heads") or {}
    return {
        name: list(spec["class_weights"])
        for name, spec in heads.items()
        if isinstance(spec, Mapping) and isinstance(spec.get("class_weights"), list)
    }


def weighs_classes(cfg: Config) -> bool:
    """Whether a head of image-level classes (the ``class`` label family) has ``class_weights``
    (a list, or ``auto``)."""
    return any(
        spec.get("class_weights") is not None
        and label_family(HEADS.component_class(spec["name"])) == "class"
        for spec in cfg.model.heads.values()
    )


def _count(n: float) -> str:
    """A count as a whole number, or to one decimal where a mix's weights made it a fraction."""
    return str(int(n)) if float(n).is_integer() else f"{n:.1f}"


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-6) for x, y in zip(a, b, strict=True)
    )


def _listed(names: list[str], values: list[float]) -> str:
    return ", ".join(f"{name} {v:.3g}" for name, v in zip(names, values, strict=False))


def auto_class_weights(
    cfg: Config, train: Any, stored: Mapping[str, list[float]] | None = None
) -> Config:
    """``cfg`` with each head's ``class_weights: auto`` replaced by the balanced weights of the
    images training draws from ``train`` (:func:`drawn_counts`; logged once, with the counts
    they come from). ``stored``: head name → the list of the checkpoint a run resumes
    (:func:`stored_class_weights`), kept, with a warning where the data now gives others.

    Raises:
        ConfigError: a class without training images (its weight would be infinite), or a
            training set whose reader does not count its images per class.
    """
    heads = {k: s for k, s in cfg.model.heads.items() if s.get("class_weights") == AUTO}
    if not heads:
        return cfg
    cfg = cfg.model_copy(deep=True)
    problems = []
    for head_name, spec in heads.items():
        key = f"model.heads.{head_name}.class_weights"
        family = label_family(HEADS.component_class(spec["name"]))
        names = list((getattr(train, "label_names", None) or {}).get(family) or [])
        found, uncounted = drawn_counts(train, family)
        if uncounted and found:  # the weights would leave those sets' images out
            problems.append(
                f"{key}: auto, but {', '.join(uncounted)} carries {family!r} labels without "
                "counting its images per class; give one weight per class, e.g. [1.0, 3.0]"
            )
            continue
        if not names or not found:
            problems.append(
                f"{key}: auto, but the training set does not count its images per class "
                f"({family!r} labels); give one weight per class, e.g. [1.0, 3.0]"
            )
            continue
        counts = {name: found.get(name, 0) for name in names}
        empty = [name for name, n in counts.items() if not n]
        if empty:
            problems.append(
                f"{key}: auto, but classes without training images: {', '.join(empty)} (n / "
                "(C * 0) is no weight); add training images of them (or remove the class), or "
                "give one weight per class"
            )
            continue
        weights = balanced_weights(counts)
        mixed = isinstance(getattr(train, "parts", None), Mapping)
        drawn = "images per class training draws, by the sets' weights" if mixed else ""
        drawn = f"{drawn or 'training images per class'}: " + ", ".join(
            f"{name} {_count(n)}" for name, n in counts.items()
        )
        kept = (stored or {}).get(head_name)
        if kept is not None and not _same(kept, weights):
            logger.warning(
                "%s: auto: the resumed run keeps the weights it was trained with, %s; its "
                "training data now gives %s (%s); to train with those, start a new run from "
                "the checkpoint's weights (model.init_from=CHECKPOINT)",
                key,
                _listed(names, kept),
                _listed(names, weights),
                drawn,
            )
        else:
            logger.info(
                "%s: auto -> %s (n_images / (n_classes * images of the class); %s)",
                key,
                _listed(names, weights),
                drawn,
            )
        cfg.model.heads[head_name]["class_weights"] = list(kept if kept is not None else weights)
    if problems:
        raise ConfigError(problems)
    return cfg
