"""Run an end-to-end ONNX export (``visionkit export --format onnx --nms``) with onnxruntime,
NumPy and Pillow only: no PyTorch, no visionkit.

This file imports nothing of visionkit, so it can be copied next to the model and run on a
machine with only ``pip install onnxruntime numpy pillow``::

    python standalone.py model.onnx photo.jpg [more.jpg | folder ...] [--batch-size 8]
    python -m visionkit.export.standalone model.onnx photo.jpg   # where visionkit is installed

It prints one JSON object per image (``{"image": path, "<head>": ...}``, floats to 5 decimals
as images.json), a batch at a time, the images ``visionkit predict`` finds (:func:`image_files`);
an unreadable image is skipped and named on stderr. From Python::

    predictor = Predictor("model.onnx")
    result = predictor.predict([rgb_uint8_array])[0]
    result["det"]["boxes"], result["det"]["scores"], result["det"]["names"]

From the file's ``visionkit.*`` metadata: the evaluation transforms (resizes: bilinear, half-pixel
centres, as albumentations' OpenCV ``INTER_LINEAR`` up to a pixel level; crops and constant pads
placed as albumentations places them: :data:`SUPPORTED`), the backbone's mean/std, zero padding at
the bottom/right to a multiple of 32 per batch; onnxruntime; boxes scaled back to the original
image (``original / content`` per axis, as ``VisionModel.predict``; content: the resized image less
its bottom/right padding). Semantic label maps are cropped to the content and resized to the
original by nearest neighbour (PyTorch resizes logits before the argmax: edges may differ).

Results per head, like ``VisionModel.predict`` with NumPy arrays: detection ``{"boxes": float32 [K,
4] xyxy, "scores": [K], "labels": int64 [K], "names": list or None}`` (plus ``"keypoints"`` float32
``[K, J, 3]``: x, y pixel indices scaled back about pixel centres, visibility probability;
``"embeddings"`` float32 ``[K, D]``, unit vectors, for such heads); classification ``{"label": int,
"name": str or None, "score": float, "top5": [{"label", "name", "score"}, ...] (best first),
"scores": float32 [C], "names": list or None}``; embedding ``{"embedding": float32 [D]}`` (a unit
vector); semantic ``{"mask": [H, W] at the original size, "names": list or None}``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

PREFIX = "visionkit."
SIZE_DIVISOR = 32
DETECTION_KEYS = ("boxes", "scores", "labels", "batch_index")
RESIZES = ("Resize", "LongestMaxSize", "SmallestMaxSize")
PADS = ("PadIfNeeded", "Pad")
SUPPORTED = (*RESIZES, "CenterCrop", *PADS)
#: image files read in folders: visionkit's data.batch.IMAGE_EXTENSIONS (a test keeps them equal)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: classes a classification result lists in ``top5``: visionkit's heads.classification.TOP_K
TOP_K = 5
#: folders never searched, in any case, nor hidden ones: a copy of visionkit's
#: data.batch.SYSTEM_FOLDERS (this file imports nothing of visionkit; a test keeps them equal)
SYSTEM_FOLDERS = frozenset(
    {"__MACOSX", "@eaDir", "#recycle", "$RECYCLE.BIN", "System Volume Information"}
)
POSITIONS = ("center", "top_left", "top_right", "bottom_left", "bottom_right")
#: label masks beside their images (a_mask.png by a.jpg) are left out of folders: a copy of
#: visionkit's inference.label_masks.MASK_SUFFIX, MASK_EXTENSIONS (a test keeps them equal)
MASK_SUFFIX, MASK_EXTENSIONS = "_mask", (".png", ".tif", ".tiff")


def read_image(path: str) -> np.ndarray:
    """An RGB ``H×W×3 uint8`` array of an image file (EXIF orientation applied), converted
    as visionkit reads images for training and ``model.predict``: transparency composited on
    black, 16-bit grey rescaled (65535 -> 255, rounded), 32-bit float grey from 0..1. A 16-bit
    PNG of low-bit data (12 bits, its ``sBIT`` chunk) is rescaled from 65535 here, from 4095 by
    visionkit; Pillow 10.1 or later (``has_transparency_data``)."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        mode = image.mode
        if mode.startswith("I"):  # I;16*, I: 16-bit grey
            wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535).astype(np.uint64)
            grey = ((wide * 510 + 65535) // (2 * 65535)).astype(np.uint8)
        elif mode == "F":
            values = np.nan_to_num(np.asarray(image), nan=0.0, posinf=1.0, neginf=0.0)
            grey = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
        elif mode in ("RGBA", "LA", "PA", "P", "L", "RGB") and image.has_transparency_data:
            rgba = np.asarray(image.convert("RGBA")).astype(np.uint16)
            return ((rgba[:, :, :3] * rgba[:, :, 3:] + 127) // 255).astype(np.uint8)
        else:
            return np.asarray(image.convert("RGB"))
        return np.repeat(grey[:, :, None], 3, axis=2)


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
        raise ValueError(f"preprocess step {step}: max_size must be one number, got {size!r}")
    scale = size / (max(h, w) if name == "LongestMaxSize" else min(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def step_problem(step: dict[str, Any]) -> str | None:
    """Why this predictor cannot run an evaluation ``step``, or ``None`` when it can."""
    name = step.get("name")
    if name not in SUPPORTED:
        return f"not supported here (supported: {', '.join(SUPPORTED)})"
    if float(step.get("p", 1.0)) < 1:
        return f"p: {step['p']} applies it at random"
    if name in (*PADS, "CenterCrop") and int(step.get("border_mode", 0)) != 0:
        return f"border_mode {step['border_mode']}: only the constant fill (0) is supported"
    position = step.get("pad_position" if name == "CenterCrop" else "position", "center")
    if name != "Pad" and position not in POSITIONS:
        return f"position {position!r}: one of {', '.join(POSITIONS)} is supported"
    return None


def split_pad(total: int, position: str, vertical: bool) -> tuple[int, int]:
    """``(before, after)`` of ``total`` pixels of padding on one axis (``vertical``: top /
    bottom, else left / right), as albumentations' ``adjust_padding_by_position`` places them:
    ``center`` splits it (the odd pixel after); otherwise the image stays at the side
    ``position`` names (``top_left``: all the padding after, on both axes)."""
    if position == "center":
        return total // 2, total - total // 2
    side = position.split("_")[0 if vertical else 1]
    return (total, 0) if side in ("bottom", "right") else (0, total)


def pad_amounts(step: dict[str, Any], h: int, w: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` padding of a ``PadIfNeeded`` / ``Pad`` step (or the
    padding of ``CenterCrop`` with ``pad_if_needed``) on an ``h × w`` image."""
    name = step["name"]
    if name == "Pad":
        pad = step.get("padding", 0)
        if isinstance(pad, (int, float)):
            return (int(pad),) * 4
        pad = [int(v) for v in pad]
        if len(pad) == 2:  # (x, y)
            return pad[1], pad[1], pad[0], pad[0]
        left, top, right, bottom = pad
        return top, bottom, left, right

    def total(size: int, minimum: Any, divisor: Any) -> int:
        if minimum is not None:
            return max(0, int(minimum) - size)
        if divisor is not None and size % int(divisor):
            return int(divisor) - size % int(divisor)
        return 0

    if name == "CenterCrop":
        position = step.get("pad_position", "center")
        dh = total(h, step["height"], None) if step.get("pad_if_needed") else 0
        dw = total(w, step["width"], None) if step.get("pad_if_needed") else 0
    else:
        position = step.get("position", "center")
        dh = total(h, step.get("min_height"), step.get("pad_height_divisor"))
        dw = total(w, step.get("min_width"), step.get("pad_width_divisor"))
    return (*split_pad(dh, position, True), *split_pad(dw, position, False))


def pad_constant(image: np.ndarray, pads: Sequence[int], fill: Any) -> np.ndarray:
    """``image`` padded by ``(top, bottom, left, right)`` pixels of ``fill`` (a number or
    one per channel)."""
    top, bottom, left, right = pads
    if not any(pads):
        return image
    h, w, c = image.shape
    out = np.empty((h + top + bottom, w + left + right, c), image.dtype)
    out[...] = np.clip(np.broadcast_to(np.asarray(fill, np.float64), (c,)), 0, 255)
    out[top : top + h, left : left + w] = image
    return out


def apply_steps(
    image: np.ndarray, steps: Sequence[dict[str, Any]]
) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` (``H×W×3 uint8``) through the evaluation ``steps``, and the ``(h, w)`` of its
    content from the top-left corner: the output less its bottom/right padding (visionkit's
    ``data.transforms.content_size``: padding at the top/left shifts the content, a resize or
    a crop scales it)."""
    h, w = image.shape[:2]
    for step in steps:
        if reason := step_problem(step):
            raise ValueError(f"evaluation transform {step}: {reason}")
        in_h, in_w = image.shape[:2]
        name = step["name"]
        if name in RESIZES:
            image = resize_bilinear(image, *target_size(step, in_h, in_w))
        elif name in PADS:
            pads = pad_amounts(step, in_h, in_w)
            image = pad_constant(image, pads, step.get("fill", 0))
            h, w = h + pads[0], w + pads[2]
        else:  # CenterCrop, after its padding when pad_if_needed
            height, width = int(step["height"]), int(step["width"])
            if not step.get("pad_if_needed") and (height > in_h or width > in_w):
                raise ValueError(
                    f"evaluation transform {step}: the crop {height}x{width} is larger than "
                    f"the image {in_h}x{in_w} (albumentations refuses it too)"
                )
            image = pad_constant(image, pad_amounts(step, in_h, in_w), step.get("fill", 0))
            top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
            image = image[top : top + height, left : left + width]
        out_h, out_w = image.shape[:2]
        if name not in PADS and (in_h, in_w) != (out_h, out_w):
            h, w = round(h * out_h / in_h), round(w * out_w / in_w)
        h, w = min(h, out_h), min(w, out_w)
    return image, (h, w)


def preprocess_with_size(
    image: np.ndarray, steps: Sequence[dict[str, Any]], mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, tuple[int, int]]:
    """``image`` (``H×W×3 uint8`` RGB) through the evaluation ``steps``
    (:func:`apply_steps`), normalised with ``mean`` and ``std`` (in pixel levels, 0-255):
    ``float32 [3, h, w]``, and the ``(h, w)`` of its content (the graph's ``image_sizes``)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got {image.dtype} {image.shape}")
    image, content = apply_steps(image, steps)
    return ((image.astype(np.float32) - mean) / std).transpose(2, 0, 1), content


def preprocess(
    image: np.ndarray, steps: Sequence[dict[str, Any]], mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """The normalised ``float32 [3, h, w]`` of :func:`preprocess_with_size`."""
    return preprocess_with_size(image, steps, mean, std)[0]


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
            raise ImportError("standalone.py needs onnxruntime: pip install onnxruntime") from None
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: file does not exist")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as err:  # onnxruntime's InvalidProtobuf, Fail, ...: Exception's subclasses
            raise ValueError(
                f"{path}: not an ONNX model onnxruntime can read ({str(err).strip()[:200]}); "
                "give the .onnx file of: visionkit export --format onnx --nms"
            ) from None
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
        self.outputs, self.kinds = e2e["outputs"], e2e["kinds"]
        self.class_names = e2e.get("class_names", {})
        self.steps = self.metadata.get("preprocess", [])
        for step in self.steps:
            if reason := step_problem(step):
                raise ValueError(
                    f"{path}: evaluation transform {step}: {reason}; use visionkit's own predictor"
                )
        self.mean = np.asarray(self.metadata["mean"], np.float32) * 255.0
        self.std = np.asarray(self.metadata["std"], np.float32) * 255.0
        self.dtype = np.float16 if self.metadata.get("half") else np.float32

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """The normalised ``float32 [3, h, w]`` input of one ``H×W×3 uint8`` RGB image."""
        return preprocess(image, self.steps, self.mean, self.std)

    def run(
        self, inputs: Sequence[np.ndarray], sizes: Sequence[Sequence[int]] | None = None
    ) -> dict[str, np.ndarray]:
        """The graph's outputs by name for preprocessed images (padded here into one batch);
        ``sizes``: each image's content ``(h, w)`` (default: its whole size)."""
        h = math.ceil(max(x.shape[1] for x in inputs) / SIZE_DIVISOR) * SIZE_DIVISOR
        w = math.ceil(max(x.shape[2] for x in inputs) / SIZE_DIVISOR) * SIZE_DIVISOR
        batch = np.zeros((len(inputs), 3, h, w), self.dtype)
        for i, x in enumerate(inputs):
            batch[i, :, : x.shape[1], : x.shape[2]] = x
        sizes = np.array([x.shape[1:] for x in inputs] if sizes is None else sizes, np.int64)
        names = [o["name"] for o in self.outputs]
        feed = {"images": batch, "image_sizes": sizes}
        # a graph that never reads image_sizes (classification only) may have lost that input
        feed = {i.name: feed[i.name] for i in self.session.get_inputs()}
        return dict(zip(names, self.session.run(names, feed), strict=True))

    def predict(
        self,
        images: Sequence[np.ndarray | str | os.PathLike] | np.ndarray | str | os.PathLike,
        batch_size: int = 8,
    ) -> list[dict[str, Any]]:
        """One dict per ``H×W×3 uint8`` RGB image or image file (a list, or one), keyed by
        head name (see the module); files are read with :func:`read_image`."""
        one = isinstance(images, str | os.PathLike) or getattr(images, "ndim", 0) == 3
        images = [images] if one else images
        images = [i if isinstance(i, np.ndarray) else read_image(os.fspath(i)) for i in images]
        results: list[dict[str, Any]] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            ready = [preprocess_with_size(m, self.steps, self.mean, self.std) for m in chunk]
            inputs, sizes = zip(*ready, strict=True)
            raw = self.run(inputs, sizes)
            for i, (image, size) in enumerate(zip(chunk, sizes, strict=True)):
                orig = image.shape[:2]
                results.append({h: self._head(h, raw, i, size, orig) for h in self.kinds})
        return results

    def _head(self, head: str, raw: dict[str, np.ndarray], i: int, size: Any, orig: Any) -> Any:
        names = self.class_names.get(head)
        kind = self.kinds[head]
        if kind == "classification":
            scores = raw[f"{head}.scores"][i].astype(np.float32)
            best = np.argsort(-scores, kind="stable")[:TOP_K]  # ties in index order, as argmax
            top = [
                {"label": int(k), "name": names[k] if names else None, "score": float(scores[k])}
                for k in best
            ]
            return {**top[0], "top5": top, "scores": scores, "names": names}
        if kind == "embedding":
            return {"embedding": raw[f"{head}.embedding"][i].astype(np.float32)}
        if kind == "semantic":
            mask = raw[f"{head}.mask"][i, : size[0], : size[1]]
            ys = np.minimum((np.arange(orig[0]) * size[0] / orig[0]).astype(np.int64), size[0] - 1)
            xs = np.minimum((np.arange(orig[1]) * size[1] / orig[1]).astype(np.int64), size[1] - 1)
            return {"mask": mask[ys][:, xs], "names": names}
        mine = raw[f"{head}.batch_index"] == i
        scale = np.array([orig[1] / size[1], orig[0] / size[0]] * 2, np.float32)  # x, y, x, y
        labels = raw[f"{head}.labels"][mine].astype(np.int64)
        boxes = raw[f"{head}.boxes"][mine].astype(np.float32) * scale
        edges = np.array([orig[1], orig[0]] * 2, np.float32)
        result: dict[str, Any] = {
            "boxes": np.clip(boxes, 0, edges),  # on the image, not a float's rounding past it
            "scores": raw[f"{head}.scores"][mine].astype(np.float32),
            "labels": labels,
            "names": [names[k] for k in labels] if names else None,
        }
        for out in self.outputs:  # per-detection extras: keypoints, embeddings
            key = out["key"]
            if out["head"] != head or key in DETECTION_KEYS or out["shape"][:1] != ["N"]:
                continue
            value = raw[out["name"]][mine].astype(np.float32)
            if key == "keypoints":  # x, y: pixel indices, scaled about pixel centres
                value[..., :2] = (value[..., :2] + 0.5) * scale[:2] - 0.5
            result[key] = value
        return result


def _plain(value: Any) -> Any:
    """``value`` with lists for arrays, its floats rounded to 5 decimals (as images.json)."""
    value = value.tolist() if isinstance(value, np.ndarray) else value
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return {k: _plain(v) for k, v in value.items()} if isinstance(value, dict) else value


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    """A prediction with lists instead of arrays (a mask as its class pixel counts)."""
    out: dict[str, Any] = {}
    for head, pred in result.items():
        if "mask" in pred:
            values, counts = np.unique(pred["mask"], return_counts=True)
            pixels = {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}
            shape = list(pred["mask"].shape)
            out[head] = {"mask_shape": shape, "pixels": pixels, "names": pred["names"]}
        else:
            out[head] = _plain(pred)
    return out


def is_label_mask(name: str, names: set[str]) -> bool:
    """Whether the file ``name`` is the label mask of an image in its folder (``names``, in
    lower case): ``<stem>_mask.png`` (``.tif``, ``.tiff``) beside ``<stem>.<image suffix>``."""
    stem, ext = os.path.splitext(name.casefold())
    base = stem.removesuffix(MASK_SUFFIX)
    mask = base not in ("", stem) and ext in MASK_EXTENSIONS
    return mask and any(base + e in names for e in IMAGE_EXTENSIONS)


def image_files(inputs: Sequence[str], masks: list[str] | None = None) -> list[str]:
    """The image files of ``inputs`` as ``visionkit predict`` finds them, each once (a file named
    twice, or inside a folder given too): a file as given, a folder's images (by suffix, in
    sub-folders and linked folders, each real folder once; sorted by path parts: ``a/1.jpg``
    before ``a-b.jpg``; hidden names, :data:`SYSTEM_FOLDERS` and label masks beside their
    images left out, the latter added to ``masks``)."""
    skip = {name.casefold() for name in SYSTEM_FOLDERS}
    files: dict[str, str] = {}  # absolute path: the path as found
    masks = [] if masks is None else masks
    for item in inputs:
        if not os.path.isdir(item):
            files.setdefault(os.path.abspath(item), item)
            continue
        found, seen = [], set()
        for folder, subs, names in os.walk(item, followlinks=True):
            if os.path.realpath(folder) in seen:  # reached again through a link: not read again
                subs[:], names = [], []
            seen.add(os.path.realpath(folder))
            subs[:] = [d for d in subs if not d.startswith(".") and d.casefold() not in skip]
            listed = {n.casefold() for n in names}
            for n in names:
                if n.lower().endswith(IMAGE_EXTENSIONS) and n[0] != ".":
                    (masks if is_label_mask(n, listed) else found).append(os.path.join(folder, n))
        for path in sorted(found, key=lambda path: path.split(os.sep)):
            files.setdefault(os.path.abspath(path), path)
    masks[:] = [m for m in dict.fromkeys(masks) if os.path.abspath(m) not in files]
    return list(files.values())


def read_batch(paths: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    """The readable ``paths`` and their images; each file that is not is named on stderr."""
    from PIL import Image

    kept, images = [], []
    for path in paths:
        try:
            images.append(read_image(path))
            kept.append(path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            print(f"skipped {path}: {err}", file=sys.stderr)
    return kept, images


def main(argv: Sequence[str] | None = None) -> int:
    """``python standalone.py model.onnx image|folder [...]``: one JSON line per image."""
    parser = argparse.ArgumentParser(
        description="Predict with an end-to-end visionkit ONNX export (onnxruntime, numpy and "
        "Pillow only); prints one JSON object per image. Unreadable images are skipped, each "
        "named on stderr; the exit status is 1 when none could be read."
    )
    parser.add_argument("model", help="the .onnx file written by visionkit export --nms")
    parser.add_argument(
        "images", nargs="+", help="image files or folders (their images, sub-folders included)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="images read and run at once (default 8)"
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"argument --batch-size: expected a whole number >= 1, got {args.batch_size}")
    try:
        predictor = Predictor(args.model)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    masks: list[str] = []
    files = image_files(args.images, masks)
    if masks:
        said = f"(<name>{MASK_SUFFIX}.png by <name>.jpg), e.g. {masks[0]}: name one to read it"
        print(f"left out {len(masks)} label mask(s) beside their images {said}", file=sys.stderr)
    if not files:
        suffixes = ", ".join(IMAGE_EXTENSIONS)
        print(f"error: no images ({suffixes}) in {', '.join(args.images)}", file=sys.stderr)
        return 1
    done = 0
    for start in range(0, len(files), args.batch_size):
        paths, images = read_batch(files[start : start + args.batch_size])
        for path, result in zip(paths, predictor.predict(images, args.batch_size), strict=True):
            print(json.dumps({"image": path, **to_json(result)}), flush=True)
        done += len(paths)
    if done < len(files):
        print(f"{len(files) - done} of {len(files)} images could not be read", file=sys.stderr)
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
