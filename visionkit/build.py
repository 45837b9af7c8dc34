"""Config becomes objects here, in one visible place.

Every section of a validated :class:`~visionkit.config.Config` is turned into the objects
that use it by one function of this module, and those objects take plain arguments, never a
config: the model (:func:`build_model`, over :func:`visionkit.models.factory.create_model`),
the datasets (:func:`build_datasets`, :func:`build_dataset`), the transform pipelines
(:func:`build_pipelines`), the evaluators (:func:`build_evaluators`), the optimiser and the
learning-rate schedule (:func:`optimizer_factory`, :func:`lr_schedule`) and the keyword
arguments of ``lightning.Trainer`` (:func:`trainer_kwargs`; Lightning itself is imported only
by :mod:`visionkit.engine`, which calls these).

What a head's task needs (its label family, the Sample targets it learns from, its
evaluator) is read from the task table, :data:`visionkit.evaluation.tasks.TASKS`; what a
reader can produce from the reader class's own declarations (``location``, ``targets``,
``target_flags``).

>>> from visionkit.config import load_config
>>> cfg = load_config({"model": {"backbone": {"name": "simple_cnn"},
...                              "heads": {"seg": {"name": "semantic_fpn", "num_classes": 3}},
...                              "neck": {"name": "fpn"}}})
>>> targets_needed(cfg), boxes_needed(cfg)
(['semantic'], False)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionkit.config import (
    VISIONKIT_TRAINER_KEYS,
    Config,
    DataConfig,
    OptimizerConfig,
    SchedulerConfig,
    is_dataset_mix,
)
from visionkit.data.datasets import MixedDataset, carries_labels, label_names_of, val_sets
from visionkit.data.synthetic import GENERATOR, make_shapes
from visionkit.data.transforms import build_pipeline, pipeline_steps
from visionkit.engine.precision import resolve_precision
from visionkit.errors import ConfigError
from visionkit.evaluation.tasks import TASKS, TaskSpec, task_of
from visionkit.models.factory import create_model, prefix_problems
from visionkit.models.model import VisionModel
from visionkit.registry import DATASETS, HEADS

__all__ = [
    "boxes_needed",
    "build_dataset",
    "build_datasets",
    "build_evaluators",
    "build_model",
    "build_optimizer",
    "build_pipelines",
    "build_split",
    "create_model",
    "dropped_keys",
    "lr_factor_fn",
    "lr_schedule",
    "optimizer_factory",
    "optimizer_param_groups",
    "targets_needed",
    "trainer_kwargs",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val")

# ---------------------------------------------------------------- what the heads need


def head_tasks(cfg: Config) -> list[TaskSpec]:
    """The :class:`~visionkit.evaluation.tasks.TaskSpec` of each configured head."""
    return [task_of(HEADS.component_class(spec["name"])) for spec in cfg.model.heads.values()]


def targets_needed(cfg: Config) -> list[str]:
    """The Sample targets the model's heads learn from (``"class"``, ``"boxes"``,
    ``"masks"``, ``"semantic"``), in head order, each once."""
    return list(dict.fromkeys(t for spec in head_tasks(cfg) for t in spec.targets))


def boxes_needed(cfg: Config) -> bool:
    """Whether a head learns from boxes (detection and instance heads). Without one, the
    data pipeline leaves the readers' boxes out: carrying them through albumentations costs
    a classifier's loader several times its image work."""
    return "boxes" in targets_needed(cfg)


def dropped_keys(cfg: Config) -> tuple[str, ...]:
    """The Sample keys the data module leaves out before the pipeline: boxes, their labels
    and instance masks when no head learns from boxes (see :func:`boxes_needed`)."""
    return () if boxes_needed(cfg) else ("boxes", "labels", "masks")


# ---------------------------------------------------------------- datasets


