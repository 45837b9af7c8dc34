"""``--real``: the recipes for real photos against the baselines on tiny stand-ins of the dev
data (a VOC folder as published, a CamVid-like mask folder with void 11), made here; each side
trains a few steps or seconds, and the tables report every model with its ratio."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmarks import real, real_baselines
from benchmarks.cli import main
from benchmarks.report import TABLES, read_results, write_json


def make_raccoon(root):
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        pixels = rng.integers(0, 50, (48, 64, 3), dtype=np.uint8)
        pixels[10:40, 12:44] = 220
        Image.fromarray(pixels).save(root / "images" / f"r{i:02d}.jpg")
        (root / "annotations" / f"r{i:02d}.xml").write_text(
            f"<annotation><filename>r{i:02d}.jpg</filename><size><width>64</width>"
            "<height>48</height><depth>3</depth></size><object><name>raccoon</name>"
            "<bndbox><xmin>13</xmin><ymin>11</ymin><xmax>44</xmax><ymax>40</ymax></bndbox>"
            "</object></annotation>"
        )


def make_camvid(root):
    rng = np.random.default_rng(1)
    for split, n in (("train", 8), ("val", 3)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            label = np.full((36, 48), 0, np.uint8)
            label[:, 24:] = 1
            label[:4] = 11  # void
            pixels = (label[..., None] * 90 + rng.integers(0, 30, (36, 48, 1))).astype(np.uint8)
            Image.fromarray(np.repeat(pixels, 3, 2)).save(root / split / f"c{i}.png")
            Image.fromarray(label).save(root / f"{split}annot" / f"c{i}.png")
    (root / "classes.txt").write_text("road\nsky\n")


def test_the_voc_split_holds_out_every_fifth_photo_and_links_the_folders(tmp_path):
    make_raccoon(tmp_path / "data" / "raccoon")
    root = real.voc_split_root(tmp_path / "data" / "raccoon", tmp_path / "work")
    val = (root / "ImageSets" / "Main" / "val.txt").read_text().split()
    train = (root / "ImageSets" / "Main" / "train.txt").read_text().split()
    assert val == ["r04", "r09"] and len(train) == 8 and not set(val) & set(train)
    assert (root / "images").is_symlink() and (root / "annotations").is_symlink()


def test_mean_iou_ignores_void_and_counts_each_class():
    target = np.array([[0, 0, 1, 255]])
    confusion = real_baselines.confusion_of(np.array([[0, 1, 1, 0]]), target, 2)
    assert confusion.tolist() == [[1, 1], [0, 1]]
    assert real_baselines.mean_iou(confusion) == pytest.approx((1 / 2 + 1 / 2) / 2)


@pytest.mark.slow
def test_real_runs_every_side_and_writes_both_tables(tmp_path, monkeypatch, capsys):
    make_raccoon(tmp_path / "data" / "raccoon")
    make_camvid(tmp_path / "data" / "camvid")
    monkeypatch.setattr(real_baselines, "ultralytics_installed", lambda: False)
    tiny = [
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "model.backbone.name=simple_cnn",
        "model.backbone.out_indices=null",
        "data.image_size=64",
        "data.val_image_size=80",
        "data.batch_size=4",
        "data.num_workers=0",
        "scheduler.warmup_steps=1",
    ]
    results = real.run_real(
        tmp_path / "data", log=lambda line: None, work_dir=tmp_path / "work", overrides=tiny
    )
    det, seg = results["real"]["detection"], results["real"]["segmentation"]
    write_json(tmp_path / "real.json", results)  # --from-json reads it back for the tables
    again = read_results(tmp_path / "real.json")
    assert "| visionkit detect_fcos_r18 |" in TABLES["real-detection"](again)
    assert [r["model"] for r in det["rows"]] == [
        "visionkit detect_fcos_r18",
        "torchvision FCOS-R18",
    ]
    assert (det["train"], det["val"]) == (8, 2) and (seg["train"], seg["val"]) == (8, 3)
    for row in det["rows"] + seg["rows"]:
        assert 0.0 <= row["score"] <= 1.0 and row["train_s"] > 0
    assert det["rows"][1]["steps"] >= 1 and seg["rows"][1]["steps"] >= 1
    assert det["rows"][0]["steps"] == 2 and seg["rows"][0]["steps"] == 2  # the recipes' own
    # each detector scored at its better of the training size and the recipe's evaluation size
    assert det["rows"][0]["scored_at"] == 80 and det["rows"][1]["scored_at"] in (64, 80)
    detection = TABLES["real-detection"](again)
    assert "| steps | scored at |" in detection and "| 2 | longest side 80 px |" in detection
    table = real.real_table(results, "segmentation")
    assert "| torchvision DeepLabV3-MobileNetV3 |" in table and "visionkit ÷ model" in table
    assert "scored at" not in table  # every model at the photos' own size


def test_the_fcos_baseline_is_scored_at_its_better_size(monkeypatch):
    """torchvision FCOS trains at the recipe's training size and is scored there and at the
    recipe's evaluation size: the table gives it the better of the two."""
    seen = []

    def detections(model, val_set, use_bf16):
        seen.append((model.transform.min_size, model.transform.max_size))
        return [model.transform.max_size]

    monkeypatch.setattr(real_baselines, "train_for", lambda *args: 3)
    monkeypatch.setattr(real_baselines, "fcos_detections", detections)
    monkeypatch.setattr(
        real_baselines, "coco_map", lambda gt, results: {64: 0.3, 80: 0.2}[results[0]]
    )
    train_set = type(
        "Set", (), {"label_names": {"instances": ["raccoon"]}, "__len__": lambda s: 4}
    )()
    out = real_baselines.train_torchvision_fcos(train_set, None, None, 1.0, 64, False, [80])
    assert seen == [((64,), 64), ((80,), 80)]
    assert (out["mAP"], out["eval_side"], out["steps"]) == (0.3, 64, 3)
    monkeypatch.setattr(
        real_baselines, "coco_map", lambda gt, results: {64: 0.3, 80: 0.4}[results[0]]
    )
    out = real_baselines.train_torchvision_fcos(train_set, None, None, 1.0, 64, False, [80, 64])
    assert (out["mAP"], out["eval_side"]) == (0.4, 80) and len(seen) == 4


