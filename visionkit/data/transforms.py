"""Albumentations pipelines declared in the config (the batch collate is
:func:`visionkit.data.batch.collate`).

A pipeline is a list of albumentations transforms written as dicts::

    - {name: RandomResizedCrop, size: [128, 128], scale: [0.5, 1.0]}
    - {name: HorizontalFlip, p: 0.5}

Each is built with ``strict=True``, so an unknown parameter fails at build time naming it.
Normalisation (mean/std of the backbone's pretrained config) and the tensor conversion are
appended by :func:`build_pipeline`; boxes travel as ``pascal_voc`` (absolute xyxy) with their
labels and an instance index, so a box dropped by a transform takes its label (and its
instance mask) with it. Instance ``masks`` and the ``semantic`` label map go through the same
geometric transforms as the image (albumentations resizes masks with nearest-neighbour).

>>> pipe = build_pipeline([{"name": "Resize", "height": 32, "width": 32}], (0.5,) * 3, (0.5,) * 3)
>>> import numpy as np
>>> out = apply_pipeline(pipe, {"image": np.zeros((40, 60, 3), np.uint8), "image_id": 1,
...                             "orig_size": (40, 60)})
>>> tuple(out["image"].shape)
(3, 32, 32)
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import numpy as np
import pydantic
import torch
from albumentations.pytorch import ToTensorV2

from visionkit.data.batch import Sample
from visionkit.errors import ConfigError


def default_transforms(image_size: int | Sequence[int], train: bool) -> list[dict[str, Any]]:
    """Resize to ``image_size`` (and a horizontal flip when training)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    steps: list[dict[str, Any]] = [{"name": "Resize", "height": h, "width": w}]
    if train:
        steps.append({"name": "HorizontalFlip", "p": 0.5})
    return steps


def pipeline_steps(data: Any, train: bool) -> list[dict[str, Any]]:
    """The steps of the training (``train=True``) or evaluation pipeline: the configured
    ``data.transforms.train`` / ``data.transforms.val``, else :func:`default_transforms` at
    ``data.image_size``. The one rule for training, validation, prediction and export.

    ``data`` is the ``data`` section, as a validated ``DataConfig`` or as its plain dict (the
    resolved config a checkpoint carries).
    """
    if isinstance(data, Mapping):
        steps = (data.get("transforms") or {}).get("train" if train else "val")
        image_size = data.get("image_size")
    else:
        steps = getattr(data.transforms, "train" if train else "val")
        image_size = data.image_size
    return [dict(s) for s in steps] if steps else default_transforms(image_size, train=train)


def with_image_size(spec: Mapping[str, Any], image_size: int | Sequence[int]) -> dict[str, Any]:
    """``spec`` with the output size of a sizing transform filled in from ``image_size`` when
    the spec leaves it out: ``height``/``width`` (``Resize``, ``RandomCrop``, ``CenterCrop``,
    ``RandomSizedBBoxSafeCrop``, ...) or ``size`` (``RandomResizedCrop``, ``RandomSizedCrop``).
    So ``{name: Resize}`` follows ``data.image_size`` and one override changes both.

    >>> with_image_size({"name": "Resize"}, 160)
    {'name': 'Resize', 'height': 160, 'width': 160}
    >>> with_image_size({"name": "RandomResizedCrop", "scale": [0.5, 1.0]}, [96, 128])["size"]
    [96, 128]
    >>> with_image_size({"name": "Resize", "height": 64, "width": 64}, 160)["height"]
    64
    """
    out = dict(spec)
    cls = getattr(A, out.get("name", ""), None) if isinstance(out.get("name"), str) else None
    if not (inspect.isclass(cls) and issubclass(cls, A.BasicTransform)):
        return out  # build_transform reports it
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    params = inspect.signature(cls.__init__).parameters

    def required(key: str) -> bool:
        return key in params and params[key].default is inspect.Parameter.empty

    if required("height") and required("width") and "height" not in out and "width" not in out:
        out.update(height=int(h), width=int(w))
    elif required("size") and "size" not in out:
        out["size"] = [int(h), int(w)]
    return out


