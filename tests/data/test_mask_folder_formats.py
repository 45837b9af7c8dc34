"""Mask folders as datasets publish them (issue 16, item 3): label file suffixes (CamVid ``_L``,
Cityscapes ``_gtFine_labelTrainIds`` beside ``_leftImg8bit`` images), TIFF labels, RGB
colour-coded labels through a palette file, and the one rule for unlabelled pixels: whatever
the file's void value or colour, the reader gives IGNORE_PIXEL (255), which the loss and the
evaluator ignore."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from visionkit.build import build_dataset
from visionkit.data.batch import IGNORE_PIXEL, collate
from visionkit.data.checks import DataReport
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.data.readers.palette import read_palette
from visionkit.data.transforms import apply_pipeline, build_pipeline
from visionkit.errors import AnnotationError, ConfigError, DataError
from visionkit.evaluation.semantic import SemanticEvaluator
from visionkit.models.heads import SemanticFPNHead

SIZE = 32
# CamVid's label_colors.txt layout: "R G B<tab>Name"
CAMVID_COLOURS = "128 128 128\tSky\n0 0 0\tVoid\n128 0 0\tBuilding\n64 0 128\tCar\n"
COLOURS = {"Sky": (128, 128, 128), "Building": (128, 0, 0), "Car": (64, 0, 128)}


def label_map(seed: int = 0) -> np.ndarray:
    """Classes 0..2 in bands, with an unlabelled square (-1) in the top-left corner."""
    labels = np.zeros((SIZE, SIZE), np.int64)
    labels[:, SIZE // 3 :] = 1
    labels[SIZE // 2 :, (SIZE // 2 + seed) :] = 2
    labels[: SIZE // 4, : SIZE // 4] = -1
    return labels


def write_image(path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def colour_labels(labels: np.ndarray, void=(0, 0, 0)) -> np.ndarray:
    """An RGB label image of ``labels`` with the CamVid colours (-1: ``void``)."""
    table = np.array([COLOURS["Sky"], COLOURS["Building"], COLOURS["Car"], void], np.uint8)
    return table[labels]  # -1 picks the last row: void


def write_camvid(root, void=(0, 0, 0), palette=CAMVID_COLOURS, n: int = 2):
    """``images/<name>.png`` and RGB ``labels/<name>_L.png`` with a ``label_colors.txt``."""
    for i in range(n):
        write_image(root / "images" / f"0001TP_{i:06d}.png", seed=i)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        rgb = colour_labels(label_map(i), void)
        Image.fromarray(rgb).save(root / "labels" / f"0001TP_{i:06d}_L.png")
    (root / "label_colors.txt").write_text(palette)
    return root


def camvid(root, **kwargs) -> MaskFolderDataset:
    return MaskFolderDataset(
        root, masks="labels", mask_suffix="_L", palette="label_colors.txt", **kwargs
    )


def expected(seed: int = 0) -> np.ndarray:
    labels = label_map(seed)
    return np.where(labels < 0, IGNORE_PIXEL, labels).astype(np.uint8)


# ---- colour labels with a palette -------------------------------------------------------------
def test_camvid_rgb_labels_map_through_the_palette_in_its_order(tmp_path):
    dataset = camvid(write_camvid(tmp_path / "camvid"), image_check="decode")
    assert dataset.label_names == {"semantic": ["Sky", "Building", "Car"]}  # Void is no class
    assert dataset.class_source == str(tmp_path / "camvid" / "label_colors.txt")
    for index in range(2):
        sample = dataset[index]
        assert sample["semantic"].dtype == np.uint8
        assert (sample["semantic"] == expected(index)).all()
        assert (dataset.load_semantic(index + 1) == expected(index)).all()


def test_a_json_or_yaml_palette_and_an_explicit_void_color(tmp_path):
    root = write_camvid(tmp_path / "json", void=(255, 255, 255))
    entries = [{"name": name, "color": list(colour)} for name, colour in COLOURS.items()]
    (root / "palette.json").write_text(json.dumps(entries))
    (root / "palette.yaml").write_text(
        "".join(f"- {{name: {e['name']}, color: {e['color']}}}\n" for e in entries)
    )
    for file in ("palette.json", "palette.yaml"):
        dataset = MaskFolderDataset(
            root, masks="labels", mask_suffix="_L", palette=file, void_color=[255, 255, 255]
        )
        assert dataset.label_names["semantic"] == ["Sky", "Building", "Car"]
        assert (dataset[0]["semantic"] == expected(0)).all()


@pytest.mark.reliability
def test_classes_txt_names_the_palette_colours_and_must_count_as_many(tmp_path):
    root = write_camvid(tmp_path / "names")
    (root / "classes.txt").write_text("sky\nbuilding\ncar\n")
    assert camvid(root).label_names["semantic"] == ["sky", "building", "car"]
    (root / "classes.txt").write_text("sky\nbuilding\n")
    with pytest.raises(DataError, match="names 2 classes but the palette") as info:
        camvid(root)
    assert "label_colors.txt has 3 (Sky, Building, Car)" in str(info.value)


@pytest.mark.reliability
def test_a_colour_not_in_the_palette_is_an_error_naming_file_colour_and_pixels(tmp_path):
    root = write_camvid(tmp_path / "unknown")
    rgb = np.array(Image.open(root / "labels" / "0001TP_000001_L.png"))
    rgb[-2:, :3] = (1, 2, 3)  # 6 pixels of a colour the palette lacks
    Image.fromarray(rgb).save(root / "labels" / "0001TP_000001_L.png")
    dataset = camvid(root)  # headers only: found when the mask is read
    with pytest.raises(AnnotationError, match=r"1 colour not in the palette") as info:
        dataset[1]
    message = str(info.value)
    assert "0001TP_000001_L.png" in message and "(1, 2, 3) in 6 pixels" in message
    assert str(root / "label_colors.txt") in message
    # check-data decodes every label file: the same problem in the report
    with pytest.raises(DataError, match=r"\(1, 2, 3\) in 6 pixels") as info:
        camvid(root, image_check="decode")
    assert "bad label file" in str(info.value)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("128 128 128\tSky\n300 0 0\tBuilding\n", "line 2: '300 0 0\\tBuilding'"),
        ("128 128 128\tSky\n128 128 128\tRoad\n", "line 2: colour (128, 128, 128) is also line 1"),
        ("128 128 128\n", "line 1: '128 128 128'"),
        ("# nothing\n", "no colours listed"),
    ],
    ids=["out-of-range", "duplicate-colour", "no-name", "empty"],
)
def test_a_malformed_palette_is_an_error_naming_the_line(tmp_path, text, problem):
    path = tmp_path / "colours.txt"
    path.write_text(text)
    with pytest.raises(DataError, match="expected lines 'R G B name'") as info:
        read_palette(path)
    assert str(path) in str(info.value) and problem in str(info.value)


@pytest.mark.reliability
def test_rgb_labels_without_a_palette_say_how_to_read_them(tmp_path):
    root = write_camvid(tmp_path / "nopalette")
    (root / "classes.txt").write_text("sky\nbuilding\ncar\n")
    with pytest.raises(DataError, match="a label image in mode RGB") as info:
        MaskFolderDataset(root, masks="labels", mask_suffix="_L")
    assert "need a palette file: mask_folder's palette" in str(info.value)


@pytest.mark.reliability
def test_void_settings_that_cannot_apply_are_config_errors(tmp_path):
    root = write_camvid(tmp_path / "settings")
    with pytest.raises(ConfigError, match="ignore_index: 11 is not used with a palette"):
        camvid(root, ignore_index=11)
    with pytest.raises(ConfigError, match="void_color: only with a palette"):
        MaskFolderDataset(root, masks="labels", mask_suffix="_L", void_color=[0, 0, 0])
    with pytest.raises(ConfigError, match=r"mask_ext: '.jpg' is not one of .png, .tif, .tiff"):
        MaskFolderDataset(root, masks="labels", mask_ext=".jpg")


# ---- file names and formats -------------------------------------------------------------------
def write_cityscapes(root, suffix_less: bool = False):
    """``leftImg8bit/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` and
    ``gtFine/<city>/..._gtFine_labelTrainIds.png`` (class indices, 255 unlabelled)."""
    for i, city in enumerate(("aachen", "bonn")):
        stem = f"{city}_000000_{i:06d}"
        name = f"{stem}.png" if suffix_less and i else f"{stem}_leftImg8bit.png"
        write_image(root / "leftImg8bit" / city / name, seed=i)
        (root / "gtFine" / city).mkdir(parents=True, exist_ok=True)
        Image.fromarray(expected(i)).save(
            root / "gtFine" / city / f"{stem}_gtFine_labelTrainIds.png"
        )
    (root / "classes.txt").write_text("road\nbuilding\ncar\n")
    return root


CITYSCAPES = {
    "images": "leftImg8bit",
    "masks": "gtFine",
    "image_suffix": "_leftImg8bit",
    "mask_suffix": "_gtFine_labelTrainIds",
}


def test_cityscapes_names_strip_the_image_suffix_and_add_the_label_suffix(tmp_path):
    dataset = MaskFolderDataset(write_cityscapes(tmp_path / "cs"), **CITYSCAPES)
    assert len(dataset) == 2
    assert dataset.mask_paths[1].name == "bonn_000000_000001_gtFine_labelTrainIds.png"
    for index in range(2):
        assert (dataset[index]["semantic"] == expected(index)).all()


@pytest.mark.reliability
def test_an_image_without_the_image_suffix_is_a_missing_label_file(tmp_path):
    root = write_cityscapes(tmp_path / "cs", suffix_less=True)
    with pytest.raises(DataError, match="missing label file") as info:
        MaskFolderDataset(root, **CITYSCAPES)
    assert "bonn_000000_000001.png" in str(info.value)
    assert "does not end with image_suffix '_leftImg8bit'" in str(info.value)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("given", "advice"),
    [
        ({}, "set mask_suffix: _L in the dataset's entry"),  # CamVid's _L left out
        ({"mask_suffix": "L"}, "set mask_suffix: _L in the dataset's entry"),
        ({"mask_suffix": "_L", "mask_ext": ".tif"}, "set mask_ext: .png in the dataset's entry"),
    ],
)
def test_a_missing_label_file_names_the_one_beside_it_and_the_setting(tmp_path, given, advice):
    """Label files named with a suffix the entry lacks: the first missing one says which file
    is there and what to set (once: not repeated for each of thousands of photos)."""
    root = write_camvid(tmp_path / "cv", n=3)
    with pytest.raises(DataError, match="missing label file") as info:
        MaskFolderDataset(root, masks="labels", palette="label_colors.txt", **given)
    message = str(info.value)
    assert f"(labels/0001TP_000000_L.png is there: {advice}" in message
    assert message.count("is there") == 1


@pytest.mark.parametrize("ext", [".tif", ".tiff"])
def test_tiff_label_files_grey_and_16_bit(tmp_path, ext):
    root = tmp_path / "tiff"
    for i in range(2):
        write_image(root / "images" / f"{i}.png", seed=i)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        labels = expected(i)
        image = Image.fromarray(labels) if i == 0 else Image.fromarray(labels.astype(np.uint16))
        image.save(root / "masks" / f"{i}{ext}")
    (root / "classes.txt").write_text("a\nb\nc\n")
    dataset = MaskFolderDataset(root, mask_ext=ext.upper(), image_check="decode")
    for i in range(2):
        assert dataset[i]["semantic"].dtype == np.uint8
        assert (dataset[i]["semantic"] == expected(i)).all()


# ---- one ignore value for the loss and the evaluator ------------------------------------------
def index_labels_with_void(root, void: int):
    """Grey label PNGs whose unlabelled pixels hold ``void`` (CamVid's 11, VOC's 255, ...)."""
    for i in range(2):
        write_image(root / "images" / f"{i}.png", seed=i)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        labels = label_map(i)
        Image.fromarray(np.where(labels < 0, void, labels).astype(np.uint8)).save(
            root / "masks" / f"{i}.png"
        )
    (root / "classes.txt").write_text("a\nb\nc\n")
    return {"format": "mask_folder", "root": str(root), "ignore_index": void}


def palette_spec(root, void_color=None):
    """RGB labels whose unlabelled pixels are black, the palette's "Void" entry (no
    ``void_color``), or ``void_color``, a colour the palette does not list."""
    spec = {
        "format": "mask_folder",
        "root": str(root),
        "masks": "labels",
        "mask_suffix": "_L",
        "palette": "label_colors.txt",
    }
    if void_color is None:
        write_camvid(root)
        return spec
    write_camvid(root, void=void_color, palette=CAMVID_COLOURS.replace("0 0 0\tVoid\n", ""))
    return {**spec, "void_color": list(void_color)}


@pytest.mark.parametrize(
    "make",
    [
        lambda root: index_labels_with_void(root, 11),
        lambda root: index_labels_with_void(root, 3),
        lambda root: index_labels_with_void(root, 255),
        lambda root: palette_spec(root),
        lambda root: palette_spec(root, (255, 0, 255)),
    ],
    ids=["index-11", "index-3", "index-255", "palette-void-entry", "void-color"],
)
def test_unlabelled_pixels_reach_loss_and_evaluator_as_ignore_pixel(tmp_path, make):
    spec = make(tmp_path / "data")
    dataset = build_dataset(spec, split="val")
    void = label_map(0) < 0
    sample = dataset[0]
    assert (sample["semantic"][void] == IGNORE_PIXEL).all()
    assert (sample["semantic"][~void] < 3).all()

    pipe = build_pipeline([], (0.0,) * 3, (1.0,) * 3)
    batch = collate([apply_pipeline(pipe, dataset[i]) for i in range(2)])
    assert (batch["semantic"][0][torch.from_numpy(void)] == IGNORE_PIXEL).all()
    torch.manual_seed(0)
    head = SemanticFPNHead(in_channels=[8, 8, 8], strides=[8, 16, 32], num_classes=3, channels=8)
    features = [torch.randn(2, 8, SIZE // s, SIZE // s) for s in (8, 16, 32)]
    loss = head.loss(head(features), batch)["ce"]  # a void value left as is would be refused
    assert torch.isfinite(loss)

    evaluator = SemanticEvaluator("seg", 3, ["a", "b", "c"], dataset)
    evaluator.process({"image_ids": torch.tensor([1])}, [{"mask": torch.zeros(SIZE, SIZE)}])
    evaluator.evaluate()
    assert int(evaluator.global_confusion.sum()) == int((~void).sum())  # void pixels not counted


def test_check_data_counts_the_images_and_pixels_of_each_class(tmp_path):
    """``check-data`` (decode) on a mask folder: images holding each class and each class's
    share of the pixels, a class no label uses shown with 0, the unlabelled share named with
    the dataset's own void value."""
    spec = index_labels_with_void(tmp_path, 11)
    (tmp_path / "classes.txt").write_text("a\nb\nc\nnever\n")
    report = MaskFolderDataset(tmp_path, ignore_index=11, image_check="decode").report
    labels = np.stack([label_map(0), label_map(1)])
    share = [100 * (labels == k).mean() for k in (0, 1, 2, -1)]
    assert report.class_counts["semantic"] == {"a": 2, "b": 2, "c": 2, "never": 0}
    text = report.render()
    assert "images per class (semantic): a 2, b 2, c 2, never 0" in text
    assert (
        f"pixels per class (semantic): a {share[0]:.1f}%, b {share[1]:.1f}%, c {share[2]:.1f}%, "
        f"never 0.0%, unlabelled (ignore_index 11) {share[3]:.1f}%"
    ) in text
    assert spec["ignore_index"] == 11
    # training reads headers only: no pixel counts, nothing decoded
    headers = MaskFolderDataset(tmp_path, ignore_index=11)
    assert "semantic" not in headers.report.class_counts
    # show-data counts them afterwards, as check-data does
    counted = DataReport(str(tmp_path), "mask_folder")
    headers.class_statistics(counted)
    assert counted.class_counts == report.class_counts
    assert counted.notes == [n for n in report.notes if n.startswith("pixels per class")]


def test_show_data_prints_and_plots_the_classes_of_a_mask_folder(tmp_path, capsys):
    """``show-data`` said only images and sizes of a mask folder (training's datasets check
    headers); it prints check-data's images and pixels per class and plots them."""
    from tests.helpers import run

    root = tmp_path / "masks"
    index_labels_with_void(root, 11)
    (root / "classes.txt").write_text("a\nb\nc\nnever\n")
    config = tmp_path / "seg.yaml"
    config.write_text(
        "name: seg\nmodel: {backbone: {name: simple_cnn}, neck: {name: fpn, out_channels: 16},\n"
        "  heads: {seg: {name: semantic_fpn, num_classes: 4}}}\n"
        f"data: {{train: {{format: mask_folder, root: '{root}', ignore_index: 11}},\n"
        "  image_size: 32, batch_size: 2}\n"
        f"output_dir: '{tmp_path / 'runs'}'\n"
    )
    code, out, err = run(["show-data", "--config", str(config), "--n", "2"], capsys)
    assert code == 0, err[-2000:]
    assert "images per class (semantic): a 2, b 2, c 2, never 0" in out
    assert "pixels per class (semantic): a " in out and "unlabelled (ignore_index 11)" in out


def test_check_data_counts_the_pixels_of_colour_labels(tmp_path):
    spec = palette_spec(tmp_path)
    dataset = MaskFolderDataset(
        tmp_path, masks="labels", mask_suffix="_L", palette=spec["palette"], image_check="decode"
    )
    text = dataset.report.render()
    assert "images per class (semantic): Sky 2, Building 2, Car 2" in text
    assert "unlabelled (void colour) 6.2%" in text  # the 8x8 corner of 32x32


# ---- Pascal VOC's segmentation layout, as CVAT exports it --------------------------------------
CVAT_LABELMAP = (
    "# label:color_rgb:parts:actions\n"
    "sky:128,128,128::\nvoid:0,0,0::\nbuilding:128,0,0::\ncar:64,0,128::\n"
)


def write_cvat_segmentation(root, n: int = 4):
    """CVAT's "Segmentation mask 1.1": JPEGImages/, RGB SegmentationClass/ PNGs, labelmap.txt
    and the split lists of ImageSets/Segmentation/."""
    for i in range(n):
        write_image(root / "JPEGImages" / f"frame_{i:03d}.png", seed=i)
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        Image.fromarray(colour_labels(label_map(i))).save(
            root / "SegmentationClass" / f"frame_{i:03d}.png"
        )
    (root / "labelmap.txt").write_text(CVAT_LABELMAP)
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("".join(f"frame_{i:03d}\n" for i in range(n - 1)))
    (lists / "val.txt").write_text(f"frame_{n - 1:03d}\n")
    return root


def test_a_cvat_segmentation_export_is_read_as_it_is(tmp_path):
    root = write_cvat_segmentation(tmp_path / "cvat")
    train = MaskFolderDataset(root, palette="labelmap.txt", split="train")
    val = MaskFolderDataset(root, palette="labelmap.txt", split="val")
    assert (len(train), len(val)) == (3, 1)
    assert train.image_dir.name == "JPEGImages" and train.mask_dir.name == "SegmentationClass"
    assert train.label_names["semantic"] == ["sky", "building", "car"]
    np.testing.assert_array_equal(val[0]["semantic"], expected(3))


def test_check_data_reads_a_split_list_file_given_to_split(tmp_path, capsys):
    from visionkit.cli import main

    root = write_cvat_segmentation(tmp_path / "cvat")
    argv = ["check-data", "--format", "mask_folder", "--root", str(root), "palette=labelmap.txt"]
    assert main([*argv, "--split", "ImageSets/Segmentation/train.txt"]) == 0
    assert "images: 3\n" in capsys.readouterr().out
    assert main(["check-data", "--config", "configs/quickstart.yaml", "--split", "x"]) == 2
    assert "--split: with --config one of train, val, test, all" in capsys.readouterr().err


def test_split_leaves_a_voc_segmentation_split_and_splits_an_unsplit_one(tmp_path, capsys):
    from visionkit.cli import main

    root = write_cvat_segmentation(tmp_path / "cvat")
    assert main(["split", str(root), "--val", "0.25"]) == 1
    err = capsys.readouterr().err
    assert (
        "split already, by ImageSets/Segmentation/ (train.txt (3 images), val.txt (1 image))" in err
    )
    assert not (root / "splits").exists()
    shutil.rmtree(root / "ImageSets")
    assert main(["split", str(root), "--val", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "palette: labelmap.txt" in out
    assert len(MaskFolderDataset(root, palette="labelmap.txt", split="val")) == 1


def test_on_bad_label_skip_leaves_out_images_without_a_usable_label_file(tmp_path):
    """A missing label PNG or one of another size stopped the run even under
    on_bad_image: skip; on_bad_label: skip leaves those images out, counted."""
    from visionkit.build.data import build_datasets
    from visionkit.config import load_config

    root = write_cvat_segmentation(tmp_path / "cvat", n=5)
    (root / "SegmentationClass" / "frame_001.png").unlink()
    Image.new("RGB", (SIZE, SIZE + 4)).save(root / "SegmentationClass" / "frame_002.png")
    entry = {"format": "mask_folder", "root": str(root), "palette": "labelmap.txt"}
    cfg = {
        "model": {"backbone": {"name": "simple_cnn"}, "heads": {"seg": {"name": "semantic_fpn"}}},
        "data": {"train": entry},
    }
    with pytest.raises(DataError) as info:
        build_datasets(load_config(cfg).data, needs=["semantic"])
    text = str(info.value)
    assert "missing label file: SegmentationClass/frame_001.png" in text
    assert "size mismatch: SegmentationClass/frame_002.png" in text
    assert "on_bad_label: skip (e.g. data.train.on_bad_label=skip)" in text.splitlines()[-1]
    entry["on_bad_label"] = "skip"
    train = build_datasets(load_config(cfg).data, needs=["semantic"])["train"]
    assert [p.stem for p in train.paths] == ["frame_000", "frame_003", "frame_004"]
    assert train.report.notes[-1] == (
        "left out 2 images whose label file is missing or unusable (on_bad_label: skip)"
    )
    assert [p.severity for p in train.report.problems] == ["warning", "warning"]


def test_predictions_and_ground_truth_are_drawn_in_the_palettes_colours(tmp_path):
    """Predicted label maps were drawn in visionkit's own colours (a dataset's yellow car came
    out blue); the palette's colours now travel in the model's metadata to every result."""
    from visionkit.build import build_datasets, build_model
    from visionkit.config import load_config
    from visionkit.engine.pictures import ground_truth
    from visionkit.inference.draw import draw_predictions

    root = write_cvat_segmentation(tmp_path / "cvat")
    entry = {"format": "mask_folder", "root": str(root), "palette": "labelmap.txt"}
    cfg = load_config(
        {
            "model": {
                "backbone": {"name": "simple_cnn"},
                "neck": {"name": "fpn", "out_channels": 16, "min_level": 2, "max_level": 4},
                "heads": {"seg": {"name": "semantic_fpn"}},
            },
            "data": {"train": entry},
        }
    )
    datasets = build_datasets(cfg.data, needs=["semantic"])
    model = build_model(cfg, datasets).eval()
    palette = [[128, 128, 128], [128, 0, 0], [64, 0, 128]]  # sky, building, car
    assert model.meta["class_colours"] == {"semantic": palette}
    (result,) = model.predict(np.zeros((SIZE, SIZE, 3), np.uint8))
    assert result["seg"]["colours"] == palette
    black = np.zeros((SIZE, SIZE, 3), np.uint8)
    car = {"seg": {"mask": torch.full((SIZE, SIZE), 2), "names": ["sky", "building", "car"],
                   "colours": palette}}  # fmt: skip
    drawn = draw_predictions(black, car)
    np.testing.assert_allclose(drawn[SIZE // 2, SIZE // 2], np.array([64, 0, 128]) * 0.45, atol=1)
    truth = ground_truth(model, datasets["train"][0])
    assert truth["seg"]["colours"] == palette


def test_palette_label_pngs_give_their_colours_to_the_model_as_voc_does(tmp_path):
    """VOC's label PNGs are palette images: index = class, the palette its colour. Predictions
    were drawn in visionkit's colours (VOC's green class in yellow) though the data said
    which; a grey-ramp palette (no colours chosen) publishes none."""
    from visionkit.data.datasets import class_colours_of

    root = tmp_path / "voc"
    voc = [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    for i in range(2):
        write_image(root / "images" / f"{i}.png", seed=i)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        label = Image.fromarray(label_map(i).astype(np.uint8), mode="L")
        label.putpalette([v for c in voc for v in c] + [224, 224, 192] * 253)
        label.save(root / "masks" / f"{i}.png")
    (root / "classes.txt").write_text("background\nplane\nbike\n")
    assert class_colours_of(MaskFolderDataset(root)) == {"semantic": voc}
    for i in range(2):  # the same indices under the grey ramp PIL gives by default
        Image.fromarray(label_map(i).astype(np.uint8)).convert("P").save(
            root / "masks" / f"{i}.png"
        )
    assert class_colours_of(MaskFolderDataset(root)) == {}


def test_palette_label_pngs_numbered_from_one_give_each_class_its_own_colour(tmp_path):
    """With ``reduce_zero_label`` (index 0 = "other", index k + 1 = class k), class k was
    given index k's colour: "other"'s black for the first class, each colour one class off."""
    from visionkit.data.datasets import class_colours_of

    root = tmp_path / "ade"
    colours = [[0, 0, 0], [120, 120, 120], [180, 120, 120], [6, 230, 230]]  # other, 3 classes
    write_image(root / "images" / "0.png", seed=0)
    (root / "masks").mkdir(parents=True)
    label = Image.fromarray((label_map(0) + 1).astype(np.uint8), mode="L")
    label.putpalette([v for c in colours for v in c] + [0, 0, 0] * 252)
    label.save(root / "masks" / "0.png")
    (root / "classes.txt").write_text("wall\nbuilding\nsky\n")
    dataset = MaskFolderDataset(root, reduce_zero_label=True)
    assert class_colours_of(dataset) == {"semantic": colours[1:]}
