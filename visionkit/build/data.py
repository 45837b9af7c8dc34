"""Datasets from the ``data`` section (their pipelines: :mod:`visionkit.build.pipelines`); what
the model's heads need from the samples, read from the task table.

>>> from visionkit.config import load_config
>>> cfg = load_config({"model": {"backbone": {"name": "simple_cnn"},
...                              "heads": {"seg": {"name": "semantic_fpn", "num_classes": 3}},
...                              "neck": {"name": "fpn"}}})
>>> targets_needed(cfg), boxes_needed(cfg)
(['semantic'], False)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from visionkit.build.data_errors import data_errors, joined_errors, keyed
from visionkit.build.label_settings import label_setting_problems
from visionkit.choices import EVAL_SPLITS, SPLITS
from visionkit.config import (
    MIX_KEYS,
    Config,
    DataConfig,
    is_dataset_mix,
    override_keys,
    split_entries,
)
from visionkit.data.annotated_classes import ANNOTATED, describe, unboxed_class_warnings
from visionkit.data.batch import folder_like, folders_like, read_from
from visionkit.data.classes import class_lists, class_source, match_classes
from visionkit.data.datasets import MixedDataset
from visionkit.data.synthetic import FORMAT_VERSION, GENERATOR, make_shapes
from visionkit.data.synthetic_identities import make_identities, needs_generation
from visionkit.errors import ConfigError, DataError
from visionkit.evaluation.tasks import TaskSpec, task_of
from visionkit.registry import DATASETS, HEADS

logger = logging.getLogger(__name__)


def head_tasks(cfg: Config) -> list[TaskSpec]:
    """The :class:`~visionkit.evaluation.tasks.TaskSpec` of each configured head."""
    return [task_of(HEADS.component_class(spec["name"])) for spec in cfg.model.heads.values()]


def targets_needed(cfg: Config) -> list[str]:
    """The Sample targets the model's heads learn from (``"class"``, ``"boxes"``,
    ``"masks"``, ``"semantic"``), in head order, each once."""
    return list(dict.fromkeys(t for spec in head_tasks(cfg) for t in spec.targets))


def boxes_needed(cfg: Config) -> bool:
    """Whether a head learns from boxes (detection and instance heads). Without one, the
    data pipeline leaves the readers' boxes out: carrying them through albumentations costs
    a classifier's loader several times its image work."""
    return "boxes" in targets_needed(cfg)


def boxes_learnt(needs: Sequence[str]) -> bool:
    """Whether a head learns from boxes, from the targets the heads need (:func:`targets_needed`;
    none given: not known, as for a library caller: taken to)."""
    return not needs or "boxes" in needs


def dropped_keys(cfg: Config) -> tuple[str, ...]:
    """The Sample keys the data module leaves out before the pipeline: boxes, their labels,
    instance masks and the box classes annotated when no head learns from boxes (see
    :func:`boxes_needed`)."""
    return () if boxes_needed(cfg) else ("boxes", "labels", "masks", ANNOTATED)


def shapes_arguments(synthetic: Mapping[str, Any]) -> dict[str, Any]:
    """The ``make_shapes`` arguments of a ``synthetic:`` section (its identity keys are for
    ``make_identities``)."""
    return {k: v for k, v in synthetic.items() if k not in ("identities", "first_identity")}


