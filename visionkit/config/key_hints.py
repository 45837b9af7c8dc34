"""What an unknown key, or a value that should have been a mapping, was probably meant to be:
the hints at the end of :func:`visionkit.config.validate.validate_config`'s lines.

>>> unknown_key_hint(Config, ("max_epochs",))
'; did you mean trainer.max_epochs? (a key of trainer:)'
>>> unknown_key_hint(Config, ("_base_",))
"; did you mean 'base'? (a config file, or a list of them, merged beneath this one; paths relative to this file)"
>>> quote_hint("string_type", 2024).split(":")[0]
'; YAML reads it as a number'
"""

from __future__ import annotations

import datetime
import difflib
import functools
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Union

from pydantic import BaseModel

from visionkit.choices import ULTRALYTICS_KEYS
from visionkit.config.schema import Config, unknown_trainer_key_help
from visionkit.errors import key_path

#: Other tools' names of ``base:`` (mmengine's ``_base_``, Hydra's ``defaults``, ...).
BASE_ALIASES = ("_base_", "__base__", "bases", "defaults", "extends", "inherit", "include")

#: Sections whose mapping names a registered component by ``name`` (or a dataset by
#: ``format``): what a bare string there (``model.backbone: resnet18``) should have been.
NAMED_SECTIONS = {
    "model.backbone": "name",
    "model.neck": "name",
    "model.heads.*": "name",
    "model.loss_balancing": "name",
    "optimizer": "name",
    "scheduler": "name",
    "data.train": "format",
    "data.val": "format",
    "data.test": "format",
    "data.transforms.train.*": "name",
    "data.transforms.val.*": "name",
}


#: Keys of :class:`Config` that take one of several types, with what they expect: said once,
#: where pydantic says each member's problem (``data.image_size: expected a valid integer``
#: and ``data.image_size[1]: required key is missing`` for ``[32]``).
UNION_KEYS = {
    ("data", "image_size"): "a positive int or [height, width], e.g. 128 or [96, 128]",
    ("data", "val_image_size"): "a positive int, [height, width] or null (data.image_size), "
    "e.g. 224 or [192, 256]",
    ("trainer", "max_time"): "a time with its unit: 'DD:HH:MM:SS' ('00:00:10:00' is ten "
    "minutes) or a mapping of days, hours, minutes, seconds ({minutes: 10})",
    ("data", "cache"): "ram (decoded images kept in memory), true (the same) or false",
    ("trainer", "deterministic"): "true, false or warn",
}

#: The items of a union key's list form, for a list of the right length with an item out of
#: range (``data.image_size: [0, 64]``: its height), said in one line of the whole value.
UNION_ITEMS = {
    ("data", key): ("[height, width]", ("height", "width"))
    for key in ("image_size", "val_image_size")
}

#: pydantic's names of union members (``list[int]``, ``int``, ``constrained-int`` of a PositiveInt)
_TYPE_TAG = re.compile(
    r".*\[.*|int|str|float|bool|list|dict|tuple|none|(constrained|function|lax-or-strict|json-or-python).*"
)


def untagged(loc: Sequence[Any]) -> tuple[Any, ...]:
    """A pydantic error's path without the type names of union members (one error each)."""
    return tuple(p for p in loc if not (isinstance(p, str) and _TYPE_TAG.fullmatch(p)))


def union_item_problem(loc: Sequence[Any], error: Mapping[str, Any], whole: Any) -> str:
    """The line for pydantic's ``error`` about item ``loc[2]`` of the list form of a key of
    :data:`UNION_ITEMS`, said of the key and its ``whole`` value.

    >>> union_item_problem(("data", "image_size", 0), {"msg": "Input should be greater than 0",
    ...     "type": "greater_than", "input": 0}, [0, 64])
    'data.image_size: expected [height, width] whose height is greater than 0, got [0, 64]'
    """
    form, names = UNION_ITEMS[tuple(loc[:2])]
    index = loc[2]
    name = names[index] if isinstance(index, int) and index < len(names) else f"item {index}"
    msg = error["msg"].replace("Input should be ", "")
    msg = "a whole number" if error["type"] == "int_from_float" else msg
    whole = error["input"] if whole is None else whole
    return f"{loc[0]}.{loc[1]}: expected {form} whose {name} is {msg}, got {whole!r}"


def mapping_key_problem(loc: Sequence[Any], given: Any) -> str:
    """The line for a key of a mapping that is not text (pydantic's ``[key]`` error at
    ``loc``): named as a key (``model.heads.0``, not a list item's ``model.heads[0]``), with
    what YAML read it as and what to write instead.

    >>> mapping_key_problem(("model", "heads", 0, "[key]"), 0).split(";")[0]
    "model.heads.0: a head's name is text (letters, digits and _, not starting with a digit)"
    """
    parts = [p for p in loc if p != "[key]"]
    written = written_key(given)
    path = f"{key_path(parts[:-1])}.{written}".lstrip(".")  # pydantic's loc: 1 for True
    kind = "a boolean" if isinstance(given, bool) else "a number"
    if tuple(parts[:2]) == ("model", "heads"):
        return (
            f"{path}: a head's name is text (letters, digits and _, not starting with a "
            f"digit); YAML reads {written} as {kind}; name the head after its task, e.g. det, "
            "seg, cls (its metrics are named so: det/mAP)"
        )
    return (
        f"{path}: a key here is text, but YAML reads {written} as {kind}: write it in quotes "
        f"('{written}': ...)"
    )


