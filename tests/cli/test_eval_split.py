"""``visionkit eval --split test`` and ``check-data --split test`` (issue 16, item 5): an optional
``data.test`` validated like ``data.val`` and built like it; per-class tables printed before the
metrics JSON, which stays the last line of stdout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.helpers import detection_config, make_coco, run
from visionkit.build.data import split_spec
from visionkit.cli.evaluate import per_class_tables, report, write_plots
from visionkit.config import load_config
from visionkit.errors import ConfigError
from visionkit.evaluation.classification import ClassificationEvaluator
from visionkit.evaluation.semantic import SemanticEvaluator

MISSING = (
    "data.test: not set; give it in the config or as data.test.images=... / data.test.root=..."
)


def test_eval_on_a_test_split_given_by_override_prints_per_class_ap(trained, tmp_path, capsys):
    test = make_coco(tmp_path / "test", num_images=6)  # 3 squares and 3 discs (val: 2 and 2)
    argv = ["eval", "--checkpoint", trained["ckpt"], "--split", "test"]
    argv += [f"data.test.images={test}", "trainer.limit_val_batches=null"]
    code, out, err = run(argv, capsys)
    assert code == 0, err[-2000:]
    lines = out.strip().splitlines()
    assert lines[0] == f"Scored data.test with {trained['ckpt']}"
    metrics = json.loads(lines[-1])
    assert "det/mAP" in metrics and "det/mAP50" in metrics
    assert "test/loss" in metrics and "val/loss" not in metrics  # the split scored
    assert "Per-class AP of `det` (COCO, area all, 100 detections per image)" in lines
    header = "| category_id | name | instances | AP | AP50 | AP75 |"
    assert header in lines
    table = lines[lines.index(header) + 2 :]
    rows = {line.split(" | ")[1]: line for line in table if line.startswith("| ")}
    assert rows["square"].startswith("| 1 | square | 3 | ")  # counted on the test set
    assert rows["disc"].startswith("| 2 | disc | 3 | ")
    mean = f"|  | mean | 6 | {metrics['det/mAP']:.3f} | {metrics['det/mAP50']:.3f} |"
    assert rows["mean"].startswith(mean)


def test_eval_keeps_its_progress_bar_off_stdout(trained, capsys):
    """``visionkit eval ... > report.txt``: the report only; Lightning's bar goes to stderr."""
    argv = ["eval", "--checkpoint", trained["ckpt"], "trainer.enable_progress_bar=true"]
    code, out, err = run(argv, capsys)
    assert code == 0, err[-2000:]
    assert out.startswith(f"Scored data.val with {trained['ckpt']}\n"), out[:300]
    assert "Validation" in err and "Validation" not in out


@pytest.mark.reliability
def test_split_test_without_data_test_is_a_config_error(trained, capsys):
    code, out, err = run(["eval", "--checkpoint", trained["ckpt"], "--split", "test"], capsys)
    assert code == 2 and MISSING in err and not out.strip()
    code, _, err = run(["check-data", "--config", trained["config"], "--split", "test"], capsys)
    assert code == 2 and MISSING in err


def test_check_data_checks_the_test_split(trained, tmp_path, capsys):
    test = make_coco(tmp_path / "test", num_images=3)
    argv = ["check-data", "--config", trained["config"], "--split", "test"]
    code, out, err = run([*argv, f"data.test.images={test}"], capsys)
    assert code == 0, out + err
    assert out.startswith("data.test: ") and "check-data: no problems found in 1 dataset" in out
    code, out, _ = run(["check-data", "--config", trained["config"]], capsys)  # all: no test set
    assert code == 0 and "data.test" not in out


def config_with(test):
    return {
        "model": {"heads": {"cls": {"name": "linear", "num_classes": 2}}},
        "data": {"val": {"format": "folder", "root": "val"}, "test": test},
    }


def test_data_test_is_validated_like_val_and_takes_its_format():
    cfg = load_config(config_with({"root": "test"}))
    assert cfg.data.test["format"] == "folder" and cfg.data.test["root"] == "test"
    mix = {"a": {"format": "folder", "root": "a"}, "b": {"format": "coco", "images": "b"}}
    assert set(load_config(config_with(mix)).data.test) == {"a", "b"}


