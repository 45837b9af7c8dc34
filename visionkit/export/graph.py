"""What every export takes and returns: the input ``images`` and the flat, named outputs.

The exported module (:class:`ExportModule`) takes a normalised batch ``images`` float32
``[B, 3, H, W]``, ``H`` and ``W`` multiples of :data:`SIZE_DIVISOR` (the padding of
visionkit's collate), and returns the heads' raw outputs (what ``VisionModel.forward``
returns) as a flat tuple of tensors named ``<head>.<key>`` (:func:`flatten_outputs`).

>>> flat = flatten_outputs({"cls": {"logits": torch.zeros(1, 3)}})
>>> [output_name(path) for path, _ in flat]
['cls.logits']
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from visionkit.build.model import load
from visionkit.data.image_size import size_pair, split_image_size
from visionkit.errors import ExportError
from visionkit.models.model import VisionModel

SIZE_DIVISOR = 32  # H and W of the inputs are multiples of this (as visionkit's collate pads)
INPUT_NAME = "images"
DEFAULT_IMAGE_SIZE = 128  # the check's image size when the config names none

OutputPath = tuple[str | int, ...]  # head name, then dict keys / list indices


# ---- outputs: a flat list of named tensors ------------------------------------------------------
def _walk(value: Any, path: OutputPath) -> Iterator[tuple[OutputPath, Tensor]]:
    if isinstance(value, Tensor):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, (*path, str(key)))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, (*path, i))
    else:
        raise ExportError(
            f"output {'.'.join(map(str, path))} is a {type(value).__name__}; only tensors "
            "(in dicts and lists) can be exported"
        )


def flatten_outputs(outputs: Mapping[str, Any]) -> list[tuple[OutputPath, Tensor]]:
    """``VisionModel.forward``'s nested outputs as ``(path, tensor)`` pairs in a stable order
    (heads, then each head's keys, in insertion order; list items by index)."""
    return list(_walk(outputs, ()))


def output_name(path: OutputPath) -> str:
    """``("det", "cls_logits")`` → ``"det.cls_logits"``."""
    return ".".join(map(str, path))


def unflatten_outputs(paths: Sequence[Sequence[str | int]], values: Sequence[Any]) -> dict:
    """Inverse of :func:`flatten_outputs`: nested dicts (and lists, for integer keys)."""
    root: dict = {}
    for path, value in zip(paths, values, strict=True):
        node: Any = root
        for key, nxt in zip(path[:-1], path[1:], strict=True):
            child = [] if isinstance(nxt, int) else {}
            if isinstance(node, list):
                while len(node) <= key:
                    node.append(None)
                node[key] = node[key] if node[key] is not None else child
                node = node[key]
            else:
                node = node.setdefault(key, child)
        last = path[-1]
        if isinstance(node, list):
            while len(node) <= last:
                node.append(None)
        node[last] = value
    return root


def outputs_of(model: VisionModel, size: tuple[int, int]) -> list[OutputPath]:
    """The paths of the model's raw outputs (one forward pass on zeros)."""
    dtype = next(model.parameters()).dtype  # float16 for a half export
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, *size, dtype=dtype))
    return [path for path, _ in flatten_outputs(outputs)]


class ExportModule(nn.Module):
    """A :class:`VisionModel` whose ``forward(images)`` returns its raw outputs as a flat tuple,
    in the order of ``paths`` (see :func:`flatten_outputs`)."""

    def __init__(self, model: VisionModel, paths: Sequence[OutputPath]) -> None:
        super().__init__()
        self.model = model
        self.paths = [tuple(p) for p in paths]

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs: Any = self.model(images)
        flat = []
        for path in self.paths:
            value = outputs
            for key in path:
                value = value[key]
            flat.append(value)
        return tuple(flat)


def export_model(
    checkpoint_or_model: VisionModel | str | os.PathLike, weights: str | None = None
) -> VisionModel:
    """The model to export: a checkpoint loaded by :func:`visionkit.load` (``weights_only``;
    ``weights``: which of an EMA run's), or the given model, copied to the CPU in float32
    when it is elsewhere."""
    if not isinstance(checkpoint_or_model, VisionModel):
        return load(checkpoint_or_model, weights=weights)
    model = checkpoint_or_model
    params = list(model.parameters()) + list(model.buffers())
    if any(
        p.device.type != "cpu" or (p.is_floating_point() and p.dtype != torch.float32)
        for p in params
    ):
        model = copy.deepcopy(model).cpu().float()
    return model


# ---- sizes --------------------------------------------------------------------------------------
def round_up(size: int | Sequence[int], divisor: int = SIZE_DIVISOR) -> tuple[int, int]:
    """``(H, W)`` rounded up to multiples of ``divisor`` (what the collate pads to)."""
    h, w = size_pair(size)
    return math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor


def config_image_size(meta: Mapping[str, Any]) -> tuple[int, int]:
    """The evaluation size of the config in ``meta`` as ``(H, W)``: ``data.val_image_size``,
    else ``data.image_size`` (default 128)."""
    data = {"image_size": DEFAULT_IMAGE_SIZE, **meta["config"].get("data", {})}
    return size_pair(split_image_size(data, train=False))


def check_sizes(image_size: int | Sequence[int]) -> list[tuple[int, int]]:
    """The two image sizes of the check: ``image_size`` rounded up to a multiple of
    :data:`SIZE_DIVISOR`, and one taller by 1 and wider by 2 divisors."""
    h, w = round_up(image_size)
    return [(h, w), (h + SIZE_DIVISOR, w + 2 * SIZE_DIVISOR)]


def check_sizes_of(
    model: VisionModel, image_size: int | Sequence[int] | None
) -> list[tuple[int, int]]:
    """:func:`check_sizes` of ``image_size``, by default the config's evaluation size."""
    return check_sizes(image_size or config_image_size({"config": model.meta.get("config", {})}))


def largest_stride(model: VisionModel) -> int:
    """The largest stride of the backbone's and the neck's feature maps."""
    strides = list(getattr(model.backbone, "strides", [SIZE_DIVISOR]))
    strides += list(getattr(model.neck, "strides", []) or [])
    return max(int(s) for s in strides)


def trace_size(model: VisionModel) -> tuple[int, int]:
    """The image size the graph is traced at: 2 × 3 cells of the largest stride, so that no
    feature map is 1 pixel (which the tracer would take as a constant) and H differs from W."""
    unit = max(largest_stride(model), SIZE_DIVISOR)
    return 2 * unit, 3 * unit


def trace_sample(model: VisionModel) -> Tensor:
    """The seeded random batch ``[2, 3, *trace_size]`` the graph is traced with."""
    return torch.randn(2, 3, *trace_size(model), generator=torch.Generator().manual_seed(0))
