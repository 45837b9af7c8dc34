"""The model from a config (:func:`create_model`), from a training run's config and datasets
(:func:`build_model`), and from a checkpoint's metadata alone (:func:`model_from_meta`,
:func:`load`).

>>> model = create_model({"model": {"backbone": {"name": "simple_cnn"},
...                                 "heads": {"cls": {"name": "linear", "num_classes": 4}}}})
>>> sorted(model.heads)
['cls']
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.build.backbone_arguments import write_implied_arguments
from visionkit.build.class_weights import auto_class_weights
from visionkit.checkpoint import load_checkpoint
from visionkit.config import Config, ConfigLike, load_config, locating
from visionkit.data.datasets import class_colours_of, gives, label_names_of
from visionkit.data.identity_mixing import identity_count
from visionkit.data.image_size import pipeline_steps
from visionkit.data.transforms import apply_pipeline, build_pipeline
from visionkit.errors import CheckpointError, ConfigError, counted
from visionkit.evaluation.tasks import label_family, task_of
from visionkit.models import averaged_weights as aw
from visionkit.models.backbones import OutIndicesError, check_pretrained, create_backbone
from visionkit.models.model import VisionModel
from visionkit.models.transfer import load_matching, pretrained_beneath
from visionkit.models.weights import LIGHTNING_PREFIX
from visionkit.registry import HEADS, NECKS

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1


class EvalPreprocess:
    """The evaluation pipeline as a callable on one ``H×W×3 uint8`` RGB image."""

    def __init__(
        self, steps: Sequence[Mapping[str, Any]], mean: Sequence[float], std: Sequence[float]
    ):
        self.pipeline = build_pipeline(steps, mean, std, where="data.transforms.val")

    def __call__(self, image: np.ndarray) -> dict[str, Any]:
        sample = {"image": image, "image_id": 0, "orig_size": image.shape[:2]}
        return apply_pipeline(self.pipeline, sample)


#: What each label family and sample target is, and where it comes from, for messages.
LABEL_SOURCES = {
    "class": "image-level classes (a class-folder dataset, or a COCO class_field)",
    "instances": "boxes (COCO, VOC or YOLO annotations)",
    "boxes": "boxes (COCO, VOC or YOLO annotations)",
    "semantic": "semantic label maps (a mask folder, or COCO segmentations / YOLO segment labels)",
    "masks": "instance masks (COCO segmentations, YOLO segment labels)",
    "keypoints": "keypoints (COCO keypoint annotations, or a YOLO pose set: kpt_shape)",
    "identity": "image-level identities (format: identities, a folder per identity; the box "
    "identities of a COCO set are for fcos_embedding)",
    "identities": "box identities (COCO annotations with an identity field)",
}


def missing_labels(head_name: str, family: str) -> str:
    """The problem of a head whose label ``family`` (or sample target) training lacks."""
    return (
        f"model.heads.{head_name}: data.train has no "
        f"{LABEL_SOURCES.get(family, family + ' labels')} for this head to learn from: give "
        "data.train a set that has them (beside the others: docs/multitask.md), or remove "
        "the head"
    )


def heads_without_labels(heads: Mapping[str, Mapping[str, Any]], train: Any) -> list[str]:
    """The problems of the ``heads`` (a config's ``model.heads``) whose label family or
    sample targets the training set ``train`` does not give (:func:`missing_labels`); what
    training and ``check-data --config`` refuse."""
    names = label_names_of({"train": train})
    problems = []
    for name, spec in heads.items():
        task = task_of(HEADS.component_class(spec["name"]))
        if task.labels not in names:
            problems.append(missing_labels(name, task.labels))
        problems += [missing_labels(name, t) for t in task.targets if not gives(train, t)]
    return list(dict.fromkeys(problems))


def head_families(heads: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The label families the ``heads`` of a config (``model.heads``) learn from."""
    return {label_family(HEADS.component_class(spec["name"])) for spec in heads.values()}


def sets_no_head_uses(families: Collection[str], sets: Mapping[str, Any], split: str) -> list[str]:
    """The warnings of the named datasets of a mix in ``data.<split>`` (``train``, ``val`` or
    ``test``; ``sets``: name → dataset) that carry labels, none of a family in ``families``
    (what the heads learn from): their images teach, or score, no head (a head's name in the
    data, or a head left out, most likely). One dataset alone is :func:`heads_without_labels`'."""
    if len(sets) < 2:
        return []
    warnings = []
    for name, dataset in sets.items():
        held = list(getattr(dataset, "label_names", None) or {})
        if not held or set(held) & set(families):
            continue
        what = " and ".join(LABEL_SOURCES.get(family, family) for family in held)
        images = counted(len(dataset), "image")
        effect = (
            f"its {images} take places in the batches and train nothing"
            if split == "train"
            else f"its {images} score no head and add zeros to val/loss"
        )
        warnings.append(
            f"data.{split}.{name}: no head learns from its {what}; {effect}: add a head "
            f"for them, or leave the set out (data.{split}.{name}=null)"
        )
    return warnings


def resolve_num_classes(cfg: Config, label_names: Mapping[str, Sequence[str]] | None) -> Config:
    """Fill each head's ``num_classes`` from the data's label names where the config leaves it
    unset; raise when the two disagree or neither says."""
    if label_names is not None and not isinstance(label_names, Mapping):
        raise ConfigError(
            f"label_names: a mapping of label family to class names, e.g. {{'class': "
            f"['cat', 'dog']}} or {{'instances': [...]}}, got {type(label_names).__name__}"
        )
    cfg = cfg.model_copy(deep=True)
    problems = []
    for head_name, spec in cfg.model.heads.items():
        if "num_classes" not in spec:
            continue
        given = spec["num_classes"]
        if isinstance(given, int) and given < 1:
            problems.append(f"model.heads.{head_name}.num_classes: at least 1, got {given}")
            continue
        family = label_family(HEADS.component_class(spec["name"]))
        names = (label_names or {}).get(family)
        count = None if names is None else len(names)
        if count is not None and family == "identity":  # with SwapHalves' composites
            count = identity_count(count, pipeline_steps(cfg.data, train=True))
        if spec["num_classes"] is None:
            if names is None and label_names is not None:  # data read, none of this family
                problems.append(missing_labels(head_name, family))
            elif names is None:
                problems.append(
                    f"model.heads.{head_name}.num_classes: not set, and there is no dataset "
                    "to take it from; set it or configure data.train"
                )
            else:
                spec["num_classes"] = count
        elif names is not None and spec["num_classes"] != count:
            made = f", {count} with its synthetic identities" if count != len(names) else ""
            problems.append(
                f"model.heads.{head_name}.num_classes: {spec['num_classes']}, but the data has "
                f"{counted(len(names), 'class')} ({', '.join(names[:12])}"
                f"{', ...' if len(names) > 12 else ''}){made}; set {count}, or null to take it "
                "from the data"
            )
    if problems:
        raise ConfigError(problems)
    return cfg


def keypoints_of_data(cfg: Config, train: Any) -> Config:
    """Each keypoint head's ``keypoint_names``, ``num_keypoints``, ``skeleton``,
    ``kpt_oks_sigmas`` and ``kpt_dims`` from the training data's definition (its categories'
    ``keypoints``, ``skeleton``, ``kpt_oks_sigmas`` and ``kpt_dims``) where the config leaves
    the names out (the skeleton, the sigmas, the dims: where it leaves those out); names or a count
    that differ from the data's are an error (predictions, drawings and the flip test-time
    augmentation go by them), a count of 17 too: ``num_keypoints`` is null unless set."""
    parts = getattr(train, "parts", None)
    sets = parts.values() if isinstance(parts, Mapping) else [train]
    schema = next((s.keypoint_schema for s in sets if getattr(s, "keypoint_schema", None)), None)
    if schema is None:
        return cfg
    cfg = cfg.model_copy(deep=True)
    problems = []
    for head_name, spec in cfg.model.heads.items():
        if "keypoint_names" not in HEADS.signature(spec["name"]).parameters:
            continue
        given = spec.get("keypoint_names")
        if given is not None and list(given) != schema.names:
            problems.append(
                f"model.heads.{head_name}.keypoint_names: {list(given)}, but the data's "
                f"categories name {schema.names}; leave keypoint_names out (=null on the command "
                "line) to take the data's"
            )
            continue
        if spec.get("num_keypoints") not in (None, len(schema.names)):  # set, and not so
            problems.append(
                f"model.heads.{head_name}.num_keypoints: {spec['num_keypoints']}, but the data's "
                f"categories define {len(schema.names)} ({', '.join(schema.names)}); leave "
                "num_keypoints out to take the data's"
            )
            continue
        spec["keypoint_names"] = list(schema.names)
        spec["num_keypoints"] = len(schema.names)
        if spec.get("skeleton") is None:
            spec["skeleton"] = [list(p) for p in schema.skeleton]
        takes_sigmas = "kpt_oks_sigmas" in HEADS.signature(spec["name"]).parameters
        if takes_sigmas and spec.get("kpt_oks_sigmas") is None and schema.sigmas is not None:
            spec["kpt_oks_sigmas"] = list(schema.sigmas)  # an Ultralytics file's kpt_oks_sigmas
        if "kpt_dims" in HEADS.signature(spec["name"]).parameters and spec.get("kpt_dims") is None:
            spec["kpt_dims"] = schema.dims  # x y (an Ultralytics kpt_shape [K, 2]) or x y v
    if problems:
        raise ConfigError(problems)
    return cfg


def data_identities(head_name: str, args: Mapping[str, Any], label_names: Mapping) -> Any:
    """A box head's ``num_identities``: the training data's identity count where the config
    leaves it unset; a set count under the data's is an error here, not at the first batch
    carrying an identity without a class vector."""
    count = len(label_names.get("identity") or ())
    given = args.get("num_identities")
    if given is None:
        return count or None
    if isinstance(given, int) and 0 < given < count:
        raise ConfigError(
            f"model.heads.{head_name}.num_identities: {given}, but the training data has "
            f"{count} identities (one class vector each); set {count}, or null to take it from "
            "the data"
        )
    return given


@locating  # a check made here (num_classes, freeze, out_indices) names the key's file:line
def create_model(
    config: ConfigLike,
    label_names: Mapping[str, Sequence[str]] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    read_pretrained: bool = True,
) -> VisionModel:
    """Build a :class:`VisionModel` from a config path, mapping or :class:`Config`; untrained
    unless ``model.init_from`` is set.

    ``model.init_from`` loads the matching tensors of a checkpoint
    (:func:`visionkit.models.transfer.load_matching`; its report is ``model.transfer_report``);
    the backbone's ``pretrained`` weights are then read only for the backbone tensors it lacks
    (:func:`~visionkit.models.transfer.pretrained_beneath`), after the checks that need no
    file (:func:`~visionkit.models.backbones.check_pretrained`). ``model.freeze`` freezes the
    named modules; their names and ``optimizer.param_groups``' are checked against the model.

    Args:
        config: the configuration (validated here).
        label_names: class names per label family (``{"class": [...], "instances": [...]}``),
            usually from the training dataset; fills unset ``num_classes``.
        extra_meta: more plain-type metadata to keep in ``model.meta`` (e.g. category ids).
        read_pretrained: ``False``: the backbone's pretrained file is not read (the weights come
            from a checkpoint); reading one adds what it implies (:mod:`.backbone_arguments`).
    """
    cfg = resolve_num_classes(load_config(config), label_names)
    b = write_implied_arguments(cfg, read_pretrained).model.backbone  # in cfg's meta too
    # init_from replaces what it holds: the pretrained weights go only beneath it, read after
    beneath = read_pretrained and bool(cfg.model.init_from) and b.pretrained is not False
    if beneath:  # what reading the file would refuse, refused even if it is never read
        check_pretrained(b.name, b.pretrained)
    try:
        backbone = create_backbone(
            b.name,
            pretrained=b.pretrained,
            out_indices=b.out_indices,
            read_pretrained=read_pretrained and not beneath,
            **b.kwargs,
        )
    except OutIndicesError as err:  # the config's key, with its file and line
        raise ConfigError(f"model.backbone.out_indices: {err.problem}") from None
    neck = None
    if cfg.model.neck is not None:
        args = {k: v for k, v in cfg.model.neck.items() if k != "name"}
        try:
            neck = NECKS.build(
                cfg.model.neck["name"],
                in_channels=list(backbone.out_channels),
                strides=list(backbone.strides),
                **args,
            )
        except ValueError as err:  # its levels against the backbone's strides
            raise ConfigError(f"model.neck: {err}") from None
    heads, weights = {}, {}
    for head_name, spec in cfg.model.heads.items():
        args = {k: v for k, v in spec.items() if k not in ("name", "loss_weight")}
        head_class = HEADS.component_class(spec["name"])
        source = neck if head_class.reads == "neck" else backbone
        if source is None:
            raise ConfigError(f"model.heads.{head_name}: head {spec['name']!r} needs a model.neck")
        params = HEADS.signature(spec["name"]).parameters
        if "class_names" in params and label_names:
            args["class_names"] = list(label_names.get(label_family(head_class)) or []) or None
        if "num_identities" in params and label_names:
            args["num_identities"] = data_identities(head_name, args, label_names)
        if "strides" in params:
            args["strides"] = list(source.strides)
        try:
            heads[head_name] = HEADS.build(
                spec["name"], in_channels=list(source.out_channels), **args
            )
        except ValueError as err:  # its arguments' values, the data's classes among them
            raise ConfigError(f"model.heads.{head_name}: {err}") from None
        if not isinstance(getattr(heads[head_name], "num_classes", None), int):
            raise ConfigError(
                f"model.heads.{head_name}: {head_class.__qualname__} has no num_classes (int) "
                "attribute, which evaluators read (docs/extending.md#adding-a-head)"
            )
        weights[head_name] = spec.get("loss_weight", 1.0)
    steps = pipeline_steps(cfg.data, train=False)
    meta = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "config": cfg.to_dict(),
        "label_names": {k: list(v) for k, v in (label_names or {}).items()},
        **copy.deepcopy(dict(extra_meta or {})),
    }
    model = VisionModel(
        backbone,
        heads,
        neck=neck,
        loss_weights=weights,
        preprocess=EvalPreprocess(steps, backbone.mean, backbone.std),
        meta=meta,
        loss_balancing=cfg.model.loss_balancing.name,
        balancing_momentum=cfg.model.loss_balancing.momentum,
    )
    problems = prefix_problems(model, cfg.model.freeze, "model.freeze")
    problems += prefix_problems(model, list(cfg.optimizer.param_groups), "optimizer.param_groups")
    if problems:
        raise ConfigError(problems)
    if cfg.model.init_from:
        model.transfer_report = load_matching(model, cfg.model.init_from)
        if beneath:
            pretrained_beneath(
                model,
                model.transfer_report,
                lambda: create_backbone(b.name, b.pretrained, b.out_indices, **b.kwargs),
            )
    if cfg.model.freeze:
        model.freeze(cfg.model.freeze)
    return model


