"""Session 38: label images that went through JPEG compression (a label saved as JPEG and
named ``.png``, a JPEG converted to PNG, colour labels resaved lossily) gave "label values
[..] are not classes" or "colours not in the palette" without saying why; now the message
says that label images must be lossless (PNG), naming the JPEG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.data.test_masks import write_void_folder
from tests.helpers import run


def jpeg_round_trip(array: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=70)
    return np.array(Image.open(buffer))


def diagonal_mask(size: int = 48) -> np.ndarray:
    """Classes 0..2 split by diagonal edges (JPEG blocks do not line up with them) and VOC's
    255 borders, as a label image is drawn."""
    y, x = np.mgrid[:size, :size]
    mask = np.where(x + y < size, 0, 1).astype(np.uint8)
    mask[x > 2 * y] = 2
    mask[np.abs(x - 2 * y) <= 1] = 255
    return mask


def test_a_jpeg_named_png_is_said_to_be_a_jpeg(tmp_path, capsys):
    root = write_void_folder(tmp_path / "data", void=255)
    mask = np.array(Image.open(root / "masks" / "0.png"))
    Image.fromarray(mask).save(root / "masks" / "0.png", format="JPEG")
    code, out, _ = run(["check-data", "--format", "mask_folder", "--root", root], capsys)
    assert code == 1
    assert "masks/0.png: 0.png is a JPEG (named .png): label images must be lossless (PNG)" in out


def test_values_of_compression_noise_are_said_to_be_so(tmp_path, capsys):
    root = write_void_folder(tmp_path / "data", void=255, size=48)
    noisy = jpeg_round_trip(diagonal_mask())
    assert len(np.setdiff1d(noisy, [0, 1, 2, 255])) >= 5
    Image.fromarray(noisy).save(root / "masks" / "0.png")  # a PNG of a JPEG's values
    code, out, _ = run(["check-data", "--format", "mask_folder", "--root", root], capsys)
    assert code == 1
    assert "masks/0.png: label values [" in out
    assert "near the classes' own look like compression noise: label images must be lossless" in out


def test_wrong_class_counts_are_not_called_noise(tmp_path, capsys):
    """ADE20K-like values 0..150 read with a 3-name class list: many values, far from the
    classes; the message is the plain one."""
    root = write_void_folder(tmp_path / "data", void=255)
    mask = np.arange(32 * 32, dtype=np.int64).reshape(32, 32) % 151
    Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / "0.png")
    code, out, _ = run(["check-data", "--format", "mask_folder", "--root", root], capsys)
    assert code == 1
    assert "label values [3, 4, 5" in out and "compression" not in out


def regions_of(values, size=64, seed=0):
    """A label map of regions (runs of rows and columns, of uneven sizes), one per value, as
    a scene's label image holds: each value in a whole region, none at class edges only."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 200, len(values))
    runs = np.repeat(np.asarray(values, np.uint8), sizes)
    return np.resize(runs, (size, size))


@pytest.mark.parametrize(
    ("values", "names"),
    [
        (range(34), 19),  # Cityscapes' raw _labelIds 0..33, read with its 19 train-id names
        (range(32), 11),  # CamVid's 32 raw values, read with the 11 names of its usual classes
    ],
)
def test_a_class_list_a_few_names_short_is_not_called_noise(tmp_path, capsys, values, names):
    """Before: every value was within 24 of a class, so the message said "compression noise
    ... export the labels again as PNG" of label files that were fine; whole regions of each
    value are no noise, and the plain message (the values, the classes) stays."""
    root = write_void_folder(tmp_path / "data", void=255, size=64)
    (root / "classes.txt").write_text("".join(f"c{k}\n" for k in range(names)))
    Image.fromarray(regions_of(values)).save(root / "masks" / "0.png")
    code, out, _ = run(["check-data", "--format", "mask_folder", "--root", root], capsys)
    assert code == 1
    assert f"masks/0.png: label values [{names}, {names + 1}, " in out
    assert f"are not classes 0..{names - 1}" in out and "compression" not in out


def test_colour_labels_resaved_lossily_are_said_to_be_so(tmp_path, capsys):
    # 128 pixels: a smaller colour label is mostly class edges, which chroma subsampling
    # smears into colours far from any class
    root = write_void_folder(tmp_path / "data", void=255, n=2, size=128)
    (root / "classes.txt").unlink()
    (root / "colours.txt").write_text("0 0 0 sky\n128 0 0 road\n0 128 0 car\n255 255 255 void\n")
    colours = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0]] + [[0, 0, 0]] * 252 + [[255] * 3])
    for i in range(2):
        rgb = colours[diagonal_mask(128)].astype(np.uint8)
        Image.fromarray(rgb if i else jpeg_round_trip(rgb)).save(root / "masks" / f"{i}.png")
    code, out, _ = run(
        ["check-data", "--format", "mask_folder", "--root", root, "palette=colours.txt"], capsys
    )
    assert code == 1
    assert "not in the palette" in out
    assert "near the palette's own colours, as compression noise is: label images must be" in out
