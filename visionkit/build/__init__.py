"""Config becomes objects here, in one visible place.

Every section of a validated :class:`~visionkit.config.Config` is turned into the objects
that use it by one function of this package, and those objects take plain arguments, never a
config: the model (:func:`create_model`, :func:`build_model`; :func:`load` from a checkpoint),
the datasets (:func:`build_datasets`, :func:`build_dataset`), the transform pipelines
(:func:`build_pipelines`), the evaluators (:func:`build_evaluators`), the optimiser and the
learning-rate schedule (:func:`optimizer_factory`, :func:`lr_schedule`) and the keyword
arguments of ``lightning.Trainer`` (:func:`trainer_kwargs`; Lightning itself is imported only
by :mod:`visionkit.engine`, which calls these).

What a head's task needs (its label family, the Sample targets it learns from, its
evaluator) is read from the task table, :data:`visionkit.evaluation.tasks.TASKS`; what a
reader can produce from the reader class's own declarations (``location``, ``targets``,
``target_flags``).

One module per section: :mod:`.model`, :mod:`.data`, :mod:`.pipelines`, :mod:`.evaluators`, :mod:`.optim`,
:mod:`.trainer`; the names below are the ones the rest of visionkit calls.
"""

from visionkit.build.data import (
    boxes_needed,
    build_dataset,
    build_datasets,
    build_split,
    dropped_keys,
    targets_needed,
)
from visionkit.build.evaluators import (
    build_evaluators,
    require_labels_scored,
)
from visionkit.build.model import (
    CHECKPOINT_FORMAT_VERSION,
    EvalPreprocess,
    build_model,
    create_model,
    load,
    model_from_meta,
    prefix_problems,
    resolve_num_classes,
)
from visionkit.build.optim import (
    build_optimizer,
    is_fused,
    lr_factor_fn,
    lr_schedule,
    optimizer_factory,
    optimizer_param_groups,
)
from visionkit.build.pipelines import build_pipelines
from visionkit.build.trainer import (
    compile_model,
    trainer_kwargs,
)

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "EvalPreprocess",
    "boxes_needed",
    "build_dataset",
    "build_datasets",
    "compile_model",
    "build_evaluators",
    "build_model",
    "build_optimizer",
    "build_pipelines",
    "build_split",
    "create_model",
    "dropped_keys",
    "is_fused",
    "load",
    "lr_factor_fn",
    "lr_schedule",
    "model_from_meta",
    "optimizer_factory",
    "optimizer_param_groups",
    "prefix_problems",
    "require_labels_scored",
    "resolve_num_classes",
    "targets_needed",
    "trainer_kwargs",
]
