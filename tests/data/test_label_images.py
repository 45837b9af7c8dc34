"""Label images go through the one decoder with an allow-list of their own (issue 18, item 8):
PNG or TIFF only, class-index modes only, no EXIF orientation, the bomb limit of images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionkit.data.io import read_label_image, read_label_image_header
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.errors import AnnotationError, ImageDecodeError

pytestmark = pytest.mark.reliability

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


def test_a_grey_and_a_palette_png_decode_to_their_indices(tmp_path):
    values = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(values, "L").save(tmp_path / "l.png")
    palette = Image.fromarray(values, "L").convert("P")
    palette.save(tmp_path / "p.png")
    assert (read_label_image(tmp_path / "l.png") == values).all()
    assert read_label_image_header(tmp_path / "l.png") == ("L", (3, 4))
    assert read_label_image(tmp_path / "p.png").shape == (3, 4)


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        (lambda p: p.write_bytes(EPS), r"not an image in a supported format \(PNG, TIFF\)"),
        (
            lambda p: Image.fromarray(np.zeros((4, 4), np.uint8)).save(p, format="JPEG"),
            r"not an image in a supported format \(PNG, TIFF\)",
        ),
        (
            lambda p: Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(p, format="PNG"),
            "a label image in mode RGB",
        ),
    ],
    ids=["eps-named-png", "jpeg-named-png", "rgb-colours"],
)
def test_other_files_are_refused_naming_the_reason(tmp_path, write, reason):
    path = tmp_path / "mask.png"
    write(path)
    with pytest.raises(ImageDecodeError, match=reason):
        read_label_image(path)


def test_a_label_png_with_an_orientation_tag_is_an_error(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    Image.fromarray(np.zeros((4, 6), np.uint8), "L").save(tmp_path / "m.png", exif=exif)
    with pytest.raises(ImageDecodeError, match="EXIF orientation 6"):
        read_label_image(tmp_path / "m.png")


def test_a_mask_folder_lists_a_bad_label_file_with_its_reason(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(2):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / f"{i}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(tmp_path / "masks" / "0.png")
    (tmp_path / "masks" / "1.png").write_bytes(EPS)
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(AnnotationError) as info:
        MaskFolderDataset(tmp_path)
    assert "1.png" in str(info.value) and "not an image in a supported format" in str(info.value)
