"""Synthetic identities: an ImageFolder where each identity is one shape *style*.

A style is a fixed combination of outline (circle, square, triangle, pentagon, ring, cross),
surface pattern (solid, stripes, checks, dots, two halves, with their scale relative to the
shape) and two colours. Every image draws one shape of its identity's style at a random
position, size and rotation, with slightly jittered colours, on a random background (plain,
gradient, noise or stripes, as :mod:`visionkit.data.synthetic`): recognising the identity
means recognising the style across all of those. Styles depend on their number alone (not on
the seed), so a validation set of styles never seen in training is the same generator with
``first_identity`` after the training set's last style::

    OUT/style_0000/000001.png ...   one folder per identity (the ``identities`` reader)
    OUT/identities.json              the generator and its parameters, written last

>>> make_identities("data/ids/train", num_images=400, identities=40)  # doctest: +SKIP
>>> make_identities("data/ids/val", num_images=200, identities=20, first_identity=40, seed=1)
... # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from visionkit.checkpoint import write_atomic
from visionkit.data.synthetic import BACKGROUNDS, _background
from visionkit.errors import DataError

GENERATOR = "visionkit.data.synthetic_identities.make_identities"
INFO_FILE = "identities.json"
OUTLINES = ("circle", "square", "triangle", "pentagon", "ring", "cross")
PATTERNS = ("solid", "stripes", "checks", "dots", "halves")


def style(number: int) -> dict[str, object]:
    """The style of identity ``number``: outline, pattern, pattern scale and angle, colours."""
    rng = np.random.default_rng([number, 20260])
    first = rng.integers(0, 256, 3)
    second = rng.integers(0, 256, 3)
    while np.linalg.norm(first - second) < 120:  # the pattern must show
        second = rng.integers(0, 256, 3)
    return {
        "outline": OUTLINES[number % len(OUTLINES)],
        "pattern": PATTERNS[(number // len(OUTLINES)) % len(PATTERNS)],
        "period": float(rng.uniform(0.35, 0.9)),  # of the shape's radius
        "angle": float(rng.uniform(0, math.pi)),
        "colours": (first.astype(np.float64), second.astype(np.float64)),
    }


def _outline_mask(kind: str, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Inside the outline, in the shape's own (rotated, centred) coordinates."""
    r2 = u * u + v * v
    if kind == "circle":
        return r2 <= radius**2
    if kind == "ring":
        return (r2 <= radius**2) & (r2 >= (0.5 * radius) ** 2)
    if kind == "cross":
        arm = 0.35 * radius
        return ((np.abs(u) <= radius) & (np.abs(v) <= arm)) | (
            (np.abs(v) <= radius) & (np.abs(u) <= arm)
        )
    sides = {"square": 4, "triangle": 3, "pentagon": 5}[kind]
    angles = 2.0 * math.pi * np.arange(sides) / sides
    vx, vy = radius * np.cos(angles), radius * np.sin(angles)
    mask = np.ones(np.broadcast_shapes(u.shape, v.shape), dtype=bool)
    for k in range(sides):
        ax, ay, bx, by = vx[k], vy[k], vx[(k + 1) % sides], vy[(k + 1) % sides]
        mask &= (bx - ax) * (v - ay) - (by - ay) * (u - ax) >= 0.0
    return mask


def _pattern(kind: str, u: np.ndarray, v: np.ndarray, period: float, angle: float) -> np.ndarray:
    """Which of the two colours each point takes (bool), in shape coordinates."""
    a = u * math.cos(angle) + v * math.sin(angle)
    b = -u * math.sin(angle) + v * math.cos(angle)
    if kind == "solid":
        return np.zeros(np.broadcast_shapes(u.shape, v.shape), dtype=bool)
    if kind == "stripes":
        return np.floor(a / period) % 2 == 1
    if kind == "checks":
        return (np.floor(a / period) + np.floor(b / period)) % 2 == 1
    if kind == "dots":
        return ((a % period) - period / 2) ** 2 + ((b % period) - period / 2) ** 2 < (
            0.3 * period
        ) ** 2
    return a > 0  # halves


