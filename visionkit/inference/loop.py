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

from visionkit.choices import DEFAULT_PREDICT_BATCH_SIZE
from visionkit.data.batch import collate
from visionkit.data.io import composite_on_black

if TYPE_CHECKING:  # models.model delegates its predict here: no import at run time
    from visionkit.models.model import VisionModel

Sizes = list[tuple[int, ...]]
Predictions = list[dict[str, Any]]
#: ``run(images [B, 3, H, W], image_sizes) -> raw outputs``
RunStep = Callable[[Tensor, Sizes], Any]
#: ``decode(raw outputs, image_sizes, orig_sizes) -> one prediction dict per image``
DecodeStep = Callable[[Any, Sizes, Sizes], Predictions]


def as_rgb_uint8(image: Any) -> np.ndarray:
    """``image`` as an ``H×W×3 uint8`` RGB array: a grey ``H×W`` or ``H×W×1`` array is
    repeated into three channels and an ``H×W×4`` (RGBA) array is composited on black, as
    :func:`~visionkit.data.io.read_image` does for a file with transparency (the same
    pixels whether a picture is given as a file or an array); anything else is a
    ``ValueError``. A float array in 0..1 is scaled by 255, as a float tensor is
    (:func:`tensor_images`)."""
    image = np.asarray(image)
    if image.size == 0 or image.ndim < 2:
        raise ValueError(f"predict got an empty image or no image: an array of shape {image.shape}")
    if np.issubdtype(image.dtype, np.floating) and image.min() >= 0 and image.max() <= 1:
        image = (image.astype(np.float32) * 255).round().astype(np.uint8)
    if image.dtype != np.uint8:
        raise ValueError(
            f"predict expects uint8 RGB arrays (H×W×3, or grey H×W, or RGBA H×W×4), got dtype "
            f"{image.dtype} shape {image.shape} with values in [{image.min():.3g}, "
            f"{image.max():.3g}]; {_to_uint8_hint(image)}"
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim == 3 and image.shape[2] == 4:  # RGBA
        image = composite_on_black(image)
    if image.ndim == 3 and image.shape[2] == 1:  # grey
        image = np.repeat(image, 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"predict expects uint8 RGB arrays (H×W×3, or grey H×W, or RGBA H×W×4), got shape "
            f"{image.shape}"
        )
    return image


def _to_uint8_hint(image: np.ndarray) -> str:
    """How the values of an array that is not ``uint8`` become it, as said to the user."""
    if np.issubdtype(image.dtype, np.number) and image.min() >= 0 and image.max() <= 255:
        return "values in 0..255 become uint8 with x.astype(np.uint8)"
    if image.dtype == np.uint16:  # cv2.imread(..., IMREAD_UNCHANGED) of a 16-bit PNG
        return (
            "16-bit values become uint8 with (x / 257).round().astype(np.uint8), as a 16-bit "
            "image file is decoded"
        )
    return "floats in 0..1 are read as RGB scaled by 255"


def tensor_images(images: Tensor) -> list[np.ndarray]:
    """A tensor image ``[3, H, W]`` or batch ``[B, 3, H, W]`` of RGB as ``H×W×3 uint8``
    arrays: ``uint8`` as it is, a float tensor read as torchvision and Ultralytics read it
    (values in 0..1, scaled by 255). A float tensor outside 0..1, e.g. one normalised already,
    is a ``ValueError``: ``model.postprocess(model(x), sizes, sizes)`` decodes such a batch."""
    shape = tuple(images.shape)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != 3:
        order = {3: "2, 0, 1", 4: "0, 3, 1, 2"}.get(len(shape)) if shape[-1:] == (3,) else None
        channels_last = f" (channels last: x.permute({order}) puts them first)" if order else ""
        raise ValueError(
            f"predict expects a tensor image [3, H, W] or batch [B, 3, H, W] of RGB, got shape "
            f"{shape}{channels_last}"
        )
    images = images.detach().cpu()
    if not images.numel():
        return []
    if images.is_floating_point():
        low, high = (float(v) for v in images.aminmax())
        if low < 0 or high > 1:
            raise ValueError(
                f"predict reads a float tensor as RGB in 0..1 (as torchvision and Ultralytics "
                f"do), got values in [{low:.3g}, {high:.3g}]; a uint8 tensor is read in 0..255, "
                "and a batch normalised already is decoded by "
                "model.postprocess(model(x), sizes, sizes)"
            )
        images = (images.float() * 255).round().to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise ValueError(f"predict expects a uint8 or float tensor, got {images.dtype}")
    return list(images.permute(0, 2, 3, 1).numpy())


@torch.no_grad()  # not inference_mode: the results are tensors a user may change in place
def predict_loop(
    images: Sequence[np.ndarray],
    preprocess: Callable[[np.ndarray], dict[str, Any]],
    run: RunStep,
    decode: DecodeStep,
    batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
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
        dtype: the batch's dtype, the model's (``None``: float32, as preprocessed).
    """
    results: Predictions = []
    for start in range(0, len(images), batch_size):
        batch = collate([preprocess(as_rgb_uint8(im)) for im in images[start : start + batch_size]])
        x = batch["images"].to(device=device, dtype=dtype)
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


@torch.no_grad()  # not inference_mode: the results are tensors a user may change in place
def predict_model(
    model: VisionModel,
    images: Sequence[np.ndarray] | Tensor,
    batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
    run: RunStep | None = None,
    decode: DecodeStep | None = None,
    preprocess: Callable[[np.ndarray], dict[str, Any]] | None = None,
    autocast: torch.dtype | None = None,
) -> Predictions:
    """:func:`predict_loop` with a PyTorch model in eval mode (``VisionModel.predict``).

    Args:
        model: the model; its ``preprocess`` is the evaluation pipeline.
        images: ``H×W×3 uint8`` RGB arrays (:func:`as_rgb_uint8`), or a tensor image or
            batch (:func:`tensor_images`: ``uint8``, or float in 0..1).
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
    weight = next(model.parameters())  # the batch goes where the model is, in its dtype;
    on_meta = weight.device.type == "meta"  # OnnxPredictor's weightless one: stays on the CPU
    device, dtype = (None, None) if on_meta else (weight.device, weight.dtype)
    if isinstance(images, Tensor):
        images = tensor_images(images)
    if preprocess is None:
        raise RuntimeError(
            "this model has no preprocess pipeline: decode normalised batches with "
            "model.postprocess(model(x), sizes, sizes)"
        )
    with evaluating(model):
        return predict_loop(images, preprocess, run, decode, batch_size, device, dtype)


def _autocast(run: RunStep, dtype: torch.dtype | None) -> RunStep:
    """``run`` under ``torch.autocast(dtype)`` on the batch's device (``None``: ``run``)."""
    if dtype is None:
        return run

    def step(x: Tensor, sizes: Sizes) -> Any:
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            return run(x, sizes)

    return step
