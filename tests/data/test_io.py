"""The one image decoder: every pixel mode, EXIF orientation, and every way a file can be bad."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from visionkit.data.io import read_image, read_image_size
from visionkit.errors import DataError, ImageDecodeError

ORIENTATION = 0x0112


def _save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _check_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert isinstance(array, np.ndarray)
    assert array.shape == (height, width, 3)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous
    assert array.flags.writeable


def _noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any pixel decoding fail, to prove a function reads the header only."""

    def load(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


# ----------------------------------------------------------------------------- pixel modes


@pytest.mark.parametrize(
    ("suffix", "kwargs"),
    [
        (".png", {}),
        (".bmp", {}),
        (".tif", {}),
        (".ppm", {}),
        (".tga", {}),
        (".webp", {"lossless": True}),
    ],
)
def test_rgb_lossless_formats_round_trip(tmp_path: Path, suffix: str, kwargs: dict) -> None:
    pixels = _noise(5, 7)
    path = _save(tmp_path / f"rgb{suffix}", Image.fromarray(pixels), **kwargs)
    image = read_image(path)
    _check_rgb(image, 5, 7)
    np.testing.assert_array_equal(image, pixels)
    assert read_image_size(path) == (5, 7)


def test_grey_l_is_copied_to_three_channels(tmp_path: Path) -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    image = read_image(_save(tmp_path / "l.png", Image.fromarray(grey, mode="L")))
    _check_rgb(image, 3, 4)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], grey)


def test_bilevel_becomes_0_and_255(tmp_path: Path) -> None:
    bits = Image.frombytes("1", (3, 1), bytes([0b10100000]))
    path = _save(tmp_path / "one.png", bits)
    assert Image.open(path).mode == "1"
    image = read_image(path)
    _check_rgb(image, 1, 3)
    assert image[0].tolist() == [[255] * 3, [0] * 3, [255] * 3]


def _palette_image() -> Image.Image:
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    image.putdata([0, 1, 2])
    return image


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette(tmp_path: Path, suffix: str) -> None:
    path = _save(tmp_path / f"p{suffix}", _palette_image())
    assert Image.open(path).mode == "P"
    image = read_image(path)
    _check_rgb(image, 1, 3)
    assert image[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_transparent_entry_is_composited_on_black(tmp_path: Path, suffix: str) -> None:
    path = _save(tmp_path / f"pt{suffix}", _palette_image(), transparency=1)
    image = read_image(path)
    assert image[0].tolist() == [[255, 0, 0], [0, 0, 0], [0, 0, 255]]


@pytest.mark.parametrize(("suffix", "kwargs"), [(".png", {}), (".webp", {"lossless": True})])
def test_rgba_is_composited_on_black(tmp_path: Path, suffix: str, kwargs: dict) -> None:
    rgba = bytes([200, 100, 50, 255, 200, 100, 50, 0, 200, 100, 50, 128])
    path = _save(tmp_path / f"rgba{suffix}", Image.frombytes("RGBA", (3, 1), rgba), **kwargs)
    image = read_image(path)
    _check_rgb(image, 1, 3)
    # opaque: unchanged; transparent: black; half: round(v * 128 / 255)
    assert image[0].tolist() == [[200, 100, 50], [0, 0, 0], [100, 50, 25]]


def test_la_is_composited_on_black(tmp_path: Path) -> None:
    path = _save(
        tmp_path / "la.png", Image.frombytes("LA", (3, 1), bytes([200, 255, 200, 128, 200, 0]))
    )
    assert Image.open(path).mode == "LA"
    assert read_image(path)[0].tolist() == [[200] * 3, [100] * 3, [0] * 3]


def test_rgb_colour_key_transparency_is_composited_on_black(tmp_path: Path) -> None:
    rgb = Image.frombytes("RGB", (2, 1), bytes([1, 2, 3, 9, 9, 9]))
    path = _save(tmp_path / "key.png", rgb, transparency=(1, 2, 3))
    assert read_image(path)[0].tolist() == [[0, 0, 0], [9, 9, 9]]


def test_cmyk(tmp_path: Path) -> None:
    cmyk = Image.frombytes("CMYK", (3, 1), bytes([255, 0, 0, 0, 0, 0, 0, 255, 0, 0, 0, 0]))
    path = _save(tmp_path / "cmyk.tif", cmyk)
    assert Image.open(path).mode == "CMYK"
    image = read_image(path)
    _check_rgb(image, 1, 3)
    assert image[0].tolist() == [[0, 255, 255], [0, 0, 0], [255, 255, 255]]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 0, 0, 255))
    path = _save(tmp_path / "cmyk.jpg", cmyk, quality=95)
    image = read_image(path)
    _check_rgb(image, 8, 8)
    assert image.max() <= 3  # full black ink: black, not inverted


