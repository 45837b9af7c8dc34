"""visionkit export: ONNX for every shipped recipe (checked against PyTorch at two batch sizes
and two image sizes), TorchScript and safetensors round trips, OnnxPredictor against
VisionModel.predict, the CLI on a briefly trained checkpoint, and failures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import visionkit
from tests.helpers import predict_at_score_thresh
from visionkit.cli import main
from visionkit.config import load_config
from visionkit.errors import CheckpointError, ExportError
from visionkit.evaluation.tasks import label_family
from visionkit.export import (
    ExportModule,
    check_sizes,
    export,
    flatten_outputs,
    read_safetensors_metadata,
    read_torchscript,
    unflatten_outputs,
    verify,
)
from visionkit.inference.onnx_runtime import OnnxPredictor
from visionkit.models.heads.classification import ClassificationHead
from visionkit.registry import HEADS

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name != "base"
)
SIZE = 64  # the checks run at 64x64 and 96x128


def recipe_model(recipe: str, overrides=()) -> visionkit.VisionModel:
    """The recipe's untrained model, with label names for every head's label family (their
    number from the config, 3 where the data would say). Never downloads: the recipes for
    photos start from pretrained or COCO weights, left out here (random init)."""
    cfg = load_config(ROOT / recipe, ["model.backbone.pretrained=false", *overrides])
    cfg.model.init_from = None
    label_names = {}
    for spec in cfg.model.heads.values():
        n = spec.get("num_classes") or 3
        label_names[label_family(HEADS.component_class(spec["name"]))] = [f"c{i}" for i in range(n)]
    torch.manual_seed(0)
    return visionkit.create_model(cfg, label_names=label_names)


MULTITASK = {
    "cls": {"name": "linear", "num_classes": 4},
    "det": {"name": "fcos", "num_classes": 3, "num_convs": 1},
    "seg": {"name": "semantic_fpn", "channels": 16, "num_classes": 4},
}


def tiny_model(heads: dict) -> visionkit.VisionModel:
    """``simple_cnn`` → FPN (P3–P5, 32 channels) → ``heads``; 64 px; class names set."""
    config = {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 32, "min_level": 3, "max_level": 5},
            "heads": heads,
        },
        "data": {"image_size": SIZE},
    }
    label_names = {
        label_family(HEADS.component_class(spec["name"])): [
            f"c{i}" for i in range(spec["num_classes"])
        ]
        for spec in heads.values()
    }
    torch.manual_seed(0)
    return visionkit.create_model(config, label_names=label_names).eval()


_EXPORTS: dict[str, tuple] = {}


def exported_recipe(recipe: str, tmp_path_factory) -> tuple:
    """(model, report) of the recipe's ONNX export, made once per test session and per model:
    recipes whose ``model:`` sections are equal (``quickstart`` and ``shapes/multitask_r18``)
    build the same graph, exported once (an export takes 10-60 s)."""
    key = json.dumps(load_config(ROOT / recipe).model.model_dump(), sort_keys=True, default=str)
    if key not in _EXPORTS:
        model = predict_at_score_thresh(spread_weights(recipe_model(recipe)))
        out = tmp_path_factory.mktemp("onnx") / f"{Path(recipe).stem}.onnx"
        _EXPORTS[key] = model, export(model, "onnx", out, image_size=SIZE)
    return _EXPORTS[key]


def test_the_recipes_are_found():
    assert len(RECIPES) >= 15, (
        RECIPES
    )  # shapes/ (6), coco/ (3), custom/ (4), mask_folder/, quickstart
    assert "configs/quickstart.yaml" in RECIPES


def slow_if_resnet50(recipe: str):
    """ResNet-50 recipes take 2-5x longer to export (deselect with ``-m "not slow"``)."""
    backbone = load_config(ROOT / recipe).model.backbone.name
    return pytest.param(recipe, marks=pytest.mark.slow) if "50" in backbone else recipe


@pytest.mark.parametrize("recipe", [slow_if_resnet50(r) for r in RECIPES])
def test_onnx_export_of_every_recipe_matches_pytorch(recipe, tmp_path_factory):
    model, report = exported_recipe(recipe, tmp_path_factory)
    check = report.check
    assert report.exporter == "dynamo", report.notes
    assert check.batch_sizes == [1, 2] and check.image_sizes == [(64, 64), (96, 128)]
    assert not check.problems, check.table()
    assert check.overall <= 1e-4, check.table()
    print(f"{recipe}: max |diff| {check.overall_abs:.3g}, checked {check.overall:.3g}")

    # every head's every raw output, named <head>.<key>
    with torch.no_grad():
        probe = model.eval()(torch.zeros(1, 3, 64, 64))
    expected = [f"{head}.{key}" for head, outputs in probe.items() for key in outputs]
    assert report.output_names == expected == list(check.max_error) == list(check.max_abs)

    proto = onnx.load(str(report.path), load_external_data=False)
    (graph_input,) = proto.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "images" and len(dims) == 4
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]  # B, H, W symbolic
    assert [o.name for o in proto.graph.output] == expected
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["visionkit.config"]) == model.meta["config"]
    assert json.loads(props["visionkit.label_names"]) == model.meta["label_names"]
    assert json.loads(props["visionkit.mean"]) == pytest.approx(list(model.backbone.mean))
    assert json.loads(props["visionkit.std"]) == pytest.approx(list(model.backbone.std))
    assert json.loads(props["visionkit.exporter"]) == "dynamo"
    # what a deployer's own pre-processing needs: scale and interpolation
    entry = json.loads(props["visionkit.input"])
    assert "pixels / 255, then (x - mean) / std" in entry["normalisation"]
    assert "cv2.INTER_LINEAR" in entry["interpolation"]
    outputs = json.loads(props["visionkit.outputs"])
    assert [(o["name"], o["head"]) for o in outputs] == [(n, n.split(".")[0]) for n in expected]


def spread_weights(model: visionkit.VisionModel, seed: int = 0) -> visionkit.VisionModel:
    """Re-draw the heads' weights so that their outputs spread about as trained heads' do:
    scores and class logits far apart. (An untrained head's are almost tied, and ties make
    the order of detections and the argmax of a pixel depend on the last float bit.)"""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.heads.named_parameters():
            if name.endswith("weight") and param.dim() > 1:  # outputs of about unit spread
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))
    return model.eval()


def assert_same_predictions(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    for got, want in zip(ours, theirs, strict=True):
        assert got.keys() == want.keys()
        for head, w in want.items():
            g = got[head]
            if "label" in w:  # classification
                assert (g["label"], g["name"]) == (w["label"], w["name"])
                torch.testing.assert_close(g["scores"], w["scores"], atol=1e-4, rtol=0)
            if "mask" in w:  # semantic
                assert g["names"] == w["names"]
                assert torch.equal(g["mask"], w["mask"])
            if "boxes" in w:  # detection (and instance masks)
                assert len(w["boxes"]) > 0
                assert g["names"] == w["names"]
                assert torch.equal(g["labels"], w["labels"])
                torch.testing.assert_close(g["boxes"], w["boxes"], atol=1e-3, rtol=0)
                torch.testing.assert_close(g["scores"], w["scores"], atol=1e-4, rtol=0)
                if "masks" in w:
                    differ = (g["masks"] != w["masks"]).float().mean().item()
                    assert g["masks"].shape == w["masks"].shape and differ < 1e-3


def random_images(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(64, 64), (80, 50), (45, 100)]
    return [rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8) for i in range(count)]


@pytest.mark.parametrize(
    "recipe",
    ["configs/shapes/multitask_r18.yaml", "configs/shapes/instance_r18.yaml"],
    ids=["multitask", "instance"],
)
def test_onnx_predictor_gives_the_predictions_of_model_predict(recipe, tmp_path_factory):
    # images of other sizes and aspect ratios go through the eval resize (256 px) and back
    model, report = exported_recipe(recipe, tmp_path_factory)
    predictor = OnnxPredictor(report.path)
    assert predictor.output_names == report.output_names
    # fewer detections: the best are far apart in score, none tied within float noise
    for pytorch_head, onnx_head in zip(
        model.heads.values(), predictor.model.heads.values(), strict=True
    ):
        if hasattr(pytorch_head, "detections_per_img"):
            pytorch_head.detections_per_img = onnx_head.detections_per_img = 20
    images = random_images(3)
    try:
        assert_same_predictions(predictor.predict(images, batch_size=2), model.predict(images))
        # another inference size: the graph's height and width are dynamic
        small = predictor.predict(images[:1], imgsz=160)
        assert_same_predictions(small, model.predict(images[:1], imgsz=160))
    finally:
        for head in model.heads.values():
            if hasattr(head, "detections_per_img"):
                head.detections_per_img = 100


TINY_MODELS = {"detection": {"det": MULTITASK["det"]}, "multitask": MULTITASK}


@pytest.mark.parametrize("heads", TINY_MODELS.values(), ids=TINY_MODELS.keys())
def test_torchscript_round_trip(heads, tmp_path):
    model = spread_weights(tiny_model(heads))
    report = export(model, "torchscript", tmp_path / "model.pt", image_size=SIZE)
    assert report.check.ok and report.check.overall <= 1e-4, report.check.table()
    traced, metadata = read_torchscript(report.path)
    assert metadata["config"] == model.meta["config"]
    assert [o["name"] for o in metadata["outputs"]] == report.output_names
    images = torch.randn(3, 3, 128, 96)  # a batch size and an image size not traced
    with torch.no_grad():
        want = ExportModule(model, [tuple(o["path"]) for o in metadata["outputs"]])(images)
        got = traced(images)
    for name, g, w in zip(report.output_names, got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=0, msg=name)


TINY_RETINANET = {"det": {"name": "retinanet", "num_classes": 3, "num_convs": 1}}


@pytest.mark.parametrize("heads", [TINY_RETINANET, MULTITASK], ids=["retinanet", "multitask"])
def test_safetensors_round_trip_through_init_from(heads, tmp_path):
    model = tiny_model(heads)
    path = tmp_path / "model.safetensors"
    report = export(model, "safetensors", path, image_size=SIZE)
    assert report.check.ok and report.check.overall == 0.0, report.check.table()
    assert report.notes == []  # the usual suffix

    metadata = read_safetensors_metadata(path)
    assert metadata["config"] == model.meta["config"]
    assert metadata["label_names"] == model.meta["label_names"]

    config = json.loads(json.dumps(metadata["config"]))
    config["model"]["init_from"] = str(path)
    torch.manual_seed(1)  # another initialisation: only the loaded tensors can make it equal
    reloaded = visionkit.create_model(config, label_names=metadata["label_names"]).eval()
    transfer = reloaded.transfer_report
    assert transfer.missing == [] and transfer.mismatched == [] and transfer.unexpected == []
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        want, got = model(images), reloaded(images)
    for (name, w), (_, g) in zip(flatten_outputs(want), flatten_outputs(got), strict=True):
        assert torch.equal(g, w), name


def test_cli_exports_a_trained_checkpoint_and_the_predictor_reads_it(
    pyramid_config, shapes_root, tmp_path, capsys
):
    from visionkit.data.io import read_image
    from visionkit.engine.runner import train

    heads = {
        "cls": {"name": "linear", "num_classes": None},
        "det": {"name": "fcos", "num_classes": None, "num_convs": 1},
        "seg": {"name": "semantic_fpn", "channels": 16, "num_classes": None},
    }
    config = pyramid_config("export", heads)
    for split in ("train", "val"):
        config["data"][split]["class_field"] = "background"
    run_dir, _ = train(
        config,
        ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"],
    )
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    out = tmp_path / "export" / "model.onnx"

    code = main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--output", str(out)])
    printed, err = capsys.readouterr()
    assert code == 0, printed
    started = f"export: exporting {ckpt} to onnx, then checking it against PyTorch ..."
    assert started in err.splitlines()  # said at once: the export takes a while
    assert f"wrote {out}" in printed and "exporter: dynamo" in printed
    names = ["cls.logits", "det.cls_logits", "det.bbox_regression", "det.centerness"]
    names += ["det.points", "det.point_strides", "seg.logits"]
    table = printed[printed.index("max |exported - torch|") :]
    for name in names:
        assert f"\n{name} " in table
    overall_abs, overall = map(float, table.split("\noverall")[1].split()[:2])
    assert 0 < overall <= 1e-4 and overall <= overall_abs
    assert "batch sizes 1, 2; image sizes 64x64, 96x128" in table
    assert table.rstrip().endswith(f"check passed: max |diff| / max(1, |torch|) = {overall:.3g} "
                                   "<= tolerance 0.0001 (--atol)")  # fmt: skip

    model = visionkit.load(ckpt)
    predictor = OnnxPredictor(out)
    assert predictor.metadata["label_names"] == model.meta["label_names"]
    assert predictor.metadata["category_ids"] == model.meta["category_ids"] == [1, 2, 3]
    images = [read_image(p) for p in sorted((shapes_root / "val" / "images").glob("*.png"))[:3]]
    ours, theirs = predictor.predict(images), model.predict(images)
    for got, want in zip(ours, theirs, strict=True):
        assert (got["cls"]["label"], got["cls"]["name"]) == (
            want["cls"]["label"],
            want["cls"]["name"],
        )
        assert got["det"]["names"] is not None and got["seg"]["names"] == want["seg"]["names"]
    # raw outputs of the exact batch predict runs
    batch = torch.stack([model.preprocess(img)["image"] for img in images])
    with torch.no_grad():
        want = dict((".".join(p), t) for p, t in flatten_outputs(model(batch)))
    got = predictor.run(batch.numpy())
    for path, value in flatten_outputs(got):
        torch.testing.assert_close(value, want[".".join(path)], atol=1e-4, rtol=0)

    # without --output: beside the checkpoint (as Ultralytics), never over a file there
    beside = ["export", "--checkpoint", str(ckpt), "--format", "safetensors", "--no-check"]
    assert main(beside) == 0
    written = ckpt.with_suffix(".safetensors")
    assert f"wrote {written}" in capsys.readouterr().out
    before = written.read_bytes()
    assert main(beside) == 1
    assert f"{written} exists (written before?); it is kept: give --output {written} to " \
        "replace it" in capsys.readouterr().err  # fmt: skip
    assert written.read_bytes() == before


class BakedSizeHead(ClassificationHead):
    """A classifier that also returns a position per column of its feature map, computed with
    int() on the map's width: the tracer records a constant, so the ONNX graph only works at
    the traced size."""

    def forward(self, features):
        out = super().forward(features)
        out["columns"] = torch.arange(int(features[-1].shape[-1]), dtype=torch.float32)
        return out


def test_a_graph_that_differs_from_pytorch_fails_the_check_with_a_clear_error(tmp_path):
    model = tiny_model({"cls": MULTITASK["cls"]})
    model.heads["cls"] = BakedSizeHead(model.backbone.out_channels, num_classes=4)
    with pytest.raises(ExportError) as info:
        export(model, "onnx", tmp_path / "bad.onnx", image_size=SIZE)
    message = str(info.value)
    assert "does not match PyTorch within 0.0001" in message
    assert "cls.columns: shape [3], PyTorch [2] (input 1x3x64x64)" in message
    assert "\ncls.logits " in message  # the table of every output comes with it
    assert "check FAILED: max |diff| / max(1, |torch|) = inf, tolerance 0.0001 (--atol); " \
        "4 problem(s)" in message  # fmt: skip
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export(model, "tflite", tmp_path / "x")


def test_atol_zero_fails_on_float_noise_and_the_cli_exits_1(tmp_path, capsys, tmp_path_factory):
    model, report = exported_recipe("configs/shapes/fcos_r18.yaml", tmp_path_factory)
    assert verify(model, "onnx", report.path, image_size=SIZE).ok  # what export ran
    # onnxruntime's float arithmetic is not PyTorch's: some output differs by more than 0
    pattern = r"within 0 \(largest \|diff\| / max\(1, \|torch\|\): [0-9.e-]+\)"
    with pytest.raises(ExportError, match=pattern):
        verify(model, "onnx", report.path, image_size=SIZE, atol=0.0)
    code = main(["export", "--checkpoint", str(tmp_path / "missing.ckpt"), "--format", "onnx",
                 "--output", str(tmp_path / "x.onnx")])  # fmt: skip
    assert code == 1 and "cannot load checkpoint" in capsys.readouterr().err


def test_the_torchscript_based_exporter_is_the_fallback(tmp_path, monkeypatch):
    import visionkit.export.onnx as onnx_export

    def broken(*args, **kwargs):
        raise RuntimeError("simulated dynamo failure")

    monkeypatch.setattr(onnx_export, "_onnx_dynamo", broken)
    model = tiny_model({"seg": MULTITASK["seg"]})
    report = export(model, "onnx", tmp_path / "m.onnx", image_size=SIZE)
    assert report.exporter == "torchscript"
    assert "simulated dynamo failure" in report.notes[0]
    assert report.check.ok, report.check.table()
    props = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert json.loads(props["visionkit.exporter"]) == "torchscript"


def test_an_opset_below_18_is_the_opset_of_the_file(tmp_path, capsys):
    """``--opset 11`` (an older runtime, as Ultralytics' ``opset=11``) wrote opset 18: the
    dynamo exporter's conversion down failed, a traceback was logged and the file said
    nothing. ``auto`` writes it with the TorchScript-based exporter; the dynamo exporter asked
    for by name fails naming both opsets; an opset no exporter writes is refused first."""
    model = tiny_model({"cls": MULTITASK["cls"]})
    path = tmp_path / "m.onnx"
    report = export(model, "onnx", path, opset=11, image_size=SIZE)
    opsets = {o.domain: o.version for o in onnx.load(str(path)).opset_import}
    assert opsets[""] == 11 and report.exporter == "torchscript"
    assert report.notes == [
        "opset 11 is below 18, the lowest the dynamo exporter writes: the TorchScript-based "
        "exporter wrote it"
    ]
    assert report.check.overall <= 1e-4
    before = path.read_bytes()
    with pytest.raises(ExportError) as info:
        export(model, "onnx", path, opset=13, exporter="dynamo", check=False)
    assert str(info.value) == (
        "the dynamo exporter wrote opset 18, not the 13 asked for; --exporter torchscript "
        f"writes opsets below 18 (--exporter auto uses it for them) ({path} left as it was)"
    )
    assert path.read_bytes() == before
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"never read")  # refused before the checkpoint is loaded
    newest = onnx.defs.onnx_opset_version()
    for opset in ("5", str(newest + 1)):
        code = main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--opset", opset])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err
        assert f"error: opset {opset}: expected a whole number from 7 to {newest}" in err


def test_the_metadata_names_each_heads_classes_for_a_reader_without_visionkit(tmp_path):
    """``visionkit.label_names`` is keyed by label family (``instances``, ``semantic``), which
    a program without visionkit cannot map to the heads ``det`` / ``seg``: each head's entry
    of ``visionkit.heads`` carries its class names (a keypoint head its keypoint names)."""
    import onnxruntime
    from safetensors import safe_open

    path = tmp_path / "m.onnx"
    export(tiny_model(MULTITASK), "onnx", path, exporter="torchscript", check=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    heads = json.loads(props["visionkit.heads"])
    assert {name: head["class_names"] for name, head in heads.items()} == {
        "cls": ["c0", "c1", "c2", "c3"],
        "det": ["c0", "c1", "c2"],
        "seg": ["c0", "c1", "c2", "c3"],
    }
    assert heads["det"]["builder"] == "fcos" and heads["det"]["task"] == "detection"
    kp = {"kp": {"name": "fcos_keypoints", "num_classes": 2, "num_keypoints": 3, "num_convs": 1}}
    path = tmp_path / "kp.safetensors"
    export(tiny_model(kp), "safetensors", path, check=False)
    with safe_open(str(path), "np") as f:
        head = json.loads(f.metadata()["visionkit.heads"])["kp"]
    assert head["class_names"] == ["c0", "c1"]
    assert head["keypoint_names"] == ["0", "1", "2"] and head["skeleton"] == []


def test_flat_names_round_trip_through_nested_outputs():
    outputs = {
        "a": {"x": torch.zeros(1), "y": [torch.ones(1), torch.ones(2)]},
        "b": {"z": torch.ones(3)},
    }
    flat = flatten_outputs(outputs)
    assert [p for p, _ in flat] == [("a", "x"), ("a", "y", 0), ("a", "y", 1), ("b", "z")]
    again = unflatten_outputs([p for p, _ in flat], [t for _, t in flat])
    assert again["a"]["y"][1].shape == (2,) and again["b"]["z"].shape == (3,)
    assert check_sizes(64) == [(64, 64), (96, 128)] and check_sizes((50, 70)) == [
        (64, 96),
        (96, 160),
    ]


def test_a_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        export(tmp_path / "none.ckpt", "onnx", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.reliability
def test_a_failed_check_leaves_the_previous_export_and_no_partial_file(tmp_path):
    """Issue 18, item 11: a failed export never replaces a good file."""
    model = tiny_model({"cls": MULTITASK["cls"]})
    good = tmp_path / "model.onnx"
    export(model, "onnx", good, image_size=SIZE)
    before = good.read_bytes()
    model.heads["cls"] = BakedSizeHead(model.backbone.out_channels, num_classes=4)
    with pytest.raises(ExportError) as info:
        export(model, "onnx", good, image_size=SIZE)
    assert f"{good} left as it was" in str(info.value)
    assert ".partial" not in str(info.value)
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


@pytest.mark.reliability
def test_an_export_onto_its_own_checkpoint_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"not touched")
    with pytest.raises(ExportError, match="that is the checkpoint being exported"):
        export(ckpt, "safetensors", tmp_path / "." / "best.ckpt")
    code = main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--output", str(ckpt)])
    assert code == 1 and "that is the checkpoint being exported" in capsys.readouterr().err
    assert ckpt.read_bytes() == b"not touched"


@pytest.mark.reliability
def test_an_export_onto_a_folder_is_refused_before_any_work(tmp_path, capsys):
    """``--output outdir`` where ``outdir/`` exists was exported and checked, then failed on
    the rename with a traceback (IsADirectoryError). (A missing folder is made.)"""
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"never read")  # refused before the checkpoint is loaded
    folder = tmp_path / "outdir"
    folder.mkdir()
    with pytest.raises(ExportError, match=r"outdir is a folder; .* e\.g\. .*model\.onnx"):
        export(ckpt, "onnx", folder)
    code = main(
        ["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--output", str(folder)]
    )
    err = capsys.readouterr().err
    assert code == 1 and "is a folder" in err and "Traceback" not in err
    assert list(folder.iterdir()) == [] and ckpt.read_bytes() == b"never read"


@pytest.mark.reliability
def test_an_explicit_output_never_replaces_a_file_that_is_not_an_export(tmp_path, capsys):
    """``--output runs/x/checkpoints/last.ckpt`` (or a config, or a state dict ``.pth`` given
    for a TorchScript file) was replaced by the export: the resumable checkpoint was lost.
    Refused before the checkpoint is loaded; an earlier export of the format is replaced."""
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"never read")
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"the run's resumable checkpoint")
    config = tmp_path / "config.yaml"
    config.write_text("name: x\n")
    state_dict = tmp_path / "model.pth"
    torch.save({"weight": torch.zeros(2)}, state_dict)
    cases = [
        ("onnx", last, "a .ckpt file"),
        ("safetensors", config, "a .yaml file"),
        (
            "torchscript",
            state_dict,
            "a file without visionkit's metadata (another program's, a checkpoint, a state dict?)",
        ),
    ]
    for format, target, kind in cases:
        before = target.read_bytes()
        with pytest.raises(ExportError) as info:
            export(ckpt, format, target)
        assert str(info.value).startswith(
            f"{target} exists and is {kind}, not {'an' if format == 'onnx' else 'a'} {format} "
            "export: it is kept"
        )
        code = main(
            ["export", "--checkpoint", str(ckpt), "--format", format, "--output", str(target)]
        )
        err = capsys.readouterr().err
        assert code == 1 and f"{target} exists and is {kind}" in err and "Traceback" not in err
        assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best.ckpt",
        "config.yaml",
        "last.ckpt",
        "model.pth",
    ]
    # an earlier export of the same format is what an explicit output replaces
    model = tiny_model({"cls": MULTITASK["cls"]})
    export(model, "torchscript", state_dict.with_suffix(".pt"), check=False)
    report = export(model, "torchscript", state_dict.with_suffix(".pt"), check=False)
    assert report.path == state_dict.with_suffix(".pt")
    assert read_torchscript(report.path)[1]["label_names"] == {"class": ["c0", "c1", "c2", "c3"]}


@pytest.mark.reliability
def test_an_export_replaces_an_earlier_export_told_by_its_content_not_its_suffix(tmp_path):
    """A downloaded ``model.safetensors`` (weights of another program) was replaced by the
    export, as any file with the format's suffix was; and ``model.bin``, written by an export
    once, was refused the second time for its suffix."""
    from safetensors.torch import save_file

    model = tiny_model({"cls": MULTITASK["cls"]})
    theirs = tmp_path / "pretrained.safetensors"
    save_file({"w": torch.ones(2)}, str(theirs), metadata={"format": "pt"})
    before = theirs.read_bytes()
    with pytest.raises(ExportError, match="exists and is a file without visionkit's metadata"):
        export(model, "safetensors", theirs, check=False)
    assert theirs.read_bytes() == before
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"an onnx file of another program")
    with pytest.raises(ExportError, match="exists and is a file without visionkit's metadata"):
        export(model, "onnx", onnx_file, check=False)
    for format, name in (("safetensors", "weights.bin"), ("torchscript", "model.bin")):
        export(model, format, tmp_path / name, check=False)
        assert export(model, format, tmp_path / name, check=False).path == tmp_path / name


@pytest.mark.reliability
def test_an_output_ending_in_a_slash_names_a_folder_not_a_file(tmp_path, capsys):
    """``--output exports/`` (no such folder yet) wrote a file named ``exports``: the slash
    was dropped. Refused before the checkpoint is loaded, as an existing folder is."""
    ckpt = tmp_path / "best.ckpt"
    ckpt.write_bytes(b"never read")
    folder = f"{tmp_path / 'exports'}/"
    with pytest.raises(ExportError) as info:
        export(ckpt, "onnx", folder)
    assert str(info.value) == (
        f"{folder} names a folder (it ends in /); --output / output names the file to write, "
        f"e.g. {tmp_path / 'exports' / 'model.onnx'}"
    )
    code = main(
        ["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--output", folder]
    )
    err = capsys.readouterr().err
    assert code == 1 and f"{folder} names a folder" in err and "exports/model.pt" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt"]


def test_a_file_name_with_another_formats_suffix_is_written_with_a_note(tmp_path):
    """``--format safetensors --output model.pt``: written as asked, and the report says a
    tool going by the suffix would take it for something else."""
    report = export(tiny_model(TINY_RETINANET), "safetensors", tmp_path / "model.pt", check=False)
    assert (tmp_path / "model.pt").is_file()
    # the check reads the file back as what it is (it went by the suffix: "cannot load
    # checkpoint .model.partial.onnx: truncated or corrupt")
    checked = export(tiny_model(TINY_RETINANET), "safetensors", tmp_path / "model.onnx")
    assert checked.check.overall <= 1e-4 and (tmp_path / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.pt"]
    assert report.notes == [
        "model.pt: a safetensors file, but safetensors files usually end in .safetensors; "
        "tools that go by the suffix may not open it"
    ]


def test_read_torchscript_names_a_file_that_is_not_a_visionkit_torchscript_export(tmp_path):
    """A checkpoint given for the ``.pt`` was torch's RuntimeError saying the file is likely
    corrupted; a TorchScript file of another origin a JSONDecodeError."""
    ckpt = tmp_path / "best.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(other))
    for path, reason in [(tmp_path / "nope.pt", "file does not exist"),
                         (ckpt, "not a TorchScript file torch.jit.load can read"),
                         (other, "a TorchScript file without visionkit's metadata")]:  # fmt: skip
        with pytest.raises(ExportError, match=f"{path}: {reason}"):
            read_torchscript(path)
