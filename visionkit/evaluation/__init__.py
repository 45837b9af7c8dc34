"""Evaluators: ``reset() / process(batch, predictions) / evaluate() -> {"<head>/<metric>": float}``."""

from __future__ import annotations

from torch import nn

from visionkit.evaluation.classification import ClassificationEvaluator


def build_evaluator(head_name: str, head: nn.Module) -> nn.Module | None:
    """The evaluator for a head, chosen by its ``task``; ``None`` for a task without one."""
    if head.task == "classification":
        return ClassificationEvaluator(head_name, head.num_classes)
    return None


__all__ = ["ClassificationEvaluator", "build_evaluator"]
