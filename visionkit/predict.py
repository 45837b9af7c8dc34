"""Predict on image files, folders and globs; draw the predictions; write ``predictions.json``.

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
from torchvision.utils import draw_bounding_boxes

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


def draw_predictions(image: np.ndarray, prediction: dict[str, Any]) -> np.ndarray:
    """The image (``H×W×3 uint8``) with every head's predictions drawn on it."""
    canvas = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    for result in prediction.values():
        if "boxes" in result and len(result["boxes"]):
            names = result.get("names") or [str(int(label)) for label in result["labels"]]
            captions = [f"{n} {float(s):.2f}" for n, s in zip(names, result["scores"], strict=True)]
            colours = [PALETTE[int(label) % len(PALETTE)] for label in result["labels"]]
            canvas = draw_bounding_boxes(
                canvas, result["boxes"].float().cpu(), captions, colors=colours, width=2
            )
        elif "label" in result:
            h, w = canvas.shape[-2:]
            name = result.get("name") or str(result["label"])
            caption = f"{name} {float(result['scores'][result['label']]):.2f}"
            frame = torch.tensor([[0, 0, w - 1, h - 1]], dtype=torch.float)
            colour = PALETTE[int(result["label"]) % len(PALETTE)]
            canvas = draw_bounding_boxes(canvas, frame, [caption], colors=[colour], width=2)
    return canvas.permute(1, 2, 0).numpy()


def to_json(path: Path, prediction: dict[str, Any], category_ids: Sequence[int]) -> dict[str, Any]:
    """One image's predictions as plain JSON types (boxes in COCO xywh, category ids of the
    training file)."""
    out: dict[str, Any] = {"file": str(path)}
    for head, result in prediction.items():
        if "boxes" in result:
            boxes = result["boxes"].float().cpu().reshape(-1, 4)
            xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
            labels = [int(label) for label in result["labels"]]
            out[head] = [
                {
                    "bbox": [round(float(v), 2) for v in box],
                    "score": round(float(score), 5),
                    "label": label,
                    "category_id": int(category_ids[label]) if category_ids else label,
                    "name": (result.get("names") or [None] * len(labels))[i],
                }
                for i, (box, score, label) in enumerate(
                    zip(xywh, result["scores"], labels, strict=True)
                )
            ]
        elif "label" in result:
            out[head] = {
                "label": int(result["label"]),
                "name": result.get("name"),
                "score": round(float(result["scores"][result["label"]]), 5),
            }
    return out


def predict_files(
    model: VisionModel | str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    batch_size: int = 8,
    draw: bool = True,
    progress: bool = True,
) -> Path:
    """Predict on every image in ``inputs``; write drawn images and ``predictions.json``.

    Returns the path of ``predictions.json``.
    """
    from visionkit.factory import load

    if not isinstance(model, VisionModel):
        model = load(model)
    paths = expand_inputs(inputs)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    category_ids = model.meta.get("category_ids") or []
    records = []
    bar = _progress(len(paths), progress)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = [read_image(p) for p in chunk]
        for path, image, prediction in zip(chunk, images, model.predict(images), strict=True):
            records.append(to_json(path, prediction, category_ids))
            if draw:
                from PIL import Image

                drawn = draw_predictions(image, prediction)
                Image.fromarray(drawn).save(out_dir / f"{path.stem}_pred.png")
        bar.update(len(chunk))
    bar.close()
    target = out_dir / "predictions.json"
    target.write_text(json.dumps(records, indent=1))
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
