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
    return _keys_of(path)[0]


def written_keys(path: str | os.PathLike) -> dict[str, str]:
    """The key paths of the config file ``path`` (and its bases) that hold a key YAML 1.1
    reads as a boolean, as validation names them (``"model.heads.true"``), → as the file
    writes them (``"model.heads.yes"``): ``yes``, ``no``, ``on``, ``off`` in any case. One
    beside a text key of its name (``'true':`` and ``yes:``) is marked ``"="``
    (``"=model.heads.yes"``): only a problem said of the key itself is its own."""
    return _keys_of(path)[1]


def _keys_of(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, str]]:
    """:func:`key_lines` and :func:`written_keys` of ``path``."""
    try:
        own, mappings, renamed = _lines_of(str(path))
        data = load_yaml(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}, {}
    bases = data.get("base") if isinstance(data, dict) else None
    merged: dict[str, str] = {}
    for base in [bases] if isinstance(bases, str) else bases if isinstance(bases, list) else []:
        found = base_file(path, str(base))  # the file resolve_file merges
        written = os.path.normpath(Path(path).parent / str(base))  # as the user names it
        try:
            lines, _, names = _lines_of(written if Path(written).resolve() == found else str(found))
        except (OSError, yaml.YAMLError):
            continue
        merged.update(lines)
        renamed = {**names, **renamed}
    for key in set(own) - mappings:  # a value, not a mapping, replaces the bases' below it
        for below in [k for k in merged if k.startswith(f"{key}.")]:
            del merged[below]
    return {**merged, **own}, renamed


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


def as_written(
    problems: Sequence[str], path: str | os.PathLike | None, overrides: Sequence[str] = ()
) -> list[str]:
    """``problems`` with each key YAML 1.1 read as a boolean named as the config file
    ``path`` (:func:`written_keys`) or the override of ``overrides`` that set it writes it:
    ``model.heads.yes: ... YAML reads yes as a boolean``, not ``model.heads.true``, which
    neither holds."""
    given = [_dotted(key) for key in override_keys(overrides)]
    set_by = lambda key: any(key == g or key.startswith(f"{g}.") for g in given)  # noqa: E731
    written = {  # less those an override replaced
        c: w for c, w in (written_keys(path) if path else {}).items() if not set_by(c)
    }
    in_file = {_bracketed(c): _bracketed(w) for c, w in written.items()}
    in_overrides = {_bracketed(c): _bracketed(w) for c, w in _in_overrides(overrides).items()}
    out = []
    for problem in problems:
        key, sep, rest = problem.partition(":")
        key, space, after = key.partition(" ")  # "model.heads.x.p (Resize)"
        # a key an override set (or one below it) is not the file's key of that name
        renamed = in_overrides if set_by(_dotted(key)) else {**in_file, **in_overrides}
        inside = [c for c in renamed if key == c or key.startswith((f"{c}.", f"{c}["))]
        inside = [c for c in inside if not renamed[c].startswith("=") or _of_itself(key, c, rest)]
        if not sep or not inside:
            out.append(problem)
            continue
        read = max(inside, key=len)
        renamed = {read: renamed[read].removeprefix("=")}
        if key == read:  # said of the key itself: as written in its text too
            was, now = read.rpartition(".")[2], renamed[read].rpartition(".")[2]
            rest = rest.replace(f"reads {was} as", f"reads {now} as")
            rest = rest.replace(f"('{was}': ...)", f"('{now}': ...)")
        out.append(f"{renamed[read]}{key[len(read) :]}{space}{after}{sep}{rest}")
    return out


def _of_itself(key: str, read: str, rest: str) -> bool:
    """Whether the problem ``rest`` of ``key`` is said of the key ``read`` that YAML read as a
    boolean, not of a text key of that name beside it (``'true':`` and ``yes:``)."""
    name = read.rpartition(".")[2]
    return key == read and f"reads {name} as a boolean" in rest


def _in_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """:func:`written_keys` of the values of ``overrides`` (``model.heads={yes: ...}``)."""
    renamed: dict[str, str] = {}
    for override in overrides:
        key, sep, value = override.partition("=")
        try:
            root = yaml.compose(value, Loader=ConfigLoader) if sep else None
        except yaml.YAMLError:
            continue
        names = _walked(root, "")[2] if root is not None else {}
        renamed |= {
            f"{_dotted(key.strip())}.{c}": f"{_dotted(key.strip())}.{w}" for c, w in names.items()
        }
    return renamed


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


def _lines_of(shown: str) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """The key paths of one YAML file → ``"shown:LINE"``, those whose value is a mapping, and
    the paths of keys read as booleans as validation names them → as written."""
    return _walked(
        yaml.compose(Path(shown).read_text(encoding="utf-8"), Loader=ConfigLoader), shown
    )


def _walked(root: yaml.Node, shown: str) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """:func:`_lines_of` of the composed document ``root`` of the file ``shown``."""
    lines: dict[str, str] = {}
    mappings: set[str] = set()
    renamed: dict[str, str] = {}
    stack = [(root, "", "")]  # a node, its path as written and as validation names it
    while stack:
        node, prefix, named = stack.pop()
        if isinstance(node, yaml.MappingNode):
            items = [
                (key.value, _read_as(key), value, key.start_mark)
                for key, value in node.value
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge"
            ]
            mappings.add(prefix.rstrip("."))
        elif isinstance(node, yaml.SequenceNode):
            items = [
                (str(i), str(i), value, value.start_mark) for i, value in enumerate(node.value)
            ]
        else:
            continue
        # a text key 'true' beside yes: (read as true): only the problem said of yes itself
        # ("YAML reads true as a boolean") is yes's, marked "="; one below either is unknown
        text = {k for k, r, _, _ in items if k == r}
        for key, read, value, mark in items:
            lines.setdefault(f"{prefix}{key}", f"{shown}:{mark.line + 1}")
            if read != key:
                renamed[f"{named}{read}"] = ("=" if read in text else "") + f"{prefix}{key}"
            stack.append((value, f"{prefix}{key}.", f"{named}{read}."))
    return lines, mappings, renamed


def _read_as(key: yaml.ScalarNode) -> str:
    """A key as validation names it: ``true`` / ``false`` for one YAML 1.1 reads as a
    boolean (``yes``, ``Off``), else as written."""
    if key.tag == "tag:yaml.org,2002:bool" and key.style is None:
        return str(ConfigLoader.bool_values.get(key.value.lower(), key.value)).lower()
    return key.value


def _bracketed(key: str) -> str:
    """``"a.train.0.p"`` → ``"a.train[0].p"``: a list item as the problems name it."""
    return re.sub(r"\.(\d+)(?=[.\[]|$)", r"[\1]", key)


def _dotted(key: str) -> str:
    """``"a.train[0].p"`` → ``"a.train.0.p"``."""
    return re.sub(r"\[(\d+)\]", r".\1", key)