@pytest.mark.reliability
def test_data_test_on_the_folder_of_data_val_is_its_test_split_not_every_image(tmp_path):
    """``data.test.root=<the training folder>``: the VOC reader without a split reads every
    XML, the training photos too, and their mAP would pass for a test score. On data.val's
    folder, data.test takes data.val's settings with ``split: test``; elsewhere only its
    format (a folder of test photos has no split files)."""
    root = str(tmp_path / "raccoons")
    val = {"format": "voc", "root": root, "split": "val", "annotations": "xml", "images": "jpg"}

    def test_set(test):
        cfg = {"model": {"heads": {"det": {"name": "fcos", "num_classes": 1}}},
               "data": {"val": val, "test": test}}  # fmt: skip
        return load_config(cfg).data.test

    for same in (root, str(tmp_path / "x" / ".." / "raccoons")):
        got = test_set({"root": same})
        assert {k: got[k] for k in val} == {**val, "root": same, "split": "test"}
    assert test_set({"root": root, "split": "holdout"})["split"] == "holdout"
    other = test_set({"root": str(tmp_path / "new_photos")})
    assert other["format"] == "voc" and other.get("split") is None
    assert other.get("annotations") in (None, "annotations")  # the format's default
    masks = {"format": "mask_folder", "root": root, "split": "val", "ignore_index": 11}
    cfg = {"model": {"heads": {"seg": {"name": "semantic_fpn", "num_classes": 11}}},
           "data": {"val": masks, "test": {"root": root}}}  # fmt: skip
    assert load_config(cfg).data.test["ignore_index"] == 11


@pytest.mark.reliability
def test_a_bad_data_test_entry_names_its_key_path():
    with pytest.raises(ConfigError) as info:
        load_config(config_with({"format": "folder", "root": "test", "bogus": 1}))
    assert "data.test.bogus: unknown key" in str(info.value)


@pytest.mark.reliability
def test_data_test_beside_a_mixed_data_val_is_told_to_name_its_datasets():
    """``data.val`` holds named sets (boxes, maps); ``data.test.root=DIR`` was "data.test.root:
    expected a mapping, got str", and the unset hint said data.test.root=... too."""
    mix = {"boxes": {"format": "voc", "root": "r"}, "maps": {"format": "mask_folder", "root": "c"}}
    cfg = {"model": {"heads": {"cls": {"name": "linear", "num_classes": 2}}},
           "data": {"val": mix, "test": {"root": "camvid"}}}  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert (
        "data.test.root: the other splits are mixes of named datasets (boxes, maps); give "
        "data.test the same way, e.g. data.test.boxes.root=... data.test.maps.root=..."
    ) in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config({**cfg, "data": {"val": {"root": "v"}}})
    assert "data.val.root: one dataset needs data.val.format (e.g. data.val.format=coco)" in str(
        info.value
    )
    unset = load_config({**cfg, "data": {"val": mix}})
    with pytest.raises(ConfigError) as info:
        split_spec(unset.data, "test")
    assert "as data.val, one dataset per name (boxes, maps), e.g. data.test.boxes.root=... " \
        "data.test.maps.root=..." in str(info.value)  # fmt: skip
    # the sets named as that hint says take the format of data.val's set of their name (they
    # stopped on "data.test.boxes.format: required")
    named = load_config({**cfg, "data": {"val": mix, "test": {"boxes": {"root": "t"}}}})
    assert named.data.test["boxes"]["format"] == "voc" and named.data.test["boxes"]["root"] == "t"


def test_semantic_heads_get_a_per_class_iou_table():
    class Labels:
        def load_semantic(self, image_id):
            return np.array([[0, 0], [1, 255]])

    evaluator = SemanticEvaluator("seg", 3, ["bg", "fg", "edge"], Labels())
    evaluator.process({"image_ids": torch.tensor([1])}, [{"mask": torch.tensor([[0, 1], [1, 1]])}])
    metrics = evaluator.evaluate()
    lines = per_class_tables({"seg": evaluator})
    assert lines == [
        "Per-class IoU of `seg` (pixels at the original image size)",
        "",
        "| class | name | pixels | IoU |",
        "| --- | --- | --- | --- |",
        "| 0 | bg | 2 | 0.500 |",
        "| 1 | fg | 1 | 0.500 |",
        "| 2 | edge | 0 | n/a |",
        f"|  | mean | 3 | {metrics['seg/mIoU']:.3f} |",
        "",
    ]


