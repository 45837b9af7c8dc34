"""The typed sections of a config (pydantic models, ``extra="forbid"``) and the names of the
arguments a config never sets (injected by the factory)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from visionkit.config.max_time import max_time_seconds
from visionkit.config.name_case import any_case, canonical
from visionkit.data.image_size import split_image_size, with_image_size

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


#: Names a head cannot take: its metrics would be read as these (``val/score``, ``time/train_s``).
RESERVED_HEAD_NAMES = {
    "train": "the training losses and learning rates",
    "val": "the validation totals (val/loss, val/score)",
    "test": "the test split's totals",
    "time": "the run's timings (time/train_s)",
    "lr": "the learning rate",
}


class ModelConfig(_Section):
    """``model``: one backbone, an optional neck, and named heads; optionally initialised from
    a checkpoint (``init_from``) with some modules frozen (``freeze``)."""

    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    neck: dict[str, Any] | None = None
    heads: dict[str, dict[str, Any]] = Field(default_factory=dict)
    loss_balancing: LossBalancingConfig = Field(default_factory=LossBalancingConfig)
    init_from: str | None = None
    freeze: list[str] = Field(default_factory=list)

    @field_validator("heads")
    @classmethod
    def _usable_head_names(cls, heads: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """A head's name prefixes its metrics and losses (``det/mAP``, ``train/det/loss``) and
        names its module (``heads.det``): letters, digits and ``_``, not a name the logs use
        for themselves, nor an attribute of ``torch.nn.ModuleDict`` (``train``, ``keys``)."""
        from torch import nn

        for name in heads:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                why = "letters, digits and _ only, not starting with a digit"
            elif name in RESERVED_HEAD_NAMES:
                why = f"{name}/... is what the logs call {RESERVED_HEAD_NAMES[name]}"
            elif hasattr(nn.ModuleDict(), name):
                why = "a method of the modules that hold the heads (torch.nn.ModuleDict)"
            else:
                continue
            raise PydanticCustomError(
                "head_name",
                "cannot name a head: {why}; use another, e.g. det, seg, cls",
                {"name": name, "why": why},
            )
        return heads

    @field_validator("init_from")
    @classmethod
    def _known_torchvision_model(cls, value: str | None) -> str | None:
        """``torchvision:<model>[=<path>]`` must name a model visionkit maps (checked here, so
        a typo fails before any data is read)."""
        from visionkit.models.torchvision_detectors import parse_source

        try:
            if value is not None:
                parse_source(value)
        except ValueError as err:  # "model.init_from: <err>, got '<value>'"
            raise PydanticCustomError("torchvision_source", str(err)) from None
        return value


class SyntheticConfig(_Section):
    """``data.<split>.synthetic``: generate the shapes dataset at ``root`` when it is absent."""

    num_images: int = Field(200, gt=0)
    size: int = Field(128, ge=32)
    seed: int = 0
    min_shapes: int = Field(1, ge=0)
    max_shapes: int = Field(4, ge=0)
    identities: int | None = Field(None, gt=1)  # an ImageFolder of identities instead
    first_identity: int | None = Field(None, ge=0)
    keypoints: bool | None = None  # COCO keypoints on every shape (synthetic_keypoints.py)
    styles: int | None = Field(None, gt=1)  # an identity style per shape (synthetic_styles.py)
    first_style: int | None = Field(None, ge=0)


class SamplerConfig(_Section):
    """``data.sampler``: training batches of ``p`` identities × ``k`` images each."""

    p: int = Field(8, ge=2)
    k: int = Field(4, ge=1)


class TransformsConfig(_Section):
    """``data.transforms``: albumentations transforms as ``{name: Resize, height: 128, ...}``."""

    train: list[dict[str, Any]] | None = None
    val: list[dict[str, Any]] | None = None


class DataConfig(_Section):
    """``data``: datasets per split and how they are loaded. A split is one dataset
    (``{format: coco, ...}``) or several named ones (``{shapes: {format: coco, ...},
    pets: {format: folder, ..., weight: 0.5}}``): mixed by ``weight`` for training, each
    evaluated on its own for validation. ``test`` (optional, same forms as ``val``) is read
    only by ``visionkit eval --split test`` and ``visionkit check-data``."""

    train: dict[str, Any] | None = None
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    image_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 128
    # the evaluation pipeline's (validation, eval, predict, export); null: image_size
    val_image_size: PositiveInt | tuple[PositiveInt, PositiveInt] | None = None
    batch_size: int = Field(32, gt=0)
    val_batch_size: int | None = Field(None, gt=0)
    num_workers: int = Field(2, ge=0)
    pin_memory: bool = False
    cache: bool | any_case("ram") = False  # Ultralytics' cache=ram; RAM too
    close_mixing: float = Field(0.0, ge=0, lt=1)  # Ultralytics' close_mosaic, a fraction
    transforms: TransformsConfig = Field(default_factory=TransformsConfig)
    sampler: SamplerConfig | None = None

    @model_validator(mode="after")
    def _sampler_batch(self) -> DataConfig:
        """With ``sampler``, a training batch is ``p × k`` images: a ``batch_size`` given
        too must agree."""
        s = self.sampler
        if s is not None and "batch_size" in self.model_fields_set and self.batch_size != s.p * s.k:
            raise ValueError(
                f"data.sampler makes batches of p x k = {s.p * s.k} images, but data.batch_size "
                f"is {self.batch_size}; set data.batch_size={s.p * s.k} or leave it out"
            )
        return self

    @model_validator(mode="after")
    def _sizes_from_image_size(self) -> DataConfig:
        """A sizing transform without its size (``{name: Resize}``) takes ``image_size``
        (an evaluation pipeline's: ``val_image_size`` where it is set)."""

        for split in ("train", "val"):
            steps = getattr(self.transforms, split)
            size = split_image_size(self, train=split == "train")
            if steps:
                setattr(
                    self.transforms,
                    split,
                    [with_image_size(s, size) if isinstance(s, Mapping) else s for s in steps],
                )
        return self


class ParamGroupConfig(_Section):
    """``optimizer.param_groups.<module prefix>``."""

    lr_mult: float = Field(1.0, ge=0)


OptimizerName = any_case("sgd", "adamw", "adam")
SchedulerName = any_case(  # torch's names of these schedules too (StepLR's is another)
    "cosine", "step", "onecycle", "constant",
    CosineAnnealingLR="cosine", MultiStepLR="step", OneCycleLR="onecycle",
)  # fmt: skip


class OptimizerConfig(_Section):
    """``optimizer``; ``param_groups`` maps module prefixes of the model (``backbone``,
    ``heads.det``, ...) to learning-rate multipliers, the longest matching prefix winning."""

    name: OptimizerName = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    param_groups: dict[str, ParamGroupConfig] = Field(default_factory=dict)


class SchedulerConfig(_Section):
    """``scheduler``: learning-rate schedule, stepped every optimiser step.

    ``cosine``: linear warm-up over ``warmup_epochs``, then cosine decay to ``min_lr_factor``;
    ``step``: × ``gamma`` at each epoch of ``step_epochs`` (or optimiser step of
    ``step_milestones``); ``onecycle``: cosine rise from
    ``warmup_start_factor`` to 1 over the first ``pct_start`` of the run, then cosine decay to
    ``min_lr_factor`` (``warmup_epochs`` is not used); ``constant``. The warm-up is counted in
    epochs (``warmup_epochs``) or, for a run budgeted in steps (``trainer.max_steps``), in
    optimiser steps (``warmup_steps``), so that it does not depend on the dataset's size."""

    name: SchedulerName = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    warmup_steps: int | None = Field(None, ge=0)
    warmup_start_factor: float = Field(0.1, gt=0, le=1)
    min_lr_factor: float = Field(0.0, ge=0, le=1)
    step_epochs: list[int] = Field(default_factory=list)
    step_milestones: list[int] = Field(default_factory=list)  # optimiser steps (step budgets)
    gamma: float = Field(0.1, gt=0)
    pct_start: float = Field(0.3, gt=0, lt=1)

    @model_validator(mode="after")
    def _one_warmup(self) -> SchedulerConfig:
        if self.warmup_steps is not None and self.warmup_epochs:
            raise ValueError("give warmup_epochs or warmup_steps, not both")
        if self.step_epochs and self.step_milestones:
            raise ValueError("give step_epochs or step_milestones (in steps), not both")
        return self


# What lightning.Trainer(precision=...) accepts, plus visionkit's "auto" (not imported from
# Lightning: visionkit.config never imports it; tests/test_config.py compares the two lists).
PRECISIONS = (
    "auto", "64", "32", "16", "bf16", "64-true", "32-true", "16-true", "16-mixed", "bf16-true",
    "bf16-mixed", "transformer-engine", "transformer-engine-float16",
)  # fmt: skip


class TrainerConfig(_Section):
    """``trainer``: every argument of ``lightning.Trainer`` (passed through by
    :func:`visionkit.build.trainer_kwargs`; ``null``: Lightning's default), plus visionkit's
    own keys (:data:`VISIONKIT_TRAINER_KEYS`: ``compile``, ``on_nonfinite_loss``,
    ``checkpoint_every_n_steps``, ``channels_last``). The Lightning keys are the fields below
    with YAML-expressible types; ``tests/engine/test_trainer_args.py`` compares them with
    ``inspect.signature(lightning.Trainer.__init__)`` so that the list cannot drift (Lightning
    is not imported here: ``visionkit.load`` users do not pay for it). The arguments visionkit
    sets itself (:data:`TRAINER_KEYS_SET_BY_VISIONKIT`) are refused with the reason."""

    # The budget: epochs (default 10), or optimiser steps whatever the dataset's size
    # (``max_steps``: epochs are then unlimited unless also given), or both (the first reached).
    max_epochs: int | None = Field(None, ge=-1)
    max_steps: int = Field(-1, ge=-1)
    max_time: str | dict[str, int | float] | None = None  # "DD:HH:MM:SS" or {hours: 1, ...}: a stop
    min_epochs: int | None = Field(None, ge=0)
    min_steps: int | None = Field(None, ge=0)
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    num_nodes: int = Field(1, gt=0)
    strategy: str = "auto"
    precision: str = "auto"  # auto | 32-true | bf16-mixed | 16-mixed | ... (32, 16 also accepted)
    sync_batchnorm: bool | None = None
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: Literal["norm", "value"] | None = None
    accumulate_grad_batches: int = Field(1, gt=0)
    log_every_n_steps: int = Field(10, gt=0)
    # Validation every N epochs, or (check_val_every_n_epoch: null) every val_check_interval
    # training batches: a step budget's validations, whatever the dataset's size.
    check_val_every_n_epoch: int | None = Field(1, gt=0)
    val_check_interval: int | float | None = Field(None, gt=0)
    num_sanity_val_steps: int | None = Field(None, ge=-1)
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    limit_test_batches: int | float | None = None
    limit_predict_batches: int | float | None = None
    overfit_batches: int | float | None = Field(None, ge=0)
    fast_dev_run: bool | int | None = None
    deterministic: bool | Literal["warn"] = False
    benchmark: bool | None = None
    detect_anomaly: bool | None = None
    inference_mode: bool | None = None
    use_distributed_sampler: bool | None = None
    reload_dataloaders_every_n_epochs: int | None = Field(None, ge=0)
    profiler: Literal["simple", "advanced", "pytorch", "xla"] | None = None
    enable_progress_bar: bool = True
    enable_model_summary: bool | None = None
    enable_autolog_hparams: bool | None = None
    model_registry: str | None = None
    # Lightning arguments visionkit sets itself (refused: see TRAINER_KEYS_SET_BY_VISIONKIT).
    logger: Any = None
    callbacks: Any = None
    plugins: Any = None
    default_root_dir: Any = None
    enable_checkpointing: Any = None
    barebones: Any = None
    # visionkit's own keys (not Lightning arguments):
    compile: bool | dict[str, Any] = False  # true, or torch.compile kwargs (mode, backend, ...)
    on_nonfinite_loss: Literal["error", "skip"] = "error"
    checkpoint_every_n_steps: int | None = Field(None, gt=0)
    channels_last: bool = True  # NHWC weights and batches: faster convs and max-pool on CPUs

    @model_validator(mode="after")
    def _budget(self) -> TrainerConfig:
        if self.max_epochs == 0 or self.max_steps == 0:
            raise ValueError("max_epochs and max_steps must be positive (or -1: unlimited)")
        if self.max_epochs is None:  # 10 epochs, unless a step or time budget is given
            budget = self.max_steps != -1 or self.max_time is not None
            object.__setattr__(self, "max_epochs", -1 if budget else 10)
        return self

    @field_validator("max_time")
    @classmethod
    def _max_time(cls, value: Any) -> Any:
        """Refused here, with an example, where Lightning's ``Timer`` would refuse it later."""
        if value is not None and max_time_seconds(value) <= 0:
            raise ValueError("must be a positive time")
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        """Lightning accepts ``32`` and ``16`` as well as strings; keep one type, and refuse
        what Lightning would refuse only when the Trainer is built."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        value = canonical(value, PRECISIONS)  # BF16-mixed, as in Lightning's docs
        if isinstance(value, str) and value not in PRECISIONS:
            raise ValueError(f"expected one of: {', '.join(PRECISIONS)} (in any case)")
        return value

    @field_validator(
        "logger", "callbacks", "plugins", "default_root_dir", "enable_checkpointing", "barebones"
    )
    @classmethod
    def _set_by_visionkit(cls, value: Any, info: ValidationInfo) -> Any:
        """A Lightning argument that visionkit sets itself: say where it is set instead."""
        if value is not None:
            why = TRAINER_KEYS_SET_BY_VISIONKIT[str(info.field_name)]
            raise PydanticCustomError("set_by_visionkit", "set by visionkit: {why}", {"why": why})
        return value

    @model_serializer(mode="wrap")
    def _without_unset_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The Lightning keys left at ``null`` (Lightning's default) stay out of saved configs
        and checkpoints, apart from the ones visionkit always listed."""
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k in _TRAINER_KEYS_SHOWN_NULL}