def build_dataset(
    spec: Mapping[str, Any],
    *,
    split: str = "train",
    label_names: Mapping[str, Sequence[str]] | None = None,
    needs: Sequence[str] = (),
    where: str | None = None,
    image_check: str = "header",
) -> Any:
    """Build one dataset from its validated config (``{format: coco, images: ..., ...}``).

    The reader class declares which argument names its folder (``location``), which Sample
    targets it can produce (``targets``) and which flag switches an optional one on
    (``target_flags``).

    Args:
        spec: the dataset's config entry. With ``synthetic:``, no ``annotations`` file, and
            no data in the folder yet, the shapes dataset is generated there first.
        split: ``"train"`` or ``"val"``. A validation set keeps every image (a reader's
            ``keep_negatives`` is forced on: images without boxes count in evaluation), and
            under ``on_bad_image: skip`` decodes every image when built, leaving the
            unreadable ones out (a validation image must be read exactly once, rather than be
            replaced later by another one that the evaluators would count twice).
        label_names: label family → class names of the training set: a reader that produces
            image-level classes and is not given ``class_names`` takes that order.
        needs: the targets the model's heads learn from (:func:`targets_needed`); a target
            flag the config leaves ``None`` ("when needed") is switched on for them.
        where: the config path of ``spec`` in error messages (default ``data.<split>``).
        image_check: how the reader checks its image files: ``"header"`` or ``"decode"``
            (:data:`visionkit.data.checks.IMAGE_CHECKS`; ``check-data`` decodes).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    where = where or f"data.{split}"
    reader = DATASETS.component_class(spec["format"])
    accepts = DATASETS.signature(spec["format"]).parameters
    args = {k: v for k, v in spec.items() if k not in ("format", "synthetic", "weight")}
    location = reader.location
    if args.get(location) is None:
        raise ConfigError(
            f"{where}.{location}: not set; give the dataset folder, e.g. {where}.{location}=PATH"
        )
    synthetic = spec.get("synthetic")
    if synthetic and args.get("annotations"):
        # The user named an annotation file: their data, never a place to generate shapes
        # (a shapes recipe pointed at converted VOC/YOLO data keeps its synthetic: block).
        synthetic = None
    if synthetic and _needs_generation(Path(args[location]), synthetic):
        logger.info("generating the shapes dataset in %s", args[location])
        make_shapes(args[location], **synthetic, progress=True)
    for target in needs:
        flag = reader.target_flags.get(target)
        if flag is not None and args.get(flag) is None:
            args[flag] = True
    if split == "val" and "keep_negatives" in accepts:
        if args.get("keep_negatives") is False:
            logger.info("%s.keep_negatives: ignored; validation sets keep every image", where)
        args["keep_negatives"] = True
    classes = (label_names or {}).get("class")
    if classes and "class" in reader.targets and args.get("class_names") is None:
        args["class_names"] = list(classes)
    if split == "val" and args.get("on_bad_image") == "skip":
        image_check = "decode"
    return DATASETS.build(spec["format"], **args, image_check=image_check)


def _needs_generation(root: Path, params: Mapping[str, Any]) -> bool:
    """True when ``root`` holds no dataset yet, or a shapes dataset made with other parameters
    (a dataset that is not a generated one is never replaced)."""
    path = root / "annotations.json"
    if not path.is_file():
        return not any(root.glob("*.json"))
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f).get("info", {})
    except (OSError, ValueError, AttributeError):
        return False
    if info.get("generator") != GENERATOR:
        return False
    return any(info.get(key) != value for key, value in params.items())


def build_split(
    spec: Mapping[str, Any],
    *,
    split: str,
    label_names: Mapping[str, Sequence[str]] | None = None,
    needs: Sequence[str] = (),
    image_check: str = "header",
) -> Any:
    """The datasets of one split (``data.train`` or ``data.val``): one dataset, or a name →
    dataset dict for a mix. Arguments as in :func:`build_dataset`."""
    where = f"data.{split}"
    options = {"split": split, "label_names": label_names, "needs": needs}
    if not is_dataset_mix(spec):
        return build_dataset(spec, where=where, image_check=image_check, **options)
    return {
        name: build_dataset(entry, where=f"{where}.{name}", image_check=image_check, **options)
        for name, entry in spec.items()
    }


def build_datasets(data: DataConfig, needs: Sequence[str] = ()) -> dict[str, Any]:
    """The configured splits. ``train`` is one dataset (a :class:`MixedDataset` when several
    are named); ``val`` is one dataset or a name → dataset dict, sharing the training set's
    class order. ``needs`` as in :func:`build_dataset`."""
    datasets: dict[str, Any] = {}
    if data.train is not None:
        train = build_split(data.train, split="train", needs=needs)
        if isinstance(train, dict):
            weights = {name: entry.get("weight", 1.0) for name, entry in data.train.items()}
            train = MixedDataset(train, weights)
        datasets["train"] = train
    if data.val is not None:
        names = getattr(datasets.get("train"), "label_names", None)
        datasets["val"] = build_split(data.val, split="val", label_names=names, needs=needs)
    return datasets


# ---------------------------------------------------------------- model


def build_model(cfg: Config, datasets: Mapping[str, Any], resume: bool = False) -> VisionModel:
    """The model of a training run (:func:`~visionkit.models.factory.create_model`), sized by
    the datasets' label names and carrying the training set's category ids. A resumed run
    (``resume``) gets its weights from the checkpoint, so ``model.init_from`` is not loaded;
    the model's config still records it."""
    train = datasets.get("train")
    extra = {"category_ids": list(getattr(train, "category_ids", []) or [])}
    build_cfg = cfg.model_copy(deep=True)
    if resume:
        build_cfg.model.init_from = None
    model = create_model(build_cfg, label_names=label_names_of(datasets), extra_meta=extra)
    model.meta["config"]["model"]["init_from"] = cfg.model.init_from
    return model


