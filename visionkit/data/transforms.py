"""Albumentations pipelines declared in the config (the batch collate is
:func:`visionkit.data.batch.collate`).

A pipeline is a list of albumentations transforms written as dicts::

    - {name: RandomResizedCrop, size: [128, 128], scale: [0.5, 1.0]}
    - {name: HorizontalFlip, p: 0.5}

Each is built with ``strict=True``, so an unknown parameter fails at build time naming it.
albumentations' compositions nest steps (:data:`COMPOSITIONS`)::

    - {name: OneOf, p: 0.8, transforms: [{name: RandomBrightnessContrast}, {name: Blur}]}
    - {name: SomeOf, n: 2, transforms: [...]}

and a training pipeline may hold multi-image steps (``Mosaic`` first, ``MixUp`` /
``CopyPaste`` / ``SwapHalves`` last), applied with other samples of the dataset (:mod:`visionkit.data.mixing`).
Normalisation (mean/std of the backbone's pretrained config) and the tensor conversion are
appended by :func:`build_pipeline`; boxes travel as ``pascal_voc`` (absolute xyxy) with their
labels and an instance index, so a box dropped by a transform takes its label (and its
instance mask) with it. Instance ``masks`` and the ``semantic`` label map go through the same
geometric transforms as the image (albumentations resizes masks with nearest-neighbour).

The heads map boxes and masks back to the original image by the ratio of original to image size
per axis (``postprocess(outputs, image_sizes, orig_sizes)``), so the evaluation pipeline of a
spatial head may only resize and pad at the bottom/right: :func:`eval_geometry_problem` says
why a step breaks that, and ``image_size`` is the size of the image *content* inside the
output (without that padding, see :func:`content_size`).

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

from visionkit.data import mixing
from visionkit.data.annotated_classes import ANNOTATED
from visionkit.data.batch import IGNORE_PIXEL, Sample, check_image
from visionkit.data.keypoint_transforms import (
    keypoint_inputs,
    keypoint_outputs,
    keypoint_params,
    pixel_index_scaling,
)
from visionkit.data.read_resize import resize_on_read
from visionkit.data.transform_params import declared_fields, parameter_problems
from visionkit.errors import ConfigError

#: albumentations' compositions a config may use: class and the types of its parameters
#: besides ``transforms`` (the list of nested steps); defaults are albumentations' own.
COMPOSITIONS: dict[str, tuple[type, dict[str, Any]]] = {
    "OneOf": (A.OneOf, {"p": mixing.Probability}),
    "SomeOf": (A.SomeOf, {"n": pydantic.PositiveInt, "replace": bool, "p": mixing.Probability}),
    "Sequential": (A.Sequential, {"p": mixing.Probability}),
}


class RandomScale(A.RandomScale):
    """albumentations' ``RandomScale``, its scale raised where it would leave a side under
    one pixel: a panorama of 4000 x 8 px at a longest side of 192 is 192 x 0.4, and a scale
    of 0.5 stopped training with OpenCV's ``inv_scale_x > 0`` assertion (at a random step,
    after ``check-data`` found nothing wrong)."""

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        shortest = max(1, min(params["shape"][:2]))
        return {"scale": max(params["scale"], (1.0 + 1e-6) / shortest)}


#: Steps built from visionkit's version of an albumentations class of the same name.
SAFER: dict[str, type] = {"RandomScale": RandomScale}


def build_transform(spec: Mapping[str, Any], where: str = "transforms") -> Any:
    """One step from ``{name: ..., **params}``: an albumentations transform, a composition
    (:data:`COMPOSITIONS`, its ``transforms`` built recursively) or a multi-image
    step (:data:`visionkit.data.mixing.MULTI_IMAGE`). Errors name the key
    path, nested steps included (``data.transforms.train[2].transforms[1].name: ...``)."""
    params = dict(spec)
    _refuse_keys_not_text(params, where)
    name = params.pop("name", None)
    known = name if isinstance(name, str) else ""
    if known in COMPOSITIONS:
        return _build_composition(known, params, where)
    step_class = mixing.MULTI_IMAGE.get(known)
    mixer = step_class is not None and step_class.stage == "after"
    cls = step_class if mixer else SAFER.get(known) or getattr(A, known, None)
    if not (mixer or (inspect.isclass(cls) and issubclass(cls, A.BasicTransform))):
        names = [n for n in dir(A) if n[:1].isupper()] + list(mixing.MULTI_IMAGE)
        close = difflib.get_close_matches(str(name), names, n=3)
        if not close and len(known) > 3:  # "Brightnes" → RandomBrightnessContrast
            close = [n for n in names if known.lower() in n.lower()][:3]
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"{where}.name: unknown albumentations transform {name!r}{hint}")
    _check_parameters(cls, name, params, where)
    if not mixer and "fill_mask" in inspect.signature(cls.__init__).parameters:
        # padding and borders carry no label (albumentations would fill label maps with 0, a
        # real class: CamVid's sky); instance masks stay 0 / 1 (apply_pipeline keeps == 1)
        params.setdefault("fill_mask", IGNORE_PIXEL)
    try:
        if mixer:
            step = cls(**params)
            step.where = where
            return step
        return cls(**params, strict=True)
    except (TypeError, ValueError) as err:
        cause = (
            err if isinstance(err, pydantic.ValidationError) else err.__cause__ or err.__context__
        )
        if isinstance(cause, pydantic.ValidationError):  # in our words, per parameter
            fields = declared_fields(cls)
            raise ConfigError(parameter_problems(cause, fields, name, where, params)) from None
        raise ConfigError(f"{where} ({name}): {err}") from None


def _refuse_keys_not_text(params: Mapping[Any, Any], where: str) -> None:
    """Refuse the keys of a step that YAML read as booleans or numbers (``On: 1``, ``1: 1``),
    in the words of the config's other mappings (the file's spelling is restored by
    :func:`~visionkit.config.locations.as_written`): no parameter is named so."""
    from visionkit.config.key_hints import mapping_key_problem  # visionkit.config imports us

    problems = [mapping_key_problem((where, k), k) for k in params if not isinstance(k, str)]
    if problems:
        raise ConfigError(problems)


def _check_parameters(cls: type, name: str, params: Mapping[str, Any], where: str) -> None:
    """Refuse the keys of ``params`` that ``cls.__init__`` does not take, naming each with the
    closest valid one (else all of them)."""
    signature = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in signature.values()):
        return
    valid = [p for p in signature if p not in ("self", "strict")]
    problems = []
    for key in (k for k in params if k not in valid):
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(valid)}"
        problems.append(f"{where}.{key}: unknown parameter of {name}; {hint}")
    if problems:
        raise ConfigError(problems)


def _build_composition(name: str, params: dict[str, Any], where: str) -> A.BaseCompose:
    """``OneOf`` / ``SomeOf`` / ``Sequential`` with its nested steps built recursively; every
    problem of the composition and of its steps is reported at once."""
    cls, types = COMPOSITIONS[name]
    steps = params.pop("transforms", None)
    problems = []
    refused: set[str] = set()  # parameters said to be wrong: n: x is no number to compare
    for key, value in params.items():
        if key not in types:
            close = difflib.get_close_matches(key, ["transforms", *types], n=1)
            hint = (
                f"; did you mean {close[0]!r}?"
                if close
                else f"; valid: transforms, {', '.join(types)}"
            )
            problems.append(f"{where}.{key}: unknown parameter of {name}{hint}")
            continue
        try:
            params[key] = pydantic.TypeAdapter(types[key]).validate_python(value)
        except pydantic.ValidationError as err:
            problems += parameter_problems(err, types, name, where, params, key)
            refused.add(key)
    if not isinstance(steps, list) or not steps:
        problems.append(
            f"{where}.transforms: {name} needs a non-empty list of steps "
            f"([{{name: ..., ...}}, ...]), got {steps!r}"
        )
        steps = []
    built = []
    for i, step in enumerate(steps):
        here = f"{where}.transforms[{i}]"
        if not isinstance(step, Mapping):
            problems.append(f"{here}: expected a step ({{name: ..., ...}}), got {step!r}")
            continue
        if isinstance(step.get("name"), str) and step["name"] in mixing.MULTI_IMAGE:
            problems.append(
                f"{here} ({step['name']}): a multi-image step cannot sit inside {name}; give "
                "it its own p at the top level of data.transforms.train"
            )
            continue
        try:
            built.append(build_transform(step, here))
        except ConfigError as err:
            problems += err.problems
    checked = name == "SomeOf" and not refused & {"n", "replace"}
    if checked and not params.get("replace") and params.get("n", 1) > len(steps) > 0:
        problems.append(
            f"{where}.n: {params['n']} steps asked of {len(steps)} (give n <= the number of "
            "transforms, or replace: true)"
        )
    if problems:
        raise ConfigError(problems)
    return cls(transforms=built, **params)


def _one_max_size(transform: Any) -> str | None:
    sizes = transform.max_size
    if isinstance(sizes, Sequence) and len(sizes) > 1:
        return f"max_size {list(sizes)} picks a size at random"
    return None


def _pads_bottom_right(transform: Any) -> str | None:
    if transform.position != "top_left":
        return f"position {transform.position!r} pads at the top/left too (use top_left)"
    return None


def _pad_bottom_right(transform: Any) -> str | None:
    pad = transform.padding
    left, top = (pad, pad) if isinstance(pad, int) else tuple(pad)[:2]
    if left or top:
        return f"padding {pad!r} pads at the left/top (give [0, 0, right, bottom])"
    return None


#: The geometric (albumentations ``DualTransform``) steps an evaluation pipeline of a spatial
#: head may hold, each with the check of its arguments: they rescale the image or pad it at the
#: bottom/right, which the heads' ratio mapping undoes. Every pixel-only ``ImageOnlyTransform``
#: is allowed as well.
EVAL_GEOMETRY: dict[type, Any] = {
    A.Resize: None,
    A.LongestMaxSize: _one_max_size,
    A.SmallestMaxSize: _one_max_size,
    A.PadIfNeeded: _pads_bottom_right,
    A.Pad: _pad_bottom_right,
}

EVAL_GEOMETRY_ALLOWED = (
    "allowed: Resize, LongestMaxSize / SmallestMaxSize with one max_size, PadIfNeeded with "
    "position: top_left, Pad with zero left/top padding (each with p: 1), and pixel-only "
    "transforms (albumentations ImageOnlyTransform, e.g. Normalize, ToFloat)"
)


def eval_geometry_problem(transform: A.BasicTransform) -> str | None:
    """Why ``transform`` cannot be a step of the evaluation pipeline of a spatial head, or
    ``None`` when it can.

    Predicted boxes and masks are mapped back to the original image by the size ratio alone,
    which undoes a resize and padding at the bottom/right, nothing else: a crop, a shift, a
    flip or a step applied at random would give wrong metrics and predictions with no error.

    >>> eval_geometry_problem(A.LongestMaxSize(max_size=64)) is None
    True
    >>> eval_geometry_problem(A.CenterCrop(height=32, width=32))
    'not a resize or a bottom/right padding'
    >>> eval_geometry_problem(A.PadIfNeeded(64, 64))
    "position 'center' pads at the top/left too (use top_left)"

    A composition is allowed when its steps are all pixel-only, or when it is a
    ``Sequential`` with ``p: 1`` of allowed steps; a ``OneOf`` / ``SomeOf`` of geometric
    steps picks the geometry at random.

    >>> eval_geometry_problem(A.OneOf([A.Blur(), A.ToGray()])) is None
    True
    >>> eval_geometry_problem(A.OneOf([A.HorizontalFlip(), A.Blur()], p=1))
    'OneOf picks among steps with geometric ones (HorizontalFlip) at random'
    """
    if _pixel_only(transform):
        return None  # pixel values only: the geometry is untouched
    if isinstance(transform, A.BaseCompose):
        name = type(transform).__name__
        if not isinstance(transform, A.Sequential):
            moved = [type(t).__name__ for t in transform.transforms if not _pixel_only(t)]
            return f"{name} picks among steps with geometric ones ({', '.join(moved)}) at random"
        if transform.p < 1:
            return f"p: {transform.p} applies it at random"
        for step in transform.transforms:
            if reason := eval_geometry_problem(step):
                return f"its step {type(step).__name__}: {reason}"
        return None
    if type(transform) not in EVAL_GEOMETRY:
        return "not a resize or a bottom/right padding"
    if transform.p < 1:
        return f"p: {transform.p} applies it at random"
    check = EVAL_GEOMETRY[type(transform)]
    return check(transform) if check is not None else None


def _pixel_only(transform: Any) -> bool:
    """A pixel-only step: an ``ImageOnlyTransform``, or a composition of pixel-only steps."""
    if isinstance(transform, A.BaseCompose):
        return all(_pixel_only(t) for t in transform.transforms)
    return isinstance(transform, A.ImageOnlyTransform)


def bbox_params() -> A.BboxParams:
    """How boxes travel: ``pascal_voc`` with their labels and instance index, clipped."""
    return A.BboxParams(
        format="pascal_voc", label_fields=["labels", "instance_ids"], clip=True, min_area=1.0
    )


def build_pipeline(
    steps: Sequence[Mapping[str, Any]],
    mean: Sequence[float],
    std: Sequence[float],
    where: str = "data.transforms",
) -> A.Compose:
    """Compose ``steps`` + normalisation + tensor conversion, box-aware.

    Multi-image steps travel on the Compose for
    :class:`~visionkit.data.datasets.TransformedDataset` to apply: ``mosaic`` (a
    :class:`visionkit.data.mixing.Mosaic` made of a first ``Mosaic`` step, or ``None``) and
    ``mixing`` (the ``MixUp`` / ``CopyPaste`` / ``SwapHalves`` steps at the end, in order), and
    ``resize_on_read`` (:func:`visionkit.data.read_resize.resize_on_read` of the first step,
    or ``None``). A step out of
    place (:func:`visionkit.data.mixing.multi_image_problems`) is a :class:`ConfigError`.
    """
    steps = list(steps)
    problems = mixing.multi_image_problems(steps, where)
    if problems:
        raise ConfigError(problems)
    built = [build_transform(s, f"{where}[{i}]") for i, s in enumerate(steps)]
    mosaic = None
    if built and isinstance(built[0], A.Mosaic):
        mosaic = mixing.Mosaic(built.pop(0), bbox_params(), f"{where}[0]")
    mixers = tuple(t for t in built if getattr(t, "stage", None) == "after")
    transforms = [t for t in built if getattr(t, "stage", None) != "after"]
    transforms += [A.Normalize(mean=tuple(mean), std=tuple(std)), ToTensorV2()]
    # The applied parameters give apply_pipeline the padding each step added (content_size).
    pipeline = A.Compose(
        transforms,
        bbox_params=bbox_params(),
        keypoint_params=keypoint_params(),  # data/keypoint_transforms.py
        save_applied_params=True,
    )
    pipeline.mosaic, pipeline.mixing = mosaic, mixers
    # a first resize to a fixed size is done once more as Samples are read (data/read_resize.py)
    pipeline.resize_on_read = resize_on_read(transforms[0]) if mosaic is None else None
    return pipeline


def content_size(
    input_size: Sequence[int], applied: Sequence[tuple[str, Mapping[str, Any]]], size: Sequence[int]
) -> tuple[int, int]:
    """``(H, W)`` of the region of a pipeline's output, from its top-left corner, that the
    input image covers: the output ``size`` less the bottom/right padding of ``Pad`` /
    ``PadIfNeeded`` steps (a later resize scales it with the rest).

    ``applied`` is albumentations' ``applied_transforms`` record (``save_applied_params``):
    each step's name and parameters, with its input ``shape`` and, for a padding step, its
    ``pad_top`` / ``pad_bottom`` / ``pad_left`` / ``pad_right``.

    >>> content_size((300, 200), [("LongestMaxSize", {"shape": (300, 200, 3)}),
    ...                           ("PadIfNeeded", {"shape": (128, 85, 3), "pad_top": 0,
    ...                                            "pad_left": 0, "pad_bottom": 0,
    ...                                            "pad_right": 43})], (128, 128))
    (128, 85)
    """
    size = (int(size[0]), int(size[1]))
    if not applied or any("shape" not in params for _, params in applied):
        return size
    shapes = [tuple(params["shape"][:2]) for _, params in applied] + [size]
    h, w = int(input_size[0]), int(input_size[1])
    for (_, params), (in_h, in_w), (out_h, out_w) in zip(applied, shapes, shapes[1:], strict=False):
        if "pad_bottom" in params:  # the image stays where it is, shifted by top/left padding
            h, w = h + int(params.get("pad_top", 0)), w + int(params.get("pad_left", 0))
        elif (in_h, in_w) != (out_h, out_w):  # a resize scales the content with the image
            h, w = round(h * out_h / in_h), round(w * out_w / in_w)
        h, w = min(h, out_h), min(w, out_w)
    return h, w


def apply_pipeline(pipeline: A.Compose, sample: Sample) -> Sample:
    """Run ``pipeline`` on a Sample; returns the Sample with tensors in place of arrays.

    Output keys: ``image`` float ``[3, H, W]``, ``image_id``, ``orig_size``, ``image_size``
    (the ``(H, W)`` of the image content, top-left: ``[H, W]`` less the bottom/right padding
    of the pipeline's ``Pad`` / ``PadIfNeeded`` steps, see :func:`content_size`), and, when present in the input, ``class``, ``identity``, ``boxes`` (float32 ``[N, 4]`` xyxy in the
    transformed image), ``labels`` (int64 ``[N]``), ``masks`` (uint8 ``[N, H, W]``, one per
    kept box), ``semantic`` (int64 ``[H, W]``), ``keypoints``, ``identities`` and
    ``annotated_classes`` (bool ``[C]``, as it is).
    """
    check_image(sample["image"])
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
    points = keypoint_inputs(sample, len(boxes))
    if points is None:
        out = pipeline(**inputs)
    else:
        inputs["keypoints"] = points
        with pixel_index_scaling():  # resized as the pixel indices flips take them to be
            out = pipeline(**inputs)
    image = out["image"]
    size = (int(image.shape[-2]), int(image.shape[-1]))
    applied = out.get("applied_transforms") or ()
    result: Sample = {
        "image": image,
        "image_id": sample["image_id"],
        "orig_size": tuple(int(s) for s in sample["orig_size"]),
        "image_size": content_size(sample["image"].shape[:2], applied, size),
    }
    for key in ("class", "identity"):  # image-level labels: a class, an identity
        if key in sample:
            result[key] = int(sample[key])
    if has_boxes:
        result["boxes"] = torch.as_tensor(np.asarray(out["bboxes"], np.float32).reshape(-1, 4))
        result["labels"] = torch.as_tensor(np.asarray(out["labels"], np.int64).reshape(-1))
    if masks is not None:
        kept = np.asarray(out["instance_ids"], np.int64).reshape(-1)
        if len(kept):
            stacked = torch.stack([torch.as_tensor(np.asarray(m)) for m in out["masks"]])
            result["masks"] = (stacked[torch.as_tensor(kept)] == 1).to(torch.uint8)  # not fill
        else:
            result["masks"] = torch.zeros((0, *size), dtype=torch.uint8)
    if "mask" in inputs:
        result["semantic"] = torch.as_tensor(np.asarray(out["mask"])).long()
    if points is not None:  # [N, K, 3] of the kept boxes, flip pairs swapped
        kept = np.asarray(out["instance_ids"], np.int64).reshape(-1)
        result["keypoints"] = keypoint_outputs(sample, out["keypoints"], kept, size)
    if sample.get("identities") is not None:  # [N] per box: the kept boxes' identities
        kept = np.asarray(out["instance_ids"], np.int64).reshape(-1)
        result["identities"] = torch.as_tensor(np.asarray(sample["identities"], np.int64)[kept])
    if sample.get(ANNOTATED) is not None:  # bool [C]: the classes its set annotates
        result[ANNOTATED] = torch.as_tensor(np.asarray(sample[ANNOTATED], dtype=bool))
    return result