# ``trainer`` keys that visionkit handles itself rather than passing to ``lightning.Trainer``.
VISIONKIT_TRAINER_KEYS = (
    "compile",
    "on_nonfinite_loss",
    "checkpoint_every_n_steps",
    "channels_last",
)

# ``lightning.Trainer`` arguments that visionkit sets itself, each with where to set it instead.
TRAINER_KEYS_SET_BY_VISIONKIT = {
    "logger": "use the top-level `logger:` list (csv, tensorboard, wandb, mlflow), or "
    "train(..., loggers=[...]) from Python",
    "callbacks": "pass train(..., callbacks=[...]) from Python; visionkit adds its own "
    "(checkpoints, run folder, EMA, early stopping)",
    "plugins": "visionkit passes its atomic checkpoint writer (SafeCheckpointIO)",
    "default_root_dir": "it is the run folder: set `output_dir` and `name` (or --output-dir)",
    "enable_checkpointing": "visionkit always writes checkpoints/best.ckpt and last.ckpt; "
    "use checkpoint_every_n_steps for more",
    "barebones": "it turns off the loggers and checkpoints that fill the run folder",
}

#: Every ``lightning.Trainer`` argument a ``trainer`` section names (the fields of
#: :class:`TrainerConfig` less visionkit's own keys), sorted.
LIGHTNING_TRAINER_KEYS = tuple(
    sorted(k for k in TrainerConfig.model_fields if k not in VISIONKIT_TRAINER_KEYS)
)

