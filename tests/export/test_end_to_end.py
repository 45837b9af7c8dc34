"""End-to-end ONNX (``export(..., nms=True)`` / ``visionkit export --nms``): decoding and NMS in
the graph, checked against the heads' own postprocess; the standalone predictor (onnxruntime,
NumPy, Pillow) run where ``import torch`` fails gives the predictions of ``model.predict``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import visionkit
import visionkit.export.onnx as onnx_export
from visionkit.build.model import EvalPreprocess
from visionkit.cli import main
from visionkit.errors import ExportError
from visionkit.export import export
from visionkit.export import standalone as standalone_module
from visionkit.export.end_to_end import NmsSettings, head_kind, output_layout, reference_outputs
from visionkit.export.onnx import onnx_session
from visionkit.inference.onnx_runtime import OnnxPredictor

SIZE = 64
CONF, IOU, MAX_DET = 0.2, 0.5, 20
HEADS = {
    "cls": {"name": "linear", "num_classes": 2},
    "det": {"name": "fcos", "num_classes": 3, "num_convs": 1},
    "seg": {"name": "semantic_fpn", "num_classes": 3, "channels": 16},
}
LABELS = {"class": ["plain", "noisy"], "instances": ["a", "b", "c"], "semantic": ["bg", "p", "q"]}
# Runs before anything else in the child: torch, torchvision and visionkit cannot be imported.
NO_TORCH = (
    "import sys\nfor name in ('torch', 'torchvision', 'visionkit'):\n    sys.modules[name] = None\n"
)


def tiny_model(heads: dict, labels: dict) -> visionkit.VisionModel:
    """simple_cnn → FPN (16 channels) → ``heads`` at 64 px, random but fixed weights; the
    detection heads' class convolutions drawn wider, so that scores spread out."""
    config = {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": heads,
        },
        "data": {"image_size": SIZE},
    }
    torch.manual_seed(0)
    model = visionkit.create_model(config, label_names=labels).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "cls_logits" in name:
                param.normal_(0.0, 0.5)
    return model


def dynamo_fails(*args, **kwargs):
    raise RuntimeError("not in the fast tests")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One end-to-end export of a classification + FCOS + semantic model, written by the
    TorchScript-based exporter (``exporter="torchscript"``, 2 s; the dynamo exporter takes about
    40 s here and has its own slow test, :func:`test_the_dynamo_exporter_writes_the_same_graph`)."""
    model = tiny_model(HEADS, LABELS)
    path = tmp_path_factory.mktemp("e2e") / "model.onnx"
    report = export(
        model, "onnx", path, nms=True, conf=CONF, iou=IOU, max_det=MAX_DET, exporter="torchscript"
    )
    assert report.exporter == "torchscript" and not report.notes  # asked for, not a fallback
    return model, path, report


def test_the_graph_holds_nms_and_matches_the_heads_postprocess(exported):
    model, path, report = exported
    assert report.check.ok and report.check.overall <= 1e-4, report.check.table()
    assert report.check.detections > 0 and "note: no detection" not in report.check.table()
    assert report.output_names == [
        "cls.scores",
        "det.boxes",
        "det.scores",
        "det.labels",
        "det.batch_index",
        "seg.mask",
    ]
    proto = onnx.load(str(path))
    assert "NonMaxSuppression" in {node.op_type for node in proto.graph.node}
    assert [i.name for i in proto.graph.input] == ["images", "image_sizes"]
    props = {p.key: p.value for p in proto.metadata_props}
    e2e = json.loads(props["visionkit.end_to_end"])
    assert e2e["nms"] == {
        "det": {"conf": CONF, "iou": IOU, "max_det": MAX_DET, "topk_candidates": 1000}
    }
    layout = {o["name"]: (o["shape"], o["dtype"]) for o in e2e["outputs"]}
    assert layout["det.boxes"] == (["N", 4], "float32")
    assert layout["seg.mask"] == (["B", "H", "W"], "uint8")
    assert layout["cls.scores"] == (["B", 2], "float32")
    assert e2e["class_names"]["det"] == LABELS["instances"]


def test_without_conf_the_graph_keeps_what_visionkit_predict_keeps(tmp_path):
    model = tiny_model(HEADS, LABELS)
    model.meta["predict_conf"] = {"det": 0.4}  # the best F1's threshold that training kept
    path = export(model, "onnx", tmp_path / "m.onnx", nms=True, exporter="torchscript").path
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["visionkit.end_to_end"])["nms"]["det"]["conf"] == 0.4
    del model.meta["predict_conf"]  # none kept: 0.25, as visionkit predict
    path = export(model, "onnx", tmp_path / "n.onnx", nms=True, exporter="torchscript").path
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(props["visionkit.end_to_end"])["nms"]["det"]["conf"] == 0.25


def test_a_check_that_compared_no_detection_says_so(tmp_path):
    """At --conf 0.99 the random check inputs score nothing: the table of zeros said
    "check passed" as if the boxes had been compared."""
    model = tiny_model(HEADS, LABELS)
    with torch.no_grad():  # a detector that scores nothing on the random check inputs
        model.heads["det"].cls_logits.bias.fill_(-50.0)
    report = export(model, "onnx", tmp_path / "m.onnx", nms=True, exporter="torchscript")
    assert report.check.ok and report.check.detections == 0
    assert "note: no detection scored the score threshold on the random check inputs" in (
        report.check.table()
    )


def run_standalone(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where torch and visionkit cannot be imported, with
    a copy of standalone.py (alone in its folder) importable."""
    folder = tmp_path / "deploy"
    folder.mkdir(exist_ok=True)
    shutil.copy(standalone_module.__file__, folder / "standalone.py")
    script = NO_TORCH + f"sys.path.insert(0, {str(folder)!r})\n" + code
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )


