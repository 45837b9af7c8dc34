"""Run an end-to-end ONNX export (``visionkit export --format onnx --nms``) with onnxruntime,
NumPy and Pillow only: no PyTorch, no visionkit.

This file imports nothing of visionkit, so it can be copied next to the model and run on a
machine with only ``pip install onnxruntime numpy pillow``::

    python standalone.py model.onnx photo.jpg [more.jpg ...] [--batch-size 8]
    python -m visionkit.export.standalone model.onnx photo.jpg   # where visionkit is installed

It prints one JSON object per image (``{"image": path, "<head>": ...}``). From Python::

    predictor = Predictor("model.onnx")
    result = predictor.predict([rgb_uint8_array])[0]
    result["det"]["boxes"], result["det"]["scores"], result["det"]["names"]

What it does, from the file's ``visionkit.*`` metadata: the evaluation transforms
(``Resize``, ``LongestMaxSize``, ``SmallestMaxSize``: bilinear, half-pixel centres, like
OpenCV's ``INTER_LINEAR`` that albumentations uses, up to rounding of a pixel level), the
normalisation with the backbone's mean/std, zero padding at the bottom/right to a multiple of
32 per batch; then onnxruntime, and boxes scaled back to the original image
(``original / resized`` per axis, as ``VisionModel.predict``). Semantic label maps are cropped
to the resized image and resized to the original by nearest neighbour (PyTorch resizes the
logits bilinearly before the argmax, so pixels along class boundaries may differ).

Results per head, like ``VisionModel.predict`` with NumPy arrays: detection ``{"boxes":
float32 [K, 4] xyxy, "scores": [K], "labels": int64 [K], "names": list or None}``;
classification ``{"label": int, "name": str or None, "scores": float32 [C]}``; semantic
``{"mask": [H, W] at the original size, "names": list or None}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

PREFIX = "visionkit."
SIZE_DIVISOR = 32
RESIZES = ("Resize", "LongestMaxSize", "SmallestMaxSize")


def read_image(path: str) -> np.ndarray:
    """An RGB ``H×W×3 uint8`` array of an image file (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` (``H×W×C uint8``) resized bilinearly with half-pixel centres (OpenCV's
    ``INTER_LINEAR`` without its fixed-point rounding), rounded to uint8."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image.copy()

    def axis(out: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(out) + 0.5) * (size / out) - 0.5, 0, size - 1)
        low = np.floor(src).astype(np.int64)
        return low, np.minimum(low + 1, size - 1), (src - low).astype(np.float32)

    y0, y1, fy = axis(height, h)
    x0, x1, fx = axis(width, w)
    img = image.astype(np.float32)
    rows = img[y0] * (1 - fy)[:, None, None] + img[y1] * fy[:, None, None]
    out = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def target_size(step: dict[str, Any], h: int, w: int) -> tuple[int, int]:
    """The ``(H, W)`` a resize step gives an ``h × w`` image."""
    name = step.get("name")
    if name == "Resize":
        return int(step["height"]), int(step["width"])
    size = step.get("max_size")
    if not isinstance(size, (int, float)):
        raise ValueError(
            f"preprocess step {step}: max_size must be one number for prediction, got {size!r}"
        )
    scale = size / (max(h, w) if name == "LongestMaxSize" else min(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def preprocess(
    image: np.ndarray, steps: Sequence[dict[str, Any]], mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """``image`` (``H×W×3 uint8`` RGB) through the resize ``steps``, normalised with ``mean``
    and ``std`` (in pixel levels, 0-255): ``float32 [3, h, w]``."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got {image.dtype} {image.shape}")
    for step in steps:
        image = resize_bilinear(image, *target_size(step, *image.shape[:2]))
    return ((image.astype(np.float32) - mean) / std).transpose(2, 0, 1)


class Predictor:
    """Predictions of an end-to-end ONNX file, with onnxruntime on the CPU.

    Attributes:
        metadata: the file's ``visionkit.*`` metadata (JSON-decoded, prefix dropped).
        outputs: ``visionkit.end_to_end``'s output list (name, head, key, shape, dtype).
        class_names: head name → class names (or ``None``).
    """

    def __init__(self, path: str, providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        try:  # optional for visionkit (the onnx extra), so imported here
            ort = importlib.import_module("onnxruntime")
        except ImportError:
            raise ImportError(
                "the standalone predictor needs onnxruntime: pip install onnxruntime"
            ) from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {
            k[len(PREFIX) :]: json.loads(v) for k, v in props.items() if k.startswith(PREFIX)
        }
        if "end_to_end" not in self.metadata:
            raise ValueError(
                f"{path}: not an end-to-end visionkit export (no visionkit.end_to_end metadata); "
                "export with: visionkit export --format onnx --nms"
            )
        e2e = self.metadata["end_to_end"]
        self.outputs = e2e["outputs"]
        self.kinds = e2e["kinds"]
        self.class_names = e2e.get("class_names", {})
        self.steps = self.metadata.get("preprocess", [])
        for step in self.steps:
            if step.get("name") not in RESIZES:
                raise ValueError(
                    f"{path}: evaluation transform {step} is not supported here (supported: "
                    f"{', '.join(RESIZES)}); use visionkit's own predictor"
                )
        self.mean = np.asarray(self.metadata["mean"], np.float32) * 255.0
        self.std = np.asarray(self.metadata["std"], np.float32) * 255.0
        self.dtype = np.float16 if self.metadata.get("half") else np.float32

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """The normalised ``float32 [3, h, w]`` input of one ``H×W×3 uint8`` RGB image."""
        return preprocess(image, self.steps, self.mean, self.std)

    def run(self, inputs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs by name for preprocessed images (padded here into one batch)."""
        h = math.ceil(max(x.shape[1] for x in inputs) / SIZE_DIVISOR) * SIZE_DIVISOR
        w = math.ceil(max(x.shape[2] for x in inputs) / SIZE_DIVISOR) * SIZE_DIVISOR
        batch = np.zeros((len(inputs), 3, h, w), self.dtype)
        for i, x in enumerate(inputs):
            batch[i, :, : x.shape[1], : x.shape[2]] = x
        sizes = np.array([x.shape[1:] for x in inputs], np.int64)
        names = [o["name"] for o in self.outputs]
        values = self.session.run(names, {"images": batch, "image_sizes": sizes})
        return dict(zip(names, values, strict=True))

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 8) -> list[dict[str, Any]]:
        """One dict per ``H×W×3 uint8`` RGB image, keyed by head name (see the module)."""
        results: list[dict[str, Any]] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            inputs = [self.preprocess(np.asarray(image)) for image in chunk]
            raw = self.run(inputs)
            for i, (image, x) in enumerate(zip(chunk, inputs, strict=True)):
                orig, size = np.asarray(image).shape[:2], x.shape[1:]
                results.append({h: self._head(h, raw, i, size, orig) for h in self.kinds})
        return results

    def _head(
        self,
        head: str,
        raw: dict[str, np.ndarray],
        i: int,
        size: Sequence[int],
        orig: Sequence[int],
    ) -> dict[str, Any]:
        names = self.class_names.get(head)
        kind = self.kinds[head]
        if kind == "classification":
            scores = raw[f"{head}.scores"][i].astype(np.float32)
            label = int(scores.argmax())
            return {"label": label, "name": names[label] if names else None, "scores": scores}
        if kind == "semantic":
            mask = raw[f"{head}.mask"][i, : size[0], : size[1]]
            ys = np.minimum((np.arange(orig[0]) * size[0] / orig[0]).astype(np.int64), size[0] - 1)
            xs = np.minimum((np.arange(orig[1]) * size[1] / orig[1]).astype(np.int64), size[1] - 1)
            return {"mask": mask[ys][:, xs], "names": names}
        mine = raw[f"{head}.batch_index"] == i
        scale = np.array(
            [orig[1] / size[1], orig[0] / size[0], orig[1] / size[1], orig[0] / size[0]],
            np.float32,
        )
        labels = raw[f"{head}.labels"][mine].astype(np.int64)
        return {
            "boxes": raw[f"{head}.boxes"][mine].astype(np.float32) * scale,
            "scores": raw[f"{head}.scores"][mine].astype(np.float32),
            "labels": labels,
            "names": [names[k] for k in labels] if names else None,
        }


def _floats(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    """A prediction with lists instead of arrays (a mask as its class pixel counts)."""
    out: dict[str, Any] = {}
    for head, pred in result.items():
        if "mask" in pred:
            values, counts = np.unique(pred["mask"], return_counts=True)
            out[head] = {
                "mask_shape": list(pred["mask"].shape),
                "pixels": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
                "names": pred["names"],
            }
        else:
            out[head] = {
                k: (np.round(v.astype(np.float64), 4).tolist() if _floats(v) else _plain(v))
                for k, v in pred.items()
            }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python standalone.py model.onnx image [image ...]``: one JSON line per image."""
    parser = argparse.ArgumentParser(
        description="Predict with an end-to-end visionkit ONNX export (onnxruntime, numpy and "
        "Pillow only); prints one JSON object per image."
    )
    parser.add_argument("model", help="the .onnx file written by visionkit export --nms")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--batch-size", type=int, default=8, help="images per run (default 8)")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor(args.model)
        images = [read_image(p) for p in args.images]
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path, result in zip(args.images, predictor.predict(images, args.batch_size), strict=True):
        print(json.dumps({"image": path, **to_json(result)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