def prefix_problems(model: VisionModel, prefixes: Sequence[str], key: str) -> list[str]:
    """One line per entry of ``prefixes`` (under config ``key``) that names no module of
    ``model``, listing the valid top-level prefixes."""
    valid = ", ".join(model.module_prefixes())
    return [
        f"{key}: {prefix!r} is not a module of the model; valid prefixes: {valid} "
        "(or a module below them, e.g. backbone.<child>)"
        for prefix in model.unknown_prefixes(prefixes)
    ]


def build_model(
    cfg: Config,
    datasets: Mapping[str, Any],
    resume: bool = False,
    stored_weights: Mapping[str, list[float]] | None = None,
) -> VisionModel:
    """The model of a training run (:func:`~visionkit.build.model.create_model`), sized by
    the datasets' label names and carrying the training set's category ids. A resumed run
    (``resume``) gets its weights from the checkpoint, so neither ``model.init_from`` nor the
    backbone's ``pretrained`` weights are loaded; the model's config still records both.
    ``stored_weights``: the ``class_weights`` lists by head of the checkpoint a run resumes
    (:func:`~visionkit.build.class_weights.stored_class_weights`), which ``auto`` keeps."""
    train = datasets.get("train")
    label_names = label_names_of(datasets)
    if train is not None:  # each head learns from labels some training set has
        problems = heads_without_labels(cfg.model.heads, train)
        if problems:
            raise ConfigError(problems)
        parts = getattr(train, "parts", None) or {}
        for warning in sets_no_head_uses(head_families(cfg.model.heads), parts, "train"):
            logger.warning(warning)
        cfg = auto_class_weights(keypoints_of_data(cfg, train), train, stored_weights)
    extra: dict[str, Any] = {"category_ids": list(getattr(train, "category_ids", []) or [])}
    colours = class_colours_of(train) if train is not None else {}
    if colours:  # predictions drawn in the dataset's own class colours
        extra["class_colours"] = colours
    build_cfg = cfg.model_copy(deep=True)
    if resume:  # every tensor comes from the checkpoint: no pretrained file is read either
        build_cfg.model.init_from = None
    model = create_model(
        build_cfg, label_names=label_names, extra_meta=extra, read_pretrained=not resume
    )
    model.meta["config"]["model"]["init_from"] = cfg.model.init_from
    return model


