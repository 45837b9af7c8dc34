"""The configuration reference, ``docs/configs.md``, rendered from the schema itself.

Every key of the fixed sections comes from the pydantic models of :mod:`visionkit.config`
(type, constraints, default) with its description from :data:`DESCRIPTIONS`; every registered
head, neck and dataset format comes from its builder's signature, as the validator sees it
(:func:`visionkit.config.builder_schema`). ``tests/test_docs.py`` fails when the file differs
from :func:`render_config_reference`, and when a key has no description here. Regenerate
with ``python tools/gen_config_docs.py``.

>>> "| `trainer.max_steps` | int, ≥ -1 | `-1` |" in render_config_reference()
True
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from visionkit.config import (
    DATASET_INJECTED_ARGS,
    INJECTED_ARGS,
    Config,
    SyntheticConfig,
    builder_schema,
)
from visionkit.registry import DATASETS, HEADS, NECKS

# Key path → description. A new key of the schema needs one (a test checks it).
DESCRIPTIONS: dict[str, str] = {
    "name": "run name; the run folder is `<output_dir>/<name>`",
    "seed": "seeds Python, NumPy and torch (and data-loader workers)",
    "output_dir": "parent of run folders; `--output-dir` replaces `<output_dir>/<name>`",
    "monitor": "metric that picks `best.ckpt` (`min` when its name contains `loss`, else "
    "`max`); `null`: the main metric of the evaluated head(s), `val/score` for several",
    "resume": "a checkpoint to continue the run from (as `visionkit train --resume`); "
    "`auto`: the newest checkpoint of the run folder, if any",
    "exist_ok": "`false`: a new run never writes into a folder that holds another run's "
    "checkpoints or metrics: it goes to `<name>-2`, `<name>-3`, ... (as Ultralytics does); "
    "`true` (`--exist-ok`): reuse the folder, replacing that run's files",
    "model": "one backbone, an optional neck and named heads",
    "model.backbone": "the shared backbone",
    "model.backbone.name": "a name from `visionkit list backbones`",
    "model.backbone.pretrained": "`false`: random init; `true`: the library's weights, "
    "downloaded into its cache on first use (only the cache is read with `VISIONKIT_OFFLINE=1` "
    "or `HF_HUB_OFFLINE=1`; docs/pretrained.md); a path: a local `.safetensors` / `.pth` / "
    "`.pt` / `.bin` state dict. With `model.init_from`, read only for the backbone tensors "
    "the checkpoint lacks (checked all the same); a resumed run never reads it (its checkpoint "
    "holds every tensor)",
    "model.backbone.out_indices": "feature levels to return (negative allowed; `[-3, -2, -1]`: the last three, strides 8, 16, 32 for most models, whatever their number of levels); `null`: all",
    "model.backbone.kwargs": "architecture arguments (e.g. `drop_path_rate`, `output_stride`): "
    "only those of the model's class (timm's or torchvision's) or of a registered builder "
    "function, never one that could load a file; checked when the model is built",
    "model.neck": "`{name: <registered neck>, ...arguments}` (below), or `null` for none",
    "model.heads": "head name → `{name: <registered head>, ...arguments}` (below); at least one",
    "model.loss_balancing": "how the heads' losses make the total",
    "model.loss_balancing.name": "`fixed`: Σ w·L; `uncertainty`: learnt log-variances "
    "(Kendall et al.); `magnitude`: each loss divided by its running mean",
    "model.loss_balancing.momentum": "`magnitude` only: momentum of the running loss means",
    "model.init_from": "a checkpoint or state dict whose tensors of matching name and shape "
    "initialise the model",
    "model.freeze": "module prefixes (`backbone`, `neck`, `heads.<name>`, ...) not trained",
    "data": "datasets per split and how they are loaded",
    "data.train": "training dataset `{format: <registered dataset>, ...arguments}` (below), or "
    "several named ones, each with an optional sampling `weight`",
    "data.val": "validation dataset(s), as `data.train`; each head is evaluated on the sets "
    "that carry its labels",
    "data.test": "test dataset(s), as `data.val`, read only by `visionkit eval --split test` "
    "and `check-data`; one dataset without `format` takes `data.val`'s (each set of a mix, "
    "that of `data.val`'s set of its name)",
    "data.image_size": "side, or `[h, w]`, of the default pipelines (when `transforms.*` is null) "
    "and of every sizing transform that leaves its size out (`{name: Resize}`); the evaluation "
    "pipeline's where `val_image_size` is null",
    "data.val_image_size": "the same for the evaluation pipeline (validation, `eval`, "
    "`predict`, export): `null`: `image_size`; larger than the training crops can score "
    "better (the train-test resolution discrepancy; timm's `test_input_size`)",
    "data.batch_size": "training batch size per device",
    "data.val_batch_size": "validation batch size; `null`: `batch_size`",
    "data.num_workers": "data-loader worker processes",
    "data.pin_memory": "data-loader `pin_memory`",
    "data.cache": "`ram` (or `true`): each loader process keeps the images it decoded (after the "
    "pipeline's first resize to a fixed size), so each is decoded once (Ultralytics' "
    "`cache=ram`); a machine's training loaders share a quarter of the "
    "memory available, its validation loaders another",
    "data.close_mixing": "the last part of the training schedule, as a fraction of its steps "
    "(`0.2`: the last 20 %), trained without the multi-image steps of `transforms.train` "
    "(`Mosaic`, `MixUp`, `CopyPaste`, ...), on photos as they are (Ultralytics' `close_mosaic`, "
    "in epochs); `0`: mixed to the end",
    "data.sampler": "training batches of `p` identities × `k` images each (metric learning, "
    "`embedding` head); the training batch size is then `p × k`; `null`: shuffled images",
    "data.sampler.p": "identities per training batch",
    "data.sampler.k": "images per identity in a training batch",
    "data.transforms": "albumentations pipelines as `{name: <class>, ...arguments}` lists; "
    "`Normalize` and the tensor conversion are appended",
    "data.transforms.train": "training pipeline; `null`: `Resize` to `image_size` + "
    "`HorizontalFlip(p=0.5)`",
    "data.transforms.val": "evaluation pipeline (also used by `predict`); `null`: `Resize` to "
    "`val_image_size`, else `image_size`",
    "optimizer": "the optimiser",
    "optimizer.name": "optimiser class",
    "optimizer.lr": "peak learning rate",
    "optimizer.weight_decay": "on weights with more than one dimension (not biases and norms)",
    "optimizer.momentum": "`sgd` only",
    "optimizer.nesterov": "`sgd` only",
    "optimizer.betas": "`adam` / `adamw` only",
    "optimizer.param_groups": "module prefix → `{lr_mult: ...}`; the longest matching prefix wins",
    "optimizer.param_groups.<prefix>.lr_mult": "the group's learning rate is `lr × lr_mult`",
    "scheduler": "learning-rate schedule, stepped after every optimiser step",
    "scheduler.name": "schedule after the warm-up (`onecycle` has its own rise)",
    "scheduler.warmup_epochs": "linear warm-up length in epochs (fractions allowed; at most "
    "half the schedule)",
    "scheduler.warmup_steps": "linear warm-up length in optimiser steps (for step budgets; "
    "instead of `warmup_epochs`; at most half the schedule)",
    "scheduler.warmup_start_factor": "the warm-up starts at `lr × warmup_start_factor`",
    "scheduler.min_lr_factor": "`cosine` / `onecycle`: the rate ends at `lr × min_lr_factor`",
    "scheduler.step_epochs": "`step`: epochs at which the rate is multiplied by `gamma`",
    "scheduler.step_milestones": "`step`: optimiser steps at which the rate is multiplied by "
    "`gamma` (instead of `step_epochs`)",
    "scheduler.gamma": "`step`: the factor",
    "scheduler.pct_start": "`onecycle`: share of the steps spent rising to `lr`",
    "trainer": "every argument of `lightning.Trainer` (type-checked here, passed through; "
    "`null` keys are left out: Lightning's default), and visionkit's own keys `compile`, "
    "`on_nonfinite_loss`, `checkpoint_every_n_steps`, `channels_last` (marked *visionkit*); "
    "the Lightning arguments that visionkit sets itself (`logger`, `callbacks`, `plugins`, "
    "`default_root_dir`, `enable_checkpointing`, `barebones`) are refused, saying where to set "
    "them; docs/training.md#trainer-arguments",
    "trainer.max_epochs": "epochs (default 10; unlimited, -1, when `max_steps` or `max_time` is "
    "given)",
    "trainer.max_steps": "optimiser steps: a budget that does not depend on the dataset's size "
    "(-1: none); the schedule follows it",
    "trainer.max_time": "stop after this wall time (`DD:HH:MM:SS` or `{minutes: 10}`); the "
    "schedule follows the steps it allows (with `max_steps`: whichever ends first)",
    "trainer.min_epochs": "train at least this many epochs (early stopping waits)",
    "trainer.min_steps": "train at least this many optimiser steps",
    "trainer.accelerator": "`cpu`, `gpu`, `auto`, ...",
    "trainer.devices": "devices per node",
    "trainer.num_nodes": "nodes",
    "trainer.strategy": "e.g. `ddp`",
    "trainer.precision": "`auto` (`bf16-mixed` on GPUs and CPUs with native bf16, `16-mixed` on "
    "GPUs that only emulate it, else `32-true`) or a Lightning precision: `32-true`, "
    "`bf16-mixed`, `16-mixed`, ... (`32`, `16` are read as strings)",
    "trainer.sync_batchnorm": "synchronise BatchNorm statistics across processes (DDP)",
    "trainer.gradient_clip_val": "clip gradients to this norm; `null`: no clipping",
    "trainer.gradient_clip_algorithm": "`norm` (Lightning's default) or `value`",
    "trainer.accumulate_grad_batches": "batches per optimiser step",
    "trainer.log_every_n_steps": "how often per-step values are logged",
    "trainer.check_val_every_n_epoch": "validate every this many epochs (`null`: by "
    "`val_check_interval` only)",
    "trainer.val_check_interval": "validate every this many training batches (with "
    "`check_val_every_n_epoch: null`), or this fraction of an epoch",
    "trainer.num_sanity_val_steps": "validation batches run before training (Lightning's "
    "default 2; -1: all, 0: none)",
    "trainer.limit_train_batches": "batches (int) or fraction (float) per training epoch",
    "trainer.limit_val_batches": "the same, for validation",
    "trainer.limit_test_batches": "the same, for `trainer.test` (not used by visionkit)",
    "trainer.limit_predict_batches": "the same, for `trainer.predict` (not used by visionkit)",
    "trainer.overfit_batches": "train and validate on this many (or this fraction of) training "
    "batches, to check that the model can fit them",
    "trainer.fast_dev_run": "`true` or N: run N training and validation batches (1 for `true`) "
    "to check the set-up; no checkpoints, metrics.json or logger output (the run folder's "
    "metrics.csv and plots are still written)",
    "trainer.deterministic": "deterministic algorithms only (`warn`: warn where there is none)",
    "trainer.benchmark": "`torch.backends.cudnn.benchmark`",
    "trainer.detect_anomaly": "`torch.autograd` anomaly detection (slow; finds NaN sources)",
    "trainer.inference_mode": "validate under `torch.inference_mode` (else `no_grad`)",
    "trainer.use_distributed_sampler": "let Lightning shard the loaders under DDP (its "
    "default, `true`; docs/distributed.md)",
    "trainer.reload_dataloaders_every_n_epochs": "rebuild the data loaders every N epochs",
    "trainer.profiler": "print where time goes: `simple`, `advanced`, `pytorch`, `xla`",
    "trainer.enable_progress_bar": "show Lightning's progress bar",
    "trainer.enable_model_summary": "print the model summary when training starts",
    "trainer.enable_autolog_hparams": "log the hyperparameters to the loggers",
    "trainer.model_registry": "Lightning model-registry name to upload the model to",
    "trainer.logger": "set by visionkit: use the top-level `logger` key, or "
    "`train(..., loggers=[...])`",
    "trainer.callbacks": "set by visionkit: use `train(..., callbacks=[...])`",
    "trainer.plugins": "set by visionkit (its atomic checkpoint writer)",
    "trainer.default_root_dir": "set by visionkit: the run folder (`output_dir`, `name`)",
    "trainer.enable_checkpointing": "set by visionkit: checkpoints are always written",
    "trainer.barebones": "set by visionkit: it would turn off the run folder's logs and "
    "checkpoints",
    "trainer.compile": "*visionkit*: `torch.compile` the model: `true`, or its keyword arguments",
    "trainer.on_nonfinite_loss": "*visionkit*: a NaN/inf loss: `error` stops naming the step; "
    "`skip` skips the batch",
    "trainer.checkpoint_every_n_steps": "*visionkit*: also write `checkpoints/step.ckpt` every "
    "this many steps",
    "trainer.channels_last": "*visionkit*: train and validate with NHWC (`channels_last`) "
    "weights and batches: faster convolutions and max-pooling on CPUs; checkpoints load "
    "either way",
    "data.<split>.synthetic": "on any dataset entry: generate the shapes dataset into its folder "
    "(`images` for COCO, `root` for the folder layouts) when that holds no `*.json` yet; a shapes "
    "dataset generated with other parameters is regenerated, other data is never touched",
    "data.<split>.synthetic.num_images": "number of images",
    "data.<split>.synthetic.size": "image side in pixels",
    "data.<split>.synthetic.seed": "same seed, same files",
    "data.<split>.synthetic.min_shapes": "fewest shapes per image",
    "data.<split>.synthetic.max_shapes": "most shapes per image",
    "data.<split>.synthetic.identities": "instead of the COCO shapes: an ImageFolder of this "
    "many identities (one shape style each, `root/<identity>/`; `num_images` in all) for the "
    "`embedding` head",
    "data.<split>.synthetic.first_identity": "identities: the first style's number (`null`: 0); "
    "a validation set of styles never seen in training starts after the training set's",
    "data.<split>.synthetic.keypoints": "`true`: every shape gets COCO keypoints (centre, left, "
    "top, right, bottom; hidden ones `v=1`) for the `fcos_keypoints` head; `null`: none",
    "data.<split>.synthetic.styles": "paint every shape in one of this many identity styles "
    "(pattern and colours; the annotation's `identity`) for the `fcos_embedding` head; `null`: "
    "none",
    "data.<split>.synthetic.first_style": "styles: the first style's number (`null`: 0); a "
    "validation set of styles never seen in training starts after the training set's",
    "ema": "exponential moving average of the weights",
    "ema.enabled": "keep and evaluate an EMA of the weights",
    "ema.decay": "EMA decay",
    "ema.warmup_steps": "steps over which the decay ramps up",
    "early_stopping": "stop when the monitored metric stops improving",
    "early_stopping.patience": "validations without improvement before stopping; `null`: never",
    "early_stopping.monitor": "metric to watch; `null`: the run's `monitor`",
    "early_stopping.min_delta": "smallest change that counts as an improvement",
    "logger": "loggers beside the run folder's CSV logs: a list of names or "
    "`{name: ..., ...keyword arguments}`: `csv` (always on), `tensorboard`, `wandb`, `mlflow` "
    "(each needs its package); `null`: `tensorboard` too when it is installed; "
    "docs/training.md#loggers-and-callbacks",
}

HEADER = """\
# Configuration reference

