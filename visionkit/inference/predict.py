"""Predict on image files, folders, globs and videos; draw the predictions
(:mod:`visionkit.inference.draw`); write ``predictions.json`` (COCO results) and
``images.json`` (image-level results), each atomically.

Output names mirror the inputs: each output is named after its input's path relative to the
common folder of all inputs, with the input's suffix kept (:func:`named_inputs`), so
``a/001.jpg``, ``b/001.jpg`` and ``001.png`` give ``a/001.jpg_pred.png``,
``b/001.jpg_pred.png`` and ``001.png_pred.png``: distinct, and the same on every run. Nothing
inside the output folder is ever read as input.

Videos (:data:`VIDEO_EXTENSIONS`) are read frame by frame with OpenCV (``cv2.VideoCapture``,
BGR converted to RGB); every frame, or every ``every``-th, is one image of the output, and the
drawn frames make ``<name>_pred.mp4``. Optional horizontal-flip test-time augmentation
(``tta="flip"``, :mod:`visionkit.inference.tta`).

>>> from visionkit.inference.predict import predict_files
>>> predict_files("runs/quickstart/checkpoints/best.ckpt", ["photos/"], "out/")  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import itertools
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.build.model import load
from visionkit.checkpoint import write_atomic
from visionkit.data.batch import IMAGE_EXTENSIONS, is_inside, list_files
from visionkit.data.io import read_image
from visionkit.errors import ConfigError, DataError
from visionkit.inference.draw import draw_predictions
from visionkit.inference.tta import TTA_MODES, predict_tta
from visionkit.models.model import VisionModel

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` is read as a video (by its extension, :data:`VIDEO_EXTENSIONS`)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def expand_inputs(
    inputs: Iterable[str | os.PathLike], output_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Files, folders (their images and videos, recursively, sorted) and glob patterns →
    paths, each once; see :func:`named_inputs`."""
    return [path for path, _ in named_inputs(inputs, output_dir)]


def named_inputs(
    inputs: Iterable[str | os.PathLike], output_dir: str | os.PathLike | None = None
) -> list[tuple[Path, str]]:
    """Files, folders (their images and videos, recursively, sorted) and glob patterns →
    ``(path, output name)`` in input order, a file named twice kept once.

    The output name is the path relative to the common folder of the inputs (a folder input
    counts as itself, a file as its folder, a glob as its folder before the first wildcard),
    with ``/`` separators and the suffix kept: unique (two files never share one) and
    stable (it depends on the inputs given, not on what else is in the folders).

    Nothing inside ``output_dir`` is read: folders and globs skip it (a glob's skipped files
    are logged), and a file or folder input inside it is refused.

    Raises:
        DataError: inputs not found, inputs inside ``output_dir``, or no image at all.
    """
    inputs = list(inputs)
    out = [Path(os.path.realpath(output_dir))] if output_dir is not None else []
    found: list[tuple[Path, Path]] = []  # (file, the folder it was found from)
    missing, inside, globbed_out = [], [], []
    known = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
    for item in inputs:
        text = str(item)
        path = Path(text)
        if (path.is_dir() or path.is_file()) and out and is_inside(path, out):
            inside.append(text)
        elif path.is_dir():
            found += [(p, path) for p in list_files(path, known, exclude=out)]
        elif path.is_file():
            found.append((path, path.parent))
        elif _magic(text):
            root = Path(*itertools.takewhile(lambda part: not _magic(part), path.parts))
            for match in sorted(glob.glob(text, recursive=True)):
                if not Path(match).is_file():
                    continue
                if out and is_inside(match, out):
                    globbed_out.append(match)
                else:
                    found.append((Path(match), root))
        else:
            missing.append(text)
    if missing:
        raise DataError("inputs not found:", missing)
    if inside:
        raise DataError(
            f"inputs inside the output folder {output_dir}, where predictions are written "
            "(they would be read back as inputs); choose another --output-dir:",
            inside,
        )
    if globbed_out:
        logger.warning(
            "skipped %d file(s) matched inside the output folder %s, e.g. %s",
            len(globbed_out),
            output_dir,
            globbed_out[0],
        )
    unique: dict[str, tuple[Path, Path]] = {}
    for file, root in found:
        unique.setdefault(os.path.abspath(file), (file, root))
    if not unique:
        raise DataError(f"no images found in {', '.join(map(str, inputs))}")
    folders = [os.path.abspath(root) for _, root in unique.values()]
    common = os.path.commonpath(folders + [os.path.dirname(a) for a in unique])
    return [(p, Path(os.path.relpath(a, common)).as_posix()) for a, (p, _) in unique.items()]


