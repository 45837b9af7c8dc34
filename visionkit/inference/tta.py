"""Test-time augmentation: horizontal flip, for every kind of head.

The model runs twice, on the batch and on its mirror image, through the one predict loop
(:func:`visionkit.inference.loop.predict_model`), and the two results are merged per head by
its task's ``merge_hflip`` (the task table, :data:`visionkit.evaluation.tasks.TASKS`; the
merges themselves, and what each does, are in :mod:`visionkit.inference.flip`), reusing each
head's own ``postprocess``.

Images are mirrored inside their own region of the batch tensor, so padding stays at the
bottom/right, where every head's ``postprocess`` expects it.

>>> import numpy as np, visionkit
>>> model = visionkit.create_model({"model": {"backbone": {"name": "simple_cnn"},
...     "heads": {"cls": {"name": "linear", "num_classes": 3}}}})
>>> (pred,) = predict_hflip(model, [np.zeros((40, 60, 3), np.uint8)])
>>> pred["cls"]["scores"].shape
torch.Size([3])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from visionkit.choices import DEFAULT_PREDICT_BATCH_SIZE, TTA_MODES
from visionkit.evaluation.tasks import TASKS
from visionkit.inference.options import predict_images
from visionkit.models.model import VisionModel

Sizes = Sequence[tuple[int, int]]


def hflip_images(images: Tensor, image_sizes: Sizes) -> Tensor:
    """Mirror each image ``[3, H, W]`` of a padded batch ``[B, 3, Hp, Wp]`` left-right inside
    its own ``image_sizes[i]`` (H, W) region; the padding stays at the bottom/right."""
    if all(tuple(s) == tuple(images.shape[-2:]) for s in image_sizes):
        return images.flip(-1)
    flipped = images.clone()
    for i, (h, w) in enumerate(image_sizes):
        flipped[i, :, :h, :w] = images[i, :, :h, :w].flip(-1)
    return flipped


def merge_hflip(
    model: VisionModel,
    outputs: Mapping[str, dict[str, Tensor]],
    flipped_outputs: Mapping[str, dict[str, Tensor]],
    image_sizes: Sizes,
    orig_sizes: Sizes | None = None,
) -> list[dict[str, Any]]:
    """Merge the raw outputs of a batch and of its :func:`hflip_images` mirror into one
    prediction per image (the same structure as :meth:`VisionModel.postprocess`), each head
    by its task's ``merge_hflip`` (:data:`visionkit.evaluation.tasks.TASKS`, functions in
    :mod:`visionkit.inference.flip`).

    Args:
        model: the model that produced both outputs.
        outputs, flipped_outputs: :meth:`VisionModel.forward` of the batch and of its mirror.
        image_sizes: (H, W) of each image inside the batch tensor.
        orig_sizes: (H, W) of the original images (``None``: the batch tensor's frame).

    Raises:
        ValueError: a head's ``task`` is not in the task table.
    """
    sizes = [tuple(int(v) for v in s) for s in image_sizes]
    origs = [tuple(int(v) for v in s) for s in orig_sizes] if orig_sizes is not None else None
    per_head: dict[str, list[dict[str, Any]]] = {}
    for name, head in model.heads.items():
        task = getattr(head, "task", None)
        spec = TASKS.get(task)
        if spec is None or spec.merge_hflip is None:
            supported = [t for t, s in TASKS.items() if s.merge_hflip is not None]
            raise ValueError(
                f"flip test-time augmentation does not know how to merge the predictions of "
                f"head {name!r} (task {task!r}); it supports the tasks {', '.join(supported)}"
            )
        per_head[name] = spec.merge_hflip(head, outputs[name], flipped_outputs[name], sizes, origs)
    return [{name: preds[i] for name, preds in per_head.items()} for i in range(len(sizes))]


def tta_steps(model: VisionModel, tta: str | None) -> dict[str, Any]:
    """The ``run`` / ``decode`` steps of :func:`visionkit.inference.loop.predict_model` for the
    test-time augmentation ``tta`` (``None``: none, the model's own steps)."""
    if tta is None:
        return {}
    if tta == "flip":
        return {
            "run": lambda x, sizes: (model(x), model(hflip_images(x, sizes))),
            "decode": lambda outputs, sizes, origs: merge_hflip(model, *outputs, sizes, origs),
        }
    raise ValueError(f"unknown test-time augmentation {tta!r}; valid: {', '.join(TTA_MODES)}")


def predict_hflip(
    model: VisionModel,
    images: Sequence[np.ndarray] | Tensor,
    batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
    **options: Any,
) -> list[dict[str, Any]]:
    """:meth:`VisionModel.predict` with horizontal-flip test-time augmentation, and its
    ``options`` (``conf``, ``iou``, ``max_det``, ``classes``, ``imgsz``, with the same
    defaults): the one predict loop (:func:`visionkit.inference.loop.predict_model`) whose
    raw-output step runs the model on each batch and on its mirror, and whose decoding step is
    :func:`merge_hflip`."""
    return predict_images(model, images, batch_size, **options, **tta_steps(model, "flip"))


def predict_tta(
    model: VisionModel,
    images: Sequence[np.ndarray],
    tta: str | None,
    batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
    **options: Any,
) -> list[dict[str, Any]]:
    """``model.predict(images, **options)`` with the test-time augmentation ``tta`` (``None``
    or one of :data:`TTA_MODES`)."""
    if tta is None:
        return model.predict(images, batch_size=batch_size, **options)
    if tta == "flip":
        return predict_hflip(model, images, batch_size=batch_size, **options)
    raise ValueError(f"unknown test-time augmentation {tta!r}; valid: {', '.join(TTA_MODES)}")