def test_the_command_names_the_option(capsys):
    with pytest.raises(SystemExit):
        main(["--real-tasks", "keypoints"])
    assert "--real-tasks" in capsys.readouterr().err


def test_the_recipe_sizes_follow_the_runs_overrides():
    assert real._recipe_sizes(real.RECIPES["detection"]) == (192, 224)
    assert real._recipe_sizes(real.RECIPES["detection"], ["data.val_image_size=null"]) == (192, 192)
    assert real._recipe_sizes(real.RECIPES["detection"], ["data.image_size=[96, 128]"]) == (
        128,
        224,
    )


def test_yolov8n_is_scored_at_its_better_size(monkeypatch, tmp_path):
    """Ultralytics is never a dependency: a stand-in ``YOLO`` records the sizes it predicts
    at and scores the larger one higher."""
    import sys
    import types

    import torch

    asked = []

    class Boxes:
        def __init__(self, size):
            self.xyxy = torch.tensor([[0.0, 0.0, size / 10, size / 10]])
            self.conf, self.cls = torch.tensor([0.9]), torch.tensor([0.0])

    class YOLO:
        def __init__(self, cfg):
            assert cfg == "yolov8n.yaml"

        def train(self, **kwargs):
            assert kwargs["imgsz"] == 192 and kwargs["pretrained"] is False

        def predict(self, source, imgsz, **kwargs):
            asked.append(imgsz)
            return [types.SimpleNamespace(boxes=Boxes(imgsz))]

    monkeypatch.setitem(sys.modules, "ultralytics", types.SimpleNamespace(YOLO=YOLO))
    monkeypatch.setattr(real_baselines, "coco_map", lambda gt, results: results[0]["bbox"][2] / 100)
    images = [(1, tmp_path / "a.jpg"), (2, tmp_path / "b.jpg")]
    out = real_baselines.train_yolov8n(
        tmp_path / "d.yaml", images, [7], None, 1.0, 192, tmp_path, [224]
    )
    assert asked == [192, 192, 224, 224]
    assert out["eval_side"] == 224 and out["mAP"] == pytest.approx(0.224)
    assert out["scores"] == {192: pytest.approx(0.192), 224: pytest.approx(0.224)}


def test_a_table_of_an_earlier_run_has_no_scored_at_column():
    """``--from-json`` of a run before session 44 (rows without ``scored_at``)."""
    rows = [real._row("visionkit detect_fcos_r18", 0.377, 598, "mAP", 1447)]
    rows.append(real._row("torchvision FCOS-R18", 0.196, 598, "mAP", 737))
    machine = {"cpu": "AMD EPYC", "threads": 2, "precision": "bf16", "torch": "2.14"}
    machine["load_average_start"] = [1.0]
    result = {"dataset": "raccoon", "train": 128, "val": 32, "target": "t", "rows": rows}
    table = real.real_table({"real": {"detection": result}, "machine": machine}, "detection")
    assert "| steps |\n" in table and "scored at" not in table
    assert "| torchvision FCOS-R18 | 0.196 | 1.92× | 598 | 737 |" in table
