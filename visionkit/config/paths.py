"""The files and folders a config names for its datasets: which entries there are
(:func:`split_entries`), ``~`` as the home folder (:func:`expand_home`), and the paths a
config file names that cannot be meant as written (:func:`dataset_path_problems`): a relative
path that is not in the current folder but beside the config file (paths in a config are
relative to the folder the command runs in, as Ultralytics' and torchvision's dataset roots
are, which a config written next to its data does not expect), or one naming ``$DATA``."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from visionkit.registry import DATASETS


def is_dataset_mix(spec: Any) -> bool:
    """True for ``data.<split>`` given as named datasets (``{pets: {format: ...}, ...}``)
    rather than one dataset (``{format: ..., ...}``)."""
    return isinstance(spec, Mapping) and "format" not in spec and bool(spec)


def split_entries(spec: Mapping[str, Any] | None, where: str) -> list[tuple[str, Any]]:
    """The datasets of a split's config entry with their config paths: ``[("data.val",
    spec)]``, or one per part of a mix (``data.train.coco``, ...); none when it is unset."""
    if spec is None:
        return []
    if is_dataset_mix(spec):
        return [(f"{where}.{name}", entry) for name, entry in spec.items()]
    return [(where, spec)]


def dataset_paths(data: Any) -> Iterator[tuple[dict[str, Any], str, str]]:
    """``(entry, argument, key path)`` for each file or folder argument of every dataset of a
    validated ``data`` section (``data.train.images``, ``data.val.coco.annotations``, ...)."""
    for split in ("train", "val", "test"):
        for where, entry in split_entries(getattr(data, split), f"data.{split}"):
            reader = DATASETS.component_class(entry["format"])
            for argument in getattr(reader, "path_arguments", (reader.location,)):
                yield entry, argument, f"{where}.{argument}"


def expand_home(cfg: Any) -> None:
    """A ``~`` that starts ``output_dir``, ``resume`` or a dataset's folder or file is the
    user's home, as in torchvision's dataset roots (``output_dir: ~/runs`` made a folder named
    ``~`` in the current one; ``root: ~/photos`` was not found). ``model.init_from`` and
    ``model.backbone.pretrained`` are expanded where they are read."""
    cfg.output_dir = os.path.expanduser(cfg.output_dir)
    cfg.resume = os.path.expanduser(cfg.resume) if cfg.resume else cfg.resume
    for entry, argument, _ in dataset_paths(cfg.data):
        if isinstance(entry.get(argument), str):
            entry[argument] = os.path.expanduser(entry[argument])


def dataset_path_problems(
    cfg: Any, config_file: str | os.PathLike, given: Collection[str] = ()
) -> list[str]:
    """A problem for each relative dataset path of ``cfg`` (read from ``config_file``, with
    the keys ``given`` on the command line) that does not exist in the current folder but
    does beside the config file: the config was written for its own folder, and would fail
    later, when the data is read, with "does not exist"; and for each that names an
    environment variable (``$DATA/photos``), which neither a config file nor visionkit
    expands (on the command line, the shell expands it unless it is in single quotes).
    Entries that generate their data (``synthetic``) are left alone."""
    folder = Path(config_file).parent
    here = folder.resolve() == Path.cwd().resolve()
    problems = []
    for entry, argument, key in dataset_paths(cfg.data):
        value = entry.get(argument)
        if not isinstance(value, str) or not value or entry.get("synthetic"):
            continue
        typed = any(key == g or key.startswith(f"{g}.") for g in given)  # on the command line
        if "$" in value and not Path(value).exists():  # $DATA/photos, ${DATA}/photos
            where = (
                "the shell expands environment variables within double quotes, not single "
                "ones, and visionkit does not: give"
                if typed
                else "environment variables are not expanded in a config file: write the path, "
                "or give it on the command line, where the shell expands them:"
            )
            problems.append(f'{key}: {value} does not exist; {where} {key}="{value}"')
            continue
        if here or Path(value).is_absolute() or Path(value).exists():
            continue
        if not (folder / value).exists():
            continue
        beside = os.path.normpath(folder / value)
        write = "" if typed else f"write {argument}: {beside}, "
        problems.append(
            f"{key}: {value} is not in the current folder {Path.cwd()}, but is beside the "
            f"config file: {beside}; paths {'on the command line' if typed else 'in a config'} "
            f"are relative to the folder the command runs in, not to the config's: {write}"
            f"give it with {key}={beside}, or run the command in {folder}"
        )
    return problems
