"""Instance masks and semantic label maps: readers, alignment through transforms, collate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from visionkit.build import build_dataset
from visionkit.data.batch import IGNORE_PIXEL, collate
from visionkit.data.readers.coco import CocoDataset, decode_segmentation
from visionkit.data.readers.mask_folder import MaskFolderDataset
from visionkit.data.readers.voc_segmentation import write_mask_png
from visionkit.data.transforms import apply_pipeline, build_pipeline
from visionkit.engine.runner import train
from visionkit.errors import AnnotationError, DataError

CATEGORIES = [{"id": 3, "name": "circle"}, {"id": 7, "name": "square"}]


def rle(mask: np.ndarray) -> dict:
    out = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": out["size"], "counts": out["counts"].decode()}


def write_dataset(root, annotations, size=(40, 60), pixels=None):
    h, w = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    image = pixels if pixels is not None else np.zeros((h, w, 3), np.uint8)
    Image.fromarray(image).save(root / "images" / "a.png")
    data = {
        "images": [{"id": 5, "file_name": "images/a.png", "width": w, "height": h}],
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    (root / "annotations.json").write_text(json.dumps(data))
    return root


def ann(i, category, mask, crowd=0):
    ys, xs = np.nonzero(mask)
    bbox = [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() + 1 - xs.min()),
        float(ys.max() + 1 - ys.min()),
    ]
    return {
        "id": i,
        "image_id": 5,
        "category_id": category,
        "bbox": bbox,
        "iscrowd": crowd,
        "segmentation": rle(mask),
        "area": float(mask.sum()),
    }


def test_semantic_map_smaller_object_wins_and_crowds_are_ignored(tmp_path):
    big = np.zeros((40, 60), bool)
    big[5:35, 5:45] = True
    small = np.zeros((40, 60), bool)
    small[10:20, 10:20] = True
    crowd = np.zeros((40, 60), bool)
    crowd[30:40, 50:60] = True
    # the small object is listed first: painting order is by area, not file order
    root = write_dataset(tmp_path, [ann(1, 7, small), ann(2, 3, big), ann(3, 3, crowd, crowd=1)])
    ds = CocoDataset(root, masks=True, semantic=True)
    assert ds.label_names["semantic"] == ["background", "circle", "square"]
    sample = ds[0]
    semantic = sample["semantic"]
    assert semantic.dtype == np.uint8 and semantic.shape == (40, 60)
    assert semantic[15, 15] == 2  # square (id 7 → label 1 → semantic 2), on top of the circle
    assert semantic[30, 30] == 1  # circle
    assert semantic[2, 2] == 0
    assert semantic[35, 55] == IGNORE_PIXEL  # crowd
    assert sample["masks"].shape == (2, 40, 60)  # crowds are not instances
    assert (sample["masks"][0] == small).all() and (sample["masks"][1] == big).all()
    assert (ds.load_semantic(5) == semantic).all()


def test_a_crowd_region_without_a_segmentation_is_ignored_over_its_box(tmp_path):
    """A box marked iscrowd (as exports from box tools give) is not an object to learn: the
    image keeps its masks and label map, and the crowd is ignored over its box, in the
    training target and in the ground truth that segm and mIoU are scored against."""
    obj = np.zeros((40, 60), bool)
    obj[5:15, 5:15] = True
    crowd = np.zeros((40, 60), bool)
    crowd[20:30, 30:50] = True
    boxed = ann(2, 3, crowd, crowd=1)
    del boxed["segmentation"]
    root = write_dataset(tmp_path, [ann(1, 7, obj), boxed])
    ds = CocoDataset(root, masks=True, semantic=True)
    sample = ds[0]
    assert sample["masks"].shape == (1, 40, 60) and (sample["masks"][0] == obj).all()
    assert (sample["semantic"][crowd] == IGNORE_PIXEL).all()
    assert (sample["semantic"][obj] == 2).all() and sample["semantic"][2, 2] == 0
    assert (ds.load_semantic(5) == sample["semantic"]).all()
    assert not ds.report.warnings and not ds.report.errors
    assert any("1 crowd region (iscrowd: 1) without a segmentation" in n for n in ds.report.notes)
    truth = ds.coco_ground_truth()
    assert truth["info"]["images_without_masks"] == []
    (crowd_truth,) = [a for a in truth["annotations"] if a["iscrowd"]]
    assert crowd_truth["segmentation"] == [[30.0, 20.0, 50.0, 20.0, 50.0, 30.0, 30.0, 30.0]]
    # a crowd box of no area is no region: its image gives boxes only, as before
    boxed["bbox"] = [30.0, 20.0, 0.0, 10.0]
    ds = CocoDataset(write_dataset(tmp_path / "flat", [ann(1, 7, obj), boxed]), masks=True)
    assert "masks" not in ds[0]
    (warning,) = [p for p in ds.report.warnings if p.kind == "boxes without masks"]
    assert "crowd region: no segmentation, and its bbox [30.0, 20.0, 0.0, 10.0] has no area" in (
        warning.detail
    )


def test_polygon_and_uncompressed_rle_segmentations_decode():
    polygon = [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]]
    mask = decode_segmentation(polygon, 40, 60)
    assert mask.dtype == np.uint8 and 180 <= mask.sum() <= 231
    assert mask[15, 20] == 1 and mask[5, 5] == 0
    full = np.zeros((40, 60), np.uint8)
    full[0:4, 0:2] = 1  # column-major runs: 4 ones, 36 zeros, 4 ones, rest zeros
    uncompressed = {"size": [40, 60], "counts": [0, 4, 36, 4, 40 * 60 - 44]}
    assert (decode_segmentation(uncompressed, 40, 60) == full).all()


def test_bad_segmentations_rle_size_is_an_error_unusable_polygons_leave_boxes_only(tmp_path):
    good = np.zeros((40, 60), bool)
    good[5:10, 5:10] = True
    wrong_size = ann(2, 3, good)
    wrong_size["segmentation"] = rle(np.zeros((20, 20), bool))
    bad_polygon = ann(3, 3, good)
    bad_polygon["segmentation"] = [[1.0, 2.0, 3.0, 4.0]]
    missing = ann(4, 3, good)
    del missing["segmentation"]
    root = write_dataset(tmp_path, [ann(1, 3, good), wrong_size, bad_polygon, missing])
    assert len(CocoDataset(root)[0]["boxes"]) == 4  # boxes only: segmentations not needed
    with pytest.raises(AnnotationError) as info:
        CocoDataset(root, masks=True)
    text = str(info.value)
    assert "annotation id 2" in text
    assert "RLE size [20, 20] differs from the image size [40, 60]" in text
    # without the wrong-size RLE, the instances without a usable polygon keep their boxes
    # and labels; their image gives neither masks nor a label map (a mask or map without
    # those objects would teach that they are background), one warning naming them
    root = write_dataset(tmp_path / "b", [ann(1, 3, good), bad_polygon, missing])
    for flags in ({"masks": True}, {"semantic": True}):
        ds = CocoDataset(root, **flags)
        sample = ds[0]
        assert len(sample["boxes"]) == len(sample["labels"]) == 3
        assert "masks" not in sample and "semantic" not in sample
        assert ds.load_semantic(sample["image_id"]) is None
        (warning,) = [p for p in ds.report.warnings if p.kind == "boxes without masks"]
        assert "annotation id 3: only polygons of < 3 points" in warning.detail
        assert "annotation id 4: no segmentation" in warning.detail
        assert not ds.report.errors


def test_image_of_another_size_than_its_annotation_is_refused_at_construction(tmp_path):
    good = np.zeros((40, 60), bool)
    good[5:10, 5:10] = True
    root = write_dataset(tmp_path, [ann(1, 3, good)], pixels=np.zeros((41, 60, 3), np.uint8))
    with pytest.raises(AnnotationError, match="says 40x60 .height x width., the image is 41x60"):
        CocoDataset(root, semantic=True)


def coded_sample(seed: int = 0):
    """An image whose red channel encodes the semantic label and green the instance index, so
    alignment can be checked pixel by pixel after any geometric transform."""
    rng = np.random.default_rng(seed)
    h, w = 48, 64
    semantic = np.zeros((h, w), np.uint8)
    masks = []
    boxes = []
    for k, (y, x, s) in enumerate([(4, 6, 14), (20, 30, 18), (30, 2, 10)]):
        m = np.zeros((h, w), np.uint8)
        m[y : y + s, x : x + s + k] = 1
        masks.append(m)
        boxes.append([x, y, x + s + k, y + s])
        semantic[m > 0] = k + 1
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = semantic * 40
    for k, m in enumerate(masks):
        image[..., 1][m > 0] = (k + 1) * 40
    image[..., 2] = rng.integers(0, 255, (h, w))
    return {
        "image": image,
        "image_id": 1,
        "orig_size": (h, w),
        "boxes": np.array(boxes, np.float32),
        "labels": np.array([0, 1, 2]),
        "masks": np.stack(masks),
        "semantic": semantic,
    }


@pytest.mark.parametrize(
    "steps",
    [
        [{"name": "HorizontalFlip", "p": 1.0}],
        [{"name": "VerticalFlip", "p": 1.0}, {"name": "Transpose", "p": 1.0}],
        [{"name": "RandomCrop", "height": 32, "width": 40}],
        [{"name": "Resize", "height": 96, "width": 80, "interpolation": 0}],
        [
            {
                "name": "RandomResizedCrop",
                "size": [40, 40],
                "scale": [0.3, 1.0],
                "interpolation": 0,
            },
            {"name": "HorizontalFlip", "p": 0.5},
        ],
    ],
)
def test_masks_stay_aligned_with_the_image_through_transforms(steps):
    pipe = build_pipeline(steps, (0.0,) * 3, (1 / 255,) * 3)  # keeps pixel values in 0..255
    for seed in range(4):
        out = apply_pipeline(pipe, coded_sample(seed))
        image = out["image"].round().long()
        assert (image[0] == out["semantic"] * 40).all()
        assert out["masks"].shape[0] == len(out["boxes"]) == len(out["labels"])
        for mask, label in zip(out["masks"], out["labels"], strict=True):
            instance = image[1] == (int(label) + 1) * 40
            assert (mask.bool() == instance).all()


def test_a_crop_that_drops_a_box_drops_its_mask():
    pipe = build_pipeline(
        [{"name": "Crop", "x_min": 0, "y_min": 0, "x_max": 25, "y_max": 22}],
        (0.0,) * 3,
        (1 / 255,) * 3,
    )
    out = apply_pipeline(pipe, coded_sample())
    assert out["labels"].tolist() == [0]
    assert out["masks"].shape == (1, 22, 25)
    empty = apply_pipeline(
        build_pipeline(
            [{"name": "Crop", "x_min": 50, "y_min": 0, "x_max": 64, "y_max": 10}],
            (0.0,) * 3,
            (1.0,) * 3,
        ),
        coded_sample(),
    )
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 10, 14)


def test_collate_pads_masks_with_zeros_and_semantic_with_ignore():
    pipe = build_pipeline([], (0.0,) * 3, (1.0,) * 3)
    a = apply_pipeline(pipe, coded_sample())
    b = apply_pipeline(
        pipe,
        {
            **coded_sample(),
            "image": np.zeros((20, 30, 3), np.uint8),
            "boxes": np.zeros((0, 4)),
            "labels": np.zeros(0),
            "masks": np.zeros((0, 20, 30)),
            "semantic": np.ones((20, 30), np.uint8),
        },
    )
    plain = {k: v for k, v in a.items() if k not in ("masks", "semantic")}
    batch = collate([a, b, plain])
    assert batch["images"].shape == (3, 3, 64, 64)
    assert batch["semantic"].shape == (3, 64, 64) and batch["semantic"].dtype == torch.long
    assert batch["has_semantic"].tolist() == [True, True, False]
    assert (batch["semantic"][0, :48, :64] == a["semantic"]).all()
    assert (batch["semantic"][0, 48:] == IGNORE_PIXEL).all()
    assert (batch["semantic"][1, :20, :30] == 1).all() and (
        batch["semantic"][1, 20:] == IGNORE_PIXEL
    ).all()
    assert (batch["semantic"][2] == IGNORE_PIXEL).all()
    assert batch["has_masks"].tolist() == [True, True, False]
    assert [tuple(m.shape) for m in batch["masks"]] == [(3, 64, 64), (0, 64, 64), (3, 64, 64)]
    assert (batch["masks"][0][:, :48, :64] == a["masks"]).all() and not batch["masks"][0][
        :, 48:
    ].any()
    assert not batch["masks"][2].any()


def test_build_dataset_switches_on_the_targets_the_heads_need(shapes_root):
    spec = {"format": "coco", "images": str(shapes_root / "val")}
    plain = build_dataset(spec)[0]
    assert "masks" not in plain and "semantic" not in plain
    sample = build_dataset(spec, needs=["masks", "semantic"])[0]
    assert sample["masks"].shape[0] == len(sample["boxes"])
    assert sample["semantic"].shape == sample["image"].shape[:2]
    explicit = build_dataset({**spec, "semantic": False}, needs=["semantic"])[0]
    assert "semantic" not in explicit


def write_mask_folder(root, palette=True, names=("background", "cat", "dog")):
    for i in range(3):
        mask = np.zeros((20, 30), np.uint8)
        mask[5:15, 5 + i : 15 + i] = 1 + i % 2
        mask[0, :] = 255
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(root / "images" / f"{i}.jpg")
        write_mask_png(root / "masks" / f"{i}.png", mask, palette=palette)
    if names:
        (root / "classes.txt").write_text("\n".join(names) + "\n")


@pytest.fixture()
def mask_root(tmp_path):
    (tmp_path / "images").mkdir()
    write_mask_folder(tmp_path)
    return tmp_path


@pytest.mark.parametrize("palette", [True, False])
def test_mask_folder_reads_palette_and_grey_label_pngs(tmp_path, palette):
    (tmp_path / "images").mkdir()
    write_mask_folder(tmp_path, palette=palette)
    with Image.open(tmp_path / "masks" / "0.png") as pil:
        assert pil.mode == ("P" if palette else "L")
    ds = MaskFolderDataset(tmp_path)
    assert len(ds) == 3 and ds.label_names == {"semantic": ["background", "cat", "dog"]}
    sample = ds[1]
    assert sample["semantic"].shape == sample["image"].shape[:2] == (20, 30)
    assert sample["semantic"][10, 10] == 2 and sample["semantic"][0, 0] == 255
    assert (ds.load_semantic(sample["image_id"]) == sample["semantic"]).all()
    assert build_dataset({"format": "mask_folder", "root": str(tmp_path)})[0]["semantic"].shape == (
        20,
        30,
    )


def test_mask_folder_reports_missing_names_masks_bad_values_and_sizes(mask_root):
    # a label folder the root lacks: the message names the sub-folders it has
    with pytest.raises(
        DataError,
        match=r"trainannot does not exist: a mask folder holds images/ and trainannot/ \(here: "
        r"images/, masks/; the entry's images: and masks: name others, docs/datasets\.md",
    ):
        MaskFolderDataset(mask_root, masks="trainannot")
    (mask_root / "classes.txt").unlink()
    with pytest.raises(DataError, match="classes.txt"):
        MaskFolderDataset(mask_root)
    ds = MaskFolderDataset(mask_root, class_names=["background", "cat"])
    with pytest.raises(AnnotationError, match=r"label values \[2\] are not classes 0..1"):
        ds[1]
    (mask_root / "masks" / "2.png").unlink()
    with pytest.raises(AnnotationError, match="missing label file") as info:
        MaskFolderDataset(mask_root, class_names=["background", "cat", "dog"])
    assert "2.png" in str(info.value)
    # sizes and modes are read from the headers at construction
    write_mask_png(mask_root / "masks" / "2.png", np.zeros((21, 30), np.uint8))
    with pytest.raises(AnnotationError, match="label PNG is 21x30 but its image 2.jpg is 20x30"):
        MaskFolderDataset(mask_root, class_names=["background", "cat", "dog"])
    Image.new("RGB", (30, 20)).save(mask_root / "masks" / "2.png")
    with pytest.raises(AnnotationError, match="mode RGB"):
        MaskFolderDataset(mask_root, class_names=["background", "cat", "dog"])


def write_void_folder(root, void=3, n=4, size=32):
    """CamVid-like: classes 0..2 in classes.txt, and a 'void' value (3) the file uses for
    unlabelled pixels."""
    rng = np.random.default_rng(0)
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    for i in range(n):
        image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), np.uint8)
        mask[:, size // 3 :] = 1
        mask[size // 2 :, size // 2 :] = 2
        mask[: size // 4, : size // 4] = void
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "images" / f"{i}.png")
        write_mask_png(root / "masks" / f"{i}.png", mask, palette=False)
    return root


def test_a_void_label_other_than_255_reaches_heads_and_evaluators_as_ignore(tmp_path):
    """Issue 16: `ignore_index: 11` on CamVid's reader crashed the first validation
    ("targets['semantic'] has values [11] outside 0..10") until the head was told too."""
    root = write_void_folder(tmp_path / "void")
    dataset = MaskFolderDataset(root, ignore_index=3)
    semantic = dataset[0]["semantic"]
    assert semantic[0, 0] == IGNORE_PIXEL and set(np.unique(semantic)) == {0, 1, 2, IGNORE_PIXEL}
    assert (dataset.load_semantic(1) == semantic).all()
    spec = {"format": "mask_folder", "root": str(root), "ignore_index": 3}
    config = {
        "name": "void",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {"seg": {"name": "semantic_fpn", "num_classes": None, "channels": 16}},
        },
        "data": {"train": spec, "val": spec, "image_size": 32, "batch_size": 2, "num_workers": 0},
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "enable_progress_bar": False},
    }
    _, metrics = train(config)
    assert 0.0 <= metrics["seg/mIoU"] <= 1.0 and "seg/IoU_car" in metrics