def build_dataset(
    spec: Mapping[str, Any],
    *,
    split: str = "train",
    label_names: Mapping[str, Sequence[str]] | None = None,
    needs: Sequence[str] = (),
    where: str | None = None,
    image_check: str = "header",
) -> Any:
    """Build one dataset from its validated config (``{format: coco, images: ..., ...}``).

    The reader class declares which argument names its folder (``location``), which Sample
    targets it can produce (``targets``) and which flag switches an optional one on
    (``target_flags``).

    Args:
        spec: the dataset's config entry. With ``synthetic:``, no ``annotations`` file, and
            no data in the folder yet, the shapes dataset is generated there first.
        split: ``"train"``, ``"val"`` or ``"test"``. A validation or test set keeps every
            image (a reader's ``keep_negatives`` is forced on: images without boxes count in
            evaluation), and under ``on_bad_image: skip`` decodes every image when built,
            leaving the unreadable ones out (an evaluated image must be read exactly once,
            rather than be replaced later by another one that the evaluators would count
            twice).
        label_names: label family → class names of the training set: a reader that produces
            image-level classes and is not given ``class_names`` takes that order.
        needs: the targets the model's heads learn from (:func:`targets_needed`); a target
            flag the config leaves ``None`` ("when needed") is set to ``"auto"`` for them: on
            where the annotations have them (a box-only set beside a segmentation set gives
            boxes only, rather than dropping its every instance for want of a mask).
        where: the config path of ``spec`` in error messages (default ``data.<split>``).
        image_check: how the reader checks its image files: ``"header"`` or ``"decode"``
            (:data:`visionkit.data.checks.IMAGE_CHECKS`; ``check-data`` decodes).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    where = where or f"data.{split}"
    reader = DATASETS.component_class(spec["format"])
    accepts = DATASETS.signature(spec["format"]).parameters
    args = {k: v for k, v in spec.items() if k not in ("format", *MIX_KEYS)}
    location = reader.location
    if args.get(location) is None:
        raise ConfigError(unset_location(where, location, spec))
    synthetic = spec.get("synthetic")
    if synthetic and args.get("annotations"):
        # The user named an annotation file: their data, never a place to generate shapes
        # (a shapes recipe pointed at converted VOC/YOLO data keeps its synthetic: block).
        synthetic = None
    if synthetic:  # a misspelt path to the user's data is no place to generate shapes
        refuse_misspelt_target(Path(args[location]), f"{where}.{location}")
    if synthetic and synthetic.get("identities"):  # an ImageFolder of shape styles
        keys = ("num_images", "size", "seed", "identities", "first_identity")
        params = {k: synthetic.get(k) for k in keys}
        if needs_generation(Path(args[location]), params):
            logger.info("generating synthetic identities in %s", args[location])
            make_identities(args[location], **params, progress=True)
    elif synthetic:
        synthetic = shapes_arguments(synthetic)
        if _needs_generation(Path(args[location]), synthetic):
            logger.info("generating the shapes dataset in %s", args[location])
            make_shapes(args[location], **synthetic, progress=True)
    for target in needs:
        flag = reader.target_flags.get(target)
        if flag is not None and args.get(flag) is None:  # "auto": on where the data has them
            takes_auto = "auto" in str(accepts[flag].annotation) if flag in accepts else False
            args[flag] = "auto" if takes_auto else True
    if split in EVAL_SPLITS and "keep_negatives" in accepts:
        if args.get("keep_negatives") is False:
            kind = "validation" if split == "val" else split
            logger.info("%s.keep_negatives: ignored; %s sets keep every image", where, kind)
        args["keep_negatives"] = True
    classes = (label_names or {}).get("class")
    takes_names = "class_names" in accepts  # a reader of one's own may not take them
    if classes and "class" in reader.targets and args.get("class_names") is None and takes_names:
        args["class_names"] = list(classes)
    if split in EVAL_SPLITS and args.get("on_bad_image") == "skip":
        image_check = "decode"
    try:
        dataset = DATASETS.build(spec["format"], **args, image_check=image_check)
    except ConfigError as err:  # a reader's own check of its arguments: name the entry
        raise keyed(err, where, accepts) from None
    if split == "train" and getattr(dataset, "ignored_class", None):  # never learnt: refused
        raise DataError(f"{where}: {dataset.ignored_class}")
    if split == "train" and (unlearnt := getattr(dataset, "unlearnt", None)):  # likewise
        report = dataset.report  # its warning of the same kind, an error for a training set
        report.problems = [unlearnt if p.kind == unlearnt.kind else p for p in report.problems]
        report.raise_for_errors()
    dataset.config_key = where  # for messages naming the entry to change (data.train.streets)
    return dataset


def refuse_misspelt_target(root: Path, key: str) -> None:
    """Refuse to generate shapes into ``root`` when it does not exist but a folder beside it
    of a close name holds other data (``kp/trian`` beside the user's ``kp/train``): a
    misspelt path to the user's data, not a place for 2,400 generated images."""
    if root.exists():
        return
    close = folders_like(root)
    if all(_generated(folder) for folder in close):  # none, or generated ones
        return
    raise DataError(
        f"{key}: {root} does not exist{folder_like(root)} (the entry's synthetic: would "
        "generate the shapes dataset there; give the folder of your data, or remove "
        "synthetic: to read it)"
    )


def _generated(folder: Path) -> bool:
    """Whether ``folder`` holds a dataset visionkit generated (shapes or identities)."""
    try:
        with open(folder / "annotations.json", encoding="utf-8") as f:
            return json.load(f).get("info", {}).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return not any(folder.iterdir()) if folder.is_dir() else False


def _needs_generation(root: Path, params: Mapping[str, Any]) -> bool:
    """True when ``root`` holds no dataset yet, or a shapes dataset made with other parameters
    (a dataset that is not a generated one is never replaced)."""
    path = root / "annotations.json"
    if not path.is_file():
        return not any(root.glob("*.json"))
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f).get("info", {})
    except (OSError, ValueError, AttributeError):
        return False
    if info.get("generator") != GENERATOR:
        return False
    if info.get("format_version") != FORMAT_VERSION:
        return True
    return any(info.get(key) != value for key, value in params.items())


