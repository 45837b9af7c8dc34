"""Configuration: YAML files with one ``base:`` level, dotted overrides, and validation.

A config is read with ``yaml.safe_load``; ``base:`` (a path or a list of paths, relative to the
file) is deep-merged beneath it; ``key.path=value`` overrides from the command line are applied
on top (values parsed as YAML, so ``trainer.max_epochs=3`` is an int). The whole tree is then
validated before anything is built: fixed sections against typed schemas, and registered
components (heads, necks, datasets) against the signature of their class's ``__init__`` (or
builder function). Every problem is reported with its full key path::

    model.backbone.nmae: unknown key; did you mean 'name'?
    trainer.max_epochs: expected a valid integer, got 'ten'

Configs name registered components only; they never import or run code.

>>> cfg = load_config({"model": {"backbone": {"name": "simple_cnn"},
...                              "heads": {"cls": {"name": "linear", "num_classes": 4}}}})
>>> cfg.model.heads["cls"]["dropout"]
0.0
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from visionkit.errors import ConfigError
from visionkit.registry import BACKBONES, DATASETS, HEADS, NECKS, Registry, UnknownNameError

# Arguments of heads and necks the model factory supplies itself; a config never sets them.
INJECTED_ARGS = {"in_channels", "strides", "class_names"}
# Arguments of dataset readers that code supplies (``check-data`` asks for full decoding).
DATASET_INJECTED_ARGS = {"image_check"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackboneConfig(_Section):
    """``model.backbone``: a registered backbone name and its arguments."""

    name: str = "resnet18"
    pretrained: bool | str = False
    out_indices: list[int] | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)


class LossBalancingConfig(_Section):
    """``model.loss_balancing``: how the heads' losses are combined into the total."""

    name: Literal["fixed", "uncertainty", "magnitude"] = "fixed"
    momentum: float = Field(0.99, ge=0, lt=1)  # magnitude only


class ModelConfig(_Section):
    """``model``: one backbone, an optional neck, and named heads; optionally initialised from
    a checkpoint (``init_from``) with some modules frozen (``freeze``)."""

    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    neck: dict[str, Any] | None = None
    heads: dict[str, dict[str, Any]] = Field(default_factory=dict)
    loss_balancing: LossBalancingConfig = Field(default_factory=LossBalancingConfig)
    init_from: str | None = None
    freeze: list[str] = Field(default_factory=list)


class SyntheticConfig(_Section):
    """``data.<split>.synthetic``: generate the shapes dataset at ``root`` when it is absent."""

    num_images: int = Field(200, gt=0)
    size: int = Field(128, ge=32)
    seed: int = 0
    min_shapes: int = Field(1, ge=0)
    max_shapes: int = Field(4, ge=0)


class TransformsConfig(_Section):
    """``data.transforms``: albumentations transforms as ``{name: Resize, height: 128, ...}``."""

    train: list[dict[str, Any]] | None = None
    val: list[dict[str, Any]] | None = None


class DataConfig(_Section):
    """``data``: datasets per split and how they are loaded. A split is one dataset
    (``{format: coco, ...}``) or several named ones (``{shapes: {format: coco, ...},
    pets: {format: folder, ..., weight: 0.5}}``): mixed by ``weight`` for training, each
    evaluated on its own for validation."""

    train: dict[str, Any] | None = None
    val: dict[str, Any] | None = None
    image_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 128
    batch_size: int = Field(32, gt=0)
    val_batch_size: int | None = Field(None, gt=0)
    num_workers: int = Field(2, ge=0)
    pin_memory: bool = False
    transforms: TransformsConfig = Field(default_factory=TransformsConfig)

    @model_validator(mode="after")
    def _sizes_from_image_size(self) -> DataConfig:
        """A sizing transform without its size (``{name: Resize}``) takes ``image_size``."""
        from visionkit.data.transforms import with_image_size

        for split in ("train", "val"):
            steps = getattr(self.transforms, split)
            if steps:
                setattr(
                    self.transforms,
                    split,
                    [
                        with_image_size(s, self.image_size) if isinstance(s, Mapping) else s
                        for s in steps
                    ],
                )
        return self


class ParamGroupConfig(_Section):
    """``optimizer.param_groups.<module prefix>``."""

    lr_mult: float = Field(1.0, ge=0)


