"""16-bit PNGs holding 10/12/14-bit data: the ``sBIT`` chunk says how many bits are significant
(:mod:`visionkit.data.io`), so 12-bit data stored as 0-4095 is not read nearly black, while a
16-bit PNG without ``sBIT``, or one scaled up to 16 bits as the PNG specification asks, is
read as 16-bit data."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from visionkit.data.io import read_image
from visionkit.errors import ImageDecodeError

pytestmark = pytest.mark.reliability

LOW_12 = np.array([[0, 4095, 2048, 1, 100]], dtype=np.uint16)  # 12-bit values as stored
AS_12_BIT = [0, 255, 128, 0, 6]  # round(v * 255 / 4095)
AS_16_BIT = [0, 16, 8, 0, 0]  # round(v * 255 / 65535)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png16(path: Path, array: np.ndarray, colour_type: int, sbit: bytes | None) -> Path:
    """A 16-bit PNG written byte by byte (Pillow cannot write 16-bit colour), with an ``sBIT``
    chunk holding ``sbit`` when given."""
    h, w = array.shape[:2]
    rows = array.reshape(h, w, -1).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in rows)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
    if sbit is not None:
        data += _chunk(b"sBIT", sbit)
    path.write_bytes(data + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))
    return path


def _grey_png_by_pillow(path: Path, values: np.ndarray, bits: int | None) -> Path:
    info = PngImagePlugin.PngInfo()
    if bits is not None:
        info.add(b"sBIT", bytes([bits]))
    Image.fromarray(values).save(path, pnginfo=info)
    assert Image.open(path).mode == "I;16"
    return path


def test_12_bit_grey_with_sbit_is_scaled_by_4095(tmp_path: Path) -> None:
    path = _grey_png_by_pillow(tmp_path / "g12.png", LOW_12, 12)
    assert b"sBIT\x0c" in path.read_bytes()
    image = read_image(path)
    assert image.shape == (1, 5, 3) and image.dtype == np.uint8
    assert image[0, :, 0].tolist() == AS_12_BIT
    assert (image == image[:, :, :1]).all()


def test_16_bit_grey_without_sbit_is_read_as_16_bit(tmp_path: Path) -> None:
    path = _grey_png_by_pillow(tmp_path / "g16.png", LOW_12, None)
    assert read_image(path)[0, :, 0].tolist() == AS_16_BIT


def test_sbit_data_scaled_up_as_the_specification_asks_is_read_as_16_bit(tmp_path: Path) -> None:
    scaled = np.rint(LOW_12.astype(float) * 65535 / 4095).astype(np.uint16)  # what pypng writes
    path = _grey_png_by_pillow(tmp_path / "spec.png", scaled, 12)
    assert read_image(path)[0, :, 0].tolist() == AS_12_BIT


def test_an_sbit_value_outside_1_to_16_is_ignored(tmp_path: Path) -> None:
    for name, value in (("zero.png", b"\x00"), ("seventeen.png", b"\x11")):
        path = write_png16(tmp_path / name, LOW_12, 0, value)
        assert read_image(path)[0, :, 0].tolist() == AS_16_BIT
    assert read_image(write_png16(tmp_path / "ok.png", LOW_12, 0, b"\x0c"))[0, 1, 0] == 255


def test_an_sbit_chunk_of_an_8_bit_png_changes_nothing(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", bytes([4]))
    path = tmp_path / "l8.png"
    Image.fromarray(np.array([[0, 15, 255]], np.uint8)).save(path, pnginfo=info)
    assert read_image(path)[0, :, 0].tolist() == [0, 15, 255]


def test_12_bit_colour_png_with_sbit_keeps_its_low_bits(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    rgb = np.stack([LOW_12, LOW_12 // 2, np.full_like(LOW_12, 4095)], axis=-1)
    path = write_png16(tmp_path / "rgb12.png", rgb, 2, b"\x0c\x0c\x0c")
    assert np.asarray(Image.open(path)).max() == 15  # Pillow alone: the high byte
    image = read_image(path)
    assert image[0, :, 0].tolist() == AS_12_BIT
    assert image[0, :, 1].tolist() == [0, 127, 64, 0, 3]  # round((v // 2) * 255 / 4095)
    assert image[0, :, 2].tolist() == [255] * 5
    no_sbit = write_png16(tmp_path / "rgb16.png", rgb, 2, None)
    assert read_image(no_sbit)[0, :, 0].tolist() == [0, 15, 8, 0, 0]  # Pillow's high byte


def test_12_bit_grey_alpha_png_scales_the_alpha_by_its_own_sbit(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    grey_alpha = np.stack([np.full_like(LOW_12, 4095), LOW_12], axis=-1)
    path = write_png16(tmp_path / "ga12.png", grey_alpha, 4, b"\x0c\x0c")
    assert read_image(path)[0, :, 0].tolist() == AS_12_BIT  # white composited on black


def test_12_bit_colour_png_without_opencv_is_an_error_not_a_black_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rgb = np.stack([LOW_12] * 3, axis=-1)
    path = write_png16(tmp_path / "rgb12.png", rgb, 2, b"\x0c\x0c\x0c")
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message
    assert "sBIT chunk says 12 significant bits" in message
    assert "pip install opencv-python-headless" in message
