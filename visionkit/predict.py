"""Predict on image files, folders and globs; draw the predictions; write ``predictions.json``
(COCO results) and ``images.json`` (image-level results).

>>> from visionkit.predict import predict_files
>>> predict_files("runs/quickstart/checkpoints/best.ckpt", ["photos/"], "out/")  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from visionkit.data.base import IMAGE_EXTENSIONS
from visionkit.data.io import read_image
from visionkit.errors import DataError
from visionkit.model import VisionModel

PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]  # fmt: skip


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files, folders (their images, recursively, sorted) and glob patterns → image paths."""
    paths: list[Path] = []
    missing = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            paths.append(path)
        elif any(c in text for c in "*?["):
            paths += sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        else:
            missing.append(text)
    if missing:
        raise DataError("inputs not found:", missing)
    if not paths:
        raise DataError(f"no images found in {', '.join(map(str, inputs))}")
    return paths


def colour_of(label: int) -> tuple[int, int, int]:
    """The drawing colour of a class label (the same in every picture)."""
    return PALETTE[int(label) % len(PALETTE)]


def draw_predictions(image: np.ndarray, prediction: dict[str, Any]) -> np.ndarray:
    """The image (``H×W×3 uint8``) with every head's predictions drawn on it: semantic masks
    and instance masks filled in class colours, boxes with class names and scores, the image
    class in a frame, and a legend strip below the image for semantic classes."""
    canvas = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()
    legend: dict[str, tuple[int, int, int]] = {}
    for result in prediction.values():
        if "mask" in result:  # semantic: label map [H, W], 0 = background
            mask = result["mask"].cpu()
            present = [int(c) for c in mask.unique().tolist() if int(c) != 0]
            names = result.get("names") or [str(c) for c in range(max(present, default=0) + 1)]
            if present:
                masks = torch.stack([mask == c for c in present])
                canvas = draw_segmentation_masks(
                    canvas, masks, alpha=0.45, colors=[colour_of(c) for c in present]
                )
            legend.update({names[c]: colour_of(c) for c in present})
    for result in prediction.values():
        if "boxes" in result and len(result["boxes"]):
            names = result.get("names") or [str(int(label)) for label in result["labels"]]
            colours = [colour_of(label) for label in result["labels"]]
            if result.get("masks") is not None and len(result["masks"]):
                canvas = draw_segmentation_masks(
                    canvas, result["masks"].cpu().bool(), alpha=0.45, colors=colours
                )
            captions = [f"{n} {float(s):.2f}" for n, s in zip(names, result["scores"], strict=True)]
            canvas = draw_bounding_boxes(
                canvas, result["boxes"].float().cpu(), captions, colors=colours, width=2
            )
        elif "label" in result:
            h, w = canvas.shape[-2:]
            name = result.get("name") or str(result["label"])
            caption = f"{name} {float(result['scores'][result['label']]):.2f}"
            frame = torch.tensor([[0, 0, w - 1, h - 1]], dtype=torch.float)
            colour = colour_of(result["label"])
            canvas = draw_bounding_boxes(canvas, frame, [caption], colors=[colour], width=2)
    drawn = canvas.permute(1, 2, 0).numpy()
    return _with_legend(drawn, legend) if legend else drawn