# ---------------------------------------------------------------- pipelines


def build_pipelines(data: DataConfig, mean: Sequence[float], std: Sequence[float]) -> dict:
    """The training and evaluation pipelines (``{"train": ..., "val": ...}``) of the ``data``
    section, normalised by the backbone's ``mean`` / ``std``."""
    return {
        split: build_pipeline(
            pipeline_steps(data, train=split == "train"), mean, std, f"data.transforms.{split}"
        )
        for split in SPLITS
    }


# ---------------------------------------------------------------- evaluators


def build_evaluators(model: VisionModel, val_dataset: Any) -> list[dict[str, nn.Module]]:
    """The evaluators of each validation set, in the order of the validation loaders.

    Each head is evaluated, by its task's evaluator, on the sets that carry its label family.
    Its metric keys are ``<head>/<metric>`` when one set does (key ``<head>``) and
    ``<head>/<set>/<metric>`` when several do (key ``<head>@<set>``). A head whose task is not
    in the table, or that a set cannot evaluate (e.g. a detection head without a COCO
    annotation file), gets none.

    Args:
        model: the model; its ``meta["category_ids"]`` map labels to COCO category ids.
        val_dataset: the validation dataset, or a name → dataset dict of several (``None``:
            no evaluators).
    """
    sets = val_sets(val_dataset)
    names = list(sets)
    per_set: list[dict[str, nn.Module]] = [{} for _ in names]
    category_ids = model.meta.get("category_ids") or None
    for name, head in model.heads.items():
        spec = TASKS.get(getattr(head, "task", None))
        if spec is None:
            continue
        carrying = [s for s in names if carries_labels(sets[s], spec.labels)]
        for set_name in carrying:
            prefix = name if len(carrying) == 1 else f"{name}/{set_name}"
            evaluator = spec.evaluator(prefix, head, sets[set_name], category_ids)
            if evaluator is not None:
                per_set[names.index(set_name)][prefix.replace("/", "@")] = evaluator
    return per_set


# ---------------------------------------------------------------- optimiser and schedule

FUSED_DEVICES = ("cpu", "cuda")  # where PyTorch has fused Adam/AdamW/SGD kernels

#: ``(model, fused) -> optimizer``
OptimizerFactory = Callable[[nn.Module, bool], torch.optim.Optimizer]
#: ``(total_steps, steps_per_epoch) -> (step -> learning-rate factor)``
ScheduleFactory = Callable[[int, int], Callable[[int], float]]


