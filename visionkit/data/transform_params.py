"""What a step of ``data.transforms`` is told when albumentations (or a composition, or a
multi-image step) refuses the value of one of its parameters: the key path, the step, what the
parameter takes (read from the step's own declaration: its type and range) and what was
written, in visionkit's words rather than pydantic's "Input should be ...", one line per
parameter however many members its type has::

    data.transforms.train[1].scale_limit (RandomScale): expected a number or a list of
    2 numbers, got 'abc'

>>> import albumentations as A, pydantic
>>> try:
...     A.HorizontalFlip(p="high", strict=True)
... except Exception as err:
...     cause = err if isinstance(err, pydantic.ValidationError) else err.__cause__
...     fields = declared_fields(A.HorizontalFlip)
...     parameter_problems(cause, fields, "HorizontalFlip", "data.transforms.train[0]", {"p": "high"})
["data.transforms.train[0].p (HorizontalFlip): expected a number from 0 to 1, got 'high'"]
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pydantic
from pydantic.fields import FieldInfo

_INTERPOLATIONS = (
    "0 nearest, 1 linear, 2 cubic, 3 area, 4 lanczos4, 5 linear_exact, 6 nearest_exact"
)
#: what the OpenCV flags that albumentations takes as numbers mean (``cv2.INTER_*``,
#: ``cv2.BORDER_*``)
_OPENCV_FLAGS = {
    "interpolation": _INTERPOLATIONS,
    "mask_interpolation": _INTERPOLATIONS,
    "border_mode": "0 constant, 1 replicate, 2 reflect, 3 wrap, 4 reflect_101",
}

#: how each plain type is named, alone and in the plural
_NAMES = {
    float: ("a number", "numbers"),
    int: ("a whole number", "whole numbers"),
    bool: ("true or false", "true / false values"),
    str: ("text", "texts"),
    type(None): ("null", "nulls"),
}


def declared_fields(cls: type) -> dict[str, FieldInfo]:
    """The parameters a step class declares, each with its type and range: an albumentations
    transform's ``InitSchema`` fields, else the annotations of its ``__init__`` (a multi-image
    step's ``pydantic.validate_call``)."""
    schema = getattr(cls, "InitSchema", None)
    if isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
        return dict(schema.model_fields)
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    return {name: FieldInfo.from_annotation(tp) for name, tp in hints.items() if name != "return"}


def parameter_problems(
    err: pydantic.ValidationError,
    fields: Mapping[str, FieldInfo | Any],
    name: str,
    where: str,
    given: Mapping[str, Any],
    key: str = "",
) -> list[str]:
    """One line per parameter of ``err`` (the refusal of step ``name`` at key path ``where``
    given the parameters ``given``): what the parameter's declaration (``fields``: a
    :class:`FieldInfo` or a type per name) takes and what was written; a check of the step's
    own (``value_error``: "First value should be less than the second value") with its own
    words, then what the parameter takes."""
    lines: dict[str, str] = {}
    for e in err.errors():
        key = e["loc"][0] if e["loc"] else key
        path = f"{where}.{key}" if key else where
        if path in lines:  # a type of several members is refused once per member
            continue
        field = fields.get(key) if isinstance(key, str) else None
        if field is not None and not isinstance(field, FieldInfo):
            field = FieldInfo.from_annotation(field)
        expected = describe(field.annotation, field.metadata) if field is not None else ""
        value = given.get(key, e["input"]) if isinstance(key, str) else e["input"]
        if e["type"] == "value_error":
            own = str(e["msg"]).removeprefix("Value error, ").rstrip().rstrip(".")
            # the value may be of the type already ((5, 1) for a list of 2): what it takes
            lines[path] = f"{path} ({name}): {own}" + (f"; it takes {expected}" if expected else "")
        else:
            expected = expected or _expected_of(e)
            if key in _OPENCV_FLAGS:  # interpolation: 1 is cv2.INTER_LINEAR
                expected = f"one of {_OPENCV_FLAGS[key]}"
            lines[path] = f"{path} ({name}): expected {expected}, got {value!r}"
    return list(lines.values())


def describe(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A parameter's type and range in words: ``float`` with ``ge=0, le=1`` is "a number from
    0 to 1", ``tuple[float, float] | float`` "a number or a list of 2 numbers".

    >>> describe(tuple[int, ...] | None), describe(Literal[1, 0, 2])
    ('a list of whole numbers or null', 'one of 0, 1, 2')
    """
    text = _type_text(annotation)
    bounds = _bounds(metadata)
    return f"{text}{'' if bounds.startswith('from') else ','} {bounds}" if bounds else text


def _type_text(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return describe(args[0], args[1:])
    if origin in (Union, types.UnionType):
        parts = sorted({_type_text(a) for a in args}, key=lambda t: (t == "null", len(t), t))
        return " or ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 2 else parts)
    if origin is Literal:
        shown = sorted(args) if all(isinstance(a, int) for a in args) else args
        return "one of " + ", ".join(str(a) for a in shown)
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if len(args) == 2 and args[1] is Ellipsis or origin is not tuple:
            return f"a list of {_plural(args[0])}" if args else "a list"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_plural(args[0])}"
        return "a list of " + ", ".join(_type_text(a) for a in args)
    if origin is dict or tp is dict:  # Affine's translate_px: {x: 4, y: [-2, 2]}
        return "a mapping ({x: ..., y: ...})"
    if tp in _NAMES:
        return _NAMES[tp][0]
    return getattr(tp, "__name__", str(tp))


def _plural(tp: Any) -> str:
    return _NAMES[tp][1] if tp in _NAMES else f"{_type_text(tp)} values"


def _bounds(metadata: Sequence[Any]) -> str:
    """The range that ``ge`` / ``gt`` / ``le`` / ``lt`` constraints (annotated-types', a
    ``pydantic.Field``'s or a pydantic error's ``ctx``) set: "from 0 to 1", "at least 1",
    "above 0 and at most 1"."""
    found: dict[str, Any] = {}
    for item in metadata:
        for constraint in item.metadata if isinstance(item, FieldInfo) else [item]:
            for bound in _WORDS:
                get = constraint.get if isinstance(constraint, Mapping) else None
                value = get(bound) if get else getattr(constraint, bound, None)
                if value is not None:
                    found[bound] = value
    if "ge" in found and "le" in found:
        return f"from {found['ge']} to {found['le']}"
    return " and ".join(f"{_WORDS[b]} {v}" for b, v in found.items())


_WORDS = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below"}


def _expected_of(error: Mapping[str, Any]) -> str:
    """What one pydantic error expects, where the parameter's declaration is not known."""
    ctx = error.get("ctx") or {}
    kind = str(error["type"])
    if kind.startswith(("float_", "decimal_")):
        return "a number"
    if kind.startswith("int_"):
        return "a whole number"
    if kind.startswith("bool_"):
        return "true or false"
    if kind.startswith("string_"):
        return "text"
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return _bounds([ctx])
    if kind in ("too_long", "too_short"):
        return f"at most {ctx.get('max_length')} values" if kind == "too_long" else "more values"
    return "another value"