# Trainer keys whose ``null`` was always written to saved configs (kept for stable files).
_TRAINER_KEYS_SHOWN_NULL = {
    "max_time",
    "gradient_clip_val",
    "check_val_every_n_epoch",
    "val_check_interval",
    "limit_train_batches",
    "limit_val_batches",
    "checkpoint_every_n_steps",
}


def unknown_trainer_key_help() -> str:
    """What an unknown ``trainer`` key is told: both sets of valid keys, apart."""
    lightning = ", ".join(
        k for k in LIGHTNING_TRAINER_KEYS if k not in TRAINER_KEYS_SET_BY_VISIONKIT
    )
    own = ", ".join(sorted(VISIONKIT_TRAINER_KEYS))
    return (
        f"trainer takes lightning.Trainer arguments ({lightning}) and visionkit's own keys ({own})"
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


LoggerName = any_case("csv", "tensorboard", "wandb", "mlflow")  # CSV, TensorBoard too


class LoggerConfig(BaseModel):
    """``logger.<i>``: a Lightning logger by name, with its keyword arguments
    (``{name: wandb, project: shapes}``), checked against the logger's class when a run starts.
    ``csv`` is the run folder's own log, always on, and takes no arguments."""

    model_config = ConfigDict(extra="allow")

    name: LoggerName

    @model_validator(mode="after")
    def _csv_takes_nothing(self) -> LoggerConfig:
        if self.name == "csv" and self.model_extra:
            raise ValueError(
                "csv takes no arguments: it is the run folder's own log, always written to "
                "logs/metrics.csv (per step) and metrics.csv (per epoch)"
            )
        return self


class Config(_Section):
    """The whole, validated configuration."""

    name: str = "run"
    seed: int = 0
    output_dir: str = "runs"
    monitor: str | None = None
    resume: str | None = None  # "auto" (newest loadable checkpoint of the run folder) or a path
    exist_ok: bool = False  # write into a run folder that holds another run
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    # Loggers beside the run folder's CSV logs; null: tensorboard too when it is installed.
    logger: list[LoggerConfig] | None = None

    @field_validator("logger", mode="before")
    @classmethod
    def _logger_list(cls, value: Any) -> Any:
        """``logger: tensorboard`` or ``[csv, {name: wandb, project: x}]``: a list of
        ``{name: ..., ...}``."""
        if isinstance(value, (str, Mapping)):
            value = [value]
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain types (what is saved to the run folder and checkpoints)."""
        return self.model_dump(mode="json")