def build_optimizer(
    cfg: OptimizerConfig, params: Iterable[Any], fused: bool = True
) -> torch.optim.Optimizer:
    """``optimizer.name`` (``sgd``, ``adam``, ``adamw``) over ``params`` (tensors or parameter
    groups, which may set their own ``lr`` / ``weight_decay``); ``cfg.weight_decay`` is the
    default of groups that set none.

    With ``fused`` (and every parameter a floating tensor on a device with fused kernels),
    one kernel updates every parameter instead of a handful of tensor ops per parameter: on
    a CPU the AdamW step of a ResNet-18 FPN model takes about 16 ms instead of 73-114 ms.
    A fused optimiser unscales fp16 gradients itself, so it is not used under a
    ``GradScaler`` (``16-mixed``), where gradient clipping needs the unscaled gradients.

    >>> opt = build_optimizer(OptimizerConfig(name="adamw", lr=0.01), [nn.Parameter(torch.ones(2))])
    >>> type(opt).__name__, opt.defaults["fused"]
    ('AdamW', True)
    """
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    tensors = [p for group in groups for p in group["params"]]
    fused = fused and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in tensors)
    options = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "fused": fused or None}
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=cfg.nesterov, **options)
    optimizer = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return optimizer(groups, betas=cfg.betas, **options)


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` runs PyTorch's fused kernels."""
    return bool(optimizer.defaults.get("fused"))


def optimizer_param_groups(model: nn.Module, cfg: OptimizerConfig) -> list[dict[str, Any]]:
    """The optimiser's parameter groups.

    Each parameter goes to the ``cfg.param_groups`` entry whose module prefix (``backbone``,
    ``heads.det``, ...) is the longest that contains it, or to the ungrouped rest (``name``
    ``""``, listed first); each of those is split into weights with more than one dimension
    (``weight_decay``) and the others (biases, norms, loss-balancing log-variances: no decay).
    Frozen parameters (``requires_grad=False``) are left out; empty groups are dropped. Every
    group carries ``name``, ``lr_mult`` and ``lr = cfg.lr × lr_mult``.

    Raises:
        ConfigError: a prefix names no module of ``model``, or every parameter is frozen.
    """
    problems = prefix_problems(model, list(cfg.param_groups), "optimizer.param_groups")
    if problems:
        raise ConfigError(problems)
    longest_first = sorted(cfg.param_groups, key=len, reverse=True)
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = next((p for p in longest_first if name.startswith(f"{p}.")), "")
        decay = param.ndim > 1 and not name.startswith("loss_balancer.")
        buckets.setdefault((group, decay), []).append(param)
    if not buckets:
        raise ConfigError("model.freeze: every parameter of the model is frozen; nothing to train")
    groups = []
    for group in ["", *cfg.param_groups]:
        mult = cfg.param_groups[group].lr_mult if group else 1.0
        for decay in (True, False):
            if (group, decay) in buckets:
                groups.append(
                    {
                        "params": buckets[(group, decay)],
                        "name": group,
                        "lr_mult": mult,
                        "lr": cfg.lr * mult,
                        "weight_decay": cfg.weight_decay if decay else 0.0,
                    }
                )
    return groups


def model_optimizer(
    cfg: OptimizerConfig, model: nn.Module, fused: bool = True
) -> torch.optim.Optimizer:
    """``cfg``'s optimiser over the parameter groups of ``model``
    (:func:`optimizer_param_groups`, :func:`build_optimizer`)."""
    return build_optimizer(cfg, optimizer_param_groups(model, cfg), fused=fused)


def optimizer_factory(cfg: OptimizerConfig | None = None) -> OptimizerFactory:
    """The ``optimizer`` section as a function ``(model, fused) -> optimizer`` (what
    :class:`~visionkit.engine.system.VisionSystem` calls once the trainer is known)."""
    return partial(model_optimizer, cfg or OptimizerConfig())


def lr_factor_fn(
    cfg: SchedulerConfig, total_steps: int, steps_per_epoch: int
) -> Callable[[int], float]:
    """The learning-rate multiplier at each optimiser step: linear warm-up, then the schedule."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if cfg.name == "onecycle":
            rise = max(1, int(round(cfg.pct_start * total_steps)))
            if step < rise:
                return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * 0.5 * (
                    1 - math.cos(math.pi * step / rise)
                )
            progress = min(1.0, (step - rise) / max(1, total_steps - rise))
            return cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        if step < warmup:
            return cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * step / warmup
        if cfg.name == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        if cfg.name == "step":
            epoch = step // steps_per_epoch
            return cfg.gamma ** sum(epoch >= e for e in cfg.step_epochs)
        return 1.0

    return factor


def lr_schedule(cfg: SchedulerConfig | None = None) -> ScheduleFactory:
    """The ``scheduler`` section as a function ``(total_steps, steps_per_epoch) -> factor``
    (:func:`lr_factor_fn`)."""
    return partial(lr_factor_fn, cfg or SchedulerConfig())


# ---------------------------------------------------------------- trainer


def trainer_kwargs(cfg: Config, run_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of ``lightning.Trainer`` from the ``trainer`` section: every key
    set, except visionkit's own (:data:`~visionkit.config.VISIONKIT_TRAINER_KEYS`), with
    ``precision: auto`` resolved and ``default_root_dir`` the run folder; ``overrides`` win."""
    t = cfg.trainer.model_dump()
    args = {k: v for k, v in t.items() if v is not None and k not in VISIONKIT_TRAINER_KEYS}
    args["precision"] = resolve_precision(args["precision"], args["accelerator"])
    args.update(overrides)
    return {"default_root_dir": str(run_dir), **args}