def sorted_detections(boxes, scores, labels):
    order = np.lexsort((boxes[:, 1], boxes[:, 0], labels))
    return boxes[order], scores[order], labels[order]


def predict_standalone(path, tmp_path, count, seed, extra):
    """``count`` random images (``seed``) written as PNGs and predicted by the standalone
    predictor of the export ``path`` in a subprocess without torch, which also runs the line
    ``extra``; the images and the predictions as ``{"<image>.<head>.<key>": array}``."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(count)]
    files = []
    for i, image in enumerate(images):
        files.append(str(tmp_path / f"image{i}.png"))
        Image.fromarray(image).save(files[-1])
    out = tmp_path / "result.npz"
    code = (
        "import numpy as np, standalone, json, pathlib\n"
        f"predictor = standalone.Predictor({str(path)!r})\n"
        f"images = [standalone.read_image(f) for f in {files!r}]\n"
        "results = predictor.predict(images, batch_size=2)\n"
        "arrays = {f'{i}.{h}.{k}': np.asarray(v) for i, r in enumerate(results)\n"
        "          for h, d in r.items() for k, v in d.items() if k != 'names'}\n"
        f"np.savez({str(out)!r}, **arrays)\n"
        f"{extra}\n"
        "assert sys.modules['torch'] is None and 'visionkit.export' not in sys.modules\n"
    )
    done = run_standalone(tmp_path, code)
    assert done.returncode == 0, done.stderr
    return images, np.load(out)


def test_the_standalone_predictor_without_torch_gives_model_predict(exported, tmp_path):
    model, path, _ = exported
    images, got = predict_standalone(
        path,
        tmp_path,
        3,
        0,
        "json.dump([r['det']['names'] for r in results], open('names.json', 'w'))\n"
        # an image file's path gives what its pixels give
        "again = predictor.predict([pathlib.Path('image0.png')])[0]\n"
        "assert (again['seg']['mask'] == results[0]['seg']['mask']).all()",
    )
    det = model.heads["det"]
    det.score_thresh, det.nms_thresh, det.detections_per_img = CONF, IOU, MAX_DET
    reference = model.predict(images)
    total = 0
    for i, ref in enumerate(reference):
        r = [ref["det"][k].numpy() for k in ("boxes", "scores", "labels")]
        g = [got[f"{i}.det.{k}"] for k in ("boxes", "scores", "labels")]
        r, g = sorted_detections(*r), sorted_detections(*g)
        assert g[0].shape == r[0].shape
        np.testing.assert_allclose(g[0], r[0], atol=1e-3)
        np.testing.assert_allclose(g[1], r[1], atol=1e-5)
        np.testing.assert_array_equal(g[2], r[2])
        total += len(r[2])
        assert int(got[f"{i}.cls.label"]) == ref["cls"]["label"]
        np.testing.assert_allclose(got[f"{i}.cls.scores"], ref["cls"]["scores"], atol=1e-5)
        np.testing.assert_array_equal(got[f"{i}.seg.mask"], ref["seg"]["mask"].numpy())
    assert 0 < total <= 3 * MAX_DET
    names = json.loads((tmp_path / "names.json").read_text())
    assert [sorted(n) for n in names] == [sorted(r["det"]["names"]) for r in reference]


def test_the_standalone_command_prints_json_per_image(exported, tmp_path):
    model, path, _ = exported
    image = np.random.default_rng(1).integers(0, 256, (40, 90, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "wide.png")
    # a folder: its images (sub-folders too), read a batch at a time; a broken one is skipped
    (tmp_path / "more" / "sub").mkdir(parents=True)
    Image.fromarray(image[:, :60]).save(tmp_path / "more" / "sub" / "b.jpg")
    Image.fromarray(image[:30]).save(tmp_path / "more" / "a.png")
    (tmp_path / "more" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "more" / "notes.txt").write_text("not read")
    code = (
        "import runpy\n"
        f"sys.argv = ['standalone.py', {str(path)!r}, 'wide.png', 'more', '--batch-size', '2']\n"
        "runpy.run_path('deploy/standalone.py', run_name='__main__')\n"
    )
    done = run_standalone(tmp_path, code)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(text) for text in done.stdout.splitlines()]
    assert [x["image"] for x in lines] == ["wide.png", "more/a.png", "more/sub/b.jpg"]
    assert [x["seg"]["mask_shape"] for x in lines[1:]] == [[30, 90], [40, 60]]
    assert "skipped more/broken.jpg: " in done.stderr
    assert "1 of 4 images could not be read" in done.stderr
    line = lines[0]
    assert line["image"] == "wide.png"
    assert line["seg"]["mask_shape"] == [40, 90]
    assert line["cls"]["name"] in LABELS["class"]
    boxes = np.asarray(line["det"]["boxes"]).reshape(-1, 4)
    assert len(boxes) and boxes[:, [0, 2]].max() <= 90 and boxes[:, [1, 3]].max() <= 40
    assert set(line["det"]["names"]) <= set(LABELS["instances"])


@pytest.mark.parametrize(
    "steps",
    [
        [{"name": "Resize", "height": 64, "width": 64}],
        [{"name": "LongestMaxSize", "max_size": 64}],
        [{"name": "SmallestMaxSize", "max_size": 48}],
        # configs/custom/classify_r18.yaml's evaluation pipeline (at a smaller size)
        [{"name": "SmallestMaxSize", "max_size": 48}, {"name": "CenterCrop", "height": 40, "width": 40}],
        [{"name": "CenterCrop", "height": 30, "width": 51}],  # odd margins: 7 / 40 on each side
        [{"name": "CenterCrop", "height": 48, "width": 64, "pad_if_needed": True, "fill": 9}],
        [
            {"name": "LongestMaxSize", "max_size": 64},
            {"name": "PadIfNeeded", "min_height": 64, "min_width": 64, "position": "top_left"},
        ],
        [{"name": "PadIfNeeded", "min_height": 50, "min_width": 100, "fill": [10, 20, 30]}],
        [
            {"name": "PadIfNeeded", "min_height": None, "min_width": None,
             "pad_height_divisor": 32, "pad_width_divisor": 32, "position": "bottom_right"},
        ],
        [{"name": "Pad", "padding": [0, 0, 5, 11]}],  # left, top, right, bottom
        [{"name": "Pad", "padding": 3, "fill": 255}],
    ],
)  # fmt: skip
def test_the_standalone_preprocessing_is_the_eval_pipeline_within_one_level(steps):
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    image = np.random.default_rng(2).integers(0, 256, (37, 91, 3), dtype=np.uint8)
    expected = EvalPreprocess(steps, mean, std)(image)  # albumentations
    reference = expected["image"].numpy()
    got, content = standalone_module.preprocess_with_size(
        image, steps, np.asarray(mean, np.float32) * 255, np.asarray(std, np.float32) * 255
    )
    assert got.shape == reference.shape
    one_level = 1.0 / (255 * min(std))
    assert np.abs(got - reference).max() <= one_level + 1e-5
    if not any(s["name"] in standalone_module.RESIZES for s in steps):
        np.testing.assert_allclose(got, reference, atol=1e-5)  # crops and pads: exact pixels
    assert content == tuple(expected["image_size"])  # the graph's image_sizes


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"name": "Rotate"}, "not supported here (supported: Resize, LongestMaxSize"),
        ({"name": "PadIfNeeded", "min_height": 64, "border_mode": 4}, "border_mode 4: only"),
        ({"name": "PadIfNeeded", "min_height": 64, "position": "random"}, "position 'random'"),
        ({"name": "CenterCrop", "height": 64, "width": 64}, "the crop 64x64 is larger than"),
    ],
)
def test_the_standalone_preprocessing_refuses_what_it_cannot_reproduce(step, message):
    image = np.zeros((37, 91, 3), np.uint8)
    with pytest.raises(ValueError, match=re.escape(message)):
        standalone_module.preprocess(image, [step], np.zeros(3), np.ones(3))


def test_a_bottom_right_padded_detector_and_a_center_cropped_classifier_run_standalone(tmp_path):
    """PadIfNeeded (top_left) before a detector: boxes of the padded input are mapped back by
    the content size, as model.predict does; CenterCrop before a classifier (classify_r18's
    evaluation pipeline) gives model.predict's probabilities."""
    pad = [
        {"name": "LongestMaxSize", "max_size": 64},
        {"name": "PadIfNeeded", "min_height": 64, "min_width": 64, "position": "top_left"},
    ]
    crop = [
        {"name": "SmallestMaxSize", "max_size": 40},
        {"name": "CenterCrop", "height": 32, "width": 32},
    ]
    image = np.random.default_rng(3).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    for heads, steps in ((HEADS, pad), ({"cls": HEADS["cls"]}, crop)):
        model = tiny_model(heads, LABELS)
        model.meta["config"]["data"]["transforms"] = {"val": steps}
        model.preprocess = EvalPreprocess(steps, model.backbone.mean, model.backbone.std)
        path = tmp_path / f"{len(heads)}.onnx"
        export(
            model,
            "onnx",
            path,
            nms=True,
            conf=CONF,
            iou=IOU,
            max_det=MAX_DET,
            exporter="torchscript",
        )
        predictor = standalone_module.Predictor(str(path))
        assert predictor.steps == steps
        got = predictor.predict([image])[0]
        ref = model.predict([image], conf=CONF, iou=IOU, max_det=MAX_DET)[0]
        np.testing.assert_allclose(got["cls"]["scores"], ref["cls"]["scores"], atol=1e-5)
        if "det" in heads:  # the image is 64 wide already: no resize, exact pixels
            g = sorted_detections(*(got["det"][k] for k in ("boxes", "scores", "labels")))
            r = sorted_detections(*(ref["det"][k].numpy() for k in ("boxes", "scores", "labels")))
            assert len(r[0]) and g[0].shape == r[0].shape
            np.testing.assert_allclose(g[0], r[0], atol=1e-3)
            np.testing.assert_array_equal(g[2], r[2])
            assert r[0][:, [1, 3]].max() <= 40  # clipped to the content, not the padded 64
            np.testing.assert_array_equal(got["seg"]["mask"], ref["seg"]["mask"].numpy())


