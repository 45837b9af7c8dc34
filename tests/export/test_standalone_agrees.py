"""The standalone program (``visionkit.export.standalone``, which imports nothing of visionkit)
gives what ``visionkit predict`` / ``model.predict`` give: a classifier's fields, the image
files a folder is searched for."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.export.test_end_to_end import HEADS, tiny_model
from visionkit.data.batch import IMAGE_EXTENSIONS
from visionkit.data.io import read_image
from visionkit.export import export, standalone
from visionkit.models.heads.classification import TOP_K

CLASSES = [f"c{k}" for k in range(7)]  # more than top5 holds


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A 7-class classifier and its end-to-end export (TorchScript-based exporter, fast)."""
    heads = {"cls": {**HEADS["cls"], "num_classes": 7}}
    model = tiny_model(heads, {"class": CLASSES})
    path = tmp_path_factory.mktemp("cls") / "cls.onnx"
    export(model, "onnx", path, nms=True, exporter="torchscript")
    return model, path


def test_a_classifier_gives_the_fields_of_model_predict(classifier, tmp_path, capsys):
    """The standalone result was {label, name, scores}: no score, no top5, which
    model.predict and images.json carry."""
    model, path = classifier
    images = [np.random.default_rng(s).integers(0, 256, (64, 80, 3), np.uint8) for s in (0, 1)]
    got = standalone.Predictor(str(path)).predict(images)
    for ours, ref in zip(got, model.predict(images), strict=True):
        ours, ref = ours["cls"], ref["cls"]
        assert list(ours) == list(ref)  # label, name, score, top5, scores, names
        assert len(ours["top5"]) == TOP_K
        assert [c["label"] for c in ours["top5"]] == [c["label"] for c in ref["top5"]]
        assert [c["name"] for c in ours["top5"]] == [c["name"] for c in ref["top5"]]
        np.testing.assert_allclose(
            [c["score"] for c in ours["top5"]], [c["score"] for c in ref["top5"]], atol=1e-5
        )
        assert (ours["label"], ours["name"]) == (ref["label"], ref["name"])
        assert ours["score"] == pytest.approx(ref["score"], abs=1e-5)
        assert ours["names"] == ref["names"] == CLASSES
    # the command's JSON line: the same fields, floats rounded to 5 decimals (as images.json)
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    assert standalone.main([str(path), str(tmp_path / "a.png")]) == 0
    line = json.loads(capsys.readouterr().out)["cls"]
    assert set(line) == {"label", "name", "score", "top5", "scores", "names"}
    assert line["score"] == round(got[0]["cls"]["score"], 5)
    assert line["top5"][0] == {"label": line["label"], "name": line["name"], "score": line["score"]}


def test_ties_rank_in_index_order_as_the_head_does(classifier):
    """All-equal scores: label 0 first, then 1, 2, ... (the head's stable sort)."""
    _, path = classifier
    predictor = standalone.Predictor(str(path))
    raw = {"cls.scores": np.full((1, 7), 1 / 7, np.float32)}
    result = predictor._head("cls", raw, 0, (64, 64), (64, 64))
    assert result["label"] == 0 and [c["label"] for c in result["top5"]] == [0, 1, 2, 3, 4]


def test_a_folder_is_searched_for_the_image_files_visionkit_predict_reads(tmp_path):
    """standalone.py had no .gif: a folder of GIFs gave 'no images', where visionkit predict
    reads them. It imports nothing of visionkit: its copies must not drift."""
    assert standalone.IMAGE_EXTENSIONS == IMAGE_EXTENSIONS
    assert standalone.TOP_K == TOP_K
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8)
    for suffix in IMAGE_EXTENSIONS:
        Image.fromarray(pixels).save(tmp_path / f"image{suffix.upper()}")
    (tmp_path / "notes.txt").write_text("not an image")
    found = standalone.image_files([str(tmp_path)])
    assert sorted(found) == sorted(str(tmp_path / f"image{s.upper()}") for s in IMAGE_EXTENSIONS)
    gif = tmp_path / "image.GIF"
    np.testing.assert_array_equal(standalone.read_image(str(gif)), read_image(gif))


def test_a_folder_is_read_as_visionkit_predict_reads_it(classifier, tmp_path, capsys):
    """On one folder the two disagreed: standalone predicted on p0_mask.png beside p0.png,
    rounded scores to 4 decimals where images.json has 5, and listed a-b.png, a.png, a/1.png
    where visionkit predict lists a/1.png, a-b.png, a.png (sorted by path parts)."""
    from visionkit.inference import label_masks, sources
    from visionkit.inference.predict import predict_files

    assert standalone.MASK_SUFFIX == label_masks.MASK_SUFFIX
    assert standalone.MASK_EXTENSIONS == label_masks.MASK_EXTENSIONS
    model, path = classifier
    folder = tmp_path / "photos"
    (folder / "a").mkdir(parents=True)
    names = ["a/1.png", "a-b.png", "a.png", "p0.png", "p0_mask.png", "p1.JPG", "P1_Mask.TIF",
             "q_mask.png"]  # fmt: skip
    for i, name in enumerate(names):
        pixels = np.random.default_rng(i).integers(0, 256, (64, 64, 3), np.uint8)  # no resize
        Image.fromarray(pixels).save(folder / name, format="TIFF" if name.endswith("TIF") else None)
    expected = [str(p) for p in sources.expand_inputs([folder])]
    assert [p.removeprefix(f"{folder}/") for p in expected] == [
        "a/1.png", "a-b.png", "a.png", "p0.png", "p1.JPG", "q_mask.png"
    ]  # fmt: skip
    masks: list[str] = []
    assert standalone.image_files([str(folder)], masks) == expected
    assert sorted(masks) == sorted([str(folder / "P1_Mask.TIF"), str(folder / "p0_mask.png")])
    assert standalone.image_files([str(folder / "p0_mask.png")]) == [str(folder / "p0_mask.png")]
    assert standalone.main([str(path), str(folder)]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert "left out 2 label mask(s) beside their images" in captured.err
    out = predict_files(model, [folder], tmp_path / "out", progress=False)
    records = json.loads((out.parent / "images.json").read_text())
    assert [r["image"] for r in lines] == [r["file_name"] for r in records] == expected
    for line, record in zip(lines, records, strict=True):
        ours, theirs = line["cls"], record["cls"]
        assert (ours["label"], ours["name"]) == (theirs["label"], theirs["name"])
        assert ours["score"] == round(ours["score"], 5)
        assert ours["score"] == pytest.approx(theirs["score"], abs=2e-5)  # float32 apart
        assert [c["label"] for c in ours["top5"]] == [c["label"] for c in theirs["top5"]]