def written_key(given: Any) -> str:
    """A mapping key that is not text as YAML spells it: ``true`` for ``True``, ``1``."""
    return str(given).lower() if isinstance(given, bool) else str(given)


def path_below_keys(loc: tuple[Any, ...], keys: Mapping[tuple[Any, ...], Any]) -> str:
    """The key path of ``loc``, a list item in brackets (:func:`~visionkit.errors.key_path`),
    but below a mapping key that is not text (``keys``: the loc of each → the key as read),
    that key as YAML spells it: ``optimizer.param_groups.1.lr``, not ``param_groups[1].lr``;
    the key itself too (its value's problem: ``optimizer.param_groups.1: expected a mapping``).

    >>> path_below_keys(("optimizer", "param_groups", 1, "lr"), {("optimizer", "param_groups", 1): 1})
    'optimizer.param_groups.1.lr'
    >>> path_below_keys(("optimizer", "param_groups", 1), {("optimizer", "param_groups", 1): 1})
    'optimizer.param_groups.1'
    """
    bad = next((k for k in keys if len(k) <= len(loc) and loc[: len(k)] == k), None)
    if bad is None:
        return key_path(loc)
    below = key_path(loc[len(bad) :])
    return (
        f"{key_path(bad[:-1])}.{written_key(keys[bad])}"
        + ("" if not below or below.startswith("[") else ".")
        + below
    ).lstrip(".")


def unknown_key_hint(root: type[BaseModel], loc: Sequence[Any]) -> str:
    """``"; did you mean ...?"`` for the unknown key at ``loc`` of ``root`` (the whole
    :class:`Config`, or a component's schema): the key where it is a key (``max_epochs`` →
    ``trainer.max_epochs``), Ultralytics' name translated (``epochs``), ``base:`` for another
    tool's name of it (``_base_``), else the closest valid key here, or the valid keys."""
    key = str(loc[-1])
    if root is Config and len(loc) == 1 and key in BASE_ALIASES:
        return (
            "; did you mean 'base'? (a config file, or a list of them, merged beneath this "
            "one; paths relative to this file)"
        )
    said = ULTRALYTICS_KEYS.get(key)
    if root is Config and said and (len(loc) == 1 or tuple(loc[:-1]) == ("trainer",)):
        return f"; for Ultralytics' {key}, use {said}"  # epochs=3, trainer.epochs=3
    # a key of another section fits where the user may have misplaced it; not inside a
    # mapping of their own names (param_groups.<prefix>.lr: the group takes lr_mult)
    named = _under_own_names(root, loc[:-1])
    elsewhere = key_places().get(key, []) if len(key) > 1 and not named else []
    if len(elsewhere) == 1:
        section = elsewhere[0].rpartition(".")[0]
        return f"; did you mean {elsewhere[0]}? (a key of {section + ':' if section else 'the top level'})"
    if 1 < len(elsewhere) <= 3:
        return f"; did you mean {' or '.join(elsewhere)}?"
    valid = fields_at(root, loc[:-1])
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if root is Config and tuple(loc[:-1]) == ("trainer",):  # Lightning's keys and ours, apart
        return (f"; did you mean {close[0]!r}? " if close else "; ") + unknown_trainer_key_help()
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; valid keys: {', '.join(sorted(valid))}" if valid else ""


