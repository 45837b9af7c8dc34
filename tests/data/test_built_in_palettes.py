"""Session 38: colour-coded label images in Pascal VOC's or Cityscapes' colours (VOC labels
resaved as RGB, Cityscapes' ``_gtFine_color`` PNGs) needed a palette file written by hand;
``palette: voc`` and ``palette: cityscapes`` are built in."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.data.readers.palette import read_palette, voc_colour
from visionkit.errors import DataError


def write_rgb_folder(root, colours, n=2, size=16):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(
            root / "images" / f"{i}.jpg"
        )
        rgb = np.zeros((size, size, 3), np.uint8)
        for k, colour in enumerate(colours):
            rgb[k::4] = colour
        Image.fromarray(rgb).save(root / "masks" / f"{i}.png")
    return root


def test_voc_colours_are_read_as_voc_classes(tmp_path):
    """VOC's colormap: background black, aeroplane (128, 0, 0), person (192, 128, 128), the
    border colour (224, 224, 192) unlabelled."""
    assert [voc_colour(k) for k in (0, 1, 15, 255)] == [
        (0, 0, 0),
        (128, 0, 0),
        (192, 128, 128),
        (224, 224, 192),
    ]
    colours = [(0, 0, 0), (128, 0, 0), (192, 128, 128), (224, 224, 192)]
    dataset = MaskFolderDataset(write_rgb_folder(tmp_path / "voc", colours), palette="voc")
    names = dataset.label_names["semantic"]
    assert len(names) == 21 and names[15] == "person"
    assert set(np.unique(dataset[0]["semantic"]).tolist()) == {0, 1, 15, 255}


def test_cityscapes_colours_are_its_19_train_ids(tmp_path, capsys):
    palette = read_palette("cityscapes")
    assert palette.names[:3] == ["road", "sidewalk", "building"] and len(palette.names) == 19
    # road, car, and two void colours (unlabeled black, ground)
    colours = [(128, 64, 128), (0, 0, 142), (0, 0, 0), (81, 0, 81)]
    root = write_rgb_folder(tmp_path / "cs", colours)
    code, out, _ = run(
        ["check-data", "--format", "mask_folder", "--root", root, "palette=cityscapes"], capsys
    )
    assert code == 0, out
    assert "road 25.0%" in out and "car 25.0%" in out and "unlabelled (void colour) 50.0%" in out


def test_a_palette_file_of_the_name_is_read_instead(tmp_path):
    (tmp_path / "voc").write_text("0 0 0 sea\n255 255 255 land\n")
    assert read_palette(tmp_path / "voc").names == ["sea", "land"]
    root = write_rgb_folder(tmp_path / "data", [(0, 0, 0), (255, 255, 255)])
    (root / "voc").write_text("0 0 0 sea\n255 255 255 land\n")
    assert MaskFolderDataset(root, palette="voc").label_names["semantic"] == ["sea", "land"]


def test_only_the_bare_name_is_a_built_in_palette(tmp_path):
    """Before: a palette path that merely ended in ``voc`` (``meta/voc``, a file not there)
    was read as VOC's colours instead of saying the file does not exist."""
    with pytest.raises(DataError, match=r"palette /x/nowhere/meta/voc does not exist"):
        read_palette("/x/nowhere/meta/voc")
    root = write_rgb_folder(tmp_path / "data", [(0, 0, 0), (128, 0, 0)])
    with pytest.raises(DataError, match=r"meta/cityscapes does not exist .*exactly the name"):
        MaskFolderDataset(root, palette="meta/cityscapes")
    assert len(MaskFolderDataset(root, palette="voc").label_names["semantic"]) == 21


def write_cityscapes_colour(root, alpha=255):
    """A ``_gtFine_color.png`` as Cityscapes' ``json2labelImg`` writes it: an RGBA image,
    the background in unlabeled's colour, each polygon filled with its label's colour (a
    3-tuple, so alpha 255); ``alpha`` below 255 makes the car's pixels see-through."""
    from PIL import ImageDraw

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(
        root / "images" / "aachen_000000_000019_leftImg8bit.png"
    )
    label = Image.new("RGBA", (32, 24), (0, 0, 0))
    draw = ImageDraw.Draw(label)
    draw.polygon([(0, 12), (31, 12), (31, 23), (0, 23)], fill=(128, 64, 128))  # road
    draw.polygon([(4, 4), (14, 4), (14, 11), (4, 11)], fill=(0, 0, 142, alpha))  # car
    label.save(root / "masks" / "aachen_000000_000019_gtFine_color.png")
    return dict(image_suffix="_leftImg8bit", mask_suffix="_gtFine_color", palette="cityscapes")


def test_cityscapes_rgba_colour_labels_are_read(tmp_path):
    """Before: every real ``_gtFine_color.png`` was refused ("a colour-coded label image in
    mode RGBA"); their alpha is 255 everywhere, and it is dropped."""
    keys = write_cityscapes_colour(tmp_path / "cs")
    with Image.open(tmp_path / "cs" / "masks" / "aachen_000000_000019_gtFine_color.png") as im:
        assert im.mode == "RGBA"
    semantic = MaskFolderDataset(tmp_path / "cs", image_check="decode", **keys)[0]["semantic"]
    assert semantic[20, 5] == 0 and semantic[6, 6] == 13  # road, car
    assert semantic[0, 0] == 255  # unlabeled's black: void


def test_see_through_colour_labels_are_refused_with_why(tmp_path, capsys):
    keys = write_cityscapes_colour(tmp_path / "cs", alpha=0)
    args = [f"{k}={v}" for k, v in keys.items()]
    code, out, _ = run(
        ["check-data", "--format", "mask_folder", "--root", tmp_path / "cs", *args], capsys
    )
    assert code == 1
    assert "aachen_000000_000019_gtFine_color.png: an RGBA label image with 88 of 768 pixels" in out
    assert "not opaque (alpha 0 at least)" in out and "save it as RGB" in out
