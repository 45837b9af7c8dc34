"""The files ``visionkit predict`` writes for one image: COCO results entries
(``predictions.json``), its ``images.json`` record (and semantic label PNGs), and YOLO label
lines (``--save-txt``: ``labels/<name>.txt``, as Ultralytics writes them); and
:class:`JsonArrayStream`, which writes the two json files one batch at a time.

>>> import torch
>>> pred = {"det": {"boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0]]),
...                 "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}}
>>> yolo_lines(pred, (40, 60), save_conf=True)
{'det': ['1 0.333333 0.375 0.333333 0.5 0.9']}
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visionkit.checkpoint import write_atomic
from visionkit.data.classes import BACKGROUND
from visionkit.inference.draw import class_colour


def exact(value: Any) -> float:
    """A float32 model output in the fewest digits that read back as the same float32 (9
    significant ones at most): the json scores exactly as the predictions it holds (scores
    rounded to 5 decimals tied, boxes to 2 moved, which pycocotools would see)."""
    return float(f"{float(value):.9g}")


def coco_results(
    image_id: int, prediction: dict[str, Any], category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """One image's box (and instance-mask) predictions as COCO results entries: ``image_id``,
    ``category_id`` of the training file, ``bbox`` in xywh, ``score``, the ``head`` and class
    ``name``, and ``segmentation`` as RLE when the head predicts masks (``keypoints``,
    ``embedding``: a detection's keypoints / unit vector, for the heads that predict them)."""
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
                "bbox": [exact(v) for v in box],
                "score": exact(score),
                "head": head,
                "name": names[i],
            }
            if result.get("keypoints") is not None:  # fcos_keypoints: [x, y, visibility] * K
                entry["keypoints"] = [exact(v) for v in result["keypoints"][i].reshape(-1)]
            if result.get("embeddings") is not None:  # fcos_embedding: the unit vector
                entry["embedding"] = [round(float(v), 5) for v in result["embeddings"][i]]
            if masks is not None:
                rle = mask_utils.encode(np.asfortranarray(masks[i].cpu().numpy().astype(np.uint8)))
                entry["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
            entries.append(entry)
    return entries


def image_record(
    image_id: int,
    path: Any,
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
    the output name of the input (:func:`visionkit.inference.sources.named_inputs`; its file
    name by default)."""
    from PIL import Image

    record: dict[str, Any] = {"id": int(image_id), "file_name": str(path)}
    if frame is not None:
        record["frame"] = int(frame)
    record.update({"height": int(image.shape[0]), "width": int(image.shape[1])})
    name = Path(str(path)).name if name is None else name
    stem = name if frame is None else f"{name}_{frame:06d}"
    for head, result in prediction.items():
        if "label" in result:
            record[head] = {
                "label": int(result["label"]),
                "name": result.get("name"),
                "score": round(float(result["score"]), 5),
                "top5": top_classes(result),
            }
        elif "mask" in result:
            label_map = Image.fromarray(result["mask"].cpu().numpy().astype(np.uint8))
            label_map.putpalette(label_palette(result))  # indices shown in colour, as VOC's
            write_atomic(
                out_dir / f"{stem}_{head}.png",
                lambda tmp, label_map=label_map: label_map.save(tmp, format="PNG"),
            )
            record[head] = {"label_png": f"{stem}_{head}.png", **pixel_shares(result)}
        elif "embedding" in result:  # an embedding head: <name>_<head>.npy, gallery matches
            vector = np.asarray(result["embedding"].float().cpu(), dtype=np.float32)
            write_atomic(out_dir / f"{stem}_{head}.npy", lambda tmp, v=vector: _save_npy(tmp, v))
            record[head] = {"embedding": f"{stem}_{head}.npy"}
            if "matches" in result:
                record[head]["matches"] = result["matches"]
    return record


def label_palette(result: dict[str, Any]) -> list[int]:
    """The 256 RGB colours of a label PNG: each class's drawing colour (the training data's
    palette where it has one, :func:`~visionkit.inference.draw.class_colour`), black for a
    class named ``background`` (as Pascal VOC's PNGs)."""
    names, published = result.get("names") or (), result.get("colours") or ()
    black = {k for k, name in enumerate(names) if name == BACKGROUND}
    colours = [(0, 0, 0) if k in black else class_colour(k, published) for k in range(256)]
    return [v for colour in colours for v in colour]


def pixel_shares(result: dict[str, Any]) -> dict[str, Any]:
    """A label map's ``names`` (class index -> name, to read its PNG; ``None`` unnamed) and
    the ``pixels`` share of each class present (name, or index without names), largest
    first, rounded to 4 digits."""
    mask = result["mask"].cpu().numpy()
    values, counts = np.unique(mask, return_counts=True)
    names = result.get("names")
    shares = {}
    for i in np.argsort(-counts, kind="stable"):
        value = int(values[i])
        name = names[value] if names and value < len(names) else str(value)
        shares[name] = round(float(counts[i]) / mask.size, 4)
    return {"names": list(names) if names else None, "pixels": shares}


def _save_npy(path: Path, vector: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (given a name, it would append ``.npy``)."""
    with open(path, "wb") as f:
        np.save(f, vector)


def yolo_lines(
    prediction: dict[str, Any],
    orig_size: Sequence[int],
    save_conf: bool = False,
    kpt_dims: Mapping[str, int] | None = None,
) -> dict[str, list[str]]:
    """Each box head's detections as YOLO label lines, ``class cx cy w h`` (and ``conf`` with
    ``save_conf``), normalised by the image's width and height (``orig_size`` = (H, W)),
    best score first; the class is the model's 0-based class index, as in a YOLO
    ``data.yaml``. An instance head's lines give the outline of each mask instead of the box,
    ``class x1 y1 x2 y2 ...`` (:func:`mask_outline`), as Ultralytics writes a segment model's
    (the box's four corners where the mask has no outline of 3 points: a box line among
    polygons would be read as a polygon of two points). A keypoint head's lines go on with
    ``x y v`` per keypoint (normalised and clipped to 0..1, a point predicted beyond the
    image's edge on its edge; ``v`` the predicted visibility), before ``conf``, as Ultralytics
    writes a pose model's; ``x y`` for a head whose ``kpt_dims`` (``{head: 2}``, the head's
    own ``kpt_dims``) is 2, trained on an Ultralytics ``kpt_shape: [K, 2]`` set, as
    Ultralytics writes a ``[K, 2]`` model's, so the lines read back under that set's file. A classification head's five most probable classes,
    ``score name`` (the class index without names), best first, as Ultralytics writes a
    classifier's."""
    h, w = (float(v) for v in orig_size)
    lines: dict[str, list[str]] = {}
    for head, result in prediction.items():
        if "label" in result and "scores" in result:
            top = top_classes(result)
            lines[head] = [f"{c['score']:.2f} {c['name'] or c['label']}" for c in top]
        if "boxes" not in result:
            continue
        boxes = result["boxes"].float().cpu().reshape(-1, 4)
        scale = torch.tensor([w, h, w, h])
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        xywhn = torch.cat([centre, boxes[:, 2:] - boxes[:, :2]], 1) / scale
        points = result.get("keypoints")  # [N, K, 3] in pixels, or None
        if points is not None:  # on the image, as Ultralytics clips them: its labels are 0..1
            points = points.float().cpu() / torch.tensor([w, h, 1.0])
            points[..., :2] = points[..., :2].clamp(0.0, 1.0)
            points = points[..., : (kpt_dims or {}).get(head, 3)]  # x y, or x y v
        masks = result.get("masks")  # [N, H, W] bool, or None
        head_lines = []
        for i, (box, label, score) in enumerate(
            zip(xywhn, result["labels"], result["scores"], strict=True)
        ):
            shape = box
            if masks is not None:  # a polygon on every line of the file, as Ultralytics reads it
                outline = mask_outline(masks[i])
                if outline is None:  # the box's corners
                    outline = boxes[i][[0, 1, 2, 1, 2, 3, 0, 3]].numpy().reshape(4, 2)
                shape = (outline / [w, h]).reshape(-1)
            values = [str(int(label))] + [f"{float(v):.6g}" for v in shape]
            if points is not None:
                values += [f"{float(v):.6g}" for v in points[i].reshape(-1)]
            if save_conf:
                values.append(f"{float(score):.6g}")
            head_lines.append(" ".join(values))
        lines[head] = head_lines
    return lines


def mask_outline(mask: torch.Tensor) -> np.ndarray | None:
    """The outline of a bool mask ``[H, W]`` as ``[P, 2]`` pixel ``(x, y)`` points: the
    outer contour of its largest part (OpenCV's ``findContours``, corners only), as
    Ultralytics writes a segment model's masks, or ``None`` when that is no polygon: fewer
    than 3 points or no area (an empty mask, a line of pixels)."""
    import cv2

    pixels = mask.cpu().numpy().astype(np.uint8)
    contours, _ = cv2.findContours(pixels, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    largest = max(contours, key=cv2.contourArea, default=None)
    if largest is None or len(largest) < 3 or cv2.contourArea(largest) == 0:
        return None
    return largest.reshape(-1, 2).astype(np.float64)


def label_stems(names: Sequence[str]) -> dict[str, str]:
    """Output name → the stem of its ``labels/<stem>.txt`` and its crops: the name without its
    suffix (``a/001.jpg`` → ``a/001``, as Ultralytics names label files), or the name itself
    where two inputs would share that stem (``001.jpg`` and ``001.png``) or where a video's
    frames (``<stem>_<n>``, :func:`frame_stem`) would take another input's (``clip.mp4``
    beside ``clip_1.png``: ``clip.mp4_1.txt``)."""
    from visionkit.inference.sources import is_video

    stems = {name: os.path.splitext(name)[0] for name in names}
    counts = Counter(stems.values())
    taken = set(stems.values())

    def frames_collide(name: str) -> bool:
        head = f"{stems[name]}_"
        return is_video(name) and any(s[len(head) :].isdigit() for s in taken if s.startswith(head))

    return {
        name: stem if counts[stem] == 1 and not frames_collide(name) else name
        for name, stem in stems.items()
    }


def frame_stem(stem: str, frame: int | None) -> str:
    """The name of an image's label file and crops without suffix: ``stem``, or for the video
    frame of index ``frame`` (0 for the first, as ``images.json``'s ``frame``) ``<stem>_<n>``
    with ``n = frame + 1``, the frame's number counted from 1, as Ultralytics numbers them
    (``clip_1.txt`` is the first frame). With ``--every N`` the numbers are the frames' own
    (1, N + 1, 2N + 1, ...), where Ultralytics' ``vid_stride`` counts the predicted frames."""
    return stem if frame is None else f"{stem}_{frame + 1}"


def write_label_txt(
    labels_dir: Path, stem: str, lines: dict[str, list[str]], frame: int | None = None
) -> list[Path]:
    """Write ``labels/<stem>.txt`` (``<stem>_<frame + 1>.txt`` for a video frame,
    :func:`frame_stem`) per box head with detections (``labels/<head>/...`` when the model
    has several box heads); an image without detections gets no file, as in Ultralytics.
    Returns the files written."""
    name = frame_stem(stem, frame)
    written = []
    for head, head_lines in lines.items():
        if not head_lines:
            continue
        folder = labels_dir / head if len(lines) > 1 else labels_dir
        path = folder / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n".join(head_lines) + "\n"
        written.append(write_atomic(path, lambda tmp, text=text: tmp.write_text(text)))
    return written


def write_json(path: Path, content: Any) -> Path:
    """``content`` as indented JSON at ``path``, written atomically."""
    text = json.dumps(content, indent=1)
    return write_atomic(path, lambda tmp: tmp.write_text(text), size_hint=len(text))


def write_png(path: Path, rgb: np.ndarray) -> None:
    """An ``H×W×3 uint8`` RGB image as a PNG, written atomically."""
    from PIL import Image

    image = Image.fromarray(rgb)
    write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


class JsonArrayStream:
    """A JSON array written one batch of items at a time, so that an endless stream (a
    webcam) never holds more than a batch of them: the items go to a temporary file beside
    ``path`` (named as :func:`visionkit.checkpoint.write_atomic` names its own), which
    :meth:`close` ends and renames over ``path`` through ``write_atomic`` (fsync, file mode,
    fsync of the folder). The file is the same, byte for byte, as :func:`write_json` of the
    whole list. Until then ``path`` is untouched; :meth:`abort` removes the temporary file.

    Each :meth:`extend` writes its items with one write and records where they end; a
    Ctrl-C in the middle of a write is cut back to the last whole batch by :meth:`close`,
    so the file is always valid JSON.

    >>> import tempfile
    >>> stream = JsonArrayStream(Path(tempfile.mkdtemp()) / "a.json")
    >>> stream.extend([{"id": 1}]); stream.extend([]); stream.extend([{"id": 2}])
    >>> json.loads(stream.close().read_text())
    [{'id': 1}, {'id': 2}]
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        self.tmp = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.count = 0  # items written
        self.end = 0  # bytes of the items written whole

    def extend(self, items: Iterable[Any]) -> None:
        """Append ``items`` (JSON-serialisable) to the array.

        Raises:
            DiskFullError: the disk filled (the temporary file is removed, ``path`` kept).
        """
        parts = [json.dumps([item], indent=1)[2:-2] for item in items]
        if not parts:
            return
        text = ("[\n" if self.count == 0 else ",\n") + ",\n".join(parts)
        try:
            self.file.seek(self.end)  # over what a write cut by Ctrl-C left
            self.file.write(text.encode())
            self.file.flush()
        except BaseException as err:
            if isinstance(err, KeyboardInterrupt):  # close() cuts the half-written batch
                raise
            self._fail(err)
        self.count += len(parts)
        self.end = self.file.tell()

    def close(self) -> Path:
        """End the array and rename it over ``path``; returns ``path``.

        Raises:
            DiskFullError: the disk filled (nothing replaced, the temporary file removed).
        """
        try:
            self.file.seek(self.end)
            self.file.truncate()
            self.file.write(b"\n]" if self.count else b"[]")
            self.file.close()
        except BaseException as err:
            self._fail(err)
        return write_atomic(self.path, lambda tmp: os.replace(self.tmp, tmp))

    def abort(self) -> None:
        """Stop without writing ``path``: the temporary file is removed."""
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def _fail(self, err: BaseException) -> None:
        """Raise ``err`` through ``write_atomic``, which turns a full disk into a
        :class:`~visionkit.errors.DiskFullError` (with the size reached) and keeps ``path``."""
        self.file.close()

        def fail(tmp: Path) -> None:
            if self.tmp.exists():
                os.replace(self.tmp, tmp)
            raise err

        write_atomic(self.path, fail)


def top_classes(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A classifier's ``top5`` (its five most probable classes, best first, each ``{"label",
    "name", "score"}``, as the head's ``postprocess`` gives them: Ultralytics' ``top5``) with
    the scores rounded to 5 decimals, as ``images.json`` writes them."""
    return [
        {**c, "label": int(c["label"]), "score": round(float(c["score"]), 5)}
        for c in result["top5"]
    ]
