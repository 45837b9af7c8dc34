"""Config files: YAML read safely, ``base:`` files merged beneath, dotted overrides applied, and
the resolved config written back."""

from __future__ import annotations

import copy
import difflib
import io
import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from visionkit.checkpoint import write_atomic
from visionkit.config.key_hints import glued_problem
from visionkit.config.key_types import declared_default, kept_texts, takes_text
from visionkit.config.schema import Config
from visionkit.config.yaml_rules import (
    dump_yaml,
    load_with_texts,
    load_yaml,
    text_in_yaml_1_1,
)
from visionkit.data.batch import read_from
from visionkit.errors import ConfigError, key_path


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read one YAML mapping with the config loader
    (:class:`~visionkit.config.yaml_rules.ConfigLoader`)."""
    return _read_with_texts(path)[0]


def _read_with_texts(path: str | os.PathLike) -> tuple[dict[str, Any], dict[tuple, str | None]]:
    """:func:`read_yaml` of ``path``, and the texts its numbers were read from where YAML 1.1
    reads them as text (:func:`~visionkit.config.yaml_rules.scalar_texts`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        hint = _missing_config_hint(path) if isinstance(err, FileNotFoundError) else ""
        if path.is_dir():  # --config configs/shapes
            names = sorted(p.name for p in path.glob("*.y*ml"))[:10]
            hint = f"; give one of its YAML files: {', '.join(names)}" if names else hint
        raise ConfigError(
            f"cannot read config file: {err.strerror or err}{hint}", str(path)
        ) from None
    stream = io.StringIO(text)
    stream.name = str(path)  # PyYAML names the file in its errors (else "<unicode string>")
    try:
        data, texts = load_with_texts(stream, check=refuse_duplicate_keys)
        texts = {k: t for k, t in texts.items() if t is not None and text_in_yaml_1_1(t)}
    except yaml.YAMLError as err:
        tab = "; YAML indents with spaces, never tabs" if "'\\t'" in str(err) else ""
        raise ConfigError(f"not valid YAML: {err}{tab}", str(path)) from None
    if data is None:  # an empty base, or a file the command line's overrides fill
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping at the top level, got {type(data).__name__}", str(path)
        )
    return data, texts


def refuse_duplicate_keys(root: yaml.Node) -> None:
    """Refuse a key written twice in one mapping of a composed YAML document (two
    ``trainer:`` sections), which PyYAML reads as the last one alone, silently dropping the
    first. Checked on the nodes as written, before ``<<:`` merges are flattened: keys a merge
    brings in may be overridden.

    Raises:
        yaml.constructor.ConstructorError: naming the key and the lines of both.
    """
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack += node.value
        if not isinstance(node, yaml.MappingNode):
            continue
        lines: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            stack.append(value_node)
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            key = (key_node.tag, key_node.value)
            if key in lines:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found {key_node.value!r} a second time (first on line {lines[key]}); YAML "
                    "would keep only the last one: merge the two into one",
                    key_node.start_mark,
                )
            lines[key] = key_node.start_mark.line + 1