def model_from_meta(
    meta: Any, init_from: str | os.PathLike | None = None, source: object = "model metadata"
) -> VisionModel:
    """The model that ``meta`` describes (``model.meta``, as every checkpoint and export stores
    it: the resolved config, class names, category mapping): untrained, or with the matching
    tensors of ``init_from``. Build it under ``torch.device("meta")`` for a weight-free model
    (preprocessing and the heads' ``postprocess`` need no weights).

    Raises:
        CheckpointError: ``meta`` carries no config, a format version newer than this
            visionkit's, or a config this visionkit does not build (a key another version
            had; the message names ``source`` and lists the config's problems).
    """
    if not isinstance(meta, Mapping) or "config" not in meta:
        raise CheckpointError(
            source,
            "not a visionkit checkpoint (no 'visionkit' metadata); weights alone (a state_dict) "
            "load into the model its metadata builds: visionkit.build.model_from_meta(model."
            "meta).load_state_dict(...), or initialise a config's model: model.init_from=PATH",
        )
    if meta.get("format_version", 0) > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            source,
            f"format version {meta['format_version']} is newer than this visionkit supports",
        )
    config = copy.deepcopy(dict(meta["config"]))
    config["model"]["init_from"] = str(init_from) if init_from is not None else None
    extra = {k: v for k, v in meta.items() if k not in ("config", "label_names", "format_version")}
    try:  # the weights come from elsewhere: no pretrained file is read, its architecture built
        return create_model(
            config,
            label_names=meta.get("label_names") or None,
            extra_meta=extra,
            read_pretrained=False,
        )
    except ConfigError as err:  # the user wrote no config here: say whose it is
        from visionkit import __version__

        problems = "\n".join(f"  {p}" for p in err.problems)
        unregistered = all(": unknown " in p and "registered" in p for p in err.problems)
        weights = Path(str(source)).suffix in (".ckpt", ".safetensors")
        advice = (
            "a head or backbone of your own is registered when its module is imported: "
            "import it before loading"
            if unregistered
            else "written by another version? read it with the visionkit that wrote it"
            + (
                f", or start a run of this version from its weights: model.init_from={source}"
                if weights
                else ""
            )
        )
        raise CheckpointError(
            source,
            f"the config stored in it does not build a model with visionkit {__version__}:"
            f"\n{problems}\n{advice}",
        ) from None


