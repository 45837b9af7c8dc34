"""``visionkit predict --save-crop``: each detection's box cut out of its image and saved as a
JPEG under ``crops/<class name>/``, as Ultralytics' ``save_crop`` writes them.

The ``k``-th detection of an image (best score first, counted from 1 over all the classes of
its head) is ``<stem>_<k>.jpg``: the detection of line ``k`` of the head's labels file
(``labels/<stem>.txt``; ``labels/<head>/<stem>.txt`` when more than one head writes labels, a
classifier included) and the ``k``-th of the image's entries of that head in
``predictions.json`` (``crops/circle/a/001_1.jpg``, ``crops/square/a/001_2.jpg``). The names
are the same on every run, so a run with ``--exist-ok`` replaces its own crops instead of
adding more, and never collide (a video's frames are ``<stem>_<n>``, ``n`` counted from 1 as
Ultralytics counts them, :func:`~visionkit.inference.outputs.frame_stem`, and
:func:`~visionkit.inference.outputs.label_stems` keeps a video's suffix, ``clip.mp4_1``, where
another input is named so; Ultralytics
names them ``<stem>.jpg``, ``<stem>2.jpg``, ... as they come: ``0012.jpg`` is then the second
crop of ``001`` or the first of ``0012``). A crop is the box's pixels, rounded outwards and
clipped to the image (Ultralytics pads its crops by 2 % and 10 pixels).

>>> import numpy as np, tempfile, torch
>>> image = np.zeros((40, 60, 3), np.uint8)
>>> pred = {"det": {"boxes": torch.tensor([[10.2, 5.0, 30.0, 24.5]]),
...                 "labels": torch.tensor([1]), "names": ["square"]}}
>>> out = Path(tempfile.mkdtemp())
>>> [p.relative_to(out).as_posix() for p in save_crops(image, pred, out / "crops", "a/001")]
['crops/square/a/001_1.jpg']
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from visionkit.checkpoint import write_atomic
from visionkit.inference.outputs import frame_stem

#: JPEG quality of the crops (OpenCV's default, which Ultralytics writes them with).
CROP_QUALITY = 95


def crop_folder(name: str) -> str:
    """A class name as one folder name: path separators become ``_``."""
    cleaned = name.replace("/", "_").replace("\\", "_").strip()
    return cleaned if cleaned not in ("", ".", "..") else f"_{cleaned}_"


def save_crops(
    image: np.ndarray,
    prediction: dict[str, Any],
    crops_dir: Path,
    stem: str,
    frame: int | None = None,
) -> list[Path]:
    """Save each detection of each box head of ``prediction`` cut out of ``image`` (``H×W×3
    uint8`` RGB, the image the boxes are in) as ``crops_dir/<class>/<stem>_<k>.jpg``
    (``<stem>_<frame + 1>`` for a video frame, as its label file:
    :func:`~visionkit.inference.outputs.frame_stem`; ``crops_dir/<head>/<class>/...`` when
    several heads predict boxes). Returns the files written."""
    from PIL import Image

    heads = {name: result for name, result in prediction.items() if "boxes" in result}
    name = frame_stem(stem, frame)
    h, w = image.shape[:2]
    written = []
    for head, result in heads.items():
        labels = [int(label) for label in result["labels"]]
        names = result.get("names") or [str(label) for label in labels]
        boxes = result["boxes"].float().cpu().tolist()
        for k, (box, label_name) in enumerate(zip(boxes, names, strict=True), 1):
            x0, y0 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
            x1, y1 = min(math.ceil(box[2]), w), min(math.ceil(box[3]), h)
            if x1 <= x0 or y1 <= y0:  # a box outside the image: nothing to cut
                continue
            folder = crops_dir / (head if len(heads) > 1 else "") / crop_folder(str(label_name))
            path = folder / f"{name}_{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            crop = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
            written.append(
                write_atomic(
                    path, lambda tmp, c=crop: c.save(tmp, format="JPEG", quality=CROP_QUALITY)
                )
            )
    return written