def _with_legend(image: np.ndarray, legend: dict[str, tuple[int, int, int]]) -> np.ndarray:
    """``image`` with a strip below it: a coloured square and the name of each class."""
    from PIL import Image, ImageDraw

    row = 14
    strip = Image.new("RGB", (image.shape[1], row * len(legend) + 4), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for i, (name, colour) in enumerate(legend.items()):
        y = 2 + i * row
        draw.rectangle([4, y + 1, 14, y + 11], fill=colour)
        draw.text((20, y), name, fill=(255, 255, 255))
    return np.concatenate([image, np.asarray(strip)], axis=0)


def coco_results(
    image_id: int, prediction: dict[str, Any], category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """One image's box (and instance-mask) predictions as COCO results entries: ``image_id``,
    ``category_id`` of the training file, ``bbox`` in xywh, ``score``, the ``head`` and class
    ``name``, and ``segmentation`` as RLE when the head predicts masks."""
    from pycocotools import mask as mask_utils

    entries = []
    for head, result in prediction.items():
        if "boxes" not in result:
            continue
        boxes = result["boxes"].float().cpu().reshape(-1, 4)
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
        labels = [int(label) for label in result["labels"]]
        names = result.get("names") or [None] * len(labels)
        masks = result.get("masks")
        for i, (box, score, label) in enumerate(zip(xywh, result["scores"], labels, strict=True)):
            entry = {
                "image_id": int(image_id),
                "category_id": int(category_ids[label]) if category_ids else label,
                "bbox": [round(float(v), 2) for v in box],
                "score": round(float(score), 5),
                "head": head,
                "name": names[i],
            }
            if masks is not None:
                rle = mask_utils.encode(np.asfortranarray(masks[i].cpu().numpy().astype(np.uint8)))
                entry["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
            entries.append(entry)
    return entries


def image_record(
    image_id: int, path: Path, image: np.ndarray, prediction: dict[str, Any], out_dir: Path
) -> dict[str, Any]:
    """One image's entry of ``images.json``: id, file, size, and each image-level result
    (class label, name and score; the file name of a semantic label PNG)."""
    from PIL import Image

    record: dict[str, Any] = {
        "id": int(image_id),
        "file_name": str(path),
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
    }
    for head, result in prediction.items():
        if "label" in result:
            record[head] = {
                "label": int(result["label"]),
                "name": result.get("name"),
                "score": round(float(result["scores"][result["label"]]), 5),
            }
        elif "mask" in result:
            png = out_dir / f"{path.stem}_{head}.png"
            Image.fromarray(result["mask"].cpu().numpy().astype(np.uint8)).save(png)
            record[head] = {"label_png": png.name}
    return record


def predict_files(
    model: VisionModel | str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    batch_size: int = 8,
    draw: bool = True,
    progress: bool = True,
) -> Path:
    """Predict on every image in ``inputs`` and write, in ``output_dir``:

    - ``predictions.json``: the box and instance-mask predictions as a COCO results list
      (``image_id``, ``category_id``, ``bbox`` xywh, ``score``, RLE ``segmentation`` for
      masks, plus ``head`` and ``name``), which ``COCO.loadRes`` reads as it is;
    - ``images.json``: one entry per image (``id`` — the ``image_id`` above —, ``file_name``,
      ``height``, ``width``) with the image-level results: class label, name and score;
      the file name of the label PNG of a semantic head;
    - ``<stem>_<head>.png``: each semantic head's label map (pixel value = class index);
    - ``<stem>_pred.png``: the image with the predictions drawn (unless ``draw=False``).

    Image ids are the 1-based positions in the sorted input list. Returns the path of
    ``predictions.json``.
    """
    from visionkit.factory import load

    if not isinstance(model, VisionModel):
        model = load(model)
    paths = expand_inputs(inputs)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    category_ids = model.meta.get("category_ids") or []
    results: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    bar = _progress(len(paths), progress)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = [read_image(p) for p in chunk]
        predictions = model.predict(images)
        for offset, (path, image, prediction) in enumerate(
            zip(chunk, images, predictions, strict=True)
        ):
            image_id = start + offset + 1
            results += coco_results(image_id, prediction, category_ids)
            records.append(image_record(image_id, path, image, prediction, out_dir))
            if draw:
                from PIL import Image

                drawn = draw_predictions(image, prediction)
                Image.fromarray(drawn).save(out_dir / f"{path.stem}_pred.png")
        bar.update(len(chunk))
    bar.close()
    (out_dir / "images.json").write_text(json.dumps(records, indent=1))
    target = out_dir / "predictions.json"
    target.write_text(json.dumps(results, indent=1))
    return target


def _progress(total: int, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with lightning
        enabled = False
    if enabled:
        return tqdm(total=total, desc="predict", unit="img")

    class _Silent:
        def update(self, n: int) -> None: ...

        def close(self) -> None: ...

    return _Silent()