# fcos_keypoints, fcos_embedding and embedding heads in one model: per-detection keypoints and
# embeddings, and one embedding per image
POSE_HEADS = {
    "kp": {"name": "fcos_keypoints", "num_classes": 2, "num_convs": 1, "num_keypoints": 3,
           "kpt_convs": 1},
    "reid": {"name": "fcos_embedding", "num_classes": 2, "num_convs": 1, "emb_convs": 1,
             "embedding_dim": 8, "loss": "supcon"},
    "emb": {"name": "embedding", "num_classes": 3, "embedding_dim": 8},
}  # fmt: skip
POSE_LABELS = {"instances": ["a", "b"]}
DETECTION_ROWS = ("boxes", "scores", "labels", "batch_index")


def pose_model() -> visionkit.VisionModel:
    """:func:`tiny_model` with :data:`POSE_HEADS`; the keypoint offsets drawn wider, so that
    keypoints of neighbouring points differ by pixels, not hundredths."""
    model = tiny_model(POSE_HEADS, POSE_LABELS)
    with torch.no_grad():
        model.heads["kp"].kpt_pred.weight.normal_(0.0, 0.05)
    return model


@pytest.fixture(scope="module")
def pose_exported(tmp_path_factory):
    model = pose_model()
    path = tmp_path_factory.mktemp("e2e_pose") / "pose.onnx"
    report = export(
        model, "onnx", path, nms=True, conf=CONF, iou=IOU, max_det=MAX_DET, exporter="torchscript"
    )
    return model, path, report