def build_split(
    spec: Mapping[str, Any],
    *,
    split: str,
    label_names: Mapping[str, Sequence[str]] | None = None,
    needs: Sequence[str] = (),
    image_check: str = "header",
    category_ids: Sequence[int] | None = None,
    reference: str = "the model's classes",
) -> Any:
    """The datasets of one split (``data.train``, ``data.val`` or ``data.test``): one
    dataset, or a name → dataset dict for a mix. Arguments as in :func:`build_dataset`.

    With ``label_names`` (and the COCO ``category_ids`` that go with them), each dataset's
    class lists are checked against them (:func:`visionkit.data.classes.match_classes`,
    messages calling them ``reference``, e.g. ``"data.train (its file)"``): a dataset whose
    labels would mean other classes is a :class:`~visionkit.errors.DataError`; one holding a
    subset of the COCO categories is relabelled into their order.
    """
    where = f"data.{split}"
    options = {"split": split, "label_names": label_names, "needs": needs}
    if not is_dataset_mix(spec):
        built = {where: build_dataset(spec, where=where, image_check=image_check, **options)}
    else:  # every part is read, its problems named by its own key (data.train.boxes)
        built, failed = {}, {}
        for name, entry in spec.items():
            part = f"{where}.{name}"
            try:
                built[part] = build_dataset(entry, where=part, image_check=image_check, **options)
            except DataError as err:
                failed[part] = err
        if failed:
            raise joined_errors(failed)
    if label_names:
        lists = class_lists(label_names, category_ids)
        built = {name: match_classes(d, lists, (reference, name)) for name, d in built.items()}
    if not is_dataset_mix(spec):
        return built[where]
    return {name: built[f"{where}.{name}"] for name in spec}


def split_spec(data: DataConfig, split: str) -> dict[str, Any]:
    """The config entry of ``split`` (``data.val`` or ``data.test``) for evaluation.

    Raises:
        ConfigError: ``split`` is not one of :data:`EVAL_SPLITS`, or the config leaves it unset
            (the message says how to give it on the command line).
    """
    if split not in EVAL_SPLITS:
        raise ConfigError(
            f"--split: expected one of {', '.join(EVAL_SPLITS)}, got {split!r}", options=True
        )
    spec = getattr(data, split)
    if spec is None:
        if is_dataset_mix(data.val):  # as data.val: one entry per named dataset
            given = " ".join(f"data.{split}.{name}.root=..." for name in data.val)
            raise ConfigError(
                f"data.{split}: not set; give it in the config or, as data.val, one dataset "
                f"per name ({', '.join(data.val)}), e.g. {given} (or .images=...)"
            )
        raise ConfigError(
            f"data.{split}: not set; give it in the config or as data.{split}.images=... / "
            f"data.{split}.root=...{_split_of_val_hint(data.val, split)}"
        )
    return spec