def test_ycbcr(tmp_path: Path) -> None:
    path = _save(tmp_path / "ycc.tif", Image.new("YCbCr", (2, 2), (128, 128, 128)))
    assert Image.open(path).mode == "YCbCr"
    image = read_image(path)
    _check_rgb(image, 2, 2)
    assert np.abs(image.astype(int) - 128).max() <= 1


@pytest.mark.parametrize(("suffix", "dtype"), [(".png", "<u2"), (".tif", "<u2"), (".tif", ">u2")])
def test_16_bit_is_rescaled_not_clipped(tmp_path: Path, suffix: str, dtype: str) -> None:
    values = np.array([[0, 65535, 32768, 257, 128, 127]], dtype=dtype)
    path = _save(tmp_path / f"grey16{suffix}", Image.fromarray(values))
    assert Image.open(path).mode.startswith("I;16")
    image = read_image(path)
    _check_rgb(image, 1, 6)
    assert image[0, :, 0].tolist() == [0, 255, 128, 1, 0, 0]
    assert (image == image[:, :, :1]).all()


def test_32_bit_integer_is_treated_as_16_bit(tmp_path: Path) -> None:
    values = np.array([[-5, 0, 32768, 65535, 70000]], dtype=np.int32)
    path = _save(tmp_path / "grey32.tif", Image.fromarray(values))
    assert Image.open(path).mode == "I"
    assert read_image(path)[0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_float_is_read_as_unit_interval(tmp_path: Path) -> None:
    values = np.array([[0.0, 0.5, 1.0, 2.0, np.nan, -1.0]], dtype=np.float32)
    path = _save(tmp_path / "float.tif", Image.fromarray(values))
    assert Image.open(path).mode == "F"
    image = read_image(path)
    _check_rgb(image, 1, 6)
    assert image[0, :, 0].tolist() == [0, 128, 255, 255, 0, 0]


def test_unsupported_mode_is_a_clear_error(tmp_path: Path) -> None:
    path = _save(tmp_path / "lab.tif", Image.new("LAB", (2, 2), (50, 0, 0)))
    with pytest.raises(ImageDecodeError, match="unsupported pixel mode 'LAB'") as err:
        read_image(path)
    assert err.value.path == str(path)


# ----------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path = _save(tmp_path / "o.png", Image.fromarray(_noise(5, 7)), exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    image = read_image(path)
    height, width = (7, 5) if orientation >= 5 else (5, 7)
    _check_rgb(image, height, width)
    np.testing.assert_array_equal(image, expected)
    assert read_image_size(path) == (height, width)


def _quadrant_jpeg(path: Path, orientation: int) -> Path:
    """A 48x32 (W x H) JPEG: top-left quadrant red, the rest blue, with an Orientation tag."""
    pixels = np.zeros((32, 48, 3), dtype=np.uint8)
    pixels[:, :, 2] = 255
    pixels[:16, :24] = (255, 0, 0)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return _save(path, Image.fromarray(pixels), exif=exif, quality=95)


@pytest.mark.parametrize(
    ("orientation", "red_corner"),
    [(6, (slice(0, 20), slice(-12, None))), (8, (slice(-20, None), slice(0, 12)))],
)
def test_exif_rotated_jpeg_comes_back_upright(
    tmp_path: Path, orientation: int, red_corner: tuple[slice, slice]
) -> None:
    path = _quadrant_jpeg(tmp_path / f"rotated{orientation}.jpg", orientation)
    image = read_image(path)
    _check_rgb(image, 48, 32)  # portrait once upright
    # 6: displayed turned 90 degrees clockwise, the stored top-left goes to the top-right;
    # 8: turned counter-clockwise, it goes to the bottom-left.
    corner = image[red_corner].reshape(-1, 3).mean(axis=0)
    assert corner[0] > 200 and corner[2] < 60
    rest = image[24:, 16:] if orientation == 6 else image[:24, 16:]
    assert rest[:, :, 2].mean() > 200 and rest[:, :, 0].mean() < 60


def test_read_image_size_uses_the_header_only(tmp_path: Path, no_decoding: None) -> None:
    path = _quadrant_jpeg(tmp_path / "rotated.jpg", 6)
    assert read_image_size(path) == (48, 32)
    with pytest.raises(ImageDecodeError, match="pixels were decoded"):
        read_image(path)  # the patch is effective: decoding is what it blocks


# ----------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_image_raises_naming_the_file(tmp_path: Path, suffix: str) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    path = _save(tmp_path / f"cut{suffix}", Image.fromarray(_noise(64, 64)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError) as err:
        read_image(path)
    assert str(path) in str(err.value)
    assert "truncated" in err.value.reason
    assert isinstance(err.value, DataError)


def test_text_file_named_png_raises(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    for read in (read_image, read_image_size):
        with pytest.raises(ImageDecodeError, match="not an image") as err:
            read(path)
        assert str(path) in str(err.value)


def test_empty_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError):
        read_image(path)


def test_missing_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "missing.jpg"
    for read in (read_image, read_image_size):
        with pytest.raises(ImageDecodeError, match="file not found") as err:
            read(path)
        assert err.value.path == str(path)


def test_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="directory"):
        read_image(tmp_path)