def load(
    path: str | os.PathLike, map_location: str = "cpu", weights: str | None = None
) -> VisionModel:
    """Rebuild a trained model from a checkpoint alone (no config file needed), or from a
    safetensors export (``visionkit export --format safetensors``).

    The checkpoint is read with ``torch.load(weights_only=True)``; the resolved config, class
    names and category mapping it carries (a safetensors export: its header) rebuild the
    model (:func:`model_from_meta`), then the weights are loaded. A checkpoint of a run with
    ``ema.enabled: true`` gives its averaged (EMA) weights, or with ``weights="raw"`` its raw
    ones (``last.ckpt``), logged and kept as ``meta["weights"]``; an export holds one set
    (:mod:`visionkit.models.averaged_weights`).
    """
    aw.check_weights(weights, call="load")
    if Path(path).suffix == ".safetensors" and Path(path).is_file():
        from safetensors.torch import load_file

        from visionkit.export import read_safetensors_metadata

        try:
            header = read_safetensors_metadata(path)
            # the config's paths the export cut to their last part: unset for an evaluation
            meta = {**header["meta"], "shortened_paths": header.get("shortened_paths", [])}
            tensors = load_file(str(path))  # into the model's CPU tensors, as torch.load's
        except Exception as err:  # safetensors' own error, or ExportError: no visionkit header
            raise CheckpointError(
                path,
                f"not a visionkit safetensors export ({str(err).splitlines()[0]}); a file of "
                "weights alone initialises a model of your config: model.init_from=PATH",
            ) from None
        aw.one_set(weights, meta, path)
        model = model_from_meta(meta, source=path)
    else:
        ckpt = load_checkpoint(path, map_location=map_location)
        model = model_from_meta(ckpt.get("visionkit"), source=path)
        tensors = aw.model_tensors(aw.pick_state(ckpt, path, weights), LIGHTNING_PREFIX)
        model.meta.update(aw.held_weights(ckpt, weights))  # an export of it says which
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            path, f"weights do not match the model its config builds: {err}"
        ) from None
    model.eval()
    return model