def _split_of_val_hint(val: Any, split: str) -> str:
    """Where ``data.val`` reads one split of a dataset (a VOC or YOLO folder, a ``data.yaml``,
    a mask folder): its folder given as ``data.<split>`` reads that dataset's ``split``
    (``config.validate``'s rule for a test entry on ``data.val``'s folder)."""
    if is_dataset_mix(val) or not isinstance(val, Mapping) or not val.get("split"):
        return ""
    try:
        location = DATASETS.component_class(val["format"]).location
    except KeyError:  # no format, or an unknown one (UnknownNameError)
        return ""
    if not val.get(location):
        return ""
    return (
        f"; data.{split}.{location}={val[location]} reads split: {split} of data.val's dataset, "
        "with its settings"
    )


def unset_location(where: str, location: str, entry: Mapping[str, Any] | None = None) -> str:
    """The problem of a dataset entry without its folder (``data.train.root``; for
    ``data.val``, how to hold out a share of one folder or train without it); for an entry
    of another format given a COCO json (``annotations=x.json`` on the VOC recipe), how to
    give a COCO entry instead."""
    text = f"{where}.{location}: not set; give the dataset folder, e.g. {where}.{location}=PATH"
    entry = entry or {}
    if where == "data.val":  # a first run on one folder of photos, or one COCO json
        one, split = "folder", "DIR --val 0.2 holds out a share of it"
        if entry.get("format") == "coco":  # split writes a json per part, images shared
            one, split = "COCO json", "ANNOTATIONS.json --val 0.2 writes one json per part"
        text += (
            f" (one {one}, not split yet: visionkit split {split} and says how to read each "
            "part; data.val=null trains without validation)"
        )
    if entry.get("format") != "coco" and str(entry.get("annotations") or "").endswith(".json"):
        text += (
            f" ({where} is format: {entry.get('format')}, whose annotations: is a folder name; "
            f"for a COCO json give the whole entry: {where}='{{format: coco, images: "
            f"{entry.get('images') or 'DIR'}, annotations: {entry['annotations']}}}')"
        )
    return text


def mixed_training_set(
    parts: Mapping[str, Any], spec: Mapping[str, Any], boxes: bool = True
) -> MixedDataset:
    """The training set of a mix: its built ``parts`` (name → dataset) drawn with the
    ``weight`` of each part's entry of ``spec`` (``data.train``), each annotating the box
    classes its entry's ``annotated_classes`` names (else its own class list); ``boxes``:
    whether a head learns from boxes (without, no sample carries the classes its set
    annotates). What training says of them: :func:`annotation_notes`.

    Raises:
        DataError: the parts' classes conflict, or an ``annotated_classes`` is wrong
            (:class:`MixedDataset`).
    """
    return MixedDataset(
        parts,
        {name: spec[name].get("weight", 1.0) for name in parts},
        {name: spec[name].get(ANNOTATED) for name in parts},
        boxes=boxes,
    )


def annotation_notes(train: Any) -> tuple[str | None, list[str]]:
    """What training (on rank 0) and ``check-data`` say of the box classes the sets of a
    training mix annotate: the line saying which set annotates which, where they differ and
    a head learns from boxes (``None`` otherwise), and a warning per set that has no box of
    classes another set has boxes of while it claims to annotate them
    (:func:`~visionkit.data.annotated_classes.unboxed_class_warnings`)."""
    if not isinstance(train, MixedDataset) or not train.boxes or len(train.box_classes) < 2:
        return None, []
    merged = train.label_names["instances"]
    info = describe(train.annotated, merged, "data.train") if train.annotated else None
    return info, unboxed_class_warnings(train.parts, train.box_classes, merged, train.mappings)