<!-- Generated by `python tools/gen_config_docs.py` from visionkit/config/schema.py and the
classes of the registered components; tests/test_docs.py fails when it is out of date. Edit the
schema or visionkit/config/reference.py, not this file. -->

Every key of a visionkit config, its type, default and meaning. How configs are read
(`base:`, overrides, validation errors) and worked examples are in
[configuration.md](configuration.md). A key left out takes its default; `null` is YAML's
`None`.
"""


def render_config_reference() -> str:
    """The text of ``docs/configs.md``."""
    out = [HEADER]
    for section, fields in _all_sections():
        out.append(f"\n## `{section}`\n" if section else "\n## Top level\n")
        if DESCRIPTIONS.get(section):
            out.append(f"\n{DESCRIPTIONS[section][0].upper()}{DESCRIPTIONS[section][1:]}.\n")
        out.append("\n| key | type | default | description |\n| --- | --- | --- | --- |\n")
        for path, field in fields:
            out.append(
                f"| `{path}` | {_type(field.annotation, field)} | {_default(field)} | "
                f"{DESCRIPTIONS.get(path, '')} |\n"
            )
    extra_head = {"loss_weight": (float, 1.0)}
    extra_data = {
        "synthetic": (dict | None, None),
        "weight": (float, 1.0),
        "annotated_classes": (list | None, None),
    }
    components = (
        ("Heads", "model.heads.<head>", "name", HEADS, extra_head, INJECTED_ARGS),
        ("Necks", "model.neck", "name", NECKS, None, INJECTED_ARGS),
        (
            "Dataset formats",
            "data.train / data.val",
            "format",
            DATASETS,
            extra_data,
            DATASET_INJECTED_ARGS,
        ),
    )
    for title, where, key, registry, extra, injected in components:
        out.append(f"\n## {title}\n\n")
        out.append(
            f"`{where}` is `{{{key}: <name>, ...arguments}}`; the arguments are the parameters "
            "of the registered class's `__init__`, validated against its signature.\n"
        )
        if injected:
            names = "`, `".join(sorted(injected))
            out.append(f"Supplied when it is built, never set in a config: `{names}`.\n")
        if extra:
            out.append(
                "Every entry also takes "
                + ", ".join(f"`{k}` (default `{_yaml(v[1])}`)" for k, v in extra.items())
                + (
                    ": `synthetic` generates the shapes dataset where the folder is empty "
                    "([its keys](#datasplitsynthetic)), `weight` is the sampling weight in a training "
                    "mix of datasets (data.train only), `annotated_classes` the box classes a "
                    "set of a training mix annotates (class names of the merged list; default: "
                    "the classes of its own file, every class for a set naming none; the "
                    "detection loss of its images leaves the others out: "
                    "[multitask.md](multitask.md#partial-labels)).\n"
                    if key == "format"
                    else ": the head's weight in the total loss.\n"
                )
            )
        for name in registry.names():
            builder = registry.get(name)
            schema = builder_schema(registry, name, injected=injected)
            summary = (inspect.getdoc(builder) or "").split("\n\n")[0].replace("\n", " ")
            summary = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", summary).replace("``", "`")
            out.append(f"\n### `{name}`\n\n{summary}\n\n")
            fields = list(schema.model_fields.items())
            if not fields:
                out.append("No arguments.\n")
                continue
            out.append("| argument | type | default |\n| --- | --- | --- |\n")
            for arg, field in fields:
                out.append(f"| `{arg}` | {_type(field.annotation, field)} | {_default(field)} |\n")
    return "".join(out)


def schema_keys() -> list[str]:
    """Every key path of the fixed sections (what :data:`DESCRIPTIONS` must describe)."""
    return [path for _, fields in _all_sections() for path, _ in fields]


def _all_sections() -> list[tuple[str, list[Any]]]:
    """The sections of :class:`Config`, with ``data.<split>.synthetic`` (a key every dataset
    entry takes) after ``data``'s own."""
    sections = list(_sections(Config))
    synthetic = list(_sections(SyntheticConfig, "data.<split>.synthetic."))
    at = max(i for i, (name, _) in enumerate(sections) if name.startswith("data")) + 1
    return sections[:at] + synthetic + sections[at:]