def _magic(text: str) -> bool:
    """Whether ``text`` holds a glob wildcard."""
    return any(c in text for c in "*?[")


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
    image_id: int,
    path: Path,
    image: np.ndarray,
    prediction: dict[str, Any],
    out_dir: Path,
    frame: int | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """One image's entry of ``images.json``: id, file, ``frame`` (a video frame's index in
    its file), size, and each image-level result (class label, name and score; for a semantic
    head, ``label_png``: the label PNG it writes, ``<name>_<head>.png``, or
    ``<name>_<frame>_<head>.png`` for a frame, as a path relative to ``out_dir``). ``name``:
    the output name of the input (:func:`named_inputs`; its file name by default)."""
    from PIL import Image

    record: dict[str, Any] = {"id": int(image_id), "file_name": str(path)}
    if frame is not None:
        record["frame"] = int(frame)
    record.update({"height": int(image.shape[0]), "width": int(image.shape[1])})
    name = path.name if name is None else name
    stem = name if frame is None else f"{name}_{frame:06d}"
    for head, result in prediction.items():
        if "label" in result:
            record[head] = {
                "label": int(result["label"]),
                "name": result.get("name"),
                "score": round(float(result["scores"][result["label"]]), 5),
            }
        elif "mask" in result:
            label_map = Image.fromarray(result["mask"].cpu().numpy().astype(np.uint8))
            write_atomic(
                out_dir / f"{stem}_{head}.png",
                lambda tmp, label_map=label_map: label_map.save(tmp, format="PNG"),
            )
            record[head] = {"label_png": f"{stem}_{head}.png"}
    return record


def predict_files(
    model: VisionModel | str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    batch_size: int = 8,
    draw: bool = True,
    progress: bool = True,
    every: int = 1,
    tta: str | None = None,
) -> Path:
    """Predict on every image and video in ``inputs`` and write, in ``output_dir``:

    - ``predictions.json``: the box and instance-mask predictions as a COCO results list
      (``image_id``, ``category_id``, ``bbox`` xywh, ``score``, RLE ``segmentation`` for
      masks, plus ``head``, ``name``, and ``frame`` for video frames), which
      ``COCO.loadRes`` reads as it is;
    - ``images.json``: one entry per image or video frame (``id`` — the ``image_id`` above —,
      ``file_name``, ``frame`` for video frames, ``height``, ``width``) with the image-level
      results: class label, name and score; the label PNG of a semantic head (its path
      relative to ``output_dir``);
    - ``<name>_<head>.png`` (``<name>_<frame>_<head>.png`` for a video frame): each semantic
      head's label map (pixel value = class index);
    - ``<name>_pred.png`` per image and ``<name>_pred.mp4`` per video: the predictions drawn
      (unless ``draw=False``).

    ``<name>`` is the input's path relative to the common folder of the inputs, suffix kept
    (:func:`named_inputs`): ``photos/a/001.jpg`` and ``photos/b/001.jpg`` given as
    ``photos/`` write ``a/001.jpg_pred.png`` and ``b/001.jpg_pred.png``. Files inside
    ``output_dir`` are never read as input. Every file is written atomically.

    Args:
        model: a :class:`VisionModel` or the path of a checkpoint.
        inputs: image or video files, folders (searched recursively), glob patterns.
        output_dir: created when missing.
        batch_size: images (or frames) per forward pass.
        draw: write the drawn images and videos.
        progress: show a progress bar (frames of videos count one each).
        every: of a video, predict on frames ``0, every, 2 * every, ...`` only; the drawn
            video then plays at ``fps / every``.
        tta: ``None``, or ``"flip"`` for horizontal-flip test-time augmentation
            (:mod:`visionkit.inference.tta`).

    Image ids count the images and frames from 1, in the order of the sorted input list (a
    file given twice is read once). Returns the path of ``predictions.json``.

    Raises:
        DataError: inputs missing, inside ``output_dir``, or unreadable.
        DiskFullError: the disk filled while writing (the file then is not replaced).
    """
    if every < 1:
        raise ConfigError(f"--every: must be at least 1, got {every}")
    if tta is not None and tta not in TTA_MODES:
        raise ConfigError(
            f"--tta: unknown test-time augmentation {tta!r}; valid: {', '.join(TTA_MODES)}"
        )
    named = named_inputs(inputs, output_dir)  # before loading the model: bad inputs fail fast
    if not isinstance(model, VisionModel):
        model = load(model)
    paths = [path for path, _ in named]
    names = dict(named)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    category_ids = model.meta.get("category_ids") or []
    results: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    total = sum(video_frames(p, every) if is_video(p) else 1 for p in paths)
    bar = _progress(total, progress)
    videos = _VideoWriters(out_dir, every)
    image_id = 0
    try:
        items = iter_images(paths, every)
        while chunk := list(itertools.islice(items, batch_size)):
            images = [image for _, _, image in chunk]
            predictions = predict_tta(model, images, tta, batch_size=len(images))
            for (path, frame, image), prediction in zip(chunk, predictions, strict=True):
                image_id += 1
                entries = coco_results(image_id, prediction, category_ids)
                if frame is not None:
                    for entry in entries:
                        entry["frame"] = frame
                results += entries
                name = names[path]
                records.append(
                    image_record(image_id, path, image, prediction, out_dir, frame, name)
                )
                if draw:
                    drawn = draw_predictions(image, prediction, legend_all=frame is not None)
                    if frame is None:
                        _write_png(out_dir / f"{name}_pred.png", drawn)
                    else:
                        videos.write(path, drawn, name)
            bar.update(len(chunk))
    finally:
        videos.close()
        bar.close()
    _write_json(out_dir / "images.json", records)
    return _write_json(out_dir / "predictions.json", results)


