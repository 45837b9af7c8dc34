"""``visionkit check-data``: read every annotation and every image of a dataset and print one
report of its contents and of every problem (see :mod:`visionkit.data.checks`).

The datasets come from a config (``--config``: ``data.train`` and ``data.val``, each entry
of a mix) or from the command line (``--format coco --images DIR --annotations FILE``, and
likewise for every registered format). The report goes to stdout; the exit status is 0 when
no problem was found and 1 otherwise (2 for a bad command line or config).

Training runs the same checks when it builds its datasets (reading image headers only), and
stops with the same list of errors instead of a traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from visionkit.errors import ConfigError, DataError, VisionkitError

SPLITS = ("train", "val")
LOCATION_OPTIONS = ("images", "annotations", "root")


def datasets_of_config(
    config: str, overrides: Sequence[str], splits: Sequence[str]
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """``(where, spec)`` of every dataset of the config's ``splits`` (each entry of a mix),
    and the targets its heads need (``masks``, ``semantic``)."""
    from visionkit.config import is_dataset_mix, load_config
    from visionkit.factory import targets_needed

    cfg = load_config(config, overrides)
    found = []
    for split in splits:
        spec = getattr(cfg.data, split)
        if spec is None:
            continue
        if is_dataset_mix(spec):
            found += [(f"data.{split}.{name}", dict(entry)) for name, entry in spec.items()]
        else:
            found.append((f"data.{split}", dict(spec)))
    if not found:
        raise ConfigError(f"data: no {' or '.join(f'data.{s}' for s in splits)} dataset to check")
    return found, targets_needed(cfg)


def dataset_of_options(fmt: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """A validated dataset spec from ``--format`` and the other options (checked against the
    format's builder, so an option it does not take is an error naming it)."""
    from visionkit.config import builder_schema
    from visionkit.registry import DATASETS, UnknownNameError

    try:
        schema = builder_schema(DATASETS, fmt, injected=())
    except UnknownNameError as err:
        raise ConfigError(f"--format: {err}") from None
    from pydantic import ValidationError

    try:
        validated = schema.model_validate(dict(options))
    except ValidationError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(x) for x in e["loc"])
            flag = f"--{key}" if key in LOCATION_OPTIONS else key
            problems.append(f"{flag}: {e['msg']} (format {fmt})")
        raise ConfigError(problems) from None
    return {"format": fmt, **validated.model_dump(mode="json")}


def check_spec(where: str, spec: Mapping[str, Any], needs: Sequence[str]) -> tuple[str, int]:
    """Build one dataset as training would and return ``(report text, number of problems)``."""
    from visionkit.data.checks import inspect_samples
    from visionkit.data.datamodule import build_dataset

    spec = {k: v for k, v in spec.items() if k not in ("synthetic", "weight")}
    try:
        dataset = build_dataset(spec, where=where, needs=needs)
    except DataError as err:
        if err.report is not None:
            return f"{where}: {err.report.render()}", len(err.report.problems)
        return f"{where}: {err}", 1
    except ConfigError:
        raise
    except VisionkitError as err:
        return f"{where}: {err}", 1
    report = getattr(dataset, "report", None)
    if report is None:  # a reader that does not check itself: read every sample
        report = inspect_samples(dataset, str(spec), spec["format"])
    return f"{where}: {report.render()}", len(report.problems)


def _parse_values(items: Sequence[str]) -> dict[str, Any]:
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{item!r}: expected KEY=VALUE, e.g. class_field=background")
        values[key] = yaml.safe_load(text) if text else None
    return values


def run(args: argparse.Namespace) -> int:
    """What ``visionkit check-data`` runs; returns the exit status."""
    from visionkit.data.checks import set_image_check_mode

    if args.config and args.format:
        raise ConfigError("give --config or --format, not both")
    if not args.config and not args.format:
        raise ConfigError("give --config X.yaml, or --format with the dataset's location")
    given = {k: getattr(args, k) for k in LOCATION_OPTIONS if getattr(args, k) is not None}
    if args.config:
        if given:
            flags = ", ".join(f"--{k}" for k in given)
            raise ConfigError(f"{flags}: only with --format (with --config use data.* overrides)")
        splits = SPLITS if args.split == "all" else (args.split,)
        specs, needs = datasets_of_config(args.config, args.pairs, splits)
    else:
        specs = [
            ("dataset", dataset_of_options(args.format, {**given, **_parse_values(args.pairs)}))
        ]
        needs = []
    previous = set_image_check_mode("header" if args.fast else "decode")
    try:
        total = 0
        for where, spec in specs:
            text, count = check_spec(where, spec, needs)
            print(text, flush=True)
            total += count
    finally:
        set_image_check_mode(previous)
    what = "datasets" if len(specs) != 1 else "dataset"
    if total:
        print(f"check-data: {total} problems in {len(specs)} {what}")
        return 1
    print(f"check-data: no problems found in {len(specs)} {what}")
    return 0


def add_parser(sub: Any) -> None:
    """Add ``check-data`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "check-data",
        help="check a dataset: every annotation and image, one report of all problems",
        description="Read every annotation and every image of the datasets of a config, or of "
        "one dataset given on the command line, and print a report: images, boxes per "
        "image, image sizes, counts per class, images without boxes, and every problem "
        "(missing or unreadable files, size mismatches, duplicate ids, unknown category ids, "
        "bad or out-of-image boxes, bad polygons) with its file and ids. Exits 0 when no "
        "problem was found, 1 otherwise. Training runs the same checks (image headers "
        "only) before it builds the model.\n\n"
        "example: visionkit check-data --config configs/quickstart.yaml\n"
        "example: visionkit check-data --format coco --images data/shapes/val\n"
        "example: visionkit check-data --format coco --images DIR --annotations ann.json "
        "class_field=background\n"
        "example: visionkit check-data --format folder --root data/pets/train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        metavar="YAML",
        help="check the datasets of this config (data.train, data.val), e.g. "
        "--config configs/quickstart.yaml",
    )
    p.add_argument(
        "--split",
        choices=("train", "val", "all"),
        default="all",
        help="with --config: which split to check, e.g. --split val (default all)",
    )
    p.add_argument(
        "--format",
        metavar="NAME",
        help="check one dataset of this registered format (see 'visionkit list datasets'), "
        "e.g. --format coco",
    )
    p.add_argument(
        "--images",
        metavar="DIR",
        help="with --format coco: the image folder, e.g. --images data/shapes/val",
    )
    p.add_argument(
        "--annotations",
        metavar="FILE",
        help="with --format coco: the json file (default IMAGES/annotations.json), "
        "e.g. --annotations data/coco/instances_val2017.json",
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        help="with --format folder or mask_folder: the dataset folder, e.g. --root data/pets/train",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="read image headers only, as training does (default: decode every image in full, "
        "which also finds truncated files), e.g. --fast",
    )
    p.add_argument(
        "pairs",
        nargs="*",
        metavar="KEY=VALUE",
        help="with --config: config overrides, e.g. data.val.images=other/val; with --format: "
        "more reader parameters, e.g. class_field=background masks=true",
    )
    p.set_defaults(func=run)
