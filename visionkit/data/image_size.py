"""How ``data.image_size`` (and the evaluation pipeline's ``data.val_image_size``) reaches the
pipelines: the default pipeline, the configured steps with the sizes they leave out filled in
from it (:func:`with_image_size`: so one override changes every step that follows it), and
the warnings of a size nothing follows and of an evaluation size far from the training one."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A

from visionkit.data.transforms import COMPOSITIONS


def default_transforms(image_size: int | Sequence[int], train: bool) -> list[dict[str, Any]]:
    """Resize to ``image_size`` (and a horizontal flip when training)."""
    h, w = size_pair(image_size)
    steps: list[dict[str, Any]] = [{"name": "Resize", "height": h, "width": w}]
    if train:
        steps.append({"name": "HorizontalFlip", "p": 0.5})
    return steps


def pipeline_steps(data: Any, train: bool) -> list[dict[str, Any]]:
    """The steps of the training (``train=True``) or evaluation pipeline: the configured
    ``data.transforms.train`` / ``data.transforms.val``, else :func:`default_transforms` at
    :func:`split_image_size`. The one rule for training, validation, prediction and export.

    ``data`` is the ``data`` section, as a validated ``DataConfig`` or as its plain dict (the
    resolved config a checkpoint carries).
    """
    if isinstance(data, Mapping):
        steps = (data.get("transforms") or {}).get("train" if train else "val")
    else:
        steps = getattr(data.transforms, "train" if train else "val")
    size = split_image_size(data, train)
    return [dict(s) for s in steps] if steps else default_transforms(size, train=train)


def split_image_size(data: Any, train: bool) -> int | Sequence[int]:
    """The size the training (``train=True``) or evaluation pipeline's sizing steps take
    where they leave theirs out: ``data.image_size``, and for evaluation (validation,
    ``eval``, ``predict``, export) ``data.val_image_size`` where it is set. ``data``: the
    ``data`` section, validated or as the plain dict a checkpoint carries.

    >>> split_image_size({"image_size": 192, "val_image_size": 224}, train=False)
    224
    >>> split_image_size({"image_size": 192}, train=False)
    192
    """
    val_size = None if train else _field(data, "val_image_size")
    return val_size if val_size is not None else _field(data, "image_size")


def _field(data: Any, key: str) -> Any:
    """``data[key]`` of a plain dict, ``data.key`` of a ``DataConfig``; ``None`` if absent."""
    return data.get(key) if isinstance(data, Mapping) else getattr(data, key, None)


def with_image_size(spec: Mapping[str, Any], image_size: int | Sequence[int]) -> dict[str, Any]:
    """``spec`` with the output size of a sizing transform filled in from ``image_size`` when
    the spec leaves it out: ``height``/``width`` (``Resize``, ``RandomCrop``, ``CenterCrop``,
    ``RandomSizedBBoxSafeCrop``, ...), ``size`` (``RandomResizedCrop``, ``RandomSizedCrop``) or
    ``max_size`` (``LongestMaxSize``, ``SmallestMaxSize``: the larger side of ``image_size``)
    or ``min_height``/``min_width`` (``PadIfNeeded``: each side not given, ``None`` where that
    side has a ``pad_*_divisor``; albumentations' own default is 1024 x 1024). So ``{name: Resize}`` follows ``data.image_size`` and one
    override changes both.

    >>> with_image_size({"name": "Resize"}, 160)
    {'name': 'Resize', 'height': 160, 'width': 160}
    >>> with_image_size({"name": "RandomResizedCrop", "scale": [0.5, 1.0]}, [96, 128])["size"]
    [96, 128]
    >>> with_image_size({"name": "Resize", "height": 64, "width": 64}, 160)["height"]
    64
    >>> with_image_size({"name": "PadIfNeeded"}, 128)
    {'name': 'PadIfNeeded', 'min_height': 128, 'min_width': 128}
    >>> with_image_size({"name": "PadIfNeeded", "pad_height_divisor": 32}, 128)
    {'name': 'PadIfNeeded', 'pad_height_divisor': 32, 'min_height': None, 'min_width': 128}

    The steps inside a composition (``OneOf``, ``SomeOf``, ``Sequential``) are filled alike;
    ``Mosaic`` gets ``target_size`` and, when left out, ``cell_shape`` = ``target_size``
    (each image fills a cell the size of the output, as in YOLO's mosaic).

    >>> with_image_size({"name": "OneOf", "transforms": [{"name": "CenterCrop"}]}, 64)
    {'name': 'OneOf', 'transforms': [{'name': 'CenterCrop', 'height': 64, 'width': 64}]}
    >>> with_image_size({"name": "Mosaic"}, [96, 128])
    {'name': 'Mosaic', 'target_size': [96, 128], 'cell_shape': [96, 128]}
    """
    out = dict(spec)
    name = out.get("name") if isinstance(out.get("name"), str) else ""
    if name in COMPOSITIONS and isinstance(out.get("transforms"), list):
        out["transforms"] = [
            with_image_size(s, image_size) if isinstance(s, Mapping) else s
            for s in out["transforms"]
        ]
        return out
    if name == "Mosaic":
        h, w = size_pair(image_size)
        out.setdefault("target_size", [int(h), int(w)])
        out.setdefault("cell_shape", out["target_size"])
        return out
    cls = getattr(A, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, A.BasicTransform)):
        return out  # build_transform reports it
    h, w = size_pair(image_size)
    params = inspect.signature(cls.__init__).parameters

    def required(key: str) -> bool:
        return key in params and params[key].default is inspect.Parameter.empty

    if required("height") and required("width") and "height" not in out and "width" not in out:
        out.update(height=int(h), width=int(w))
    elif required("size") and "size" not in out:
        out["size"] = [int(h), int(w)]
    elif "max_size" in params and not {"max_size", "max_size_hw"} & out.keys():
        # LongestMaxSize / SmallestMaxSize: the longest (shortest) side to data.image_size
        out["max_size"] = int(max(h, w))
    elif {"min_height", "min_width"} <= params.keys():
        # PadIfNeeded: each side to data.image_size (not albumentations' default of 1024), or
        # None where that side pads to a multiple (albumentations takes one or the other)
        for side, size in (("height", h), ("width", w)):
            if f"min_{side}" not in out:
                divided = out.get(f"pad_{side}_divisor") is not None
                out[f"min_{side}"] = None if divided else int(size)
    return out


#: The parameters in which a sizing step gives its output size.
SIZE_KEYS = ("height", "width", "size", "max_size", "max_size_hw", "min_height", "min_width")


def unused_image_size_note(data: Any, key: str = "image_size") -> str | None:
    """A warning for a ``data`` section whose ``image_size`` (``key="val_image_size"``: the
    evaluation pipeline's size) reaches no step of the pipelines it sizes (compositions'
    steps included) and is none of the sizes they give (a recipe with its own sizes, given
    ``data.image_size=96``: it would train at the recipe's size); ``None`` when it is used or
    not set. Training asks only where the size was set.

    >>> data = {"image_size": 96, "transforms": {
    ...     "train": [{"name": "RandomResizedCrop", "size": [224, 224]}],
    ...     "val": [{"name": "CenterCrop", "height": 224, "width": 224}]}}
    >>> print(unused_image_size_note(data))  # doctest: +NORMALIZE_WHITESPACE
    data.image_size=96 reaches no transform: each gives its own size
    (data.transforms.train[0] RandomResizedCrop size=[224, 224]; data.transforms.val[0]
    CenterCrop height=224, width=224); leave a size out to follow data.image_size, or change it
    >>> data["image_size"] = 224  # the size they give: nothing to say
    >>> unused_image_size_note(data) is None
    True
    """
    image_size = _field(data, key)
    if image_size is None:
        return None
    sizes = {int(image_size)} if isinstance(image_size, int) else set(map(int, image_size))
    splits = [("val", False)] if key == "val_image_size" else [("train", True)]
    if key == "image_size" and _field(data, "val_image_size") is None:
        splits.append(("val", False))
    given, follows = [], False
    for split, train in splits:
        for where, step in _sizing_steps(pipeline_steps(data, train), f"data.transforms.{split}"):
            follows |= with_image_size(step, image_size) != step
            own = {k: step[k] for k in SIZE_KEYS if step.get(k) is not None}
            if own:
                values = ", ".join(f"{k}={v}" for k, v in own.items())
                given.append((f"{where} {step.get('name')} {values}", own))
    numbers = {int(n) for _, own in given for v in own.values() for n in _ints(v)}
    if follows or not given or sizes & numbers:
        return None
    return (
        f"data.{key}={_text(image_size)} reaches no transform: each gives its own size "
        f"({'; '.join(where for where, _ in given)}); leave a size out to follow "
        f"data.{key}, or change it"
    )


#: Evaluation sizes up to this many times the training size are not warned of: the detection
#: recipe's 224 for 192 (7/6) scores best; its models fall apart at 1.5x (docs/benchmarks.md).
LARGEST_EVAL_RATIO = 1.4


def eval_size_note(data: Any) -> str | None:
    """A warning for a ``data.val_image_size`` under ``data.image_size`` on either side, or
    more than :data:`LARGEST_EVAL_RATIO` times it (a recipe's 224 kept while
    ``data.image_size=320`` or ``=128`` changed the training size): validation, ``eval`` and
    ``predict`` would see objects at other sizes than training did.

    >>> print(eval_size_note({"image_size": 320, "val_image_size": 224}))
    ... # doctest: +NORMALIZE_WHITESPACE
    data.val_image_size=224 is smaller than data.image_size=320: validation, eval and predict
    would see the objects at other sizes than training; change it with data.image_size (e.g.
    data.val_image_size=384, about 7/6 of it as in the detection recipe) or set it to null to
    follow data.image_size
    >>> eval_size_note({"image_size": 192, "val_image_size": 224}) is None
    True
    >>> eval_size_note({"image_size": 128, "val_image_size": 224})[:61]
    'data.val_image_size=224 is over 1.4 times data.image_size=128'
    """
    train, val = _field(data, "image_size"), _field(data, "val_image_size")
    if val is None or train is None:
        return None
    pairs = list(zip(size_pair(train), size_pair(val), strict=True))
    if all(t <= v <= LARGEST_EVAL_RATIO * t for t, v in pairs):
        return None
    how = "smaller than" if any(v < t for t, v in pairs) else f"over {LARGEST_EVAL_RATIO} times"
    larger = [_eval_size_for(t) for t, _ in pairs]
    larger = larger[0] if isinstance(train, int) else larger
    return (
        f"data.val_image_size={_text(val)} is {how} data.image_size={_text(train)}: validation, "
        "eval and predict would see the objects at other sizes than training; change it with "
        f"data.image_size (e.g. data.val_image_size={_text(larger)}, about 7/6 of it as in the "
        "detection recipe) or set it to null to follow data.image_size"
    )


def _eval_size_for(train: int) -> int:
    """About 7/6 of a training side (the recipe's 224 for 192), up to a multiple of 32 where
    that stays within :data:`LARGEST_EVAL_RATIO` of it."""
    rounded = -(-train * 7 // (6 * 32)) * 32
    return rounded if rounded <= LARGEST_EVAL_RATIO * train else -(-train * 7 // 6)


def size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of a size given as one side or as ``[height, width]``."""
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _text(size: Any) -> str:
    """A size as an override writes it: ``224`` or ``[192, 256]``."""
    return str(size) if isinstance(size, int) else f"[{int(size[0])}, {int(size[1])}]"


def _sizing_steps(steps: list[Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    """Every step with its config path, the steps inside compositions (``OneOf``) too."""
    found = []
    for i, step in enumerate(steps):
        if not isinstance(step, Mapping):
            continue
        found.append((f"{where}[{i}]", dict(step)))
        if step.get("name") in COMPOSITIONS and isinstance(step.get("transforms"), list):
            found += _sizing_steps(step["transforms"], f"{where}[{i}].transforms")
    return found


def _ints(value: Any) -> list[int]:
    items = value if isinstance(value, list | tuple) else [value]
    return [int(v) for v in items if isinstance(v, int | float)]
