"""Configuration: YAML files with one ``base:`` level, dotted overrides, and validation.

A config is read with ``yaml_rules.ConfigLoader`` (PyYAML's safe loader, YAML 1.2 floats);
``base:`` (a path or a list of paths, relative to the file) is deep-merged beneath it;
``key.path=value`` overrides from the command line are applied on top (values parsed as
YAML, so ``trainer.max_epochs=3`` is an int). The whole tree is then
validated before anything is built: fixed sections against typed schemas, and registered
components (heads, necks, datasets) against the signature of their class's ``__init__`` (or
builder function). Every problem is reported with its full key path::

    model.backbone.nmae: unknown key; did you mean 'name'?
    trainer.max_epochs: expected a valid integer, got 'ten'

Configs name registered components only; they never import or run code.

One module per step: :mod:`.files` (YAML, ``base:``, overrides, writing back), :mod:`.schema`
(the typed sections), :mod:`.validate` (the whole tree, with key paths), :mod:`.reference`
(``docs/configs.md`` from the schema and the registries).

>>> cfg = load_config({"model": {"backbone": {"name": "simple_cnn"},
...                              "heads": {"cls": {"name": "linear", "num_classes": 4}}}})
>>> cfg.model.heads["cls"]["dropout"]
0.0
"""

from visionkit.config.files import (
    apply_overrides,
    deep_merge,
    load_yaml,
    override_keys,
    override_list,
    read_yaml,
    resolve_file,
    save_config,
    to_yaml,
)
from visionkit.config.locations import located, locating
from visionkit.config.mix_keys import MIX_KEYS
from visionkit.config.paths import is_dataset_mix, split_entries
from visionkit.config.schema import (
    DATASET_INJECTED_ARGS,
    INJECTED_ARGS,
    VISIONKIT_TRAINER_KEYS,
    BackboneConfig,
    Config,
    DataConfig,
    EarlyStoppingConfig,
    EMAConfig,
    LossBalancingConfig,
    ModelConfig,
    OptimizerConfig,
    ParamGroupConfig,
    SchedulerConfig,
    SyntheticConfig,
    TrainerConfig,
    TransformsConfig,
)
from visionkit.config.validate import ConfigLike, builder_schema, load_config, validate_config

__all__ = [
    "BackboneConfig",
    "Config",
    "ConfigLike",
    "DATASET_INJECTED_ARGS",
    "DataConfig",
    "EMAConfig",
    "EarlyStoppingConfig",
    "INJECTED_ARGS",
    "MIX_KEYS",
    "LossBalancingConfig",
    "ModelConfig",
    "OptimizerConfig",
    "ParamGroupConfig",
    "SchedulerConfig",
    "SyntheticConfig",
    "TrainerConfig",
    "TransformsConfig",
    "VISIONKIT_TRAINER_KEYS",
    "apply_overrides",
    "override_keys",
    "override_list",
    "builder_schema",
    "deep_merge",
    "is_dataset_mix",
    "split_entries",
    "load_config",
    "load_yaml",
    "located",
    "locating",
    "read_yaml",
    "resolve_file",
    "save_config",
    "to_yaml",
    "validate_config",
]
