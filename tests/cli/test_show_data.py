"""``visionkit show-data`` (issue 19, item 3): the labels drawn after the data pipeline, in grid
PNGs written to a new folder, and the label statistics of the split printed and plotted."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import detection_config, make_coco, run
from visionkit.cli.show_data import CAPTION, MIN_SIDE
from visionkit.inference.draw import colour_of


@pytest.fixture()
def multitask_yaml(pyramid_config, shapes_root, tmp_path):
    """Classification, instance and semantic heads on the tiny shapes data, as a YAML file."""
    heads = {
        "cls": {"name": "linear", "num_classes": None},
        "det": {"name": "fcos_mask"},
        "seg": {"name": "semantic_fpn"},
    }
    splits = {
        split: {"format": "coco", "images": str(shapes_root / split), "class_field": "background"}
        for split in ("train", "val")
    }
    path = tmp_path / "multitask.yaml"
    path.write_text(yaml.safe_dump(pyramid_config("shows", heads, **splits)))
    return path


def test_show_data_draws_the_training_samples_and_prints_the_statistics(
    multitask_yaml, tmp_path, capsys
):
    code, out, err = run(["show-data", "--config", multitask_yaml, "--n", "20"], capsys)
    assert code == 0, err[-2000:]
    folder = tmp_path / "runs" / "show-data" / "shows"  # <output_dir>/show-data/<name>
    assert sorted(p.name for p in folder.iterdir()) == [
        "statistics.png",
        "train_01.png",
        "train_02.png",
    ]
    for name in ("train_01.png", "train_02.png", "statistics.png"):
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and min(image.size) > 100
    with (
        Image.open(folder / "train_01.png") as first,
        Image.open(folder / "train_02.png") as second,
    ):
        assert first.width == 4 * 192 + 3 * 4  # 16 pictures: 4 columns of 64 px enlarged 3x
        assert second.width == 4 * 192 + 3 * 4 and second.height < first.height  # the other 4
    assert out.startswith("data.train: coco dataset ")
    assert "  images: 48\n" in out and "  image sizes (HxW): 64x64: 48" in out
    assert "  instances per class (instances): circle " in out
    assert "  images per class (class): plain " in out
    assert "boxes per COCO area range (box area in original pixels): small (< 32^2) " in out
    assert (
        f"show-data: data.train: the first 20 draws of epoch 0 (seed 0), with the training "
        f"augmentations, drawn in {folder / 'train_01.png'}, {folder / 'train_02.png'}" in out
    )
    assert f"show-data: label statistics plotted in {folder / 'statistics.png'}" in out


def test_show_data_val_split_uses_the_evaluation_pipeline(multitask_yaml, tmp_path, capsys):
    out_dir = tmp_path / "shown"
    argv = ["show-data", "--config", multitask_yaml, "--split", "val", "--n", "5"]
    code, out, err = run([*argv, "--output-dir", out_dir], capsys)
    assert code == 0, err[-2000:]
    assert sorted(p.name for p in out_dir.iterdir()) == ["statistics.png", "val_01.png"]
    assert out.startswith("data.val: coco dataset ") and "  images: 24\n" in out
    assert "data.train:" not in out  # the statistics are those of the split shown
    assert "the first 5 images, through the evaluation pipeline" in out


def test_a_second_call_writes_a_new_folder_with_the_same_seeded_pictures(
    multitask_yaml, tmp_path, capsys
):
    argv = ["show-data", "--config", multitask_yaml, "--n", "4"]
    assert run(argv, capsys)[0] == 0
    folder = tmp_path / "runs" / "show-data" / "shows"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, out, _ = run(argv, capsys)
    assert code == 0
    again = folder.with_name("shows-2")
    assert f"drawn in {again / 'train_01.png'}" in out
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # untouched
    with Image.open(folder / "train_01.png") as a, Image.open(again / "train_01.png") as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))  # augmentations seeded by cfg.seed


def test_the_boxes_are_drawn_where_the_training_augmentation_moved_them(
    tmp_path, capsys, monkeypatch
):
    # the boxes alone: on a 32 px image the caption, kept on the image, covers the old place
    monkeypatch.setattr("visionkit.inference.draw.draw_captions", lambda canvas, *a, **k: canvas)
    data = make_coco(tmp_path / "data", num_images=1)  # 32x32, one box at x 8..16, y 8..16
    flip = {"transforms": {"train": [{"name": "HorizontalFlip", "p": 1.0}]}}
    config = detection_config(tmp_path / "flip.yaml", data, data=flip)
    out_dir = tmp_path / "shown"
    argv = ["show-data", "--config", config, "--n", "1", "--output-dir", out_dir]
    code, _, err = run(argv, capsys)
    assert code == 0, err[-2000:]
    with Image.open(out_dir / "train_01.png") as grid:
        pixels = np.asarray(grid.convert("RGB"))
    scale = MIN_SIDE // 32  # the 32 px image enlarged 6x, under a caption strip

    def at(x: float, y: float) -> tuple[int, ...]:
        return tuple(int(v) for v in pixels[CAPTION + int(y * scale), int(x * scale)])

    label = 1  # make_coco: image 1 has category_id 2, the second category
    assert at(20, 8.2) == colour_of(label)  # the top edge of the flipped box: x 16..24
    assert at(12, 8.2) != colour_of(label)  # nothing where the box was before the flip
    # drawn after enlarging: a 2-pixel line, not a 2-pixel line enlarged to 12 pixels
    assert at(20, 9.0) != colour_of(label)
    with Image.open(data / "images" / "1.png") as raw:
        original = np.asarray(raw.convert("RGB"))
    drawn, expected = np.array(at(1.5, 28.5)), original[28, 32 - 1 - 1].astype(int)
    assert np.abs(drawn - expected).max() <= 1  # the image un-normalised, flipped


@pytest.mark.reliability
def test_show_data_refuses_a_missing_split_and_a_bad_count(multitask_yaml, capsys):
    code, out, err = run(["show-data", "--config", multitask_yaml, "--split", "test"], capsys)
    assert code == 2 and not out
    assert (
        "error: invalid configuration:\n  data.test: not set; give it in the config or as "
        "data.test.images=... / data.test.root=..." in err
    )
    code, out, err = run(["show-data", "--config", multitask_yaml, "--n", "0"], capsys)
    assert code == 2 and not out
    assert (
        "error: invalid command-line option:\n  --n: expected a number of images of at least 1, "
        "got 0" in err
    )


def test_the_draws_of_a_training_mix_name_their_set(pyramid_config, shapes_root):
    from visionkit.build import targets_needed
    from visionkit.cli.show_data import drawn_samples, shown_model, split_datasets
    from visionkit.config import load_config

    entry = {"format": "coco", "images": str(shapes_root / "train")}
    heads = {"det": {"name": "fcos"}}
    config = pyramid_config("mix", heads, train={"a": entry, "b": dict(entry)}, val=entry)
    cfg = load_config(config)
    datasets, shown = split_datasets(cfg, "train", targets_needed(cfg))
    captions = [c for c, _ in drawn_samples(cfg, shown_model(cfg, datasets), shown, "train", 8)]
    assert all(c.startswith(f"draw {i} ") for i, c in enumerate(captions))
    assert {c.split()[2] for c in captions} <= {"a:", "b:"}


@pytest.mark.reliability
def test_show_data_says_each_data_warning_once_and_reads_no_split_it_does_not_need(
    tmp_path, capsys
):
    # each warning was logged as well as printed in the report, and --split train read (and
    # warned of) data.val too
    def clipped(data: dict) -> None:
        data["annotations"][0]["bbox"] = [8, 8, 100, 100]  # past the 32x32 image: clipped

    train = make_coco(tmp_path / "train", num_images=2, edit=clipped)
    val = make_coco(tmp_path / "val", num_images=2, edit=clipped)
    config = detection_config(tmp_path / "c.yaml", train, val)
    argv = ["show-data", "--config", config, "--n", "1", "--output-dir"]
    code, out, err = run([*argv, tmp_path / "a"], capsys)
    assert code == 0, err[-2000:]
    assert (out + err).count("box clipped") == 1 and str(val) not in out + err
    code, out, err = run([*argv, tmp_path / "b", "--split", "val"], capsys)
    assert code == 0, err[-2000:]
    assert out.count("box clipped") == 1 and str(val / "annotations.json") not in err
    assert err.count("box clipped") == 1 and str(train / "annotations.json") in err  # read