def render(number: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """One ``size × size`` RGB image (uint8) of identity ``number``'s style."""
    s = style(number)
    grid = np.arange(size, dtype=np.float64) + 0.5
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    pixels, _ = _background(rng, size, grid, background)
    pixels = pixels.astype(np.float64)
    radius = rng.uniform(0.22, 0.42) * size
    cx, cy = rng.uniform(radius, size - radius, 2)
    rotation = rng.uniform(0, 2 * math.pi)
    x, y = grid[None, :] - cx, grid[:, None] - cy
    u = x * math.cos(rotation) + y * math.sin(rotation)
    v = -x * math.sin(rotation) + y * math.cos(rotation)
    inside = _outline_mask(str(s["outline"]), u, v, radius)
    second = _pattern(str(s["pattern"]), u, v, float(s["period"]) * radius, float(s["angle"]))
    first_colour, second_colour = (
        np.clip(c + rng.normal(0, 10, 3), 0, 255)
        for c in s["colours"]  # type: ignore[union-attr]
    )
    colour = np.where(second[:, :, None], second_colour, first_colour)
    pixels = np.where(inside[:, :, None], colour, pixels)
    return np.rint(pixels).astype(np.uint8)


def make_identities(
    out_dir: str | os.PathLike[str],
    num_images: int = 400,
    size: int = 64,
    seed: int = 0,
    identities: int = 40,
    first_identity: int | None = None,
    progress: bool = False,
) -> Path:
    """Write ``num_images`` images of ``identities`` styles (image ``i`` is style
    ``first_identity + i % identities``) as ``out_dir/style_NNNN/*.png``.

    Returns:
        The path of ``identities.json`` (written last).

    Raises:
        ValueError: a count or size is out of range.
        DataError: ``out_dir`` holds files that are not a previous identities dataset.
    """
    first = int(first_identity or 0)
    num_images, size, seed, identities = int(num_images), int(size), int(seed), int(identities)
    if identities < 2 or num_images < identities or size < 16 or seed < 0 or first < 0:
        raise ValueError(
            "make_identities: need identities >= 2, num_images >= identities, size >= 16, "
            f"seed >= 0, first_identity >= 0; got identities={identities}, "
            f"num_images={num_images}, size={size}, seed={seed}, first_identity={first}"
        )
    root = Path(out_dir)
    if root.is_dir() and any(root.iterdir()):
        if not (root / INFO_FILE).is_file():
            raise DataError(
                f"{root}: not empty and holds no {INFO_FILE}; refusing to write synthetic "
                "identities over other files (give an empty or new folder)"
            )
        for child in root.glob("style_*"):
            shutil.rmtree(child)
    root.mkdir(parents=True, exist_ok=True)
    for index in _maybe_progress(range(num_images), progress):
        number = first + index % identities
        folder = root / f"style_{number:04d}"
        folder.mkdir(exist_ok=True)
        pixels = render(number, np.random.default_rng([seed, index, 3]), size)
        Image.fromarray(pixels).save(folder / f"{index + 1:06d}.png", compress_level=1)
    info = {
        "generator": GENERATOR,
        "num_images": num_images,
        "size": size,
        "seed": seed,
        "identities": identities,
        "first_identity": first_identity,
    }
    text = json.dumps({"info": info}, indent=1) + "\n"
    return write_atomic(root / INFO_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def needs_generation(root: Path, params: dict[str, object]) -> bool:
    """True when ``root`` holds no identities dataset made with ``params`` (a folder with
    other content is left to :func:`make_identities` to refuse)."""
    path = root / INFO_FILE
    if not path.is_file():
        return True
    try:
        info = json.loads(path.read_text(encoding="utf-8")).get("info", {})
    except (OSError, ValueError, AttributeError):
        return True
    return any(info.get(k) != v for k, v in params.items())


def _maybe_progress(items: range, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc="identities", unit="img")
