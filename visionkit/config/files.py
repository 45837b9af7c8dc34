"""Config files: YAML read safely, ``base:`` files merged beneath, dotted overrides applied, and
the resolved config written back."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from visionkit.checkpoint import write_atomic
from visionkit.config.schema import Config
from visionkit.errors import ConfigError


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


def to_yaml(cfg: Config | Mapping[str, Any]) -> str:
    """The config as YAML text, keys in schema order."""
    data = cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically, :func:`visionkit.checkpoint.write_atomic`)."""
    text = to_yaml(cfg)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
