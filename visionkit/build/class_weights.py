"""``class_weights: auto`` of a classification head: weights from the training set's images per
class, as scikit-learn's ``class_weight="balanced"`` computes them,
``n_images / (n_classes * images_of_class)`` (a class of half the average count weighs 2).

>>> balanced_weights({"cat": 30, "dog": 10})
[0.6666666666666666, 2.0]
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from visionkit.config import Config
from visionkit.errors import ConfigError
from visionkit.evaluation.tasks import label_family
from visionkit.registry import HEADS

logger = logging.getLogger(__name__)

#: The value of ``class_weights`` that asks for the training set's balanced weights.
AUTO = "auto"


def balanced_weights(counts: Mapping[str, int]) -> list[float]:
    """``n / (C * count_c)`` for each class of ``counts`` (class name → images), in its order."""
    total = sum(counts.values())
    return [total / (len(counts) * n) for n in counts.values()]


def training_counts(train: Any, family: str) -> Counter | None:
    """Images per class of ``family`` the training set's reader counted (a mix: its parts'
    summed), by class name; ``None``: its reader does not count them."""
    parts = getattr(train, "parts", None)
    sets = parts.values() if isinstance(parts, Mapping) else [train]
    total: Counter = Counter()
    for dataset in sets:
        counts = getattr(getattr(dataset, "report", None), "class_counts", {}).get(family)
        if counts is None:
            return None
        total.update(counts)
    return total


def auto_class_weights(cfg: Config, train: Any) -> Config:
    """``cfg`` with each head's ``class_weights: auto`` replaced by the balanced weights of the
    training set ``train`` (logged once, with the counts they come from).

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
        found = training_counts(train, family)
        if not names or found is None:
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
        cfg.model.heads[head_name]["class_weights"] = weights
        logger.info(
            "%s: auto -> %s (n_images / (n_classes * images of the class); training images per "
            "class: %s)",
            key,
            ", ".join(f"{name} {w:.3g}" for name, w in zip(names, weights, strict=True)),
            ", ".join(f"{name} {n}" for name, n in counts.items()),
        )
    if problems:
        raise ConfigError(problems)
    return cfg