def sorted_rows(pred: dict, keys: tuple[str, ...]) -> dict:
    """The arrays of ``keys`` of one image's detections, rows sorted by (label, x1, y1)."""
    arrays = {k: np.asarray(pred[k]) for k in keys}
    boxes = arrays["boxes"]
    order = np.lexsort((boxes[:, 1], boxes[:, 0], arrays["labels"]))
    return {k: v[order] for k, v in arrays.items()}


def test_keypoint_and_embedding_heads_export_their_outputs_end_to_end(pose_exported):
    model, path, report = pose_exported
    assert report.check.ok and report.check.overall <= 1e-4, report.check.table()
    expected = [f"kp.{k}" for k in (*DETECTION_ROWS, "keypoints")]
    expected += [f"reid.{k}" for k in (*DETECTION_ROWS, "embeddings")] + ["emb.embedding"]
    assert report.output_names == expected
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    e2e = json.loads(props["visionkit.end_to_end"])
    assert e2e["kinds"] == {"kp": "keypoints", "reid": "detection_embedding", "emb": "embedding"}
    assert set(e2e["nms"]) == {"kp", "reid"}
    layout = {o["name"]: (o["shape"], o["dtype"]) for o in e2e["outputs"]}
    assert list(layout) == expected
    assert layout["kp.keypoints"] == (["N", 3, 3], "float32")
    assert layout["reid.embeddings"] == (["N", 8], "float32")
    assert layout["emb.embedding"] == (["B", 8], "float32")
    assert layout["kp.boxes"] == (["N", 4], "float32")