def _sections(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, list[Any]]]:
    """(section path, [(key path, field), ...]) for ``model`` and its nested sections."""
    rows, nested = [], []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        sub, mapped = _nested_model(field.annotation)
        if sub is not None and mapped:  # dict[str, Section]: one entry per key
            rows.append((path, field))
            nested.append((f"{path}.<prefix>.", sub))
        elif sub is not None:
            nested.append((f"{path}.", sub))
        else:
            rows.append((path, field))
    yield prefix.rstrip("."), rows
    for sub_prefix, sub in nested:
        yield from _sections(sub, sub_prefix)


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section model inside ``annotation`` (``X``, ``X | None`` or ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        inner, _ = _nested_model(args[1])
        return inner, inner is not None
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return _nested_model(members[0])
    return None, False


def _type(annotation: Any, field: FieldInfo | None = None) -> str:
    """A short, readable type: ``int > 0``, ``str or null``, ``list of int``, ``fixed, ...``."""
    text = _type_name(annotation)
    bounds = []
    for item in getattr(field, "metadata", []) or []:
        for attr, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            value = getattr(item, attr, None)
            if value is not None:
                bounds.append(f"{sign} {value}")
    return ", ".join([text, *bounds])


def _type_name(annotation: Any) -> str:
    if annotation is Any or annotation is None:
        return "any"
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return ", ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple, set) or annotation in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return "[" + ", ".join(_type_name(a) for a in args) + "]"
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict or annotation is dict:
        return "mapping"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "mapping"
        return annotation.__name__
    return re.sub(r"typing\.", "", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{_yaml(value)}`"


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value)
    return str(value)
