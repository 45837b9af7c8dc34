"""Session 38: colour-coded label images in Pascal VOC's or Cityscapes' colours (VOC labels
resaved as RGB, Cityscapes' ``_gtFine_color`` PNGs) needed a palette file written by hand;
``palette: voc`` and ``palette: cityscapes`` are built in."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.helpers import run
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.data.readers.palette import read_palette, voc_colour


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
    palette = read_palette(tmp_path / "cityscapes")
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