def test_formats_that_run_external_programs_are_not_opened(tmp_path: Path) -> None:
    # Pillow would hand an EPS file to Ghostscript; the decoder does not even identify it.
    path = tmp_path / "figure.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageDecodeError, match="not an image in a supported format"):
        read_image(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [40, 64])  # 1600 px: Pillow only warns; 4096 px: Pillow raises
def test_decompression_bomb_is_rejected_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_decoding: None, side: int
) -> None:
    path = _save(tmp_path / "bomb.png", Image.new("RGB", (side, side)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for read in (read_image, read_image_size):
        with pytest.raises(ImageDecodeError, match="decompression bomb") as err:
            read(path)
        assert str(path) in str(err.value)


def test_decompression_bomb_limit_can_be_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(tmp_path / "big.png", Image.new("RGB", (64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    _check_rgb(read_image(path), 64, 64)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_huge_png_header_is_rejected_quickly(tmp_path: Path) -> None:
    # 100000 x 100000 RGB declared in a file of a few dozen bytes, at Pillow's default limit.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path = tmp_path / "huge.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )
    start = time.perf_counter()
    for read in (read_image, read_image_size):
        with pytest.raises(ImageDecodeError, match="decompression bomb"):
            read(path)
    assert time.perf_counter() - start < 5.0  # no 30 GB allocation was attempted


# ----------------------------------------------------------------------------- paths


def test_non_ascii_path(tmp_path: Path) -> None:
    pixels = _noise(6, 9)
    path = _save(tmp_path / "données" / "图像.png", Image.fromarray(pixels))
    np.testing.assert_array_equal(read_image(path), pixels)
    assert read_image_size(str(path)) == (6, 9)


def test_returned_array_is_independent_and_writable(tmp_path: Path) -> None:
    path = _save(tmp_path / "rgb.png", Image.fromarray(_noise(4, 4)))
    first = read_image(path)
    first[:] = 0
    assert read_image(path).any()