def check_saved_data_paths(
    spec: Mapping[str, Any],
    split: str,
    overrides: Sequence[str],
    checkpoint: str | os.PathLike,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Before a checkpoint is evaluated on the data of its own config (``spec``, the entry of
    ``data.<split>``): each dataset folder it names that the command line did not override
    must exist. A relative path is read from the current folder, which may not be the one
    training ran in, and data moves; the message says where the path came from and which
    override gives it anew. A path an export shortened to its last part (listed in the
    model's ``meta["shortened_paths"]``: :func:`~visionkit.export.metadata.shareable_config`)
    is unset: it must be given anew, never read from the current folder (a ``val/`` there is
    another dataset).

    Raises:
        DataError: a folder of the saved config does not exist, or was shortened.
    """
    given = set(override_keys(overrides))
    shortened = set((meta or {}).get("shortened_paths") or ())
    problems, cut = [], 0
    for where, entry in split_entries(spec, f"data.{split}"):
        if entry.get("synthetic") or where in given:  # generated, or given anew whole
            continue
        reader = DATASETS.component_class(entry["format"])
        for argument in getattr(reader, "path_arguments", (reader.location,)):
            value, key = entry.get(argument), f"{where}.{argument}"
            kind = "FILE" if Path(str(value)).suffix else "DIR"
            if value is None or key in given:
                continue
            if key in shortened:  # the export kept its last part only: not a path any more
                cut += 1
                problems.append(
                    f"{key}: the export stored only the last part of this path ({value}), "
                    f"not where the data is; give it with {key}={kind}"
                )
            elif not Path(value).exists():
                problems.append(
                    f"{key}: {value} does not exist (the path saved in the checkpoint's config"
                    f"{read_from(value)}); the data moved, or training ran in another folder: "
                    f"give it with {key}={kind}"
                )
    if problems:
        header = "the data of its config is not where it was:"
        if cut == len(problems):
            header = "an export keeps no data paths of its config (visionkit.shortened_paths):"
        raise DataError(f"{checkpoint}: {header}", problems)


def build_datasets(data: DataConfig, needs: Sequence[str] = ()) -> dict[str, Any]:
    """The configured splits. ``train`` is one dataset (a :class:`MixedDataset` when several
    are named); ``val`` is one dataset or a name → dataset dict, sharing the training set's
    class order and checked against its class lists (:func:`build_split`). ``needs`` as in
    :func:`build_dataset`."""
    unset = []
    for split in ("train", "val"):
        for where, entry in split_entries(getattr(data, split), f"data.{split}"):
            location = DATASETS.component_class(entry["format"]).location
            if entry.get(location) is None:
                unset.append(unset_location(where, location, entry))
    if unset:  # every split's at once, before any data is read
        raise ConfigError(unset)
    errors, warnings = label_setting_problems(data)
    if errors:  # an evaluation split read otherwise than training's labels
        raise ConfigError(errors)
    for warning in warnings:
        logger.warning(warning)
    datasets: dict[str, Any] = {}
    failed: dict[str, DataError] = {}  # every split is read, so that one run shows them all
    if data.train is not None:
        try:
            train = build_split(data.train, split="train", needs=needs)
            if isinstance(train, dict):
                train = mixed_training_set(train, data.train, boxes=boxes_learnt(needs))
            datasets["train"] = train
        except DataError as err:
            failed["data.train"] = err
    if data.val is not None:
        train = datasets.get("train")  # without it (failed), data.val's own checks only
        try:
            datasets["val"] = build_split(
                data.val,
                split="val",
                label_names=getattr(train, "label_names", None),
                needs=needs,
                category_ids=getattr(train, "category_ids", None),
                reference=f"data.train ({class_source(train)})",
            )
        except DataError as err:
            failed["data.val"] = err
    if failed:
        raise data_errors(failed)
    return datasets