def test_onnxruntime_keypoints_and_embeddings_are_the_heads_postprocess(pose_exported):
    """The graph's outputs on a batch of two against reference_outputs (the heads' own
    postprocess): same detections and labels, keypoints and embeddings to 1e-4."""
    model, path, _ = pose_exported
    images = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    settings = NmsSettings(conf=CONF, iou=IOU, max_det=MAX_DET)
    layout = output_layout(model, settings)
    names = [o["name"] for o in layout]
    with torch.no_grad():
        ref = dict(zip(names, reference_outputs(model, settings, images), strict=True))
    session = onnx_session(path)
    feed = {"images": images.numpy(), "image_sizes": np.array([[SIZE, SIZE]] * 2, np.int64)}
    got = dict(zip(names, session.run(names, feed), strict=True))
    for head, extra in (("kp", "keypoints"), ("reid", "embeddings")):
        keys = (*DETECTION_ROWS, extra)
        for i in range(2):
            r = {k: ref[f"{head}.{k}"].numpy() for k in keys}
            g = {k: got[f"{head}.{k}"] for k in keys}
            r = sorted_rows({k: v[r["batch_index"] == i] for k, v in r.items()}, keys)
            g = sorted_rows({k: v[g["batch_index"] == i] for k, v in g.items()}, keys)
            assert 0 < len(r["labels"]) == len(g["labels"]) <= MAX_DET
            np.testing.assert_array_equal(g["labels"], r["labels"])
            np.testing.assert_allclose(g["boxes"], r["boxes"], atol=1e-3)
            assert g[extra].dtype == np.float32 and g[extra].shape == r[extra].shape
            np.testing.assert_allclose(g[extra], r[extra], atol=1e-4)
    np.testing.assert_allclose(got["emb.embedding"], ref["emb.embedding"].numpy(), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got["emb.embedding"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got["reid.embeddings"], axis=1), 1.0, atol=1e-5)


def test_the_standalone_predictor_maps_keypoints_back_about_pixel_centres(pose_exported, tmp_path):
    """A photo twice the model's size: keypoints are mapped back as pixel indices, ``(x +
    0.5) * 2 - 0.5``, as ``model.predict`` maps them (not ``x * 2``: half a pixel off). A
    plain grey photo resizes to the same pixels in both, so only the mapping can differ."""
    model, path, _ = pose_exported
    image = np.full((2 * SIZE, 2 * SIZE, 3), 97, np.uint8)
    Image.fromarray(image).save(tmp_path / "grey.png")
    out = tmp_path / "grey.npz"
    code = (
        "import numpy as np, standalone\n"
        f"result = standalone.Predictor({str(path)!r}).predict(\n"
        f"    [standalone.read_image({str(tmp_path / 'grey.png')!r})])[0]['kp']\n"
        f"np.savez({str(out)!r}, **{{k: np.asarray(v) for k, v in result.items() if k != 'names'}})\n"
    )
    done = run_standalone(tmp_path, code)
    assert done.returncode == 0, done.stderr
    got = np.load(out)
    ref = model.predict([image], conf=CONF, iou=IOU, max_det=MAX_DET)[0]["kp"]
    keys = ("boxes", "scores", "labels", "keypoints")
    r = sorted_rows({k: ref[k].numpy() for k in keys}, keys)
    g = sorted_rows({k: got[k] for k in keys}, keys)
    assert 0 < len(r["labels"]) == len(g["labels"])
    np.testing.assert_allclose(g["keypoints"], r["keypoints"], atol=1e-3)


def test_the_standalone_predictor_returns_keypoints_and_embeddings_without_torch(
    pose_exported, tmp_path
):
    model, path, _ = pose_exported
    images, got = predict_standalone(
        path, tmp_path, 2, 4, "json.dumps([standalone.to_json(r) for r in results])"
    )
    reference = model.predict(images, conf=CONF, iou=IOU, max_det=MAX_DET)
    for i, ref in enumerate(reference):
        for head, extra in (("kp", "keypoints"), ("reid", "embeddings")):
            keys = ("boxes", "scores", "labels", extra)
            r = sorted_rows({k: ref[head][k].numpy() for k in keys}, keys)
            g = sorted_rows({k: got[f"{i}.{head}.{k}"] for k in keys}, keys)
            assert 0 < len(r["labels"]) == len(g["labels"])
            np.testing.assert_array_equal(g["labels"], r["labels"])
            np.testing.assert_allclose(g["boxes"], r["boxes"], atol=1e-3)
            assert g[extra].shape == r[extra].shape
            np.testing.assert_allclose(g[extra], r[extra], atol=1e-4)
        np.testing.assert_allclose(got[f"{i}.emb.embedding"], ref["emb"]["embedding"], atol=1e-4)
        assert got[f"{i}.emb.embedding"].shape == (8,)


