"""Evaluators: ``reset() / process(batch, predictions) / evaluate() -> {"<head>/<metric>": float}``.

Which evaluator a head gets is its task's (:data:`visionkit.evaluation.tasks.TASKS`);
:func:`visionkit.build.build_evaluators` builds them for a model and its validation sets.
"""

from __future__ import annotations

from visionkit.evaluation.classification import ClassificationEvaluator
from visionkit.evaluation.coco import CocoEvaluator
from visionkit.evaluation.semantic import SemanticEvaluator

__all__ = ["ClassificationEvaluator", "CocoEvaluator", "SemanticEvaluator"]