class OptimizerConfig(_Section):
    """``optimizer``; ``param_groups`` maps module prefixes of the model (``backbone``,
    ``heads.det``, ...) to learning-rate multipliers, the longest matching prefix winning."""

    name: Literal["sgd", "adamw", "adam"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    param_groups: dict[str, ParamGroupConfig] = Field(default_factory=dict)


class SchedulerConfig(_Section):
    """``scheduler``: learning-rate schedule, stepped every optimiser step.

    ``cosine``: linear warm-up over ``warmup_epochs``, then cosine decay to ``min_lr_factor``;
    ``step``: × ``gamma`` at each epoch of ``step_epochs``; ``onecycle``: cosine rise from
    ``warmup_start_factor`` to 1 over the first ``pct_start`` of the run, then cosine decay to
    ``min_lr_factor`` (``warmup_epochs`` is not used); ``constant``."""

    name: Literal["cosine", "step", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    warmup_start_factor: float = Field(0.1, gt=0, le=1)
    min_lr_factor: float = Field(0.0, ge=0, le=1)
    step_epochs: list[int] = Field(default_factory=list)
    gamma: float = Field(0.1, gt=0)
    pct_start: float = Field(0.3, gt=0, lt=1)


class TrainerConfig(_Section):
    """``trainer``: passed through to ``lightning.Trainer``, except the keys visionkit handles
    itself (:data:`VISIONKIT_TRAINER_KEYS`): ``compile``, ``on_nonfinite_loss``,
    ``checkpoint_every_n_steps`` and ``channels_last``."""

    max_epochs: int = Field(10, gt=0)
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = Field(1, gt=0)
    strategy: str = "auto"
    precision: str = "auto"  # auto | 32-true | bf16-mixed | 16-mixed | ... (32, 16 also accepted)
    gradient_clip_val: float | None = None
    accumulate_grad_batches: int = Field(1, gt=0)
    log_every_n_steps: int = Field(10, gt=0)
    check_val_every_n_epoch: int = Field(1, gt=0)
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    deterministic: bool = False
    enable_progress_bar: bool = True
    # visionkit's own keys (not Lightning arguments):
    compile: bool | dict[str, Any] = False  # true, or torch.compile kwargs (mode, backend, ...)
    on_nonfinite_loss: Literal["error", "skip"] = "error"
    checkpoint_every_n_steps: int | None = Field(None, gt=0)
    channels_last: bool = True  # NHWC weights and batches: faster convs and max-pool on CPUs

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        """Lightning accepts ``32`` and ``16`` as well as strings; keep one type."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# ``trainer`` keys that visionkit handles itself rather than passing to ``lightning.Trainer``.
VISIONKIT_TRAINER_KEYS = (
    "compile",
    "on_nonfinite_loss",
    "checkpoint_every_n_steps",
    "channels_last",
)


class EMAConfig(_Section):
    """``ema``: an exponential moving average of the weights (Lightning's weight averaging),
    used for validation and saved in checkpoints next to the raw weights. The decay ramps up
    as ``decay × (1 − exp(−updates / warmup_steps))`` so early averages follow the weights."""

    enabled: bool = False
    decay: float = Field(0.9998, gt=0, lt=1)
    warmup_steps: int = Field(2000, ge=0)


class EarlyStoppingConfig(_Section):
    """``early_stopping``: stop when ``monitor`` (default: the metric that picks ``best.ckpt``)
    has not improved by ``min_delta`` for ``patience`` validations; off while ``patience`` is
    null."""

    patience: int | None = Field(None, ge=1)
    monitor: str | None = None
    min_delta: float = Field(0.0, ge=0)


class Config(_Section):
    """The whole, validated configuration."""

    name: str = "run"
    seed: int = 0
    output_dir: str = "runs"
    monitor: str | None = None
    resume: str | None = None  # "auto" (newest loadable checkpoint of the run folder) or a path
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain types (what is saved to the run folder and checkpoints)."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- reading


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read one YAML mapping with ``yaml.safe_load``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config file: {err.strerror or err}", str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping at the top level, got {type(data).__name__}", str(path)
        )
    return data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` onto ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a config file and merge its ``base:`` file(s) beneath it (one level only)."""
    path = Path(path)
    data = read_yaml(path)
    bases = data.pop("base", None)
    if bases is None:
        return data
    if isinstance(bases, (str, os.PathLike)):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError("base: expected a path or a list of paths", str(path))
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        base_data = read_yaml(base_path)
        if "base" in base_data:
            raise ConfigError(
                f"base: {base_path} has a 'base:' of its own; only one level of base is allowed",
                str(path),
            )
        merged = deep_merge(merged, base_data)
    return deep_merge(merged, data)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML (``3`` → int, ``null`` → None)."""
    out = copy.deepcopy(data)
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            problems.append(f"{item!r}: expected an override of the form key.path=value")
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                if part in node and node[part] is not None:
                    problems.append(
                        f"{'.'.join(parts[: i + 1])}: is not a mapping, cannot set {key!r}"
                    )
                    break
                node[part] = {}
            node = node[part]
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(problems, "command-line overrides")
    return out


def load_config(
    source: str | os.PathLike | Mapping[str, Any] | Config, overrides: Sequence[str] = ()
) -> Config:
    """Read, merge, override and validate a config.

    Args:
        source: a YAML path, a mapping, or an already validated :class:`Config`.
        overrides: ``key.path=value`` strings applied after ``base:`` merging.

    Raises:
        ConfigError: listing every problem with its full key path.
    """
    if isinstance(source, Config):
        if not overrides:
            return source
        source = source.to_dict()
    if isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
        data.pop("base", None)
        origin = None
    else:
        data = resolve_file(source)
        origin = str(source)
    data = apply_overrides(data, overrides)
    return validate_config(data, origin)


# --------------------------------------------------------------------------- validation


def validate_config(data: Mapping[str, Any], source: str | None = None) -> Config:
    """Validate a merged config tree; raise one :class:`ConfigError` listing every problem.

    Fixed sections and registered components are checked independently, so a mistake in one
    does not hide mistakes in the other.
    """
    problems: list[str] = []
    cfg = None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        problems += _format_errors(err, Config)
    model = data.get("model") if isinstance(data.get("model"), Mapping) else {}
    raw_data = data.get("data") if isinstance(data.get("data"), Mapping) else {}
    heads_spec = model.get("heads") if isinstance(model.get("heads"), Mapping) else {}
    heads = {
        name: _validate_component(
            HEADS, spec, f"model.heads.{name}", problems, extra={"loss_weight": (float, 1.0)}
        )
        for name, spec in heads_spec.items()
    }
    if not heads_spec:
        problems.append("model.heads: at least one head is required")
    backbone = model.get("backbone") if isinstance(model.get("backbone"), Mapping) else {}
    backbone_name = backbone.get("name", BackboneConfig().name)
    if isinstance(backbone_name, str):
        try:
            BACKBONES.get(backbone_name)
        except UnknownNameError as err:
            problems.append(f"model.backbone.name: {err}")
    neck = None
    if model.get("neck") is not None:
        neck = _validate_component(NECKS, model["neck"], "model.neck", problems)
    splits = {}
    for split in ("train", "val"):
        if raw_data.get(split) is not None:
            splits[split] = _validate_datasets(raw_data[split], f"data.{split}", problems)
    problems += _transform_problems(raw_data.get("transforms"), raw_data.get("image_size"))
    if problems or cfg is None:
        raise ConfigError(problems, source)
    cfg.model.heads = heads
    cfg.model.neck = neck
    cfg.data.train = splits.get("train")
    cfg.data.val = splits.get("val")
    return cfg


def _transform_problems(transforms: Any, image_size: Any = None) -> list[str]:
    """Build every albumentations transform of ``data.transforms`` once, so that a wrong name
    or parameter is reported with the rest of the config, before any data is touched (sizes
    left out are filled from ``image_size`` first, as :class:`DataConfig` does)."""
    from visionkit.data.transforms import build_transform, with_image_size

    if image_size is None:
        image_size = DataConfig.model_fields["image_size"].default
    elif not _is_size(image_size):
        image_size = 1  # the schema reports the bad size; no follow-up errors about the steps

    problems = []
    for split in ("train", "val"):
        steps = transforms.get(split) if isinstance(transforms, Mapping) else None
        for i, step in enumerate(steps if isinstance(steps, list) else []):
            if not isinstance(step, Mapping):
                continue  # the schema reports it
            step = with_image_size(step, image_size)
            try:
                build_transform(step, f"data.transforms.{split}[{i}]")
            except ConfigError as err:
                problems += err.problems
    return problems


def _is_size(value: Any) -> bool:
    """``value`` is an image size: a positive int or a pair of them."""
    ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0  # noqa: E731
    return ok(value) or (
        isinstance(value, (list, tuple)) and len(value) == 2 and all(map(ok, value))
    )


def is_dataset_mix(spec: Any) -> bool:
    """True for ``data.<split>`` given as named datasets (``{pets: {format: ...}, ...}``)
    rather than one dataset (``{format: ..., ...}``)."""
    return isinstance(spec, Mapping) and "format" not in spec and bool(spec)


def _validate_datasets(spec: Any, path: str, problems: list[str]) -> dict[str, Any]:
    """One dataset entry, or named entries each with an optional sampling ``weight``."""
    extra: dict[str, tuple[Any, Any]] = {"synthetic": (SyntheticConfig | None, None)}
    check = partial(_validate_component, DATASETS, key="format", injected=DATASET_INJECTED_ARGS)
    if not is_dataset_mix(spec):
        return check(spec, path, problems, extra=extra)
    weighted = {**extra, "weight": (Annotated[float, Field(gt=0)], 1.0)}
    return {
        name: check(entry, f"{path}.{name}", problems, extra=weighted)
        for name, entry in spec.items()
    }


def builder_schema(
    registry: Registry,
    name: str,
    extra: Mapping[str, tuple[Any, Any]] | None = None,
    injected: Collection[str] = INJECTED_ARGS,
) -> type[BaseModel]:
    """A pydantic model of the arguments a registered component accepts from a config: the
    parameters of :meth:`Registry.signature <visionkit.registry.Registry.signature>` (its
    class's ``__init__``, a variant's defaults) except the ``injected`` ones code supplies."""
    fields: dict[str, Any] = {}
    for param in registry.signature(name).parameters.values():
        if param.name in injected or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (annotation, default)
    for key, (annotation, default) in (extra or {}).items():
        fields.setdefault(key, (annotation, default))
    return create_model(f"{registry.kind}_{name}", __config__=ConfigDict(extra="forbid"), **fields)


def _validate_component(
    registry: Registry,
    spec: Mapping[str, Any],
    path: str,
    problems: list[str],
    key: str = "name",
    extra: Mapping[str, tuple[Any, Any]] | None = None,
    injected: Collection[str] = INJECTED_ARGS,
) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        problems.append(f"{path}: expected a mapping, got {type(spec).__name__}")
        return {}
    name = spec.get(key)
    if not isinstance(name, str):
        problems.append(f"{path}.{key}: required; the registered {registry.kind} to build")
        return dict(spec)
    try:
        schema = builder_schema(registry, name, extra, injected)
    except UnknownNameError as err:
        problems.append(f"{path}.{key}: {err}")
        return dict(spec)
    args = {k: v for k, v in spec.items() if k != key}
    try:
        validated = schema.model_validate(args)
    except ValidationError as err:
        problems.extend(f"{path}.{line}" for line in _format_errors(err, schema))
        return dict(spec)
    return {key: name, **validated.model_dump(mode="json")}


def _format_errors(err: ValidationError, root: type[BaseModel]) -> list[str]:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        # Unions report one error per member type; keep the path free of the type names.
        loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS)))
        path = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            valid = _fields_at(root, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            if not close and valid:
                hint = f"; valid keys: {', '.join(sorted(valid))}"
            lines.append(f"{path}: unknown key{hint}")
        elif e["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            msg = e["msg"].replace("Input should be", "expected")
            lines.append(f"{path}: {msg}, got {e.get('input')!r}")
    # A union yields one line per member; keep the first per path.
    seen, unique = set(), []
    for line in lines:
        head = line.split(":", 1)[0]
        if head not in seen:
            seen.add(head)
            unique.append(line)
    return unique


_TYPE_TAGS = {"int", "str", "float", "bool", "list", "dict", "tuple", "none", "function-after"}


def _fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Names of the valid keys at ``loc`` inside ``model``, for 'did you mean' hints."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return []
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """``X | None`` → ``X``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def to_yaml(cfg: Config | Mapping[str, Any]) -> str:
    """The config as YAML text, keys in schema order."""
    data = cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(to_yaml(cfg), encoding="utf-8")


ConfigLike = str | os.PathLike | Mapping[str, Any] | Config
