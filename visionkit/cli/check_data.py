"""``visionkit check-data``: read every annotation and every image of a dataset and print one
report of its contents and of every problem (see :mod:`visionkit.data.checks`).

The datasets come from a config (``--config``: ``data.train``, ``data.val`` and ``data.test``
when set, each entry of a mix) or from the command line (``--format coco --images DIR --annotations FILE``, and
likewise for every registered format). The report goes to stdout; the exit status is 1 when
an error was found (a problem that stops training), 0 otherwise, warnings included (problems
training repairs or leaves out; ``--strict``: 1 for those too), 2 for a bad command line or
config.

Training runs the same checks when it builds its datasets (reading image headers only), and
stops with the same list of errors instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from visionkit.choices import EVAL_SPLITS, SPLITS
from visionkit.errors import ConfigError, DataError, VisionkitError, counted, key_path
from visionkit.registry import DATASETS, UnknownNameError

LOCATION_OPTIONS = ("images", "annotations", "root", "csv")


def datasets_of_config(
    config: str, overrides: Sequence[str], splits: Sequence[str]
) -> tuple[list[tuple[str, str, dict[str, Any]]], list[str], dict[str, Any], Any, Any]:
    """``(where, split, spec)`` of every dataset of the config's ``splits`` (each entry of a
    mix), the targets its heads need (``masks``, ``semantic``, ...), its heads (the
    config's ``model.heads``), its ``data`` section and the config. One evaluation split
    asked for by name (``--split test``) must be set: a :class:`ConfigError` says how."""
    from visionkit.build.data import split_spec, targets_needed
    from visionkit.config import is_dataset_mix, load_config

    cfg = load_config(config, overrides)
    found = []
    for split in splits:
        if len(splits) == 1 and split in EVAL_SPLITS:
            spec = split_spec(cfg.data, split)  # asked for by name: it must be set
        else:
            spec = getattr(cfg.data, split)
        if spec is None:
            continue
        if is_dataset_mix(spec):
            found += [(f"data.{split}.{name}", split, dict(entry)) for name, entry in spec.items()]
        else:
            found.append((f"data.{split}", split, dict(spec)))
    if not found:
        raise ConfigError(f"data: no {' or '.join(f'data.{s}' for s in splits)} dataset to check")
    return found, targets_needed(cfg), dict(cfg.model.heads), cfg.data, cfg


def dataset_of_options(fmt: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """A validated dataset spec from ``--format`` and the other options (checked against the
    format's reader class, so an option it does not take is an error naming it)."""
    from pydantic import ValidationError

    from visionkit.config import DATASET_INJECTED_ARGS, builder_schema
    from visionkit.config.key_hints import untagged

    try:
        schema = builder_schema(DATASETS, fmt, injected=DATASET_INJECTED_ARGS)
    except UnknownNameError as err:
        raise ConfigError(f"--format: {err}", options=True) from None
    try:
        validated = schema.model_validate(dict(options))
    except ValidationError as err:
        problems, flags = [], []
        for e in err.errors():
            key = key_path(untagged(e["loc"]))  # class_names[1], as every config error
            flags.append(key in LOCATION_OPTIONS or key == "split")  # an option, not KEY=VALUE
            flag = f"--{key}" if flags[-1] else key
            if e["type"] == "extra_forbidden":
                takes = ", ".join(sorted(schema.model_fields))
                problems.append(f"{flag}: format {fmt} takes no {key} (it takes: {takes})")
            else:
                problems.append(f"{flag}: {e['msg']} (format {fmt})")
        raise ConfigError(problems, options=all(flags)) from None
    return {"format": fmt, **validated.model_dump(mode="json")}


def check_spec(
    where: str,
    spec: Mapping[str, Any],
    needs: Sequence[str],
    split: str = "train",
    image_check: str = "decode",
    train: Any = None,
) -> tuple[str, int, int, Any]:
    """Build one dataset as training would (its ``split``, the image files checked by
    ``image_check``: ``decode`` or ``header``; an evaluation split in the class order of the
    ``train`` dataset and checked against its classes) and return ``(report text, number of
    errors, number of warnings, the dataset or None)``."""
    from visionkit.build.data import build_dataset
    from visionkit.cli._shared import report_warnings_muted
    from visionkit.config import MIX_KEYS
    from visionkit.data.checks import inspect_samples
    from visionkit.data.classes import class_lists, class_source, match_classes

    synthetic = spec.get("synthetic")
    spec = {k: v for k, v in spec.items() if k not in MIX_KEYS}
    label_names = getattr(train, "label_names", None)
    try:
        with report_warnings_muted():  # the report printed below holds each of them
            dataset = build_dataset(
                spec,
                split=split,
                where=where,
                needs=needs,
                image_check=image_check,
                label_names=label_names,
            )
            if label_names:  # as training checks data.val against data.train
                lists = class_lists(label_names, getattr(train, "category_ids", None))
                match_classes(dataset, lists, (f"data.train ({class_source(train)})", where))
    except DataError as err:
        if err.report is not None:
            errors, warnings = len(err.report.errors), len(err.report.warnings)
            return f"{where}: {err.report.render()}", errors, warnings, None
        hint = (
            f" (it is generated by the first 'visionkit train', since {where}.synthetic is set)"
            if synthetic and "does not exist" in str(err)
            else ""
        )
        return f"{where}: {err}{hint}", 1, 0, None
    except ConfigError:
        raise
    except VisionkitError as err:
        return f"{where}: {err}", 1, 0, None
    report = getattr(dataset, "report", None)
    if report is None:  # a reader that does not check itself: read every sample
        report = inspect_samples(dataset, str(spec), spec["format"])
    text = f"{where}: {report.render()}"
    return text, len(report.errors), len(report.warnings), dataset


def training_set(
    built: Mapping[str, Any], specs: Sequence[tuple[str, str, Any]], needs: Sequence[str] = ()
) -> Any:
    """The training set as training builds it from the datasets of ``data.train`` (one, or a
    :func:`~visionkit.build.data.mixed_training_set` of a mix's parts, for a model whose
    heads need ``needs``), for the evaluation splits' class check; ``None`` when a part
    failed its own check (or there is none).

    Raises:
        DataError: the parts of a mix have conflicting classes (training stops there too).
    """
    from visionkit.build.data import boxes_learnt, mixed_training_set

    parts = [(where, spec) for where, split, spec in specs if split == "train"]
    if not parts or any(where not in built for where, _ in parts):
        return None
    if len(parts) == 1 and parts[0][0] == "data.train":
        return built["data.train"]
    entries = {where.rsplit(".", 1)[1]: spec for where, spec in parts}
    parts = {name: built[f"data.train.{name}"] for name in entries}
    return mixed_training_set(parts, entries, boxes=boxes_learnt(needs))


def training_classes(spec: Any, needs: Sequence[str]) -> Any:
    """The training set of ``spec`` (``data.train``) read as training reads it (image headers
    only), for the evaluation splits' class check when check-data did not build it (``--split
    val``) or found errors in it (a decoded image that training does not decode, a bad
    image): those errors are its own, the classes are the same. An unreadable image is left
    out here (``on_bad_image: skip``); ``None`` when it cannot be read even so (training
    stops at data.train and checks data.val on its own)."""
    from visionkit.build.data import boxes_learnt, build_split, mixed_training_set
    from visionkit.config import is_dataset_mix

    def skipping(entry: Mapping[str, Any]) -> dict[str, Any]:
        entry = {k: v for k, v in entry.items() if k != "synthetic"}  # never generated here
        takes = DATASETS.signature(entry["format"]).parameters
        return {**entry, "on_bad_image": "skip"} if "on_bad_image" in takes else entry

    mix = is_dataset_mix(spec)
    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its problems were reported by its own check
    try:
        for read in (lambda e: {k: v for k, v in e.items() if k != "synthetic"}, skipping):
            entries = {n: read(e) for n, e in spec.items()} if mix else read(spec)
            try:
                train = build_split(entries, split="train", needs=needs)
                return mixed_training_set(train, spec, boxes_learnt(needs)) if mix else train
            except VisionkitError:  # as check_spec: any reader's own error
                continue
        return None
    finally:
        logging.disable(quiet)


def _parse_values(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    from visionkit.config.files import load_yaml  # as config values are read (1e-3 a float)

    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"{item!r}: expected KEY=VALUE, e.g. class_field=background", options=True
            )
        try:
            values[key] = load_yaml(text) if text else None
        except yaml.YAMLError:  # not YAML ("[1", "!!bool maybe"): as written, as an override's
            values[key] = text
    return values


def run(args: argparse.Namespace) -> int:
    """What ``visionkit check-data`` runs; returns the exit status. The configuration errors
    of ``--config`` name the file and line of their keys, as ``train``'s do
    (:func:`~visionkit.config.located`)."""
    from visionkit.config import located

    with located(args.config, args.pairs if args.config else ()):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.config and args.format:
        raise ConfigError("give --config or --format, not both", options=True)
    if getattr(args, "csv", None) and not args.config and not args.format:
        args.format = "csv"  # --csv names its format, as --format csv --csv FILE
    if not args.config and not args.format:
        raise ConfigError(
            "give --config X.yaml, or --format with the dataset's location", options=True
        )
    if args.config and args.split not in (*SPLITS, "all"):
        raise ConfigError(
            f"--split: with --config one of {', '.join((*SPLITS, 'all'))}, got {args.split!r}",
            options=True,
        )
    given = {k: getattr(args, k) for k in LOCATION_OPTIONS if getattr(args, k) is not None}
    if args.config:
        if given:
            flags = ", ".join(f"--{k}" for k in given)
            raise ConfigError(
                f"{flags}: only with --format (with --config use data.* overrides)", options=True
            )
        splits = SPLITS if args.split == "all" else (args.split,)
        specs, needs, heads, data, cfg = datasets_of_config(args.config, args.pairs, splits)
    else:
        split = {} if args.split == "all" else {"split": args.split}  # VOC, YOLO, mask folders
        options = {**given, **split, **_parse_values(args.pairs)}
        if "keypoints" in DATASETS.signature(args.format).parameters:  # as a head would ask
            options.setdefault("keypoints", "auto")  # checked where the annotations have them
        # read as training or evaluation reads it (evaluation splits keep every image); a list
        # file as the split its name says (ImageSets/Segmentation/val.txt: val)
        stem = PurePath(args.split.replace("\\", "/")).stem
        label = stem if stem in SPLITS else "train"
        specs = [("dataset", label, dataset_of_options(args.format, options))]
        if args.format == "yolo" and not split and str(args.root).endswith((".yaml", ".yml")):
            from visionkit.data.convert.yolo import dataset_file_splits

            # an Ultralytics data.yaml: each split it names, val in train's classes, as training
            names = dataset_file_splits(args.root)
            specs = [(f"data.{s}", s, {**specs[0][2], "split": s}) for s in names] or specs
        needs, heads, data, cfg = [], {}, None, None
    image_check = "header" if args.fast else "decode"
    total = warned = 0  # errors, warnings
    trains: dict[str, Any] = {}  # the training datasets that were built, by config path
    evals: dict[str, Any] = {}  # the validation datasets that were built, by config path
    train, train_built = None, False  # built once, before the first evaluation split
    reference = None  # the training set whose classes the evaluation splits are read with
    unset: list[str] = []  # configuration problems of the datasets
    unchecked = 0  # datasets with such problems
    for where, split, spec in specs:
        if split != "train" and not train_built:
            train_built = True
            try:
                train = training_set(trains, specs, needs)
            except DataError as err:  # a mix whose parts' classes conflict
                print(f"data.train: {err}", flush=True)
                total += 1
            reference = train
            if train is None and data is not None and data.train is not None:
                reference = training_classes(data.train, needs)  # as training reads it
        try:
            text, count, warnings, dataset = check_spec(
                where, spec, needs, split=split, image_check=image_check, train=reference
            )
        except ConfigError as err:  # every split's, together (as training reports them)
            unset += err.problems
            unchecked += 1
            continue
        print(text, flush=True)
        total += count
        warned += warnings
        if dataset is not None and split in ("train", "val"):
            (trains if split == "train" else evals)[where] = dataset
    if not train_built and args.config:  # --split train: a mix merged as training does
        try:
            train = training_set(trains, specs, needs)
        except DataError as err:
            print(f"data.train: {err}", flush=True)
            total += 1
    if train is not None:  # which set annotates which box classes: training says it too
        from visionkit.build.data import annotation_notes

        info, unboxed = annotation_notes(train)
        for line in [info] * bool(info) + [f"warning: {w}" for w in unboxed]:
            print(line, flush=True)
        warned += len(unboxed)
    note = shared_note(data, reference, evals) if any(s == "val" for _, s, _ in specs) else None
    if note:  # validation on training images: training warns of it too
        print(f"warning: {note}", flush=True)
        warned += 1
    if data is not None:  # an evaluation split asked for, read otherwise than training's
        from visionkit.build.label_settings import label_setting_problems

        asked = [s for s in ("val", "test") if any(split == s for _, split, _ in specs)]
        errors, warnings = label_setting_problems(data, asked)
        for line in [*errors, *(f"warning: {w}" for w in warnings)]:
            print(line, flush=True)
        total, warned = total + len(errors), warned + len(warnings)
    if heads and train is not None:  # a head without labels to learn from stops training
        from visionkit.build.model import heads_without_labels, resolve_num_classes
        from visionkit.data.datasets import label_names_of

        missing = heads_without_labels(heads, train)
        for problem in missing:
            print(problem, flush=True)
            total += 1
        try:  # then each head's num_classes against the data's classes, as training next
            if not missing and cfg is not None:
                resolve_num_classes(cfg, label_names_of({"train": train}))
        except ConfigError as err:  # a configuration error, with its file:line (located)
            unset += err.problems
    if heads:  # a set of a mix whose labels no head learns from: training warns of it too
        for warning in unused_sets(heads, {**trains, **evals}):
            print(f"warning: {warning}", flush=True)
            warned += 1
    checked = len(specs) - unchecked
    datasets = counted(checked, "dataset")
    if unset:  # the summary of what was checked, then what could not be
        if checked:
            print(f"check-data: {summary(total, warned)} in {datasets} checked", flush=True)
        raise ConfigError(unset)
    if not total + warned:
        print(f"check-data: no problems found in {datasets}")
        return 0
    print(f"check-data: {summary(total, warned)} in {datasets}")
    if total:
        return 1
    print(
        "check-data: no errors: training repairs the warnings or leaves their images out "
        f"(exit status {int(args.strict)}{': --strict' * args.strict})"
    )
    return int(args.strict)


def shared_note(data: Any, train: Any, evals: Mapping[str, Any]) -> str | None:
    """Training's warning of validation images that are training images too
    (:func:`~visionkit.data.datasets.shared_images_note`), of the ``data`` section and the
    datasets built: the training set and ``evals`` (config path → validation dataset)."""
    from visionkit.data.datasets import shared_images_note

    if data is None:
        return None
    val = evals.get("data.val")
    if val is None and evals:  # the entries of a mix, by name
        val = {where.rsplit(".", 1)[1]: d for where, d in evals.items()}
    built = {"train": train, "val": val} if train is not None and val is not None else None
    return shared_images_note(data, built)


def unused_sets(heads: Mapping[str, Any], built: Mapping[str, Any]) -> list[str]:
    """Training's and validation's warnings of the sets of a mix whose labels none of the
    ``heads`` (the config's ``model.heads``) learns from; ``built``: config path → dataset."""
    from visionkit.build.model import head_families, sets_no_head_uses

    families = head_families(heads)
    warnings = []
    for split in ("train", "val"):
        prefix = f"data.{split}."
        sets = {w[len(prefix) :]: d for w, d in built.items() if w.startswith(prefix)}
        warnings += sets_no_head_uses(families, sets, split)
    return warnings


def summary(errors: int, warnings: int) -> str:
    """``3 problems (2 errors, 1 warning)``; ``2 problems`` when they are all errors."""
    text = counted(errors + warnings, "problem")
    if warnings:
        text += f" ({counted(errors, 'error')}, {counted(warnings, 'warning')})"
    return text


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``check-data`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "check-data",
        help="check a dataset: every annotation and image, one report of all problems",
        description="Read every annotation and every image of the datasets of a config, or of "
        "one dataset given on the command line, and print a report: images, boxes per "
        "image, image sizes, counts per class, images without boxes, and every problem "
        "(missing or unreadable files, size mismatches, duplicate ids, unknown category ids, "
        "bad or out-of-image boxes, bad polygons, segmentations pycocotools cannot decode) with "
        "its file and ids. Exits 1 when an error was found (a problem that stops training), "
        "0 otherwise: warnings (problems training repairs, e.g. a box clipped to its image, or "
        "leaves out) do not fail it unless --strict. Training runs the same checks (image "
        "headers only) before it builds the model.\n\n"
        "example: visionkit check-data --config configs/quickstart.yaml\n"
        "example: visionkit check-data --format coco --images data/shapes/val\n"
        "example: visionkit check-data --format coco --images DIR --annotations ann.json "
        "class_field=background\n"
        "example: visionkit check-data --format folder --root data/pets/train\n"
        "example: visionkit check-data --format csv --csv data/leaves/train.csv --images "
        "data/leaves/train_images\n"
        "example: visionkit check-data --format yolo --root datasets/coco8.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        metavar="YAML",
        help="check the datasets of this config (data.train, data.val, data.test), e.g. "
        "--config configs/quickstart.yaml",
    )
    p.add_argument(
        "--split",
        metavar="SPLIT",
        default="all",
        help="with --config: which split to check, train, val, test or all, e.g. --split "
        "test (default all: those the config sets); with --format: the split a VOC, YOLO, "
        "LabelMe or mask folder reads (its split: key: a name, or a list file such as --split "
        "ImageSets/Segmentation/val.txt; an Ultralytics data.yaml without --split: each split "
        "it names)",
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
        help="with --format coco: the image folder, e.g. --images data/shapes/val; with "
        "--format csv: the folder the CSV's image cells are relative to (default its folder)",
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
        help="with --format folder, identities, labelme, mask_folder, voc or yolo: the dataset "
        "folder (yolo: or its data.yaml), e.g. --root data/pets/train",
    )
    p.add_argument(
        "--csv",
        metavar="FILE",
        help="the CSV file of (image, label) rows (--format csv, implied), e.g. --csv "
        "data/leaves/train.csv",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="read image headers only, as training does (default: decode every image in full, "
        "which also finds truncated files), e.g. --fast",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 on warnings too (problems training repairs or leaves out), e.g. in a "
        "data pipeline that must be clean: --strict",
    )
    p.add_argument(
        "pairs",
        nargs="*",
        metavar="KEY=VALUE",
        help="with --config: config overrides, e.g. data.val.images=other/val; with --format: "
        "more reader parameters, e.g. class_field=background masks=true (keypoints are "
        "checked where the annotations have them; keypoints=false leaves them out)",
    )
    return p
