"""The prediction options users set per call, as Ultralytics names them: ``conf`` (minimum
score), ``iou`` (NMS IoU threshold), ``max_det`` (detections per image), ``classes`` (keep
only these classes) and ``imgsz`` (inference size); and the inputs ``model.predict`` takes
(paths of images, folders, globs and videos, PIL images, ``H×W×3 uint8`` RGB arrays, lists
of them), as a list or streamed one prediction at a time (:func:`stream_predictions`).

``conf`` not given (``None``) is each box head's own prediction threshold
(:func:`prediction_conf`): the score of its best F1 on the validation set, kept with the model
by training, else 0.25. The thresholds reach every head that selects detections (the heads with ``score_thresh``,
``nms_thresh`` and ``detections_per_img``, which :func:`visionkit.models.heads._utils.
select_detections` applies) for the duration of one call only (:func:`detection_settings`);
the model's own values come back afterwards, also after an error. ``classes`` filters the
detections of every box head after NMS (NMS is class-wise, so the other classes never
suppress them) and then caps them at ``max_det``. Classification and semantic heads are not
changed by these options.

>>> import numpy as np, visionkit
>>> model = visionkit.create_model({"model": {"backbone": {"name": "simple_cnn"},
...     "heads": {"cls": {"name": "linear", "num_classes": 3}}}})
>>> [len(p) for p in predict_images(model, [np.zeros((40, 60, 3), np.uint8)] * 2)]
[1, 1]
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from numbers import Integral
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from visionkit.choices import DEFAULT_PREDICT_BATCH_SIZE, DEFAULT_PREDICT_CONF
from visionkit.errors import ConfigError, arguments_of

if TYPE_CHECKING:  # models.model delegates its predict here: no import at run time
    from visionkit.models.model import VisionModel

#: head attribute set by each option for the length of one call
THRESHOLDS = {"conf": "score_thresh", "iou": "nms_thresh", "max_det": "detections_per_img"}
#: size keys of the evaluation pipeline's sizing steps that ``imgsz`` replaces
SIZE_KEYS = ("height", "width", "size", "max_size", "max_size_hw", "min_height", "min_width")


def box_heads(model: VisionModel) -> dict[str, Any]:
    """The heads that select detections (they have ``score_thresh`` and ``nms_thresh``)."""
    return {
        name: head
        for name, head in model.heads.items()
        if hasattr(head, "score_thresh") and hasattr(head, "nms_thresh")
    }


def prediction_conf(model: VisionModel) -> dict[str, float]:
    """The default ``conf`` of each box head's predictions: the score threshold of its best F1
    at the last validation of its training (``model.meta["predict_conf"]``, which training
    keeps: :mod:`visionkit.evaluation.confidence`), else :data:`~visionkit.choices.
    DEFAULT_PREDICT_CONF` (0.25, Ultralytics' default); never under the head's own
    ``score_thresh`` (0.05 unless configured), which is what evaluation keeps for COCO mAP."""
    return {name: value for name, (value, _) in _prediction_confs(model).items()}


def prediction_conf_note(model: VisionModel) -> str:
    """What :func:`prediction_conf` chose and why, per box head: ``det 0.43 (its best F1 on
    the validation set)``, ``det 0.25 (the default: no F1 kept)`` or ``det 0.5 (the head's
    score_thresh)``."""
    return ", ".join(
        f"{name} {value:g} ({why})" for name, (value, why) in _prediction_confs(model).items()
    )


def _prediction_confs(model: VisionModel) -> dict[str, tuple[float, str]]:
    kept = (getattr(model, "meta", None) or {}).get("predict_conf") or {}
    chosen = {}
    for name, head in box_heads(model).items():
        value, why = (
            (float(kept[name]), "its best F1 on the validation set")
            if name in kept
            else (DEFAULT_PREDICT_CONF, "the default: no F1 kept")
        )
        if float(head.score_thresh) > value:
            value, why = float(head.score_thresh), "the head's score_thresh"
        chosen[name] = (value, why)
    return chosen


def check_thresholds(
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    batch_size: int = 1,
) -> None:
    """Raise a :class:`ConfigError` naming the option for an out-of-range value."""
    problems = []
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        problems.append(
            f"batch_size (--batch-size): at least 1 image per forward pass, got {batch_size!r}"
        )
    if conf is not None and not 0 <= conf < 1:
        problems.append(f"conf (--conf): a score threshold in [0, 1), got {conf}")
    if iou is not None and not 0 < iou <= 1:
        problems.append(f"iou (--iou): an IoU threshold in (0, 1], got {iou}")
    if max_det is not None and max_det < 1:
        problems.append(f"max_det (--max-det): at least 1 detection per image, got {max_det}")
    if problems:
        raise ConfigError(problems)


@contextlib.contextmanager
def detection_settings(
    model: VisionModel,
    conf: float | Mapping[str, float] | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    keep_all: bool = False,
) -> Iterator[None]:
    """Inside the block, every box head of ``model`` keeps detections scoring above
    ``conf`` (one for all, or per head name), runs NMS at ``iou`` and keeps ``max_det`` per
    image (``None``: the head's own value); ``keep_all`` lifts the cap (for a class filter
    that caps afterwards). The heads' values are restored on leaving, error or not."""
    confs = conf if isinstance(conf, Mapping) else None
    check_thresholds(None if confs is not None else conf, iou, max_det)
    if confs is not None:
        for value in confs.values():
            check_thresholds(value)
    values = {"conf": conf, "iou": iou, "max_det": max_det}
    if keep_all:
        values["max_det"] = 10**9
    saved = []
    try:
        for name, head in box_heads(model).items():
            per_head = {**values, "conf": confs.get(name) if confs is not None else conf}
            for option, attribute in THRESHOLDS.items():
                if per_head[option] is not None and hasattr(head, attribute):
                    saved.append((head, attribute, getattr(head, attribute)))
                    setattr(head, attribute, type(getattr(head, attribute))(per_head[option]))
        yield
    finally:
        for head, attribute, value in reversed(saved):
            setattr(head, attribute, value)


def resolve_classes(
    model: VisionModel, classes: Sequence[int | str] | int | str | None
) -> dict[str, set[int]] | None:
    """``classes`` (class indices, class names, or both; one alone; ``"0,2"`` is split) → the
    labels to keep per box head (``None``: keep all). An index counts for every box head that
    has it; a name for those whose ``class_names`` hold it.

    Raises:
        ConfigError: the model has no box head, or a class that no box head has (the
            message lists each head's classes).
    """
    if classes is None:
        return None
    if isinstance(classes, (str, int)):  # one class
        classes = [classes]
    heads = box_heads(model)
    if not heads:
        raise ConfigError(
            "classes (--classes): the model has no detection head to filter (its heads: "
            f"{', '.join(model.heads)}); --classes applies to box predictions only"
        )
    tokens = [t.strip() for c in classes for t in str(c).split(",") if t.strip()]
    keep: dict[str, set[int]] = {name: set() for name in heads}
    unknown = []
    for token in tokens:
        found = False
        for name, head in heads.items():
            names = list(getattr(head, "class_names", None) or [])
            count = int(getattr(head, "num_classes", len(names)))
            if token.lstrip("-").isdigit() and 0 <= int(token) < count:
                keep[name].add(int(token))
                found = True
            elif token in names:
                keep[name].add(names.index(token))
                found = True
        if not found:
            unknown.append(token)
    if unknown:
        valid = "; ".join(
            f"head {name!r}: 0..{int(getattr(h, 'num_classes', 0)) - 1}"
            + (f" = {', '.join(h.class_names)}" if getattr(h, "class_names", None) else "")
            for name, h in heads.items()
        )
        raise ConfigError(
            f"classes (--classes): no such class {', '.join(map(repr, unknown))}; {valid}"
        )
    return keep


def keep_classes(
    predictions: list[dict[str, Any]], keep: Mapping[str, set[int]], max_det: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Each box head's detections of the classes in ``keep[head]``, best first, at most
    ``max_det[head]``; every per-detection entry (boxes, scores, labels, names, masks, ...)
    is filtered alike."""
    out = []
    for prediction in predictions:
        prediction = dict(prediction)
        for head, labels in keep.items():
            result = prediction.get(head)
            if not result or "labels" not in result:
                continue
            count = len(result["labels"])
            wanted = [i for i, label in enumerate(result["labels"].tolist()) if label in labels]
            index = wanted[: max_det[head]]
            prediction[head] = {k: _take(v, index, count) for k, v in result.items()}
        out.append(prediction)
    return out


def _take(value: Any, index: list[int], count: int) -> Any:
    """``value[index]`` for a per-detection tensor or list of length ``count``; else as is."""
    if isinstance(value, Tensor) and value.ndim and value.shape[0] == count:
        return value[torch.as_tensor(index, dtype=torch.long, device=value.device)]
    if isinstance(value, list) and len(value) == count:
        return [value[i] for i in index]
    return value


def parse_imgsz(imgsz: int | str | Sequence[int | str] | None) -> tuple[int, int] | None:
    """``640``, ``"640"``, ``"480,640"`` or ``[480, 640]`` → ``(H, W)``.

    Raises:
        ConfigError: not one or two positive integers.
    """
    if imgsz is None:
        return None
    items = [imgsz] if isinstance(imgsz, int | str) else list(imgsz)
    parts = [p.strip() for item in items for p in str(item).replace("x", ",").split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"imgsz (--imgsz): one size (640) or height,width (480,640) in pixels, got {imgsz!r}"
        )
    h, w = int(parts[0]), int(parts[-1])
    return h, w


def resize_steps(steps: Sequence[Mapping[str, Any]], size: tuple[int, int]) -> list[dict[str, Any]]:
    """The evaluation steps with every sizing step at ``size`` (H, W): ``Resize`` and crops
    to it, ``LongestMaxSize`` / ``SmallestMaxSize`` to its larger side, ``PadIfNeeded`` to
    it (:func:`visionkit.data.image_size.with_image_size` fills the sizes removed here)."""
    from visionkit.data.image_size import with_image_size

    out = []
    for step in steps:
        step = {k: v for k, v in step.items() if k not in SIZE_KEYS or v is None}
        if isinstance(step.get("transforms"), list):
            step["transforms"] = resize_steps(step["transforms"], size)
        out.append(with_image_size(step, list(size)))
    return out


def preprocess_at(model: VisionModel, imgsz: int | str | Sequence[Any] | None) -> Any:
    """The model's evaluation pipeline with its sizing steps at ``imgsz`` (``None``: the
    model's own ``preprocess``).

    Raises:
        ConfigError: a bad size, or a model without the config its pipeline was made from.
    """
    size = parse_imgsz(imgsz)
    if size is None:
        return model.preprocess
    from visionkit.build.model import EvalPreprocess  # build imports models: not at the top

    data = (model.meta.get("config") or {}).get("data")
    if data is None:
        raise ConfigError(
            "imgsz (--imgsz): this model carries no config (model.meta['config']['data']) to rebuild "
            "its evaluation pipeline from; build it with visionkit.create_model or load a "
            "checkpoint"
        )
    steps = data_at(data, size)["transforms"]["val"]
    return EvalPreprocess(steps, model.backbone.mean, model.backbone.std)


def data_at(data: Mapping[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """A copy of a config's ``data`` section (plain dict) whose evaluation pipeline runs at
    ``size`` (H, W): ``transforms.val`` is :func:`resize_steps` of its evaluation steps and
    ``image_size`` is ``size`` (``val_image_size`` null: it follows). What ``predict --imgsz``
    and ``eval --imgsz`` evaluate with.

    >>> data = {"image_size": 192, "transforms": {"val": [{"name": "LongestMaxSize", "max_size": 192}]}}
    >>> data_at(data, (320, 320))["transforms"]["val"]
    [{'name': 'LongestMaxSize', 'max_size': 320}]
    """
    from visionkit.data.image_size import pipeline_steps

    out = dict(data)
    out["transforms"] = {
        **(data.get("transforms") or {}),
        "val": resize_steps(pipeline_steps(data, train=False), size),
    }
    out["image_size"] = size[0] if size[0] == size[1] else list(size)
    out["val_image_size"] = None
    return out


def as_image(item: Any) -> np.ndarray:
    """One input of ``model.predict`` as ``H×W×3 uint8`` RGB: a path (decoded by
    :func:`visionkit.data.io.read_image`), a PIL image (converted as that function converts
    a file's pixels: :func:`~visionkit.data.io.pil_to_rgb`) or an array."""
    from visionkit.data.io import pil_to_rgb, read_image
    from visionkit.inference.loop import as_rgb_uint8

    if isinstance(item, str | os.PathLike):
        return read_image(item)
    if hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        return pil_to_rgb(item)
    return as_rgb_uint8(item)


def as_image_list(images: Any) -> list[Any]:
    """``model.predict``'s input as a list of single inputs: one path, PIL image or image
    array becomes a list of one; an ``N×H×W×3`` array is split into its images, and a tensor
    image or batch into ``H×W×3 uint8`` arrays (:func:`~visionkit.inference.loop.
    tensor_images`)."""
    from visionkit.inference.loop import tensor_images

    if images is None or isinstance(images, bytes | bytearray):
        what = "None" if images is None else "bytes (an encoded file: give its path, or decode it)"
        raise ValueError(
            f"predict got {what}; expected a path, a folder, a glob, a PIL image, an H×W×3 uint8 "
            "array, a tensor image or batch, or a list of those"
        )
    if isinstance(images, Tensor):
        return tensor_images(images)
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, str | os.PathLike) or hasattr(images, "convert"):
        return [images]
    items: list[Any] = []
    for item in images:  # a list of tensor images, as torchvision's detectors take
        items += tensor_images(item) if isinstance(item, Tensor) else [item]
    return items


def iter_inputs(items: Sequence[Any]) -> Iterator[np.ndarray]:
    """Each input of ``model.predict`` decoded, one image at a time: a path is expanded as
    ``visionkit predict --input`` expands it (:func:`visionkit.inference.sources.named_inputs`:
    a folder's images and videos recursively and sorted, a glob's matches, a video's every
    frame); a PIL image or an array is one image.

    Raises:
        DataError: a path that does not exist, a folder or glob without images, an
            unreadable image or video.
    """
    from visionkit.inference.sources import iter_images, named_inputs

    for item in items:
        if isinstance(item, str | os.PathLike):
            sources = [source for source, _ in named_inputs([item])]
            for _, _, image in iter_images(sources):
                yield image
        else:
            yield as_image(item)


def predict_images(
    model: VisionModel,
    images: Any,
    batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    classes: Sequence[int | str] | None = None,
    imgsz: int | str | Sequence[Any] | None = None,
    **loop: Any,
) -> list[dict[str, Any]]:
    """:meth:`VisionModel.predict` with the options of this module: images are decoded one
    batch at a time, thresholds set for this call only. ``loop`` goes to
    :func:`visionkit.inference.loop.predict_model` (``run``, ``decode``, ``autocast``)."""
    return list(
        stream_predictions(model, images, batch_size, conf, iou, max_det, classes, imgsz, **loop)
    )


def stream_predictions(
    model: VisionModel,
    images: Any,
    batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    classes: Sequence[int | str] | None = None,
    imgsz: int | str | Sequence[Any] | None = None,
    **loop: Any,
) -> Iterator[dict[str, Any]]:
    """:func:`predict_images` as a generator, one prediction per image (per video frame),
    as Ultralytics' ``stream=True``: one batch of decoded images and predictions is held at
    a time. The options are checked now, before the first image is read; the thresholds
    are set around each batch's forward pass only, so the model keeps its own values
    between two ``next()`` calls (and another ``predict`` meanwhile is not affected)."""
    with arguments_of("predict"):  # model.predict's (or OnnxPredictor.predict's)
        keep = resolve_classes(model, classes)
        check_thresholds(conf, iou, max_det, batch_size)
        if imgsz is not None:
            loop["preprocess"] = preprocess_at(model, imgsz)
    items = as_image_list(images)
    caps = {
        name: int(max_det or head.detections_per_img) for name, head in box_heads(model).items()
    }
    settings = {
        "conf": prediction_conf(model) if conf is None else conf,
        "iou": iou,
        "max_det": max_det,
        "keep_all": keep is not None,
    }
    return _stream(model, items, batch_size, settings, keep, caps, loop)


def _stream(
    model: VisionModel,
    items: list[Any],
    batch_size: int,
    settings: dict[str, Any],
    keep: dict[str, set[int]] | None,
    caps: dict[str, int],
    loop: dict[str, Any],
) -> Iterator[dict[str, Any]]:
    """The generator of :func:`stream_predictions`."""
    from visionkit.inference.loop import predict_model

    decoded = iter_inputs(items)
    while batch := list(itertools.islice(decoded, batch_size)):
        with detection_settings(model, **settings):
            results = predict_model(model, batch, batch_size, **loop)
        yield from results if keep is None else keep_classes(results, keep, caps)
