"""Where each key of a config file is written: the file and line that a validation problem
about it is shown with (``configs/x.yaml:12: trainer.max_epoch: unknown key; ...``), as
compilers and linters name a place, so that an editor or a terminal opens the file there. A
key that a ``base:`` file gives is named in that file (:attr:`ConfigError.locations
<visionkit.errors.ConfigError>`)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from visionkit.config.files import base_file, override_keys, override_list
from visionkit.config.override_hints import command_line_note
from visionkit.config.yaml_rules import ConfigLoader, load_yaml
from visionkit.errors import ConfigError


def key_lines(path: str | os.PathLike) -> dict[str, str]:
    """Every key path of the config file ``path`` with its bases merged beneath (as
    :func:`~visionkit.config.files.resolve_file` merges them), ``"trainer.max_epochs"`` or
    ``"data.transforms.train.0.p"`` (list items by their index), → ``"FILE:LINE"``. Empty for
    a file that cannot be read: the locations only add to an error already found."""
    try:
        own, mappings = _lines_of(str(path))
        data = load_yaml(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    bases = data.get("base") if isinstance(data, dict) else None
    merged: dict[str, str] = {}
    for base in [bases] if isinstance(bases, str) else bases if isinstance(bases, list) else []:
        found = base_file(path, str(base))  # the file resolve_file merges
        written = os.path.normpath(Path(path).parent / str(base))  # as the user names it
        try:
            lines = _lines_of(written if Path(written).resolve() == found else str(found))[0]
        except (OSError, yaml.YAMLError):
            continue
        merged.update(lines)
    for key in set(own) - mappings:  # a value, not a mapping, replaces the bases' below it
        for below in [k for k in merged if k.startswith(f"{key}.")]:
            del merged[below]
    return {**merged, **own}


def key_places(
    problems: Sequence[str], path: str | os.PathLike, overrides: Sequence[str]
) -> list[str | None]:
    """For each of ``problems`` (``"key.path: what"``), the ``"FILE:LINE"`` of its key where
    the config file ``path`` (or a base of it) writes that key and no override of
    ``overrides`` set it; of the nearest key above it that the file writes where it leaves
    the key itself out (``optimizer.betas[1]: required key is missing``: ``optimizer.betas``);
    else ``None``."""
    lines = key_lines(path)
    given = [_dotted(key) for key in override_keys(overrides)]
    places = []
    for problem in problems:
        key = _dotted(problem.partition(":")[0].strip().split(" ")[0])
        on_command_line = any(  # the key, a key above it or one under it (a new head)
            key == g or key.startswith(f"{g}.") or g.startswith(f"{key}.") for g in given
        )
        while key not in lines and "." in key:
            key = key.rpartition(".")[0]
        places.append(None if on_command_line else lines.get(key))
    return places


@contextlib.contextmanager
def located(config: object, overrides: Sequence[str] | str = ()) -> Iterator[None]:
    """A :class:`ConfigError` raised inside, by a check made after the config file ``config``
    was loaded (``model.heads.cls.num_classes: 3, but the data has 2 classes``, a backbone's
    ``out_indices``), gets the file and line of each key it names (:func:`key_places`), as the
    loader's own problems do; ``config`` not a file (a mapping, a checkpoint's config), an
    error of command-line options or one already said of a source (the loader's, the
    command-line overrides') or placed: left as it is."""
    try:
        yield
    except ConfigError as err:
        if err.options or err.source or any(err.locations):  # options; already said where
            raise
        if not isinstance(config, str | os.PathLike):
            raise
        if not os.path.isfile(config):
            raise
        given = override_list(overrides)
        places = key_places(err.problems, config, given)
        said = any(p.startswith("(set on the command line") for p in err.problems)
        note = [] if said else command_line_note(err.problems, given)  # as the loader's own
        if any(places) or note:
            err.problems = [*err.problems, *note]
            err.locate(str(config), places)
        raise


F = TypeVar("F", bound=Callable[..., Any])


def locating(function: F) -> F:
    """``function(config, overrides=..., ...)`` whose configuration errors are
    :func:`located` in the config file it was given (:func:`visionkit.engine.runner.train`,
    :func:`visionkit.create_model`)."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = signature.bind_partial(*args, **kwargs).arguments
        with located(given.get("config"), given.get("overrides", ())):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _lines_of(shown: str) -> tuple[dict[str, str], set[str]]:
    """The key paths of one YAML file → ``"shown:LINE"``, and those whose value is a mapping."""
    root = yaml.compose(Path(shown).read_text(encoding="utf-8"), Loader=ConfigLoader)
    lines: dict[str, str] = {}
    mappings: set[str] = set()
    stack = [(root, "")]
    while stack:
        node, prefix = stack.pop()
        if isinstance(node, yaml.MappingNode):
            items = [
                (key.value, value, key.start_mark)
                for key, value in node.value
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge"
            ]
            mappings.add(prefix.rstrip("."))
        elif isinstance(node, yaml.SequenceNode):
            items = [(str(i), value, value.start_mark) for i, value in enumerate(node.value)]
        else:
            continue
        for key, value, mark in items:
            lines.setdefault(f"{prefix}{key}", f"{shown}:{mark.line + 1}")
            stack.append((value, f"{prefix}{key}."))
    return lines, mappings


def _dotted(key: str) -> str:
    """``"a.train[0].p"`` → ``"a.train.0.p"``."""
    return re.sub(r"\[(\d+)\]", r".\1", key)