def _missing_config_hint(path: Path) -> str:
    """Where a missing config was looked for, and the closest name of a config beside it (a
    misspelt name); for a path into a ``configs/`` that is not there (visionkit's recipes,
    as the docs write them, run elsewhere), that they are files of visionkit's repository."""
    hint = read_from(path, " (", ")")
    if path.parent.is_dir():
        names = [p.name for p in path.parent.glob("*.y*ml")]
        close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
        return hint + (f"; did you mean {path.parent / close[0]}" if close else "")
    if "configs" in path.parts and not path.is_absolute():
        hint += (
            "; visionkit's recipes are in the configs/ folder of its repository: run the "
            "command there, or give the recipe's full path"
        )
    return hint


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
    """Read a config file and merge its ``base:`` file(s) beneath it (one level only). A
    number written bare that YAML 1.1 reads as text is that text where the key (or list
    item) takes text only: ``name: 1e-3`` and ``class_names: [1e5]``, as ``yaml.safe_dump``
    wrote the run ``'1e-3'`` and the class ``'1e5'`` in earlier versions
    (:func:`~visionkit.config.key_types.kept_texts`); ``name: 007`` is still told to quote it."""
    path = Path(path)
    data, texts = _read_with_texts(path)
    bases = data.pop("base", None)
    if bases is None:
        return kept_texts(data, texts, data)
    if isinstance(bases, (str, os.PathLike)):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError("base: expected a path or a list of paths", str(path))
    files = []  # (data, texts) of each base, then of this file
    for base in bases:
        base_path = base_file(path, base)
        if not base_path.is_file():  # said of this file, where the path is written
            raise ConfigError(
                f"base: {base}: there is no file {base_path} (a base is relative to the folder "
                f"of the file naming it){_base_hint(base, path)}",
                str(path),
            )
        base_data, base_texts = _read_with_texts(base_path)
        if "base" in base_data:
            raise ConfigError(
                f"base: {base_path} has a 'base:' of its own; only one level of base is allowed",
                str(path),
            )
        files.append((base_data, base_texts))
    files.append((data, texts))
    tree: dict[str, Any] = {}  # what names the components, whose arguments' types decide
    for file_data, _ in files:
        tree = deep_merge(tree, file_data)
    merged: dict[str, Any] = {}  # each file's texts kept in its own values only
    for file_data, file_texts in files:
        merged = deep_merge(merged, kept_texts(file_data, file_texts, tree))
    return merged


def base_file(path: str | os.PathLike, base: str | os.PathLike) -> Path:
    """The file a ``base:`` of the config file ``path`` names: relative to the folder of
    ``path``, symbolic links followed before ``..`` (a config in a linked folder,
    ``other/a -> ../real/a``, with ``base: ../b.yaml`` merges ``real/b.yaml``)."""
    return (Path(path).parent / base).resolve()