def test_nms_options_are_checked_before_anything_is_loaded(tmp_path, capsys):
    model = tiny_model({"cls": {"name": "linear", "num_classes": 2}}, {"class": ["a", "b"]})
    with pytest.raises(ExportError, match="nms .* is for --format onnx, not 'torchscript'"):
        export(model, "torchscript", tmp_path / "m.pt", nms=True)
    with pytest.raises(ExportError, match="settings of the end-to-end export: add nms"):
        export(model, "onnx", tmp_path / "m.onnx", conf=0.3)
    with pytest.raises(ExportError, match=r"--iou must lie in \(0, 1\], got 1.5"):
        export(model, "onnx", tmp_path / "m.onnx", nms=True, iou=1.5)
    code = main(
        ["export", "--checkpoint", str(tmp_path / "none.ckpt"), "--format", "onnx", "--nms"]
        + ["--conf", "2", "--output", str(tmp_path / "m.onnx")]
    )
    assert code != 0
    assert "--conf must lie in [0, 1), got 2.0" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_a_head_without_an_end_to_end_export_is_refused_by_name():
    with pytest.raises(ExportError, match="head 'emb' .* export it without --nms"):
        head_kind("emb", torch.nn.Identity())
    with pytest.raises(ExportError, match="fcos_keypoints, fcos_embedding, .* embedding, sem"):
        head_kind("emb", torch.nn.Identity())


def test_onnx_predictor_refuses_an_end_to_end_file_and_says_what_to_use(exported):
    _, path, _ = exported
    with pytest.raises(ExportError, match="end-to-end export .* visionkit.export.standalone"):
        OnnxPredictor(path)


@pytest.mark.slow
def test_the_dynamo_exporter_writes_the_same_graph(tmp_path):
    model = tiny_model(HEADS, LABELS)
    report = export(model, "onnx", tmp_path / "m.onnx", nms=True, conf=CONF, max_det=MAX_DET)
    assert report.exporter == "dynamo" and not report.notes
    assert report.check.ok and report.check.overall <= 1e-4, report.check.table()
    proto = onnx.load(str(report.path))
    assert "NonMaxSuppression" in {node.op_type for node in proto.graph.node}


@pytest.mark.slow
def test_retinanet_and_fcos_mask_export_end_to_end(tmp_path):
    heads = {
        "ret": {"name": "retinanet", "num_classes": 2, "num_convs": 1},
        "ins": {"name": "fcos_mask", "num_classes": 2, "num_convs": 1},
    }
    model = tiny_model(heads, {"instances": ["a", "b"]})
    report = export(model, "onnx", tmp_path / "m.onnx", nms=True, conf=0.3, max_det=10)
    assert report.check.ok, report.check.table()
    keys = ("boxes", "scores", "labels", "batch_index")
    assert report.output_names == [f"{h}.{k}" for h in heads for k in keys]
    assert report.notes == [
        "head 'ins' (fcos_mask): its boxes only; the masks are not in an --nms export (an "
        "export without --nms keeps the raw outputs they are made from)"
    ]