def _write_json(path: Path, content: Any) -> Path:
    text = json.dumps(content, indent=1)
    return write_atomic(path, lambda tmp: tmp.write_text(text), size_hint=len(text))


def _write_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    image = Image.fromarray(rgb)
    write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:  # pragma: no cover - depends on the environment
        raise DataError(
            "videos are read with OpenCV (cv2), which is not installed although visionkit "
            "depends on it: pip install opencv-python-headless"
        ) from None
    return cv2


def _open_video(path: Path) -> Any:
    cv2 = _cv2()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DataError(f"cannot read video {path} (OpenCV could not open it)")
    return capture


def video_frames(path: str | os.PathLike, every: int = 1) -> int:
    """How many frames of the video ``path`` are predicted on (as far as its header says)."""
    capture = _open_video(Path(path))
    try:
        count = int(capture.get(_cv2().CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return -(-max(count, 0) // every)


def video_fps(path: str | os.PathLike) -> float:
    """Frames per second of the video ``path`` (25 when its header does not say)."""
    capture = _open_video(Path(path))
    try:
        fps = float(capture.get(_cv2().CAP_PROP_FPS))
    finally:
        capture.release()
    return fps if fps > 0 else 25.0


def read_video(path: str | os.PathLike, every: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """``(frame index, H×W×3 uint8 RGB frame)`` for frames ``0, every, 2 * every, ...``."""
    cv2 = _cv2()
    capture = _open_video(Path(path))
    try:
        index = 0
        while True:
            if index % every == 0:
                ok, frame = capture.read()
                if not ok:
                    break
                yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            elif not capture.grab():  # skipped frames are not decoded
                break
            index += 1
    finally:
        capture.release()


def iter_images(
    paths: Sequence[Path], every: int = 1
) -> Iterator[tuple[Path, int | None, np.ndarray]]:
    """``(path, frame index or None, RGB image)`` for every image file and predicted video
    frame of ``paths``, in order."""
    for path in paths:
        if is_video(path):
            for index, frame in read_video(path, every):
                yield path, index, frame
        else:
            yield path, None, read_image(path)


class _VideoWriters:
    """``<name>_pred.mp4`` per video (``cv2.VideoWriter``, mp4v), opened at its first frame;
    frames of another size than the first are padded or cut at the bottom/right."""

    def __init__(self, out_dir: Path, every: int) -> None:
        self.out_dir = out_dir
        self.every = every
        self.path: Path | None = None
        self.writer: Any = None
        self.size: tuple[int, int] = (0, 0)

    def write(self, path: Path, rgb: np.ndarray, name: str) -> None:
        cv2 = _cv2()
        if path != self.path:
            self.close()
            self.path, self.size = path, (rgb.shape[0], rgb.shape[1])
            target = self.out_dir / f"{name}_pred.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            fps = video_fps(path) / self.every
            self.writer = cv2.VideoWriter(str(target), fourcc, fps, (self.size[1], self.size[0]))
            if not self.writer.isOpened():
                raise DataError(f"cannot write video {target} (OpenCV has no mp4v encoder)")
        h, w = self.size
        frame = np.zeros((h, w, 3), np.uint8)
        frame[: min(h, rgb.shape[0]), : min(w, rgb.shape[1])] = rgb[:h, :w]
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.path, self.writer = None, None


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
