"""pydantic's validation errors as visionkit's configuration error lines
(:func:`format_errors`), for :mod:`visionkit.config.validate`."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ValidationError

from visionkit.choices import ULTRALYTICS_KEYS
from visionkit.config.key_hints import (
    UNION_ITEMS,
    UNION_KEYS,
    first_per_key,
    glued_mappings,
    glued_problem,
    mapping_hint,
    mapping_key_problem,
    path_below_keys,
    quote_hint,
    union_item_problem,
    unknown_key_hint,
    untagged,
)
from visionkit.config.schema import Config
from visionkit.errors import key_path


def format_errors(err: ValidationError, root: type[BaseModel]) -> list[str]:
    """pydantic's errors of ``root`` (the whole :class:`Config`, or a component's schema) as
    visionkit's lines: the key path, what was expected, what was given, a hint where one helps
    (a close key, quotes, a glued ``key:value``); one line per key."""
    lines, keys_named = [], set()  # a key's own line (not text) and one of its value: both
    errors = [(untagged(e["loc"]), e) for e in err.errors()]
    wholes = {loc: e["input"] for loc, e in errors if len(loc) == 2}
    # a union key given in its list form, with an item out of range ([0, 64]): one line
    items = {loc[:2] for loc, e in errors if len(loc) == 3 and e["type"] in _OWN_MESSAGE}
    items &= set(UNION_ITEMS) if root is Config else set()
    glued = glued_mappings(errors)  # {format: coco, images:x}: the key "images:x" set to null
    # a list or a word (class_weights: list | auto): both said in the list's line
    words = {loc: e["ctx"]["expected"] for loc, e in errors if e["type"] == "literal_error"}
    # ... and a list with a bad item: the item's line only, not "expected 'auto', got [...]"
    listed = {loc[:-1] for loc, e in errors if loc and isinstance(loc[-1], int)}
    keys = {loc: e["input"] for loc, e in errors if e["loc"][-1:] == ("[key]",)}  # not text
    for loc, e in errors:
        path = path_below_keys(loc, keys)  # a list item in brackets, a key 1 as .1
        union = UNION_KEYS.get(loc[:2]) if root is Config else None
        if loc[:2] in items:
            lines += [union_item_problem(loc, e, wholes.get(loc[:2]))] if len(loc) == 3 else []
        elif union and e["type"] not in _OWN_MESSAGE:  # one line, not one per member type
            if len(loc) == 2:  # ({1: 2}: not a line of its key too, as a mapping's key would)
                lines.append(f"{path}: expected {union}, got {e['input']!r}")
        elif e["loc"][-1:] == ("[key]",):  # model.heads.0, not the list item heads[0]
            lines.append(mapping_key_problem(loc, e.get("input")))  # less union members'
            keys_named.add(lines[-1])
        elif e["type"] == "invalid_key":  # of a section: trainer.true, not "trainer[1]: Keys"
            lines.append(mapping_key_problem(loc, e.get("input")))
            keys_named.add(lines[-1])
        elif e["type"] == "extra_forbidden" and loc[:-1] in glued:  # {name:resnet18}
            lines += [glued_problem(key_path(loc[:-1]), glued.pop(loc[:-1]))]
        elif e["type"] == "extra_forbidden":
            hint = unknown_key_hint(root, loc)
            lines.append(f"{path}: unknown key{hint}")
        elif e["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        elif e["type"] == "literal_error" and loc in listed:
            continue
        elif e["type"] == "head_name":  # the key is the problem, not the whole heads mapping
            lines.append(f"{path}.{e['ctx']['name']}: {e['msg']}")
        else:
            msg = e["msg"].replace("Input should be", "expected")
            msg = "expected a whole number" if e["type"] == "int_from_float" else msg  # one "got"
            if e["type"] == "list_type" and loc in words:
                msg = f"expected a list or {words[loc]}"
            if e["type"] in ("model_type", "dict_type"):  # not pydantic's class names
                msg = "expected a mapping" + mapping_hint(path, e.get("input"))
            # data=coco8.yaml, or Ultralytics' classify data=DIR
            if root is Config and loc == ("data",) and isinstance(e.get("input"), str):
                msg += f"; for Ultralytics' data, use {ULTRALYTICS_KEYS['data']}"
            got = f", got {e.get('input')!r}"
            if e["type"] == "value_error":  # a section's own check: its message says it all
                msg = msg.removeprefix("Value error, ")
                got = "" if isinstance(e.get("input"), Mapping) else got
            lines.append(f"{path}: {msg}{got}{quote_hint(e['type'], e.get('input'))}")
    kept = set(first_per_key([line for line in lines if line not in keys_named]))
    # a union yields one line per member
    return [line for line in dict.fromkeys(lines) if line in keys_named or line in kept]


#: pydantic's errors that say the problem in the terms of the key, whatever its type
_OWN_MESSAGE = ("value_error", "int_from_float", "greater_than")
