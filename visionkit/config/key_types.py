"""What a config declares of one key path, for the command-line overrides: its type and its
default, in the fixed sections (:class:`~visionkit.config.schema.Config`) and in the arguments
of the registered components the config names (a head's, the neck's, a dataset's).

>>> takes_text_only({}, ["output_dir"]), takes_text_only({}, ["seed"])
(True, False)
>>> declared_default({}, ["optimizer", "betas"])
(0.9, 0.999)
"""

from __future__ import annotations

import datetime
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Union

from pydantic import BaseModel

from visionkit.choices import SPLITS
from visionkit.config.key_hints import unwrap_optional
from visionkit.config.schema import Config
from visionkit.registry import DATASETS, HEADS, NECKS, Registry, UnknownNameError

#: A key path's declared type and default; ``None`` where the config declares neither.
Declared = tuple[Any, Any] | None


def takes_text_only(tree: Mapping[str, Any], parts: Sequence[str | int]) -> bool:
    """Whether the key at ``parts`` is declared as text (``str``, or ``str | None``): a value
    written there can only mean its text (``name=2024``: the run ``runs/2024``). ``tree`` is
    the config so far, which names the components."""
    declared = declared_field(tree, parts)
    if declared is None:
        return False
    annotation = declared[0]
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return set(typing.get_args(annotation)) == {str, type(None)}
    return annotation is str


def takes_text(tree: Mapping[str, Any], parts: Sequence[str | int]) -> bool:
    """Whether the key at ``parts`` takes text only (:func:`takes_text_only`), or ``parts``
    names an item of a list declared as text (``data.train.class_names.0`` or
    ``class_names[0]``, of ``list[str] | None``)."""
    if parts and isinstance(parts[-1], str) and parts[-1].isdigit():  # class_names.0=...
        return _text_items(tree, parts[:-1]) or takes_text_only(tree, parts)
    if not parts or not isinstance(parts[-1], int):
        return takes_text_only(tree, parts)
    return _text_items(tree, parts[:-1])


def _text_items(tree: Mapping[str, Any], parts: Sequence[str | int]) -> bool:
    """Whether the key at ``parts`` is declared as a list (or tuple) of text."""
    declared = declared_field(tree, parts)
    annotation = unwrap_optional(declared[0]) if declared is not None else None
    origin = typing.get_origin(annotation)
    if origin not in (list, tuple, Sequence):
        return False
    return set(typing.get_args(annotation)) - {Ellipsis} == {str}


def kept_texts(
    value: Any,
    texts: Mapping[tuple[Any, ...], str | None],
    tree: Mapping[str, Any],
    parts: Sequence[str | int] = (),
) -> Any:
    """``value`` (set at ``parts`` of the config ``tree``) with each number, boolean or date
    that YAML read from a plain text (``texts``: :func:`~visionkit.config.yaml_rules.
    scalar_texts`) taken as that text where the key, or the list item, takes text only
    (:func:`takes_text`): ``name: 1e-3`` is the run ``'1e-3'``, not 0.001, and
    ``class_names: [1e5, 2e5]`` the classes ``'1e5'`` and ``'2e5'``.

    >>> kept_texts({"name": 1e-3, "seed": 7}, {("name",): "1e-3", ("seed",): "007"}, {})
    {'name': '1e-3', 'seed': 7}
    """

    def kept(item: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(item, dict):
            return {k: kept(v, (*path, k)) if isinstance(k, str) else v for k, v in item.items()}
        if isinstance(item, list):
            return [kept(v, (*path, i)) for i, v in enumerate(item)]
        read = isinstance(item, (bool, int, float, datetime.date))  # yes, 007, 1e3, 2024-05-01
        text = texts.get(path) if read else None
        return text if text is not None and takes_text(tree, [*parts, *path]) else item

    return kept(value, ())


def declared_default(tree: Mapping[str, Any], parts: Sequence[str | int]) -> Any:
    """The default of the key at ``parts`` (``None`` where there is none)."""
    declared = declared_field(tree, parts)
    return None if declared is None else declared[1]


def declared_field(tree: Mapping[str, Any], parts: Sequence[str | int]) -> Declared:
    """The type and default of the key at ``parts``: a field of a fixed section, or an
    argument of the component the config names there (``model.heads.det.norm``)."""
    *where, key = parts
    if not isinstance(key, str):
        return None
    component = _component_at(tree, where)
    if component is not None:
        return _argument(*component, key)
    section = _section_at(where)
    field = section.model_fields.get(key) if section is not None else None
    if field is None:
        return None
    return field.annotation, field.get_default(call_default_factory=True)


def _argument(registry: Registry, name: str, key: str) -> Declared:
    """The type and default of argument ``key`` of the component registered as ``name``."""
    try:
        param = registry.signature(name).parameters.get(key)
    except UnknownNameError:
        return None
    if param is None or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
        return None
    return param.annotation, None if param.default is inspect.Parameter.empty else param.default


def _component_at(tree: Mapping[str, Any], where: Sequence[str | int]) -> Any:
    """``(registry, name)`` of the component whose arguments are at ``where`` (a head, the
    neck, a dataset or a dataset of a mix), as ``tree`` names it; ``None`` elsewhere."""
    where = tuple(where)
    if len(where) == 3 and where[:2] == ("model", "heads"):
        registry, key = HEADS, "name"
    elif where == ("model", "neck"):
        registry, key = NECKS, "name"
    elif len(where) in (2, 3) and where[0] == "data" and where[1] in SPLITS:
        registry, key = DATASETS, "format"
    else:
        return None
    spec: Any = tree
    for part in where:
        spec = spec.get(part) if isinstance(spec, Mapping) else None
    name = spec.get(key) if isinstance(spec, Mapping) else None
    return (registry, name) if isinstance(name, str) else None


def _section_at(where: Sequence[str | int]) -> type[BaseModel] | None:
    """The fixed section (a pydantic model) at ``where``; ``None`` where there is none."""
    section: Any = Config
    for part in where:
        field = section.model_fields.get(part) if isinstance(part, str) else None
        section = unwrap_optional(field.annotation) if field is not None else None
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            return None
    return section
