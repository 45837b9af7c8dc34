"""Targets a head needs are switched on where the data has them (``"auto"``): a box-only set
mixed with a set of label maps gives its boxes (it dropped every instance "for want of a
segmentation" and took a semantic class list of its own), and a head that no training set has
labels for is a config error rather than a head that silently never learns."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from tests.helpers import SIZE, make_coco, write_image
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.readers.coco_format import switched_on
from visionkit.engine.runner import train
from visionkit.errors import ConfigError


def without_segmentations(data):
    for ann in data["annotations"]:
        del ann["segmentation"]


def make_mask_folder(root, num_images: int = 4):
    """``images/`` + ``masks/`` (two classes and a void border of 11), ``classes.txt``."""
    for i in range(num_images):
        write_image(root / "images" / f"{i}.png", seed=i)
        labels = np.zeros((SIZE, SIZE), np.uint8)
        labels[SIZE // 4 : SIZE // 2, SIZE // 4 : SIZE // 2] = 1
        labels[:2] = 11
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels).save(root / "masks" / f"{i}.png")
    (root / "classes.txt").write_text("ground\nsquare\n")
    return root


def test_auto_flags_follow_the_annotation_file(tmp_path):
    boxes = make_coco(tmp_path / "boxes", edit=without_segmentations)
    dataset = CocoDataset(str(boxes), masks="auto", semantic="auto")
    assert (dataset.masks, dataset.semantic) == (False, False)
    assert "semantic" not in dataset.label_names and not dataset.report.warnings
    sample = dataset[0]
    assert len(sample["boxes"]) == 1 and "masks" not in sample and "semantic" not in sample
    shaped = make_coco(tmp_path / "shaped")
    dataset = CocoDataset(str(shaped), masks="auto", semantic="auto")
    assert (dataset.masks, dataset.semantic) == (True, True)
    assert dataset[0]["masks"].shape[0] == 1 and dataset[0]["semantic"].shape == (SIZE, SIZE)
    # asked for outright, masks are looked for: images without them are counted and give
    # their boxes only
    dataset = CocoDataset(str(boxes), masks=True)
    assert len(dataset.report.warnings) == 4 and len(dataset[0]["boxes"]) == 1
    assert "masks" not in dataset[0]


def test_switched_on():
    assert switched_on(True, [], "masks") and not switched_on(
        None, [{"segmentation": [[1]]}], "masks"
    )
    assert not switched_on("auto", [{"segmentation": []}, {"bbox": [0, 0, 1, 1]}], "semantic")
    assert switched_on("auto", [{}, {"keypoints": [1, 2, 2]}], "keypoints")
    assert switched_on("auto", [{"identity": 0}], "identities")  # identity 0 is one
    assert not switched_on("auto", [{"identity": None}], "identities")


def mixed_config(tmp_path, heads):
    boxes = make_coco(tmp_path / "boxes", num_images=8, edit=without_segmentations)
    masks = make_mask_folder(tmp_path / "streets", num_images=8)
    sets = {
        "boxes": {"format": "coco", "images": str(boxes)},
        "streets": {"format": "mask_folder", "root": str(masks), "ignore_index": 11},
    }
    return {
        "name": "mix",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 32, "min_level": 3, "max_level": 5},
            "heads": heads,
        },
        "data": {"train": sets, "val": sets, "image_size": SIZE, "batch_size": 4, "num_workers": 0},
        "optimizer": {"name": "adamw", "lr": 0.003},
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "enable_progress_bar": False},
    }


def test_a_box_set_and_a_mask_folder_train_one_backbone_together(tmp_path, caplog):
    heads = {
        "det": {"name": "fcos", "num_convs": 1},
        "seg": {"name": "semantic_fpn", "channels": 16},
    }
    with caplog.at_level(logging.WARNING):
        run_dir, metrics = train(mixed_config(tmp_path, heads))
    assert "instance dropped" not in caplog.text
    assert {"det/mAP", "seg/mIoU", "seg/IoU_ground", "seg/IoU_square"} <= set(metrics)
    assert "seg/IoU_background" not in metrics  # the box set brought no label maps of its own
    assert {"val/loss/boxes", "val/loss/streets"} <= set(metrics)  # each set's, by its name
    # and val/loss over both (8 images each: their mean), so monitor: val/loss holds here too
    both = (metrics["val/loss/boxes"] + metrics["val/loss/streets"]) / 2
    assert metrics["val/loss"] == pytest.approx(both, rel=1e-5)
    import visionkit

    model = visionkit.load(run_dir / "checkpoints" / "last.ckpt")
    assert model.meta["label_names"]["semantic"] == ["ground", "square"]
    assert model.meta["label_names"]["instances"] == ["square", "disc"]


def refusal_on_box_only_data(tmp_path, heads) -> str:
    """The config error of training ``heads`` on the box-only set alone (no mask folder)."""
    config = mixed_config(tmp_path, heads)
    for split in ("train", "val"):
        config["data"][split] = config["data"][split]["boxes"]
    with pytest.raises(ConfigError) as info:
        train(config)
    return str(info.value)


@pytest.mark.parametrize(
    ("heads", "message"),
    [
        (
            {
                "det": {"name": "fcos", "num_convs": 1},
                "seg": {"name": "semantic_fpn", "num_classes": 3},
            },
            "model.heads.seg: data.train has no semantic label maps (a mask folder, or COCO "
            "segmentations / YOLO segment labels) for this head to learn from",
        ),
        (  # masks, which "auto" leaves off: not trained with a mask loss of zero throughout
            {"inst": {"name": "fcos_mask", "num_convs": 1}},
            "model.heads.inst: data.train has no instance masks (COCO segmentations, YOLO "
            "segment labels) for this head to learn from",
        ),
        (  # it said "COCO annotations with an identity field" would do: those are boxes'
            {"emb": {"name": "embedding", "num_classes": 3}},
            "model.heads.emb: data.train has no image-level identities (format: identities, a "
            "folder per identity; the box identities of a COCO set are for fcos_embedding)",
        ),
        (
            {"pose": {"name": "fcos_keypoints", "num_convs": 1}},
            "model.heads.pose: data.train has no keypoints (COCO keypoint annotations, or a "
            "YOLO pose set: kpt_shape)",
        ),
    ],
    ids=["semantic_head", "mask_head", "embedding_head", "keypoint_head"],
)
def test_a_head_whose_labels_no_training_set_gives_is_refused(tmp_path, heads, message):
    assert message in refusal_on_box_only_data(tmp_path, heads)


def test_partly_segmented_and_box_only_sets_train_and_score_an_instance_head(tmp_path, caplog):
    """A COCO file where some annotations have no segmentation keeps their boxes (the image
    gives no masks); a box-only validation set scores the mask head's boxes (pycocotools
    crashed on its missing segmentations)."""

    def half_segmented(data):
        for ann in data["annotations"][::2]:
            del ann["segmentation"]

    partly = make_coco(tmp_path / "partly", num_images=8, edit=half_segmented)
    boxes = make_coco(tmp_path / "boxes", num_images=8, edit=without_segmentations)
    config = mixed_config(tmp_path, {"inst": {"name": "fcos_mask", "num_convs": 1}})
    config["data"]["train"] = {"format": "coco", "images": str(partly)}
    config["data"]["val"] = {
        "partly": {"format": "coco", "images": str(partly)},
        "boxes": {"format": "coco", "images": str(boxes)},
    }
    with caplog.at_level(logging.WARNING):
        _, metrics = train(config)
    assert "4 x boxes without masks" in caplog.text
    assert "gives no instance masks: scored for boxes only" in caplog.text
    assert {"inst/partly/mAP", "inst/partly/mask_mAP", "inst/boxes/mAP"} <= set(metrics)
    assert "inst/boxes/mask_mAP" not in metrics
    # the checkpoint's score: the partly masked set's mask_mAP and the box set's mAP
    both = (metrics["inst/partly/mask_mAP"] + metrics["inst/boxes/mAP"]) / 2
    assert metrics["val/score"] == pytest.approx(both)
    dataset = CocoDataset(str(partly), masks="auto")
    assert [len(dataset[i]["boxes"]) for i in range(8)] == [1] * 8
    assert ["masks" in dataset[i] for i in range(8)] == [False, True] * 4


def test_check_data_of_a_config_names_a_head_without_labels(tmp_path, capsys):
    """check-data said "no problems found" where training then refused the head."""
    import yaml

    from tests.helpers import run

    config = mixed_config(tmp_path, {"seg": {"name": "semantic_fpn", "num_classes": 3}})
    for split in ("train", "val"):
        config["data"][split] = config["data"][split]["boxes"]
    path = tmp_path / "boxes_seg.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, _ = run(["check-data", "--config", path, "--split", "train"], capsys)
    assert code == 1
    assert "model.heads.seg: data.train has no semantic label maps" in out


def test_a_set_whose_every_image_has_a_box_without_a_segmentation_gives_no_masks(tmp_path, capsys):
    """A CVAT export with one rectangle beside the polygons of every photo: no image gave
    masks, and check-data said "no errors" while training ran its whole budget with no mask
    loss, where a set without segmentations at all is refused."""
    import yaml

    from tests.helpers import run
    from visionkit.data.datasets import gives

    def a_rectangle_beside_each_polygon(data):
        for ann in list(data["annotations"]):
            data["annotations"].append({**ann, "id": ann["id"] + 1000, "segmentation": []})

    root = make_coco(tmp_path / "cvat", edit=a_rectangle_beside_each_polygon)
    dataset = CocoDataset(str(root), masks="auto", semantic="auto")
    assert not gives(dataset, "masks") and not gives(dataset, "semantic")
    assert gives(CocoDataset(str(make_coco(tmp_path / "whole")), masks="auto"), "masks")

    def crowds_only(data):
        for ann in data["annotations"]:
            ann["iscrowd"] = 1

    crowds = CocoDataset(str(make_coco(tmp_path / "crowds", edit=crowds_only)), masks="auto")
    assert not gives(crowds, "masks")  # no objects: said by the crowd note, not this one
    assert not any("no image with objects" in note for note in crowds.report.notes)
    config = mixed_config(tmp_path, {"inst": {"name": "fcos_mask", "num_convs": 1}})
    config["data"]["train"] = config["data"]["val"] = {"format": "coco", "images": str(root)}
    path = tmp_path / "instances.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, _ = run(["check-data", "--config", path, "--split", "train"], capsys)
    assert code == 1
    assert "model.heads.inst: data.train has no instance masks" in out
    assert "no image with objects gives masks" in out


def test_copy_paste_and_relabelled_label_maps_take_images_without_masks(tmp_path):
    """Images of a partly segmented file give no masks / label map: CopyPaste stopped the
    epoch on them ("has no instance masks") and a relabelled validation set's load_semantic
    failed on their None."""
    from visionkit.data.classes import RelabelledDataset
    from visionkit.data.datasets import TransformedDataset
    from visionkit.data.transforms import build_pipeline

    def half_segmented(data):
        for ann in data["annotations"][::2]:
            del ann["segmentation"]

    root = make_coco(tmp_path / "partly", num_images=4, edit=half_segmented)
    steps = [{"name": "Resize", "height": SIZE, "width": SIZE}, {"name": "CopyPaste", "p": 1.0}]
    pipeline = build_pipeline(steps, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "t")
    dataset = TransformedDataset(CocoDataset(str(root), masks=True), pipeline, reseed=True)
    samples = [dataset[i] for i in range(4)]
    assert ["masks" in s for s in samples] == [False, True, False, True]
    assert all(len(s["boxes"]) >= 1 for s in samples)
    semantic = CocoDataset(str(root), semantic=True)
    moved = RelabelledDataset(semantic, {"semantic": [0, 2, 1]}, semantic.label_names, [])
    assert moved.load_semantic(1) is None  # image 1: its annotation has no segmentation
    assert set(np.unique(moved.load_semantic(2))) <= {0, 1, 2}
