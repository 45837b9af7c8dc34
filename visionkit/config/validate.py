"""Validation of a whole config before anything is built; every problem is reported with its
full key path. Registered components (heads, necks, datasets) are checked against their
class's ``__init__`` (:func:`builder_schema`)."""

from __future__ import annotations

import copy
import difflib
import inspect
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from functools import partial
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from visionkit.config.error_lines import format_errors
from visionkit.config.files import apply_overrides, override_keys, override_list, resolve_file
from visionkit.config.key_hints import (
    first_per_key,
    glued_problem,
    written_key,
)
from visionkit.config.locations import as_written, key_places
from visionkit.config.mix_keys import MIX_ENTRY_KEYS, loose_settings, mix_keys_of_one
from visionkit.config.override_hints import command_line_note, format_override_hints
from visionkit.config.paths import (
    dataset_path_problems,
    expand_home,
    is_dataset_mix,
)
from visionkit.config.schema import (
    DATASET_INJECTED_ARGS,
    INJECTED_ARGS,
    BackboneConfig,
    Config,
    DataConfig,
    SyntheticConfig,
)
from visionkit.data.identity_mixing import IDENTITY_STEPS
from visionkit.data.image_size import split_image_size, with_image_size
from visionkit.data.mixing import MULTI_IMAGE, multi_image_problems
from visionkit.data.transforms import EVAL_GEOMETRY_ALLOWED, build_transform, eval_geometry_problem
from visionkit.errors import ConfigError
from visionkit.evaluation.tasks import head_class_problems, task_of
from visionkit.models.backbones import backbone_builder
from visionkit.registry import DATASETS, HEADS, NECKS, Registry, UnknownNameError


def load_config(
    source: str | os.PathLike | Mapping[str, Any] | Config,
    overrides: Sequence[str] | str | Mapping[str, Any] = (),
) -> Config:
    """Read, merge, override and validate a config.

    Args:
        source: a YAML path, a mapping, or an already validated :class:`Config`.
        overrides: ``key.path=value`` strings (or ``{"key.path": value}``), after ``base:``.

    Raises:
        ConfigError: listing every problem with its full key path.
    """
    overrides = override_list(overrides)
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
        if not data and not override_list(overrides):  # "model.heads: at least one head"
            raise ConfigError(
                "the file is empty (or holds only comments); a config names at least the "
                "model's heads, e.g. model: {heads: {cls: {name: linear}}} "
                "(docs/configuration.md)",
                origin,
            )
    data = apply_overrides(data, overrides)
    try:
        return validate_config(data, origin, override_keys(overrides))
    except ConfigError as err:
        problems = as_written(err.problems, origin, overrides)
        hints = format_override_hints(overrides, problems)
        hints += command_line_note(problems, overrides) if err.source else []
        places = key_places(problems, origin, overrides) if origin else []
        if not hints and not any(places) and problems == err.problems:
            raise
        raise ConfigError([*problems, *hints], err.source, places) from None


