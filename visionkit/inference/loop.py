"""The one predict loop, shared by ``VisionModel.predict``, flip TTA and the ONNX predictor.

For each batch of ``H×W×3 uint8`` RGB images, :func:`predict_loop`:

1. preprocesses each image with the evaluation pipeline (resize, normalise);
2. collates them into a padded batch ``[B, 3, H, W]`` (:func:`visionkit.data.batch.collate`);
3. runs the raw-output step, ``run(images, image_sizes)`` — the one pluggable step: the eager
   model (:func:`predict_model`), the model on the batch and on its mirror
   (:func:`visionkit.inference.tta.predict_hflip`), or an onnxruntime session
   (:class:`visionkit.inference.onnx_runtime.OnnxPredictor`);
4. decodes the outputs with ``decode(outputs, image_sizes, orig_sizes)`` — each head's
   ``postprocess`` (or the flip merge), boxes and masks mapped back to the original sizes.

>>> import numpy as np, visionkit
>>> model = visionkit.create_model({"model": {"backbone": {"name": "simple_cnn"},
...     "heads": {"cls": {"name": "linear", "num_classes": 3}}}})
>>> (pred,) = predict_model(model, [np.zeros((40, 60, 3), np.uint8)])
>>> pred["cls"]["scores"].shape
torch.Size([3])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from visionkit.data.batch import collate

if TYPE_CHECKING:  # models.model delegates its predict here: no import at run time
    from visionkit.models.model import VisionModel

Sizes = list[tuple[int, ...]]
Predictions = list[dict[str, Any]]
#: ``run(images [B, 3, H, W], image_sizes) -> raw outputs``
RunStep = Callable[[Tensor, Sizes], Any]
#: ``decode(raw outputs, image_sizes, orig_sizes) -> one prediction dict per image``
DecodeStep = Callable[[Any, Sizes, Sizes], Predictions]


def as_rgb_uint8(image: Any) -> np.ndarray:
    """``image`` as an ``H×W×3 uint8`` array; anything else is a ``ValueError``."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"predict expects H×W×3 uint8 RGB arrays, got dtype {image.dtype} shape {image.shape}"
        )
    return image


@torch.inference_mode()
def predict_loop(
    images: Sequence[np.ndarray],
    preprocess: Callable[[np.ndarray], dict[str, Any]],
    run: RunStep,
    decode: DecodeStep,
    batch_size: int = 16,
    device: torch.device | str | None = None,
) -> Predictions:
    """Predictions for ``H×W×3 uint8`` RGB images of any size (see the module docstring).

    Args:
        images: the images.
        preprocess: the evaluation pipeline on one image (``EvalPreprocess``): a dict with a
            normalised ``image`` ``[3, h, w]``.
        run: the raw-output step, given the batch (on ``device``) and each image's (h, w).
        decode: outputs → one dict per image, given each image's size in the batch and its
            original size.
        batch_size: images per ``run``.
        device: where the batch goes (``None``: stays on the CPU).
    """
    results: Predictions = []
    for start in range(0, len(images), batch_size):
        batch = collate([preprocess(as_rgb_uint8(im)) for im in images[start : start + batch_size]])
        x = batch["images"] if device is None else batch["images"].to(device)
        sizes = [tuple(s) for s in batch["image_sizes"].tolist()]
        origs = [tuple(s) for s in batch["orig_sizes"].tolist()]
        results += decode(run(x, sizes), sizes, origs)
    return results


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block, back in its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.inference_mode()
def predict_model(
    model: VisionModel,
    images: Sequence[np.ndarray] | Tensor,
    batch_size: int = 16,
    run: RunStep | None = None,
    decode: DecodeStep | None = None,
    preprocess: Callable[[np.ndarray], dict[str, Any]] | None = None,
    autocast: torch.dtype | None = None,
) -> Predictions:
    """:func:`predict_loop` with a PyTorch model in eval mode (``VisionModel.predict``).

    Args:
        model: the model; its ``preprocess`` is the evaluation pipeline.
        images: a list of ``H×W×3 uint8`` RGB arrays, a ``uint8`` tensor ``[B, 3, H, W]``
            (both go through the evaluation pipeline), or a float tensor ``[B, 3, H, W]``
            that is already normalised (run and decoded at its own size, as one batch).
        batch_size: images per forward pass.
        run: the raw-output step; by default ``model(images)``.
        decode: the decoding step; by default ``model.postprocess``.
        preprocess: the evaluation pipeline; by default ``model.preprocess`` (another one
            predicts at another size, :func:`visionkit.inference.options.preprocess_at`).
        autocast: run the raw-output step under ``torch.autocast`` in this dtype
            (``torch.float16`` / ``torch.bfloat16``, :mod:`visionkit.inference.device`); the
            weights stay as they are and the heads decode in float32.
    """
    run = _autocast(run or (lambda x, sizes: model(x)), autocast)
    decode = decode or model.postprocess
    preprocess = preprocess or model.preprocess
    device = next(model.parameters()).device
    with evaluating(model):
        if isinstance(images, Tensor) and images.is_floating_point():
            sizes = [tuple(images.shape[-2:])] * len(images)
            return decode(run(images.to(device), sizes), sizes, sizes)
        if isinstance(images, Tensor):
            images = [img.permute(1, 2, 0).cpu().numpy() for img in images]
        if preprocess is None:
            raise RuntimeError("this model has no preprocess pipeline; pass normalised tensors")
        return predict_loop(images, preprocess, run, decode, batch_size, device)


def _autocast(run: RunStep, dtype: torch.dtype | None) -> RunStep:
    """``run`` under ``torch.autocast(dtype)`` on the batch's device (``None``: ``run``)."""
    if dtype is None:
        return run

    def step(x: Tensor, sizes: Sizes) -> Any:
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            return run(x, sizes)

    return step