@pytest.mark.slow
def test_a_half_export_runs_on_the_cpu_and_gives_model_predict(tmp_path):
    model = tiny_model(HEADS, LABELS)
    path = tmp_path / "half.onnx"
    report = export(model, "onnx", path, nms=True, conf=CONF, iou=IOU, max_det=MAX_DET, half=True)
    assert report.check.ok and report.check.atol == 2e-2, report.check.table()
    proto = onnx.load(str(path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    image = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    got = standalone_module.Predictor(str(path)).predict([image])[0]
    (alone,) = standalone_module.Predictor(str(path)).predict(image)  # one image, no list
    assert (alone["det"]["boxes"] == got["det"]["boxes"]).all()
    det = model.heads["det"]
    det.score_thresh, det.nms_thresh, det.detections_per_img = CONF, IOU, MAX_DET
    ref = model.predict([image])[0]  # float32
    assert len(got["det"]["boxes"]) == len(ref["det"]["boxes"])
    assert got["cls"]["label"] == ref["cls"]["label"]
    np.testing.assert_allclose(got["cls"]["scores"], ref["cls"]["scores"], atol=1e-2)


def test_half_without_nms_is_refused(tmp_path):
    model = tiny_model({"cls": {"name": "linear", "num_classes": 2}}, {"class": ["a", "b"]})
    with pytest.raises(ExportError, match="half .* end-to-end ONNX export: add nms"):
        export(model, "onnx", tmp_path / "m.onnx", half=True)


def test_an_exporter_asked_for_is_the_only_one_tried(tmp_path, monkeypatch):
    model = tiny_model({"cls": {"name": "linear", "num_classes": 2}}, {"class": ["a", "b"]})
    monkeypatch.setattr(onnx_export, "_onnx_dynamo", dynamo_fails)
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="with the dynamo exporter failed: RuntimeError: not in"):
        export(model, "onnx", path, exporter="dynamo", check=False)
    assert not path.exists()
    report = export(model, "onnx", path, check=False)  # auto: falls back, and says so
    assert report.exporter == "torchscript" and "dynamo exporter failed" in report.notes[0]
    with pytest.raises(ExportError, match="unknown ONNX exporter 'jit'; valid: auto, dynamo"):
        export(model, "onnx", path, exporter="jit")
    with pytest.raises(ExportError, match="exporter 'torchscript' is a choice of --format onnx"):
        export(model, "safetensors", tmp_path / "m.safetensors", exporter="torchscript")


def test_cli_export_nms_then_the_standalone_command_give_model_predict(tmp_path, capsys):
    """``visionkit export --format onnx --nms --exporter torchscript`` on a checkpoint (no
    training: tests/inference/detectors.py's detector, saved as train writes it), then the
    documented ``python -m visionkit.export.standalone model.onnx image.png`` on its output:
    the JSON lines hold model.predict's boxes (to 1e-3) and labels."""
    from tests.inference.detectors import CLASSES, detector, photo, save_checkpoint

    checkpoint = save_checkpoint(detector(), tmp_path / "best.ckpt")
    output = tmp_path / "model.onnx"
    argv = ["export", "--checkpoint", checkpoint, "--format", "onnx", "--nms", "--conf", "0.5"]
    argv += ["--max-det", "30", "--exporter", "torchscript", "--output", output]
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [
        f"wrote {output}",
        "exporter: torchscript; dynamic axes: batch, height, width",
    ]
    assert out[2] == "outputs: det.boxes, det.scores, det.labels, det.batch_index"
    # at the eval size (Resize 64): the resize is a copy on both sides; after a real resize the
    # standalone's bilinear and OpenCV's differ by up to one pixel level (boxes by ~0.01 px)
    images = {"a.png": photo(0, (64, 64)), "b.png": photo(1, (64, 64))}
    for name, image in images.items():
        Image.fromarray(image).save(tmp_path / name)
    done = subprocess.run(
        [sys.executable, "-m", "visionkit.export.standalone", "model.onnx", *images],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(Path(visionkit.__file__).parents[1]),
        },
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image"] for line in lines] == list(images)
    model = visionkit.load(checkpoint)
    reference = model.predict(list(images.values()), conf=0.5, max_det=30)
    for line, ref in zip(lines, reference, strict=True):
        got = line["det"]
        g = sorted_detections(
            np.asarray(got["boxes"]).reshape(-1, 4),
            np.asarray(got["scores"]),
            np.asarray(got["labels"]),
        )
        r = sorted_detections(*(ref["det"][k].numpy() for k in ("boxes", "scores", "labels")))
        assert 0 < len(r[0]) == len(g[0])
        np.testing.assert_allclose(g[0], r[0], atol=1e-3)  # boxes (the JSON rounds to 1e-4)
        np.testing.assert_array_equal(g[2], r[2])
        np.testing.assert_allclose(g[1], r[1], atol=1e-4)
        assert sorted(got["names"]) == sorted(CLASSES[k] for k in r[2])


def test_detections_are_paired_by_nearest_box_and_near_ties_may_trade_places():
    """The float16 check sorted both sides by position and paired other detections as soon as
    a box moved by a rounding, so every `--nms --half` export of a model with many near-equal
    scores failed (boxes off by 64 px). Detections are now paired by nearest box; one without
    a counterpart is excused only where near-equal scores trade places."""
    from visionkit.export.verify import _paired

    layout = [
        {"head": "det", "key": k, "shape": ["N", 4] if k == "boxes" else ["N"]}
        for k in ("boxes", "scores", "labels", "batch_index")
    ]
    boxes = np.array([[0, 0, 10, 10], [0.01, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]])
    ref = [boxes, np.array([0.9, 0.8, 0.5, 0.3]), np.array([0, 0, 1, 0]), np.zeros(4, int)]
    # the file: the first two in the other order, rounded; box 2 kept by NMS in place of an
    # overlapping one of a near-equal score; box 3 at the lowest score traded for another
    got_boxes = np.array(
        [[0.012, 0, 10, 10], [0, 0, 10.001, 10], [51, 50, 60, 60], [70, 70, 80, 80]]
    )
    got = [got_boxes, np.array([0.8, 0.9, 0.505, 0.3]), np.array([0, 0, 1, 0]), np.zeros(4, int)]
    problems: list[str] = []
    paired_ref, paired_got = _paired(layout, ref, got, 0.02, problems)
    assert problems == []
    np.testing.assert_allclose(paired_got[0][:2], boxes[:2], atol=0.01)
    np.testing.assert_allclose(paired_got[1][:2], [0.9, 0.8])
    # a high-scoring detection with no counterpart at all is a problem
    got[0][2], got[1][2] = [90, 0, 100, 10], 0.6
    _paired(layout, ref, got, 0.02, problems)
    assert problems == [
        f"det: 1 of {side} detections scoring more than 0.02 above their image's lowest kept "
        "score have no counterpart of the same label within 0.02"
        for side in ("PyTorch's", "the file's")
    ]
    # the lowest kept score is each image's: a swap at one image's cut is excused though
    # another image keeps lower scores
    ref = [np.vstack([boxes[:1], [[0, 0, 5, 5]]]), np.array([0.9, 0.5]), np.zeros(2, int)]
    ref.append(np.array([0, 1]))
    got = [np.vstack([boxes[:1], [[30, 30, 35, 35]]]), np.array([0.9, 0.5]), np.zeros(2, int)]
    got.append(np.array([0, 1]))
    ref[0][0], got[0][0] = [0, 0, 10, 10], [0, 0, 10, 10]
    ref[1][0] = got[1][0] = 0.05  # image 0 keeps a low score; image 1 is cut at 0.5
    problems = []
    _paired(layout, ref, got, 0.02, problems)
    assert problems == []


def test_the_standalone_reader_converts_images_as_visionkit_reads_them(tmp_path):
    """It read through Pillow's convert("RGB"): a 16-bit grey PNG became white and alpha was
    dropped, so its predictions differed from model.predict's on the same files."""
    from PIL import Image

    from visionkit.data.io import read_image

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgba[:, :, [0, 3]], "LA").save(tmp_path / "la.png")
    Image.fromarray(rng.integers(0, 65536, (20, 30)).astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(rgba[:, :, :3]).convert("P").save(tmp_path / "p.png", transparency=3)
    rotated = Image.fromarray(rgba[:, :, :3])
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    rotated.save(tmp_path / "exif.jpg", exif=exif)
    for path in sorted(tmp_path.iterdir()):
        np.testing.assert_array_equal(
            standalone_module.read_image(str(path)), read_image(path), err_msg=path.name
        )


def test_a_graph_onnxruntime_cannot_run_is_an_export_error_not_a_traceback():
    """A timm model (csatv2) whose dynamo graph onnxruntime refuses at check time printed
    onnxruntime's traceback from inside the check."""
    from visionkit.errors import ExportError
    from visionkit.export.verify import _run_graph

    class Refusing:
        def run(self, names, feed):
            raise RuntimeError(
                "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Gather node idx=3\nmore"
            )

    feed = {"images": np.zeros((1, 3, 64, 96), np.float32)}
    with pytest.raises(ExportError) as info:
        _run_graph(Refusing(), ["x"], feed, "m.onnx")
    text = str(info.value)
    assert "onnxruntime cannot run the exported graph m.onnx on an input of 1x3x64x96" in text
    assert "(RuntimeError: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Gather node idx=3)" in text
    assert "--exporter torchscript" in text


def test_a_checkpoint_or_missing_file_given_for_the_onnx_file_is_a_clear_error(tmp_path, capsys):
    """The likely mistake, a ``.ckpt`` where the ``.onnx`` goes: onnxruntime's InvalidProtobuf
    / NoSuchFile came out as tracebacks from OnnxPredictor and the standalone command."""
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    missing = tmp_path / "nope.onnx"
    for path, reason in [(ckpt, "not an ONNX model onnxruntime can read"),
                         (missing, "file does not exist")]:  # fmt: skip
        with pytest.raises(ExportError, match=f"{re.escape(str(path))}: {reason}"):
            OnnxPredictor(path)
        assert standalone_module.main([str(path), str(tmp_path)]) == 1
        assert f"error: {path}: {reason}" in capsys.readouterr().err
