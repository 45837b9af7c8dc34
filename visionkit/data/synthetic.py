"""The embedded "shapes" dataset: small, deterministic, and labelled for every task.

:func:`make_shapes` draws circles, squares and triangles on textured backgrounds and writes a
standard COCO dataset, so one folder serves detection, instance and semantic segmentation
(from the masks) and image classification (from the background texture)::

    OUT/images/000001.png ...      RGB PNGs, size x size
    OUT/annotations.json           COCO json, written last (atomically)

``annotations.json`` holds, in this order:

* ``info``: ``description``, ``generator`` (``"visionkit.data.synthetic.make_shapes"``),
  ``format_version``, and the generator parameters ``num_images``, ``size``, ``seed``,
  ``min_shapes``, ``max_shapes``, ``min_visible_fraction``, ``min_visible_pixels``.
* ``image_classes``: ``{"background": ["plain", "gradient", "noise", "stripes"]}`` -- the
  ordered class names of each image-level label. This field is not part of COCO; it is what
  visionkit's classification reader uses: the key names a field of each image, and the list
  position of that field's value is the class index.
* ``categories``: ``{id, name, supercategory}`` with ids 1, 2, 3 for ``circle``, ``square``,
  ``triangle`` and supercategory ``"shape"``.
* ``images``: ``{id, file_name, width, height, background}`` with ids from 1, ``file_name``
  relative to ``OUT`` (``"images/000001.png"``) and ``background`` the class *name*.
* ``annotations``: ``{id, image_id, category_id, bbox, area, segmentation, iscrowd}`` with ids
  from 1. ``segmentation`` is the compressed RLE of the *visible* mask
  (``{"size": [h, w], "counts": str}``, as ``pycocotools.mask.encode`` gives, counts decoded
  to ASCII); ``bbox`` is the tight box of that mask in COCO ``[x, y, w, h]`` floats, with
  ``x + w`` the exclusive right pixel edge; ``area`` is its pixel count (float);
  ``iscrowd`` is 0.

Content:

* The background (the image class) is one of ``plain`` (one colour), ``gradient`` (linear,
  random direction and end colours), ``noise`` (per-pixel colour noise around a base colour)
  or ``stripes`` (random orientation, period, phase and two colours). Every run of four
  consecutive images holds each background once, in a seeded random order, so any prefix of
  the dataset is balanced.
* Each image gets ``min_shapes..max_shapes`` shapes of random size, colour and position;
  squares and triangles are rotated. Shape colours are kept apart from the background and
  from the other shapes. Shapes are drawn without anti-aliasing (a pixel belongs to a shape
  when its centre does), so the masks are exact. Later shapes occlude earlier ones; a shape
  whose placement would leave an earlier one less than ``MIN_VISIBLE_FRACTION`` of its
  full area (or fewer than ``MIN_VISIBLE_PIXELS`` pixels) is placed elsewhere, and after
  ``MAX_PLACEMENT_TRIES`` failures it is not drawn at all. So every drawn shape is
  annotated and clearly visible, and an image may have fewer than ``min_shapes`` shapes
  (rarely). ``min_shapes=0`` produces negatives (images without annotations).

Determinism: image ``i`` is drawn from ``numpy.random.default_rng([seed, i])`` alone, and the
json is written in a fixed order, so the same arguments give byte-identical files (on the
same platform and library versions), a smaller ``num_images`` gives a prefix of a larger one,
and another seed gives other data.

Output folder: it is created if needed. An existing folder is written into only if it is
empty or holds nothing but a previous shapes dataset (its ``annotations.json``, recognised by
``info.generator``, and ``images/NNNNNN.png``); those files are replaced and images beyond
the new ``num_images`` removed. Anything else in it raises ``DataError`` listing the entries,
so a user's data is never overwritten.

>>> import json, tempfile
>>> path = make_shapes(tempfile.mkdtemp(), num_images=8, size=64, seed=3)
>>> data = json.loads(path.read_text())
>>> [c["name"] for c in data["categories"]]
['circle', 'square', 'triangle']
>>> len(data["images"]), data["images"][0]["file_name"], data["image_classes"]["background"]
(8, 'images/000001.png', ['plain', 'gradient', 'noise', 'stripes'])
>>> sorted({image["background"] for image in data["images"]})
['gradient', 'noise', 'plain', 'stripes']
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from visionkit.checkpoint import is_temporary_file_of, write_atomic
from visionkit.data.synthetic_keypoints import keypoint_categories, keypoint_fields, shape_points
from visionkit.errors import DataError

__all__ = ["BACKGROUNDS", "CATEGORIES", "make_shapes"]

#: Instance categories, in id order (ids start at 1).
CATEGORIES: tuple[str, ...] = ("circle", "square", "triangle")
#: Image-level classes (the background texture), in class-index order.
BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "noise", "stripes")

GENERATOR = "visionkit.data.synthetic.make_shapes"
#: 2: keypoints on the outline straight left / top / right / bottom of the centre (1: the
#: extreme vertices, ambiguous where two tie); a generated folder of an older version is
#: generated again when a config asks for it.
FORMAT_VERSION = 2
MIN_VISIBLE_FRACTION = 0.5
MIN_VISIBLE_PIXELS = 16
MAX_PLACEMENT_TRIES = 20
MIN_SIZE = 16

_IMAGE_NAME = re.compile(r"^(\d{6,})\.png$")
_COLOUR_GAP = 100.0  # minimum RGB distance between a shape and what it is drawn on
_COLOUR_TRIES = 30


def make_shapes(
    out_dir: str | os.PathLike[str],
    num_images: int = 200,
    size: int = 128,
    seed: int = 0,
    min_shapes: int = 1,
    max_shapes: int = 4,
    progress: bool = False,
    keypoints: bool = False,
    styles: int | None = None,
    first_style: int | None = None,
) -> Path:
    """Write the synthetic shapes dataset (COCO json + PNGs) into ``out_dir``.

    Args:
        out_dir: output folder; created if needed (see the module docstring for what an
            existing folder may contain).
        num_images: number of images, ids ``1..num_images``.
        size: image height and width in pixels (at least 16).
        seed: non-negative integer; image ``i`` uses ``numpy.random.default_rng([seed, i])``.
        min_shapes: fewest shapes per image (0 allows images without annotations).
        max_shapes: most shapes per image.
        progress: show a progress bar (when ``tqdm`` is installed).
        keypoints: give every shape COCO keypoints (centre and outline points;
            :mod:`visionkit.data.synthetic_keypoints`); recorded in ``info``.
        styles: paint every shape in one of this many identity styles, numbered from
            ``first_style`` (default 0), its annotation's ``identity``
            (:mod:`visionkit.data.synthetic_styles`); recorded in ``info``.

    Returns:
        The path of ``annotations.json``.

    Raises:
        ValueError: an argument is out of range.
        DataError: ``out_dir`` holds files that are not a previous shapes dataset.
    """
    _check_arguments(num_images, size, seed, min_shapes, max_shapes)
    num_images, size, seed = int(num_images), int(size), int(seed)  # numpy ints -> json
    min_shapes, max_shapes = int(min_shapes), int(max_shapes)
    root = Path(out_dir)
    _prepare_out_dir(root)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)

    grid = np.arange(size, dtype=np.float64) + 0.5  # pixel centres
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in _progress(range(1, num_images + 1), num_images, progress):
        background = BACKGROUNDS[_background_index(seed, index)]
        rng = np.random.default_rng([seed, index])
        pixels, shapes = _render(rng, size, grid, background, min_shapes, max_shapes)
        if styles:  # identities (synthetic_styles imports this module: imported here)
            from visionkit.data.synthetic_styles import paint_styles

            style_rng = np.random.default_rng([seed, index, 5])
            numbers = paint_styles(style_rng, pixels, shapes, styles, first_style or 0)
        file_name = f"images/{index:06d}.png"
        Image.fromarray(pixels).save(root / file_name, format="PNG", compress_level=1)
        images.append(
            {
                "id": index,
                "file_name": file_name,
                "width": size,
                "height": size,
                "background": background,
            }
        )
        for k, (category_id, visible, points) in enumerate(shapes):
            annotation = _annotation(len(annotations) + 1, index, category_id, visible)
            if keypoints:
                annotation.update(keypoint_fields(points, visible))
            if styles:
                annotation["identity"] = numbers[k]
            annotations.append(annotation)

    data = {
        "info": {
            "description": "visionkit synthetic shapes dataset",
            "generator": GENERATOR,
            "format_version": FORMAT_VERSION,
            "num_images": num_images,
            "size": size,
            "seed": seed,
            "min_shapes": min_shapes,
            "max_shapes": max_shapes,
            "min_visible_fraction": MIN_VISIBLE_FRACTION,
            "min_visible_pixels": MIN_VISIBLE_PIXELS,
        },
        "image_classes": {"background": list(BACKGROUNDS)},
        "categories": [
            {"id": i, "name": name, "supercategory": "shape"}
            for i, name in enumerate(CATEGORIES, start=1)
        ],
        "images": images,
        "annotations": annotations,
    }
    if styles:
        data["info"].update(styles=int(styles), first_style=first_style)
    if keypoints:
        data["info"]["keypoints"] = True
        data["categories"] = keypoint_categories(data["categories"])
    _remove_stale_images(images_dir, num_images)
    path = root / "annotations.json"
    text = json.dumps(data, separators=(",", ":")) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# --------------------------------------------------------------------------- output folder


def _check_arguments(
    num_images: int, size: int, seed: int, min_shapes: int, max_shapes: int
) -> None:
    problems = []
    for name, value in (
        ("num_images", num_images),
        ("size", size),
        ("seed", seed),
        ("min_shapes", min_shapes),
        ("max_shapes", max_shapes),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            problems.append(f"{name} must be an integer, got {value!r}")
    if problems:
        raise ValueError("; ".join(problems))
    if num_images < 0:
        problems.append(f"num_images must be >= 0, got {num_images}")
    if size < MIN_SIZE:
        problems.append(f"size must be >= {MIN_SIZE}, got {size}")
    if seed < 0:
        problems.append(f"seed must be >= 0, got {seed}")
    if not 0 <= min_shapes <= max_shapes:
        problems.append(
            f"need 0 <= min_shapes <= max_shapes, got min_shapes={min_shapes}, "
            f"max_shapes={max_shapes}"
        )
    if problems:
        raise ValueError("; ".join(problems))


def _prepare_out_dir(root: Path) -> None:
    """Create ``root``, or check it holds only a previous shapes dataset and drop its json."""
    if not root.exists():
        root.mkdir(parents=True)
        return
    if not root.is_dir():
        raise DataError(f"cannot write the shapes dataset: {root} is not a folder")
    foreign = []
    for entry in sorted(root.iterdir()):
        if entry.name == "annotations.json" and entry.is_file():
            if not _is_shapes_json(entry):
                foreign.append(f"{entry} (not written by {GENERATOR})")
        elif is_temporary_file_of(entry.name, "annotations.json") and entry.is_file():
            continue
        elif entry.name == "images" and entry.is_dir():
            foreign.extend(
                str(child)
                for child in sorted(entry.iterdir())
                if not (child.is_file() and _IMAGE_NAME.match(child.name))
            )
        else:
            foreign.append(str(entry))
    if foreign:
        raise DataError(
            f"refusing to write the shapes dataset into {root}: it holds files that are not "
            "a previous shapes dataset (use an empty or new folder)",
            foreign,
        )
    # An interrupted run must not leave an old json describing new images.
    (root / "annotations.json").unlink(missing_ok=True)


def _is_shapes_json(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and (data.get("info") or {}).get("generator") == GENERATOR


def _remove_stale_images(images_dir: Path, num_images: int) -> None:
    for child in images_dir.iterdir():
        match = _IMAGE_NAME.match(child.name)
        if match and int(match.group(1)) > num_images:
            child.unlink()


def _progress(items: range, total: int, enabled: bool) -> Iterable[int]:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc="make_shapes", unit="img")


# --------------------------------------------------------------------------- rendering


def _background_index(seed: int, index: int) -> int:
    """Class of image ``index`` (1-based): each block of four is a seeded permutation."""
    block, position = divmod(index - 1, len(BACKGROUNDS))
    # Three entries with a non-zero tag: never the same seed sequence as an image's [seed, i].
    order = np.random.default_rng([seed, block, 1]).permutation(len(BACKGROUNDS))
    return int(order[position])


def _render(
    rng: np.random.Generator,
    size: int,
    grid: np.ndarray,
    background: str,
    min_shapes: int,
    max_shapes: int,
) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
    """Draw one image; returns pixels ``[H, W, 3]`` uint8 and ``(category_id, visible mask,
    keypoints)`` per shape (``shape_points``)."""
    pixels, avoid = _background(rng, size, grid, background)
    owner = np.full((size, size), -1, dtype=np.int16)  # index of the shape seen at each pixel
    full_area: list[int] = []
    visible_area: list[int] = []
    categories: list[int] = []
    outlines: list[np.ndarray] = []
    for _ in range(int(rng.integers(min_shapes, max_shapes + 1))):
        for _try in range(MAX_PLACEMENT_TRIES):
            category_id, region, mask, points = _shape(rng, size, grid)
            covered = owner[region][mask]
            lost = np.bincount(covered[covered >= 0], minlength=len(full_area))
            if all(
                visible - lost[j] >= max(MIN_VISIBLE_FRACTION * full, MIN_VISIBLE_PIXELS)
                for j, (visible, full) in enumerate(zip(visible_area, full_area, strict=True))
            ):
                break
        else:
            continue  # no placement keeps the earlier shapes visible: skip this shape
        for j in range(len(visible_area)):
            visible_area[j] -= int(lost[j])
        colour = _pick_colour(rng, avoid)
        avoid.append(colour)
        owner[region][mask] = len(full_area)
        pixels[region][mask] = colour.astype(np.uint8)
        area = int(mask.sum())
        full_area.append(area)
        visible_area.append(area)
        categories.append(category_id)
        outlines.append(points)
    shapes = [(c, owner == j, outlines[j]) for j, c in enumerate(categories)]
    return pixels, shapes


def _background(
    rng: np.random.Generator, size: int, grid: np.ndarray, kind: str
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Background pixels ``[H, W, 3]`` uint8 and the colours shapes must stand out from."""
    first = rng.integers(0, 256, 3).astype(np.float64)
    if kind == "plain":
        pixels = np.broadcast_to(first, (size, size, 3))
        return np.rint(pixels).astype(np.uint8), [first]
    if kind == "noise":
        amplitude = rng.uniform(25.0, 50.0)
        noise = rng.uniform(-amplitude, amplitude, (size, size, 3))
        pixels = np.clip(first + noise, 0, 255)
        return np.rint(pixels).astype(np.uint8), [first]
    # A gradient spans a clearly visible colour range, so that it is not mistaken for plain.
    second = _pick_colour(rng, [first], gap=180.0 if kind == "gradient" else 80.0)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    # Coordinate of every pixel centre along the direction `angle`: [H, W].
    along = grid[None, :] * math.cos(angle) + grid[:, None] * math.sin(angle)
    if kind == "gradient":
        t = (along - along.min()) / max(float(np.ptp(along)), 1e-9)
    elif kind == "stripes":
        period = rng.uniform(6.0, 20.0)
        t = np.floor(2.0 * (along / period + rng.uniform(0.0, 1.0))) % 2.0
    else:
        raise ValueError(f"unknown background {kind!r}; expected one of {BACKGROUNDS}")
    pixels = first + t[:, :, None] * (second - first)
    return np.rint(pixels).astype(np.uint8), [first, second, (first + second) / 2.0]