def build_transform(spec: Mapping[str, Any], where: str = "transforms") -> A.BasicTransform:
    """One albumentations transform from ``{name: ..., **params}``; errors name the key."""
    params = dict(spec)
    name = params.pop("name", None)
    cls = getattr(A, name, None) if isinstance(name, str) else None
    if not (inspect.isclass(cls) and issubclass(cls, A.BasicTransform)):
        names = [n for n in dir(A) if n[:1].isupper()]
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"{where}.name: unknown albumentations transform {name!r}{hint}")
    signature = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in signature.values()):
        valid = [p for p in signature if p not in ("self", "strict")]
        unknown = [k for k in params if k not in valid]
        if unknown:
            raise ConfigError(
                [
                    f"{where}.{key}: unknown parameter of {name}"
                    + (
                        f"; did you mean {close[0]!r}?"
                        if (close := difflib.get_close_matches(key, valid, n=1))
                        else ""
                    )
                    for key in unknown
                ]
            )
    try:
        return cls(**params, strict=True)
    except (TypeError, ValueError) as err:
        cause = (
            err if isinstance(err, pydantic.ValidationError) else err.__cause__ or err.__context__
        )
        if isinstance(cause, pydantic.ValidationError):
            raise ConfigError(
                [f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in cause.errors()]
            ) from None
        raise ConfigError(f"{where} ({name}): {err}") from None


def build_pipeline(
    steps: Sequence[Mapping[str, Any]],
    mean: Sequence[float],
    std: Sequence[float],
    where: str = "data.transforms",
) -> A.Compose:
    """Compose ``steps`` + normalisation + tensor conversion, box-aware."""
    transforms = [build_transform(s, f"{where}[{i}]") for i, s in enumerate(steps)]
    transforms += [A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()]
    bbox_params = A.BboxParams(
        format="pascal_voc", label_fields=["labels", "instance_ids"], clip=True, min_area=1.0
    )
    return A.Compose(transforms, bbox_params=bbox_params)


def apply_pipeline(pipeline: A.Compose, sample: Sample) -> Sample:
    """Run ``pipeline`` on a Sample; returns the Sample with tensors in place of arrays.

    Output keys: ``image`` float ``[3, H, W]``, ``image_id``, ``orig_size``, ``image_size``,
    and, when present in the input, ``class``, ``boxes`` (float32 ``[N, 4]`` xyxy in the
    transformed image), ``labels`` (int64 ``[N]``), ``masks`` (uint8 ``[N, H, W]``, one per
    kept box) and ``semantic`` (int64 ``[H, W]``).
    """
    has_boxes = "boxes" in sample
    boxes = np.asarray(sample.get("boxes", np.zeros((0, 4))), dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(sample.get("labels", np.zeros(0)), dtype=np.int64)
    inputs: dict[str, Any] = {
        "image": sample["image"],
        "bboxes": boxes,
        "labels": labels,
        "instance_ids": np.arange(len(boxes)),
    }
    masks = sample.get("masks")
    if masks is not None and len(masks):
        if len(masks) != len(boxes):
            raise ValueError(f"{len(masks)} instance masks for {len(boxes)} boxes")
        inputs["masks"] = np.asarray(masks, dtype=np.uint8)
    if sample.get("semantic") is not None:
        inputs["mask"] = np.asarray(sample["semantic"], dtype=np.uint8)
    out = pipeline(**inputs)
    image = out["image"]
    size = (int(image.shape[-2]), int(image.shape[-1]))
    result: Sample = {
        "image": image,
        "image_id": sample["image_id"],
        "orig_size": tuple(int(s) for s in sample["orig_size"]),
        "image_size": size,
    }
    if "class" in sample:
        result["class"] = int(sample["class"])
    if has_boxes:
        result["boxes"] = torch.as_tensor(np.asarray(out["bboxes"], np.float32).reshape(-1, 4))
        result["labels"] = torch.as_tensor(np.asarray(out["labels"], np.int64).reshape(-1))
    if masks is not None:
        kept = np.asarray(out["instance_ids"], np.int64).reshape(-1)
        if len(kept):
            stacked = torch.stack([torch.as_tensor(np.asarray(m)) for m in out["masks"]])
            result["masks"] = stacked[torch.as_tensor(kept)].to(torch.uint8)
        else:
            result["masks"] = torch.zeros((0, *size), dtype=torch.uint8)
    if "mask" in inputs:
        result["semantic"] = torch.as_tensor(np.asarray(out["mask"])).long()
    return result