def test_semantic_and_classification_heads_get_a_confusion_matrix_in_eval(tmp_path):
    """eval's folder gets the pixel (semantic) and image (classification) confusion matrices,
    rows normalised, and its JSON their counts, ``matrix[true][predicted]``."""

    class Labels:
        def load_semantic(self, image_id):
            return np.array([[0, 0], [1, 255]])

    seg = SemanticEvaluator("seg", 3, ["bg", "fg", "edge"], Labels())
    seg.process({"image_ids": torch.tensor([1])}, [{"mask": torch.tensor([[0, 1], [1, 1]])}])
    seg.evaluate()
    cls = ClassificationEvaluator("cls", 2, ["cat", "dog"])
    batch = {"image_ids": torch.arange(1, 4), "class": torch.tensor([0, 1, 1])}
    cls.process(batch, [{"scores": torch.tensor(s)} for s in ([0.9, 0.1], [0.8, 0.2], [0, 1])])
    cls.evaluate()
    evaluators = {"seg": seg, "cls": cls}
    checkpoint = tmp_path / "run" / "checkpoints" / "best.ckpt"
    written = write_plots(evaluators, str(checkpoint), conf=0.25)
    folder = tmp_path / "run" / "eval"
    assert written == [
        folder / "confusion_matrix_seg_normalized.png",
        folder / "confusion_matrix_cls_normalized.png",
    ]
    assert all(path.stat().st_size > 0 for path in written)
    confusion = report({}, evaluators, written)["confusion"]
    assert confusion["seg"] == {
        "classes": ["bg", "fg", "edge"],
        "unit": "pixels",
        "matrix": [[1, 1, 0], [0, 1, 0], [0, 0, 0]],  # the unlabelled pixel is not counted
    }
    assert confusion["cls"] == {
        "classes": ["cat", "dog"],
        "unit": "images",
        "matrix": [[1, 0], [1, 1]],
    }
    assert write_plots({}, str(checkpoint), conf=0.25) == []  # nothing to draw: no new folder
    assert not (tmp_path / "run" / "eval-2").exists()


def test_classification_heads_get_per_class_recall_and_precision():
    # true 0, 0, 0, 1, 1; top-1 predicted 0, 0, 1, 1, 0; class 2 never seen nor predicted
    evaluator = ClassificationEvaluator("cls", 3, ["cat", "dog", "fox"])
    scores = [[0.9, 0.1, 0], [0.8, 0.2, 0], [0.3, 0.7, 0], [0.1, 0.9, 0], [0.6, 0.4, 0]]
    batch = {"image_ids": torch.arange(1, 6), "class": torch.tensor([0, 0, 0, 1, 1])}
    evaluator.process(batch, [{"scores": torch.tensor(s)} for s in scores])
    metrics = evaluator.evaluate()
    assert metrics == {"cls/top1": 3 / 5}
    assert evaluator.confusion.tolist() == [[2, 1, 0], [1, 1, 0], [0, 0, 0]]
    lines = per_class_tables({"cls": evaluator})
    assert lines == [
        "Per-class top-1 recall and precision of `cls`",
        "",
        "| class | name | images | recall | precision |",
        "| --- | --- | --- | --- | --- |",
        "| 0 | cat | 3 | 0.667 | 0.667 |",
        "| 1 | dog | 2 | 0.500 | 0.500 |",
        "| 2 | fox | 0 | n/a | n/a |",
        "|  | mean | 5 | 0.583 | 0.583 |",
        "",
    ]
    evaluator.reset()
    assert evaluator.per_class() == [] and per_class_tables({"cls": evaluator}) == []