def _pick_colour(
    rng: np.random.Generator, avoid: list[np.ndarray], gap: float = _COLOUR_GAP
) -> np.ndarray:
    """A random RGB colour (float) at least ``gap`` from every colour in ``avoid`` if found."""
    best, best_distance = None, -1.0
    for _ in range(_COLOUR_TRIES):
        colour = rng.integers(0, 256, 3).astype(np.float64)
        distance = min((float(np.linalg.norm(colour - a)) for a in avoid), default=math.inf)
        if distance >= gap:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    assert best is not None
    return best


def _shape(
    rng: np.random.Generator, size: int, grid: np.ndarray
) -> tuple[int, tuple[slice, slice], np.ndarray, np.ndarray]:
    """A random shape inside the image: category id, its box as slices, its mask there, its
    keypoints (``shape_points``)."""
    category_id = int(rng.integers(1, len(CATEGORIES) + 1))
    low = max(4.0, 0.08 * size)
    radius = rng.uniform(low, max(low + 1.0, 0.2 * size))  # circumradius
    cx, cy = rng.uniform(radius, size - radius, 2)
    rotation = rng.uniform(0.0, 2.0 * math.pi)
    x0, x1 = max(0, math.floor(cx - radius)), min(size, math.ceil(cx + radius))
    y0, y1 = max(0, math.floor(cy - radius)), min(size, math.ceil(cy + radius))
    xs = grid[None, x0:x1] - cx  # [1, w]
    ys = grid[y0:y1, None] - cy  # [h, 1]
    name = CATEGORIES[category_id - 1]
    if name == "circle":
        mask = xs * xs + ys * ys <= (0.85 * radius) ** 2
    else:
        sides = 4 if name == "square" else 3
        angles = rotation + 2.0 * math.pi * np.arange(sides) / sides
        vx, vy = radius * np.cos(angles), radius * np.sin(angles)
        mask = np.ones((y1 - y0, x1 - x0), dtype=bool)
        for k in range(sides):  # inside = left of every edge (vertices counter-clockwise)
            ax, ay = vx[k], vy[k]
            bx, by = vx[(k + 1) % sides], vy[(k + 1) % sides]
            mask &= (bx - ax) * (ys - ay) - (by - ay) * (xs - ax) >= 0.0
    points = shape_points(name, cx, cy, radius, rotation)
    return category_id, (slice(y0, y1), slice(x0, x1)), mask, points


def _annotation(
    annotation_id: int, image_id: int, category_id: int, visible: np.ndarray
) -> dict[str, Any]:
    """COCO annotation of one visible mask ``[H, W]`` bool: RLE, tight xywh box, pixel area."""
    rle = mask_utils.encode(np.asfortranarray(visible, dtype=np.uint8))
    rows = np.flatnonzero(visible.any(axis=1))
    cols = np.flatnonzero(visible.any(axis=0))
    x, y = int(cols[0]), int(rows[0])
    width, height = int(cols[-1]) + 1 - x, int(rows[-1]) + 1 - y
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [float(x), float(y), float(width), float(height)],
        "area": float(visible.sum()),
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()},
        "iscrowd": 0,
    }
