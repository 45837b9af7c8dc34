"""The metadata every export carries: everything post-processing needs besides the weights.

Stored as strings ``visionkit.<key>`` → JSON (ONNX ``metadata_props``, the TorchScript extra
file, the safetensors header): the model's ``meta`` (config, class names, category ids), the
backbone's mean/std, the evaluation transforms, the input and the outputs of the graph, and
per head its builder, task, outputs and class names.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from visionkit.data.image_size import pipeline_steps
from visionkit.errors import ExportError
from visionkit.export.graph import (
    INPUT_NAME,
    SIZE_DIVISOR,
    OutputPath,
    config_image_size,
    output_name,
)
from visionkit.models.model import VisionModel

META_PREFIX = "visionkit."
METADATA_VERSION = 1


#: Config keys of the training run itself, dropped (set to null) when they name a path.
RUN_ONLY_KEYS = ("resume",)


def machine_path(text: str) -> bool:
    """Whether ``text`` is a path of one machine: absolute (``/home/...``, ``C:\\...``,
    ``D:/...``, ``\\\\server\\share``) or in a home folder (``~/...``)."""
    return text.startswith(("/", "~", "\\\\")) or re.match(r"[A-Za-z]:[\\/]", text) is not None


def last_part(path: str) -> str:
    """The file or folder name ``path`` ends with, ``/`` and ``\\`` both separators."""
    parts = [part for part in re.split(r"[\\/]+", path) if part and part != "~"]
    return parts[-1] if parts else "."


def shareable_config(config: Any) -> tuple[Any, list[str]]:
    """A copy of ``config`` without the paths of the machine it was trained on, and the key
    paths changed (``["output_dir", "data.train.root"]``): an absolute or ``~`` path is
    stored as its last part (``/home/alice/data/train`` → ``train``; the file part of
    ``torchvision:<model>=<file>`` so too), ``resume`` as null; relative paths stay. What
    builds the model (names, sizes, transforms) holds no such path, so
    :func:`~visionkit.build.model.model_from_meta` builds the same model from it.

    >>> shareable_config({"output_dir": "/home/alice/runs", "data": {"image_size": 64}})
    ({'output_dir': 'runs', 'data': {'image_size': 64}}, ['output_dir'])
    """
    changed: list[str] = []

    def walk(value: Any, where: str) -> Any:
        if isinstance(value, Mapping):
            return {k: walk(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{where}.{i}") for i, v in enumerate(value)]
        if not isinstance(value, str):
            return copy.deepcopy(value)
        name, equals, file = value.rpartition("=")  # torchvision:<model>=<file>
        if not (machine_path(value) or (equals and machine_path(file))):
            return value
        changed.append(where)
        if where in RUN_ONLY_KEYS:
            return None
        return f"{name}={last_part(file)}" if equals and machine_path(file) else last_part(value)

    return walk(config, ""), changed


def input_metadata(dtype: str = "float32") -> dict[str, Any]:
    """What the exported model's input is and how an image becomes it (the ``input`` entry):
    the ``preprocess`` steps resize as albumentations does (bilinear with half-pixel centres:
    OpenCV's ``INTER_LINEAR``; Pillow's bilinear differs by up to a pixel level), then RGB
    ``uint8`` pixels / 255, minus ``mean``, divided by ``std``."""
    return {
        "name": INPUT_NAME,
        "layout": "NCHW",
        "dtype": dtype,
        "normalised": True,
        "normalisation": "RGB uint8 pixels / 255, then (x - mean) / std per channel",
        "interpolation": "bilinear, half-pixel centres (cv2.INTER_LINEAR, as albumentations)",
    }


def preprocess_steps(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The evaluation transforms (before normalisation) that ``VisionModel.predict`` runs."""
    return pipeline_steps(meta["config"]["data"], train=False)


def head_metadata(
    meta: Mapping[str, Any], name: str, head: Any, paths: Sequence[OutputPath]
) -> dict[str, Any]:
    """One head's entry of ``visionkit.heads``: its registered name (``builder``), task,
    outputs and class names (``None`` when it has none), with a keypoint head's
    ``keypoint_names`` and ``skeleton``: what a program without visionkit needs to name what
    the head predicts (``label_names`` is keyed by label family, not by head)."""
    entry = {
        "builder": meta["config"]["model"]["heads"][name]["name"],
        "task": getattr(head, "task", None),
        "outputs": [output_name(p) for p in paths if p[0] == name],
        "class_names": list(getattr(head, "class_names", None) or []) or None,
    }
    for key in ("keypoint_names", "skeleton"):
        if hasattr(head, key):
            entry[key] = [
                list(v) if isinstance(v, (list, tuple)) else v for v in getattr(head, key)
            ]
    return entry


def export_metadata(
    model: VisionModel, paths: Sequence[OutputPath], exporter: str | None = None
) -> dict[str, str]:
    """String metadata stored in the exported file (ONNX ``metadata_props``, TorchScript extra
    file, safetensors header): everything post-processing needs."""
    meta = model.meta
    if "config" not in meta:
        raise ExportError("the model carries no config in its metadata (model.meta['config'])")
    heads = {name: head_metadata(meta, name, head, paths) for name, head in model.heads.items()}
    config, shortened = shareable_config(meta["config"])  # no path of the training machine
    earlier = list(meta.get("shortened_paths") or [])  # a re-export of an export: cut before
    shortened = earlier + [key for key in shortened if key not in earlier]
    meta = {k: v for k, v in meta.items() if k != "shortened_paths"} | {"config": config}
    values: dict[str, Any] = {
        "metadata_version": METADATA_VERSION,
        "meta": meta,
        "config": config,
        "label_names": meta.get("label_names", {}),
        "category_ids": meta.get("category_ids", []),
        "mean": [float(v) for v in model.backbone.mean],
        "std": [float(v) for v in model.backbone.std],
        "image_size": list(config_image_size(meta)),
        "preprocess": preprocess_steps(meta),
        "input": input_metadata(),
        "size_divisor": SIZE_DIVISOR,
        "outputs": [{"name": output_name(p), "head": p[0], "path": list(p)} for p in paths],
        "heads": heads,
        "shortened_paths": shortened,
    }
    if exporter is not None:
        values["exporter"] = exporter
    return {META_PREFIX + key: json.dumps(value) for key, value in values.items()}


def read_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`export_metadata`: ``{"config": ..., "outputs": ..., ...}``."""
    out = {
        k[len(META_PREFIX) :]: json.loads(v) for k, v in props.items() if k.startswith(META_PREFIX)
    }
    if "meta" not in out or "outputs" not in out:
        raise ExportError("not a visionkit export: no visionkit.meta / visionkit.outputs metadata")
    return out