@functools.cache
def key_places(model: type[BaseModel] = Config, prefix: str = "") -> dict[str, list[str]]:
    """Every key of the fixed sections of ``model`` → the full paths it is a key at
    (``"lr"`` → ``["optimizer.lr"]``), for keys written in the wrong section."""
    places: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        places.setdefault(name, []).append(path)
        inner = unwrap_optional(field.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            for key, paths in key_places(inner, f"{path}.").items():
                places.setdefault(key, []).extend(paths)
    return places


def mapping_hint(path: str, given: Any) -> str:
    """What a string given where a mapping of a named component belongs should have been:
    ``" such as {name: resnet18}"`` for ``model.backbone: resnet18``; ``""`` elsewhere."""
    path = re.sub(r"\[(\d+)\]", r".\1", path)  # data.transforms.train[0]: train.*
    pattern = path if path in NAMED_SECTIONS else f"{path.rpartition('.')[0]}.*"
    key = NAMED_SECTIONS.get(pattern)
    glued = isinstance(given, str) and re.fullmatch(r"([A-Za-z_]\w+):([^\s:/\\][^:]*)", given)
    if glued:  # format:coco in block style: text, not the item format: coco (C:/x is a path)
        item = f"{glued[1]}: {glued[2]}"
        return f" such as {{{item}}}: an item of a mapping needs a space after its colon"
    if not isinstance(given, str) or key is None:
        return ""
    if key == "format":  # a folder: a dataset entry names its format and its folder
        return f" such as {{format: folder, root: {given}}} (formats: docs/datasets.md)"
    return f" such as {{{key}: {given}}}"


def quote_hint(error_type: str, given: Any) -> str:
    """What a number, a date or a boolean given where text belongs (``name: 007`` in a YAML
    file, read as 7; ``name: off``, read as false) is told: YAML read it so, and quoted it is
    text (on the command line inside the argument, whose own quotes the shell removes);
    ``""`` for anything else."""
    if error_type != "string_type":
        return ""
    if isinstance(given, bool):
        kind = "a boolean (yes, no, on, off, true, false)"
    elif isinstance(given, (int, float)):
        kind = "a number"
    elif isinstance(given, datetime.date):
        kind = "a date"
    else:
        return ""
    return (
        f"; YAML reads it as {kind}: for text, write the value in quotes (on the command "
        "line inside the argument: 'KEY=\"VALUE\"')"
    )


def fields_at(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """Names of the valid keys at ``loc`` inside ``model``, for 'did you mean' hints."""
    current: Any = model
    for part in loc:
        current = unwrap_optional(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return []
            current = current.model_fields[part].annotation
        elif typing.get_origin(current) in (dict, Mapping):
            current = typing.get_args(current)[1]
        else:
            return []
    current = unwrap_optional(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _under_own_names(model: type[BaseModel], loc: Sequence[Any]) -> bool:
    """Whether ``loc`` inside ``model`` passes a mapping whose keys the user names
    (``optimizer.param_groups.<prefix>``), not a fixed section's."""
    current: Any = model
    for part in loc:
        current = unwrap_optional(current)
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return typing.get_origin(current) in (dict, Mapping)
        field = current.model_fields.get(part)
        current = field.annotation if field is not None else None
    return False


def unwrap_optional(tp: Any) -> Any:
    """``X | None`` → ``X``."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def glued_problem(key: str, value: Any, raw: str | None = None) -> str | None:
    """The problem of the value of ``key`` (written ``raw`` on the command line) whose
    mapping items were written without a space after the colon (``{format:coco,images:x}``):
    YAML reads ``format:coco`` as a key without a value (so a dataset mix of datasets set to
    null, "every named dataset was set to null")."""
    glued = _glued_keys(value)
    if not glued:
        return None
    first, _, given = glued[0].partition(":")
    what = f"keys {', '.join(map(repr, glued))}" if len(glued) > 1 else f"the key {glued[0]!r}"
    fixed = raw or ""
    for item in glued:
        name, _, text = item.partition(":")
        fixed = fixed.replace(item, f"{name}: {text}")
    return (
        f"{key}: YAML reads {what} without a value: an item of a mapping needs a space after "
        f"its colon; write `{first}: {given}` with a space after the colon"
        + (f", e.g. '{key}={fixed}'" if raw else "")
    )


def _glued_keys(value: Any) -> list[str]:
    """The keys of ``value``'s mappings (nested too) set to null that hold a colon with no
    space after it: ``key:value`` items, which YAML reads as keys."""
    if isinstance(value, list):
        return [k for item in value for k in _glued_keys(item)]
    if not isinstance(value, Mapping):
        return []
    found = [k for k, v in value.items() if v is None and isinstance(k, str) and GLUED.match(k)]
    return found + [k for v in value.values() for k in _glued_keys(v)]


#: ``key:value`` with no space after the colon (``format:coco``), a key read whole by YAML.
GLUED = re.compile(r"[A-Za-z_]\w*:[^\s:]")


def first_per_key(lines: Sequence[str], only: str = "") -> list[str]:
    """``lines`` less those said already (a dataset's key that is not text: by the schema
    and by the dataset's own check) and, with ``only``, those whose problem starts so and
    was said of the key (the text before the first ``:``) already."""
    said, unique = set(), []
    for line in dict.fromkeys(lines):
        key, _, problem = line.partition(":")
        if problem.startswith(f" {only}"):
            if key in said:
                continue
            said.add(key)
        unique.append(line)
    return unique


def glued_mappings(errors: Sequence[tuple[tuple, Mapping[str, Any]]]) -> dict[tuple, dict]:
    """The mappings (by path) among pydantic's untagged ``errors`` whose unknown keys set to
    null are ``key:value`` items written without a space (:func:`glued_problem`)."""
    glued: dict[tuple, dict] = {}
    for loc, e in errors:
        if e["type"] == "extra_forbidden" and len(loc) > 1 and e["input"] is None:
            glued.setdefault(loc[:-1], {})[loc[-1]] = None
    return {at: keys for at, keys in glued.items() if _glued_keys(keys)}