def test_eval_of_a_classifier_reports_per_class_rows_that_add_up(tiny_config, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    code, _, err = run(["train", "--config", config, "trainer.max_epochs=1"], capsys)
    assert code == 0, err[-2000:]
    checkpoint = tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt"
    code, out, err = run(["eval", "--checkpoint", checkpoint, "--json"], capsys)
    assert code == 0, err[-2000:]
    result = json.loads(out)
    rows = result["per_class"]["cls"]
    assert [r["name"] for r in rows] == ["plain", "gradient", "noise", "stripes"]
    assert sum(r["images"] for r in rows) == 24  # every val image, once
    hits = sum(round(r["recall"] * r["images"]) for r in rows if r["images"])
    assert hits / 24 == pytest.approx(result["metrics"]["cls/top1"])
    # predict says the classes found: each image's up to 20 images, a tally of each class
    images = sorted(Path(tiny_config["data"]["val"]["images"]).rglob("*.png"))
    argv = ["predict", "--checkpoint", checkpoint, "--no-draw", "--output-dir"]
    code, out, err = run([*argv, tmp_path / "p1", "--input", *images[:2]], capsys)
    assert code == 0, err[-2000:]
    lines = out.splitlines()
    names = "plain|gradient|noise|stripes"
    assert re.fullmatch(rf".*{re.escape(images[0].name)}: cls ({names}) [01]\.\d\d", lines[0])
    assert re.fullmatch(rf"cls: ({names}) [12](, ({names}) 1)?", lines[2]), lines
    record = json.loads((tmp_path / "p1" / "images.json").read_text())[0]["cls"]
    top = record["top5"]  # every class of the four, best first, the first the answer
    assert [c["score"] for c in top] == sorted((c["score"] for c in top), reverse=True)
    assert sorted(c["name"] for c in top) == sorted(names.split("|")) and len(top) == 4
    assert (top[0]["label"], top[0]["name"], top[0]["score"]) == (
        record["label"],
        record["name"],
        record["score"],
    )
    assert sum(c["score"] for c in top) == pytest.approx(1.0, abs=1e-4)
    code, out, err = run([*argv, tmp_path / "p2", "--input", images[0].parent], capsys)
    tally = re.fullmatch(r"cls: (.*)", out.splitlines()[0])  # 24 images: the tally alone
    assert code == 0 and tally, out
    assert sum(int(part.rsplit(" ", 1)[1]) for part in tally[1].split(", ")) == 24


def evaluated(trained, tmp_path, capsys, *extra):
    """``visionkit eval --conf 0.001 *extra`` of the trained detector: per image id, the
    (score, xywh box) pairs it scored, best first."""
    saved = tmp_path / f"results{len(extra)}.json"
    argv = ["eval", "--checkpoint", trained["ckpt"], "--conf", "0.001", "--no-plots"]
    argv += ["--json", "--save-predictions", saved, *extra, "trainer.limit_val_batches=null"]
    code, out, err = run(argv, capsys)
    assert code == 0, err[-2000:]
    assert "det/mAP" in json.loads(out)["metrics"]
    by_image: dict[int, list] = {}
    for r in json.loads(saved.read_text()):
        by_image.setdefault(r["image_id"], []).append((r["score"], r["bbox"]))
    return {k: sorted(v, reverse=True) for k, v in by_image.items()}


def assert_scored_as_predicted(scored, files, predictions):
    """Every image's scored pairs are the predictions' boxes and scores (xyxy → xywh)."""
    for info, prediction in zip(files, predictions, strict=True):
        det = prediction["det"]
        expected = sorted(
            (
                (float(s), [x1, y1, x2 - x1, y2 - y1])
                for s, (x1, y1, x2, y2) in zip(
                    det["scores"].tolist(), det["boxes"].tolist(), strict=True
                )
            ),
            reverse=True,
        )
        got = scored.get(info["id"], [])
        assert len(got) == len(expected)
        np.testing.assert_allclose([s for s, _ in got], [s for s, _ in expected], atol=1e-4)
        np.testing.assert_allclose([b for _, b in got], [b for _, b in expected], atol=1e-2)


def val_images(trained):
    """The validation images of the trained detector, with their COCO image entries."""
    from visionkit.data.io import read_image

    files = json.loads((trained["data"] / "annotations.json").read_text())["images"]
    return files, [read_image(trained["data"] / f["file_name"]) for f in files]


def test_eval_tta_flip_scores_the_merged_predictions_of_predict(trained, tmp_path, capsys):
    """``eval --tta flip`` evaluates what ``predict --tta flip`` returns: the same merged
    boxes and scores per image, and not the plain model's."""
    import visionkit
    from visionkit.inference.tta import predict_hflip

    flipped = evaluated(trained, tmp_path, capsys, "--tta", "flip")
    plain = evaluated(trained, tmp_path, capsys)
    model = visionkit.load(trained["ckpt"])
    files, images = val_images(trained)
    predictions = predict_hflip(model, images, conf=0.001)
    assert sorted(flipped) == [f["id"] for f in files]
    assert all(flipped[f["id"]] for f in files)
    assert_scored_as_predicted(flipped, files, predictions)
    assert flipped != plain


def test_eval_imgsz_scores_what_predict_imgsz_returns(trained, tmp_path, capsys):
    """``eval --imgsz N`` evaluates the model at N pixels: the boxes and scores of
    ``model.predict(..., imgsz=N)``, in the original image's pixels, and not those at the
    trained size."""
    import visionkit

    model = visionkit.load(trained["ckpt"])
    size = model.meta["config"]["data"]["image_size"]
    size = size if isinstance(size, int) else max(size)
    larger = evaluated(trained, tmp_path, capsys, "--imgsz", str(size + 32))
    plain = evaluated(trained, tmp_path, capsys)
    files, images = val_images(trained)
    assert_scored_as_predicted(larger, files, model.predict(images, conf=0.001, imgsz=size + 32))
    assert larger != plain


@pytest.mark.reliability
def test_eval_refuses_data_image_size_and_names_imgsz(trained, capsys):
    argv = ["eval", "--checkpoint", trained["ckpt"], "data.image_size=320"]
    code, out, err = run(argv, capsys)
    assert code == 2 and not out.strip()
    assert "'data.image_size=320': the evaluation size is given by --imgsz N" in err
    code, out, err = run(["eval", "--checkpoint", trained["ckpt"], "--imgsz", "0"], capsys)
    assert code == 2 and "imgsz (--imgsz): one size (640) or height,width (480,640)" in err


@pytest.mark.reliability
def test_eval_where_the_saved_data_is_not_says_which_path_and_which_override(
    tmp_path, monkeypatch, capsys
):
    """Training ran in a folder with relative data paths; eval from another folder (or after
    the data moved) names the saved path, the folder it was read from and the override."""
    project = tmp_path / "project"
    make_coco(project / "shapes", num_images=4)
    monkeypatch.chdir(project)
    config = detection_config(project / "config.yaml", Path("shapes"), Path("shapes"))
    code, _, err = run(["train", "--config", config, "--output-dir", "run"], capsys)
    assert code == 0, err[-2000:]
    ckpt = project / "run/checkpoints/best.ckpt"
    monkeypatch.chdir(tmp_path)  # another folder
    code, out, err = run(["eval", "--checkpoint", ckpt], capsys)
    assert code == 1 and not out.strip()
    assert f"{ckpt}: the data of its config is not where it was:" in err
    assert (
        "data.val.images: shapes does not exist (the path saved in the checkpoint's config, "
        f"read from the current folder {tmp_path}); the data moved, or training ran in "
        "another folder: give it with data.val.images=DIR"
    ) in err
    code, out, err = run(["eval", "--checkpoint", ckpt, "data.val.images=project/shapes"], capsys)
    assert code == 0, err[-2000:]
    assert "det/mAP" in json.loads(out.strip().splitlines()[-1])


def test_every_saved_path_of_an_entry_is_checked_but_those_given_anew(tmp_path, monkeypatch):
    from visionkit.build.data import check_saved_data_paths
    from visionkit.errors import DataError

    monkeypatch.chdir(tmp_path)
    coco = {"format": "coco", "images": "photos", "annotations": "labels/val.json"}
    with pytest.raises(DataError) as info:
        check_saved_data_paths(coco, "val", [], "best.ckpt")
    assert [p.split(":", 1)[0] for p in info.value.problems] == [
        "data.val.images",
        "data.val.annotations",
    ]
    assert info.value.problems[1].endswith("give it with data.val.annotations=FILE")
    with pytest.raises(DataError) as info:  # the images given anew: the file still missing
        check_saved_data_paths(coco, "val", ["data.val.images=/data/photos"], "best.ckpt")
    assert [p.split(":", 1)[0] for p in info.value.problems] == ["data.val.annotations"]
    check_saved_data_paths(coco, "val", ["data.val={format: coco, images: x}"], "best.ckpt")
    voc = {"format": "voc", "root": "raccoon", "annotations": "xml", "images": "photos"}
    (tmp_path / "raccoon").mkdir()  # the VOC sub-folder names are not paths of their own
    check_saved_data_paths(voc, "val", [], "best.ckpt")


def test_data_test_unset_beside_one_split_of_a_dataset_names_the_entry_that_reads_its_test():
    """data.val reads split: val of a data.yaml (Roboflow's YOLO export): eval --split test
    said only data.test.root=...; that folder given as data.test reads its test split."""
    model = {"heads": {"det": {"name": "fcos", "num_classes": 2}}}
    val = {"format": "yolo", "root": "export/data.yaml", "split": "val"}
    with pytest.raises(ConfigError) as info:
        split_spec(load_config({"model": model, "data": {"val": val}}).data, "test")
    assert str(info.value).endswith(
        f"{MISSING}; data.test.root=export/data.yaml reads split: test of data.val's dataset, "
        "with its settings"
    )
    given = load_config({"model": model, "data": {"val": val, "test": {"root": val["root"]}}})
    assert split_spec(given.data, "test")["split"] == "test"
    coco = {"format": "coco", "images": "valid"}  # one json per split: nothing to name
    with pytest.raises(ConfigError) as info:
        split_spec(load_config({"model": model, "data": {"val": coco}}).data, "test")
    assert str(info.value).endswith(MISSING)