def validate_config(
    data: Mapping[str, Any], source: str | None = None, given: Collection[str] = ()
) -> Config:
    """Validate a merged config tree; raise one :class:`ConfigError` listing every problem.
    ``given``: the keys the command line set (the problems of a dataset path say where it
    was written).

    Fixed sections and registered components are checked independently, so a mistake in one
    does not hide mistakes in the other.
    """
    problems: list[str] = []
    data = _without_null_heads(data)
    cfg = None
    try:
        cfg = Config.model_validate(data)
    except ValidationError as err:
        problems += format_errors(err, Config)
    model = data.get("model") if isinstance(data.get("model"), Mapping) else {}
    raw_data = data.get("data") if isinstance(data.get("data"), Mapping) else {}
    heads_spec = model.get("heads") if isinstance(model.get("heads"), Mapping) else {}
    unnamed = _unnamed_heads(heads_spec)
    problems += unnamed.values()
    heads = {  # a key YAML read as a boolean (yes:) named as YAML spells it: as_written
        name: _validate_component(
            HEADS, spec, _head_path(name), problems, extra={"loss_weight": (float, 1.0)}
        )
        for name, spec in heads_spec.items()
        if name not in unnamed
    }
    if not heads_spec and not isinstance(model.get("heads"), (list, str)):  # said by the schema
        problems.append("model.heads: at least one head is required")
    for name, spec in heads.items():  # a head class of one's own that misses a member
        if isinstance(spec.get("name"), str) and spec["name"] in HEADS:
            try:
                head_class = HEADS.component_class(spec["name"])
            except TypeError as err:  # a builder function that declares no class
                problems.append(f"{_head_path(name)}: {err}")
                continue
            problems += head_class_problems(head_class, _head_path(name))
    backbone = model.get("backbone") if isinstance(model.get("backbone"), Mapping) else {}
    backbone_name = backbone.get("name", BackboneConfig().name)
    if isinstance(backbone_name, str):
        try:
            backbone_builder(backbone_name)  # a ViT, say, is told why it cannot be one
        except UnknownNameError as err:
            problems.append(f"model.backbone.name: {err}")
    neck = None
    if model.get("neck") is not None:
        neck = _validate_component(NECKS, model["neck"], "model.neck", problems)
    splits = {}
    for split in ("train", "val", "test"):
        spec = raw_data.get(split)
        if split == "test":
            spec = _test_from_val(spec, raw_data.get("val"))
        if spec is not None:
            splits[split] = _validate_datasets(spec, f"data.{split}", problems, raw_data)
    problems += _transform_problems(raw_data, _spatial_heads(heads))
    problems += _identity_step_problems(raw_data.get("transforms"), heads)
    if problems or cfg is None:  # a head or dataset not a mapping: said by the schema too
        raise ConfigError(first_per_key(problems, only="expected a mapping"), source)
    cfg.model.heads = heads
    cfg.model.neck = neck
    cfg.data.train = splits.get("train")
    cfg.data.val = splits.get("val")
    cfg.data.test = splits.get("test")
    expand_home(cfg)
    if source and os.path.isfile(source):  # a dataset path written for the config's folder
        problems += dataset_path_problems(cfg, source, given)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def _without_null_heads(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` without the heads set to null (``model.heads.cls=null`` drops a recipe's
    head, as ``data.train.NAME=null`` drops a dataset)."""
    model = data.get("model")
    heads = model.get("heads") if isinstance(model, Mapping) else None
    if not isinstance(heads, Mapping) or None not in heads.values():
        return data
    kept = {name: spec for name, spec in heads.items() if spec is not None}
    return {**data, "model": {**model, "heads": kept}}


def _head_path(name: Any) -> str:
    """``model.heads.<name>``, a key that is not text as YAML spells it (``model.heads.true``
    for ``True``, which :func:`~visionkit.config.locations.as_written` names as the file
    writes it), not Python's ``True``."""
    return f"model.heads.{name if isinstance(name, str) else written_key(name)}"


def _test_from_val(test: Any, val: Any) -> Any:
    """``data.test`` given as one dataset without ``format`` (``data.test.root=DIR`` on the
    command line) takes the ``format`` of a single ``data.val``. On the same folder as
    ``data.val`` (another split of one dataset) it takes all of ``data.val``'s settings, with
    ``split: test`` where ``data.val`` names a split: a VOC, YOLO or mask folder without a split
    reads every image, the training images too. Each set of a mix, from ``data.val``'s of
    its name."""
    if not isinstance(test, Mapping) or not test or "format" in test:
        return test
    if all(isinstance(v, Mapping) for v in test.values()):  # a mix
        named = val if isinstance(val, Mapping) else {}
        return {k: _test_from_val(v, named.get(k)) for k, v in test.items()}
    if not (isinstance(val, Mapping) and isinstance(val.get("format"), str)):
        return test
    try:
        location = DATASETS.component_class(val["format"]).location
    except UnknownNameError:
        return {"format": val["format"], **test}
    if not _same_folder(test.get(location), val.get(location)):
        return {"format": val["format"], **test}
    split = {"split": "test"} if val.get("split") not in (None, "") else {}
    return {**val, **split, **test}


def _same_folder(a: Any, b: Any) -> bool:
    """Whether two config paths name the same file or folder."""
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def _unnamed_heads(specs: Mapping[str, Any]) -> dict[str, str]:
    """Head entries without ``name`` beside named ones, each with its problem: most often a
    misspelt head in an override (``model.heads.dett.num_convs=1``), not a new head. A key
    that is not text (``yes:``) is left to its own line, which says what to write."""
    named = [k for k, v in specs.items() if isinstance(v, Mapping) and "name" in v]
    named = [k if isinstance(k, str) else written_key(k) for k in named]
    problems = {}
    for key in (
        k
        for k, v in specs.items()
        if named and isinstance(k, str) and isinstance(v, Mapping) and k not in named
    ):
        close = difflib.get_close_matches(key, named, n=1, cutoff=0.5)
        problems[key] = (
            f"model.heads.{key}: not a head of the config (its heads: {', '.join(named)})"
            + (f"; did you mean model.heads.{close[0]}?" if close else ";")
            + f" a new head needs its name: model.heads.{key}.name=<registered head>"
        )
    return problems


def _spatial_heads(heads: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The heads whose targets have a place in the image (boxes, masks, label maps: every
    task but image-level classes and identities), as ``name: head``; heads with a bad name
    are left out (reported elsewhere)."""
    spatial = []
    for name, spec in heads.items():
        try:
            task = task_of(HEADS.component_class(spec["name"]))
        except (KeyError, TypeError, UnknownNameError):
            continue
        if any(target not in ("class", "identity") for target in task.targets):
            spatial.append(f"{name}: {spec['name']}")
    return spatial


def _identity_step_problems(transforms: Any, heads: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """An identity step (:data:`visionkit.data.identity_mixing.IDENTITY_STEPS`) in a model
    without a head that learns image-level identities (``embedding``): it would stop at the
    first sample, which has no identity to change."""
    steps = transforms.get("train") if isinstance(transforms, Mapping) else None
    named = [
        (i, step["name"])
        for i, step in enumerate(steps if isinstance(steps, list) else [])
        if isinstance(step, Mapping) and step.get("name") in IDENTITY_STEPS
    ]
    if not named:
        return []
    kinds = []
    for name, spec in heads.items():
        try:
            if "identity" in task_of(HEADS.component_class(spec["name"])).targets:
                return []
        except (KeyError, TypeError, UnknownNameError):
            continue
        kinds.append(f"{name}: {spec['name']}")
    return [
        f"data.transforms.train[{i}] ({step}): makes new identities for a head that learns "
        f"image-level identities (name: embedding, with format: identities data), but the "
        f"model has none (heads: {', '.join(kinds) or 'none'}); leave {step} out"
        for i, step in named
    ]


def _transform_problems(data: Mapping[str, Any], spatial_heads: Sequence[str] = ()) -> list[str]:
    """Build every albumentations transform of ``data.transforms`` (``data``: the raw
    ``data`` section) once, so that a wrong name or parameter is reported with the rest of the
    config, before any data is touched (sizes left out are filled from ``data.image_size`` /
    ``data.val_image_size`` first, as :class:`DataConfig` does).

    With ``spatial_heads``, each step of the evaluation pipeline (``val``: validation,
    ``eval``, ``predict``, export) must also keep the geometry that the heads' postprocess
    maps back by the size ratio alone (:func:`~visionkit.data.transforms.eval_geometry_problem`).
    Training pipelines are free.
    """

    transforms = data.get("transforms")
    problems = []
    for split in ("train", "val"):
        image_size = split_image_size(data, train=split == "train")
        if image_size is None:
            image_size = DataConfig.model_fields["image_size"].default
        elif not _is_size(image_size):
            image_size = 1  # the schema reports the bad size; no follow-up errors about steps
        steps = transforms.get(split) if isinstance(transforms, Mapping) else None
        # multi-image steps: training only, Mosaic first, MixUp / CopyPaste last
        problems += multi_image_problems(steps, f"data.transforms.{split}", split == "train")
        for i, step in enumerate(steps if isinstance(steps, list) else []):
            if not isinstance(step, Mapping):
                continue  # the schema reports it
            step = with_image_size(step, image_size)
            where = f"data.transforms.{split}[{i}]"
            try:
                transform = build_transform(step, where)
            except ConfigError as err:
                problems += err.problems
                continue
            if step.get("name") in MULTI_IMAGE:
                continue  # refused in an evaluation pipeline above
            reason = eval_geometry_problem(transform) if split == "val" and spatial_heads else None
            if reason:
                problems.append(
                    f"{where} ({step['name']}): {reason}, but boxes and masks of spatial heads "
                    f"({', '.join(spatial_heads)}) are mapped back to the original image by the "
                    "size ratio alone, so the evaluation pipeline may only resize and pad at "
                    f"the bottom/right; {EVAL_GEOMETRY_ALLOWED}"
                )
    return problems


def _is_size(value: Any) -> bool:
    """``value`` is an image size: a positive int or a pair of them."""
    ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0  # noqa: E731
    return ok(value) or (
        isinstance(value, (list, tuple)) and len(value) == 2 and all(map(ok, value))
    )


def _validate_datasets(
    spec: Any, path: str, problems: list[str], data: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One dataset entry, or named entries each with an optional sampling ``weight`` (one set
    to null is left out); an entry with settings but no ``format`` (``data.test.root=DIR`` where ``data.val`` is a mix) is
    told how to give either, with the names of the other splits' datasets."""
    extra: dict[str, tuple[Any, Any]] = {"synthetic": (SyntheticConfig | None, None)}
    check = partial(_validate_component, DATASETS, key="format", injected=DATASET_INJECTED_ARGS)
    if is_dataset_mix(spec) and None in spec.values():  # data.train.NAME=null drops that set
        spec_keys = list(spec)
        spec = {name: entry for name, entry in spec.items() if entry is not None}
        if not spec:  # {format:coco} in a file: the key "format:coco" set to null
            glued = glued_problem(path, {k: None for k in spec_keys})
            problems.append(glued or f"{path}: every named dataset was set to null; give one")
            return {}
    if not is_dataset_mix(spec):
        if isinstance(spec, Mapping):  # a mix's keys on one dataset (weight, ...): refused
            problems += mix_keys_of_one(spec, path)
            spec = {k: v for k, v in spec.items() if k not in MIX_ENTRY_KEYS}
        return check(spec, path, problems, extra=extra)
    loose = [key for key, value in spec.items() if not isinstance(value, Mapping)]
    if loose:
        problems.append(loose_settings(path, loose, data or {}))
        return dict(spec)
    if path != "data.train":  # evaluation reads each set whole: a weight is ignored
        for name in [n for n, e in spec.items() if e.get("weight", 1.0) != 1.0]:  # not refused:
            logging.getLogger(__name__).warning(  # earlier versions' checkpoints hold them
                f"{path}.{name}.weight: a sampling weight applies to data.train only ({path} "
                "reads every image of each of its datasets once); ignored"
            )
        # the training mix's entries given again (a YAML anchor): each set is scored on the
        # categories of its own ground truth, so what it annotates changes nothing here
        drop = MIX_ENTRY_KEYS
        spec = {name: {k: v for k, v in e.items() if k not in drop} for name, e in spec.items()}
        return {name: check(e, f"{path}.{name}", problems, extra=extra) for name, e in spec.items()}
    weighted = {
        **extra,
        "weight": (Annotated[float, Field(gt=0)], 1.0),
        "annotated_classes": (Annotated[list[str], Field(min_length=1)] | None, None),
    }
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
    glued = glued_problem(path, {k: None for k, v in args.items() if v is None})
    if glued:  # {format: coco, images:x}: the key "images:x" set to null
        problems.append(glued)
        return dict(spec)
    try:
        validated = schema.model_validate(args)
    except ValidationError as err:
        problems.extend(f"{path}.{line}" for line in format_errors(err, schema))
        return dict(spec)
    return {key: name, **validated.model_dump(mode="json")}


ConfigLike = str | os.PathLike | Mapping[str, Any] | Config
