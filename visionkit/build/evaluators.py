"""The evaluators of a model on its validation sets, chosen by each head's task."""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from visionkit.build.model import sets_no_head_uses
from visionkit.data.datasets import carries_labels, val_sets
from visionkit.errors import ConfigError
from visionkit.evaluation.tasks import TASKS
from visionkit.models.model import VisionModel

logger = logging.getLogger(__name__)


def sets_carrying(model: VisionModel, sets: dict[str, Any]) -> dict[str, tuple[Any, list[str]]]:
    """Per head of a known task: its task's spec, and the names of the ``sets`` that carry
    its label family (the one rule of which set scores which head)."""
    out = {}
    for name, head in model.heads.items():
        spec = TASKS.get(getattr(head, "task", None))
        if spec is not None:
            out[name] = (spec, [s for s in sets if carries_labels(sets[s], spec.labels)])
    return out


def build_evaluators(
    model: VisionModel, val_dataset: Any, split: str = "val"
) -> list[dict[str, nn.Module]]:
    """The evaluators of each validation set, in the order of the validation loaders.

    Each head is evaluated, by its task's evaluator, on the sets that carry its label family.
    Its metric keys are ``<head>/<metric>`` when one set does (key ``<head>``) and
    ``<head>/<set>/<metric>`` when several do (key ``<head>@<set>``). A head whose task is not
    in the table, or that a set cannot evaluate (e.g. a detection head without a COCO
    annotation file), gets none; a head no set carries labels for is logged as not scored.

    Args:
        model: the model; its ``meta["category_ids"]`` map labels to COCO category ids.
        val_dataset: the validation dataset, or a name → dataset dict of several (``None``:
            no evaluators).
        split: the config's name of that data (``data.<split>``), for the warning of a set
            of a mix that scores no head.
    """
    sets = val_sets(val_dataset)
    names = list(sets)
    per_set: list[dict[str, nn.Module]] = [{} for _ in names]
    category_ids = model.meta.get("category_ids") or None
    carried = sets_carrying(model, sets)
    for warning in sets_no_head_uses({spec.labels for spec, _ in carried.values()}, sets, split):
        logger.warning(warning)
    for name, (spec, carrying) in carried.items():
        if names and not carrying:
            logger.warning(
                "head %r is not scored: no evaluation set carries its labels (%s)",
                name,
                spec.labels,
            )
        for set_name in carrying:
            prefix = name if len(carrying) == 1 else f"{name}/{set_name}"
            evaluator = spec.evaluator(prefix, model.heads[name], sets[set_name], category_ids)
            if evaluator is not None:
                per_set[names.index(set_name)][prefix.replace("/", "@")] = evaluator
    return per_set


def require_labels_scored(model: VisionModel, val_dataset: Any, where: str) -> None:
    """For ``eval``: data in which none of the model's heads finds its labels is an error (the
    run would print a loss of 0 and no metric, and exit 0): a classifier's checkpoint given
    VOC boxes, say. ``where`` names the data (``data.val``)."""
    sets = val_sets(val_dataset)
    carried = sets_carrying(model, sets)
    if not sets or not carried or any(carrying for _, carrying in carried.values()):
        return
    heads = ", ".join(f"{name} ({spec.labels} labels)" for name, (spec, _) in carried.items())
    held = sorted({f for s in sets.values() for f in getattr(s, "label_names", None) or {}})
    raise ConfigError(
        f"{where}: nothing to score: the checkpoint's heads want {heads}, and the data holds "
        f"{' and '.join(held) or 'no'} labels; give data of the task the model was trained "
        "for (or the checkpoint that goes with this data)"
    )