def _base_hint(base: str, path: Path) -> str:
    """For a ``base:`` of ``path`` that is not there: the same path relative to this file when
    it names a file from the current folder (``configs/shapes/x.yaml``), else the closest
    config name beside where it was looked for."""
    if Path(base).is_file():
        beside = os.path.relpath(Path(base).resolve(), path.parent.resolve())
        return f"; {base} is a file from the current folder: write base: {beside}"
    return _missing_config_hint(base_file(path, base))


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[str] | str | Mapping[str, Any]
) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; values are parsed as YAML (``3`` → int, ``null`` → None),
    save that a key declared as text takes the text written (``name=007`` → ``"007"``).
    An item of a list is named by its index, ``data.transforms.train[2].height=160`` (or
    ``train.2.height``, as Hydra writes it), of the key's default where the config leaves the
    list out (``optimizer.betas.1=0.99``); the whole list is replaced by a YAML list value.

    >>> apply_overrides({"t": {"steps": [{"p": 0.5}, {"p": 1.0}]}}, ["t.steps[1].p=0.2"])
    {'t': {'steps': [{'p': 0.5}, {'p': 0.2}]}}
    """
    items = override_list(overrides)
    # the components the overrides name in the end (model.heads.x.name=mlp given after an
    # argument of it) declare the types and defaults that every override is read against
    named = _applied(data, items, None)[0]
    out, problems = _applied(data, items, named)
    if problems:
        raise ConfigError(problems, "command-line overrides")
    return out


def _applied(
    data: dict[str, Any], items: Sequence[str], named: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """``data`` with the override ``items`` applied, and their problems; values read as
    YAML, or (given the config ``named`` whose components declare the keys' types and
    defaults) as :func:`_override_value` reads them."""
    out = unshared(data)
    problems = []
    values = set()  # positions of the values of keys given without "=" (said with the key)
    for i, item in enumerate(items):
        key, sep, raw = item.partition("=")
        parts = _key_parts(key) if sep else None
        if not parts and i not in values:
            following = items[i + 1] if i + 1 < len(items) else None
            problems.append(_malformed(item, following))
            values |= {i + 1} if _without_value(item, following) else set()
        if not parts:
            continue
        if (
            named is not None
            and not takes_text(named, parts)
            and (problem := _flow_problem(key, raw))
        ):
            problems.append(problem)
            continue
        value = _override_value(named, parts, raw) if named is not None else _yaml_value(raw)
        problem = _set_path(out, parts, value, key, named if named is not None else out)
        if problem:
            problems.append(problem)
    return out, problems


def _yaml_value(raw: str) -> Any:
    """An override's value read as YAML (``""``: the empty string; not YAML: as written)."""
    try:
        return load_yaml(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


def _flow_problem(key: str, raw: str) -> str | None:
    """The problem of a value written as a YAML mapping or list (``{...}``, ``[...]``) that is
    not valid YAML (unclosed, a missing ``, ``): such a value was meant as YAML, never as the
    text that :func:`_yaml_value` keeps of it (``model.heads.cls={name: mlp`` became the head
    name ``'{name: mlp'``)."""
    if not raw.startswith(("{", "[")):
        return None
    try:
        return glued_problem(key, load_yaml(raw), raw)  # {format:coco}: a key "format:coco"
    except yaml.YAMLError as err:
        problem, mark = getattr(err, "problem", None), getattr(err, "problem_mark", None)
    kind = "mapping" if raw.startswith("{") else "list"
    at = f" at character {mark.column + 1}" if mark is not None else ""
    shell = "; ${...} is not expanded here: the shell expands $NAME within double quotes" * (
        "${" in raw
    )
    return (
        f"{key}: {raw!r} is not a valid YAML {kind} ({problem or 'unreadable'}{at}); write it as "
        "in a YAML file, e.g. 'model.heads.cls={name: mlp, num_classes: 3}' or "
        f"'data.image_size=[64, 96]': items separated by ', ', brackets closed{shell}"
    )


def _override_value(tree: Mapping[str, Any], parts: Sequence[str | int], raw: str) -> Any:
    """``raw`` read as YAML, but as written where the key (or an item of a list, or a key of
    a mapping given whole) is declared as text and YAML reads a number, a date or a boolean
    there (``name=007``: the run ``007``, not ``7``; ``data.train.class_names=[1e5, 2e5]``:
    the classes ``'1e5'`` and ``'2e5'``)."""
    if raw == "":
        return ""
    try:
        value, texts = load_with_texts(raw)
    except yaml.YAMLError:
        return raw
    return kept_texts(value, texts, tree, parts)


def _malformed(item: Any, following: Any) -> str:
    """The problem of an override without ``=``, with what was meant for ``name: x``,
    ``trainer.max_epochs 3`` (two arguments, as Lightning's CLI takes them after a ``--``) and
    ``trainer.max_epochs: 3`` (the shell split it in two)."""
    form = "expected an override of the form key.path=value"
    key, colon, value = str(item).partition(":")
    if colon and value.strip() and _without_value(key.strip(), value.strip()):
        return f"{item!r}: {form}; did you mean {shlex.quote(f'{key.strip()}={value.strip()}')}?"
    if _without_value(item, following):
        meant = shlex.quote(f"{_key_of(item)}={following}")
        return f"{item!r} {following!r}: {form}; did you mean {meant}?"
    return f"{item!r}: {form}"


#: A key path of an override (``trainer.max_epochs``, ``data.transforms.train[2].p``).
KEY_PATH = re.compile(r"[A-Za-z_]\w*(\[\d+\])*(\.\w+(\[\d+\])*)*")


def _key_of(item: str) -> str:
    """``item`` less a trailing ``:`` (``trainer.max_epochs:``, split from its value)."""
    return item[:-1].strip() if item.endswith(":") else item


def _without_value(item: Any, following: Any) -> bool:
    """Whether ``item`` is a key without ``=`` (or ending in ``:``) and ``following`` its
    value, one argument on (not itself a key path with a dot: the next override)."""
    if not (isinstance(item, str) and isinstance(following, str)) or "=" in following:
        return False
    if "." in following and KEY_PATH.fullmatch(following):
        return False
    return KEY_PATH.fullmatch(_key_of(item)) is not None


def unshared(value: Any) -> Any:
    """A deep copy in which no mapping or list appears twice: a YAML alias (``val: *train``)
    becomes a copy of its anchor, so that an override of one (``data.val.split=val``) leaves the
    other as written (``copy.deepcopy`` keeps shared objects shared)."""
    if isinstance(value, Mapping):
        return {key: unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unshared(item) for item in value]
    return copy.deepcopy(value)


def override_list(overrides: Sequence[str] | str | Mapping[str, Any]) -> list[str]:
    """``overrides`` as a list of ``key=value`` strings: one string is one override (not its
    characters); a mapping ``{"data.train.root": "photos"}`` (from Python) gives one per key,
    its values written as JSON (which YAML reads back as they were); spaces around a key are
    dropped (``"data.train.root = photos"``).

    >>> override_list({"data.batch_size": 4, "data.train.root": "photos"})
    ['data.batch_size=4', 'data.train.root="photos"']
    """
    if isinstance(overrides, Mapping):
        return [f"{key}={json.dumps(_plain(value))}" for key, value in overrides.items()]
    items = [overrides] if isinstance(overrides, str) else list(overrides)
    return [_stripped(item) if isinstance(item, str) else item for item in items]


def override_keys(overrides: Sequence[str] | str | Mapping[str, Any]) -> list[str]:
    """The keys the ``overrides`` set, in order (:func:`override_list`'s ``key=value``).

    >>> override_keys(["data.image_size = 96", "trainer.max_steps=10"])
    ['data.image_size', 'trainer.max_steps']
    """
    return [str(item).split("=", 1)[0] for item in override_list(overrides)]


def _plain(value: Any) -> Any:
    """``value`` with paths as strings and tuples as lists, for :func:`json.dumps`."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _stripped(item: str) -> str:
    """``key=value`` without the spaces around the key and the value."""
    key, sep, value = item.partition("=")
    return f"{key.strip()}{sep}{value.strip()}" if sep else item


def _key_parts(key: str) -> list[str | int] | None:
    """``"a.b[2].c"`` → ``["a", "b", 2, "c"]`` (``"a.b.2.c"`` too: a number names a list
    item where the value there is a list); ``None`` for a malformed key."""
    parts: list[str | int] = []
    for token in key.split("."):
        found = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", token)
        if not found or not (found.group(1) or (found.group(2) and parts)):
            return None
        if found.group(1):
            parts.append(found.group(1))
        parts += [int(i) for i in re.findall(r"\d+", found.group(2))]
    return parts or None


def _set_path(
    node: Any, parts: Sequence[str | int], value: Any, key: str, named: Mapping[str, Any]
) -> str | None:
    """Set ``value`` at ``parts`` inside ``node`` (mappings made where missing; a list its
    index names, from the key's default as the components of ``named`` declare it:
    ``optimizer.betas.1=0.99``); a problem naming the key otherwise."""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        here = key_path(parts[:i]) or "the config"
        if isinstance(node, list):
            index = part if isinstance(part, int) else int(part) if _is_index(part) else None
            if index is None:
                return f"{here}: is a list, cannot set {key!r} (name an item by its index: [0])"
            if not node:
                return f"{here}: has no items, so {key!r} names none (give the whole list)"
            if index >= len(node):
                return (
                    f"{here}: has {len(node)} item{'s' if len(node) != 1 else ''} "
                    f"(0..{len(node) - 1}), cannot set {key!r}"
                )
            if last:
                node[index] = value
            node = node[index]
            continue
        if isinstance(part, int) or not isinstance(node, dict):
            kind = "list" if isinstance(part, int) else "mapping"
            return f"{here}: is not a {kind}, cannot set {key!r}"
        if last:
            node[part] = value
        elif not isinstance(node.get(part), (dict, list)):
            path, after = key_path(parts[: i + 1]), parts[i + 1]
            indexed = isinstance(after, int) or _is_index(after)  # n.2.x names a list item too
            if node.get(part) is not None:
                return f"{path}: is not a {'list' if indexed else 'mapping'}, cannot set {key!r}"
            default = declared_default(named, parts[: i + 1]) if part not in node else None
            if indexed and not isinstance(default, (list, tuple)):
                return f"{path}: not set, so {key!r} names no item (give the whole list)"
            node[part] = copy.deepcopy(list(default)) if indexed else {}
        node = node[part]
    return None


def _is_index(part: str) -> bool:
    """``part`` is a list index: ASCII digits only (``"²"`` is a digit to ``str.isdigit``)."""
    return part.isascii() and part.isdecimal()


def to_yaml(cfg: Config | Mapping[str, Any]) -> str:
    """The config as YAML text, keys in schema order."""
    data = cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)
    return dump_yaml(data)  # '1e-3' as text in quotes, which a config file reads back as text


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically, :func:`visionkit.checkpoint.write_atomic`)."""
    text = to_yaml(cfg)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
