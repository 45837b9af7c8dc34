"""VisionModel, create_model, load, and the classification head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import visionkit
from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.heads.classification import ClassificationHead, mlp
from visionkit.models.model import VisionModel

CONFIG = {
    "model": {
        "backbone": {"name": "simple_cnn"},
        "heads": {"cls": {"name": "linear", "num_classes": 3}},
    }
}


def test_create_model_from_mapping_builds_the_configured_heads():
    model = visionkit.create_model(CONFIG)
    assert isinstance(model, VisionModel)
    out = model(torch.rand(2, 3, 64, 64))
    assert out["cls"]["logits"].shape == (2, 3)
    assert model.meta["config"]["model"]["heads"]["cls"]["num_classes"] == 3


def test_num_classes_comes_from_the_data_and_mismatch_is_an_error():
    cfg = {"model": {"backbone": {"name": "simple_cnn"}, "heads": {"cls": {"name": "mlp"}}}}
    model = visionkit.create_model(cfg, label_names={"class": ["a", "b", "c", "d", "e"]})
    assert model.heads["cls"].num_classes == 5
    with pytest.raises(ConfigError, match="num_classes: not set"):
        visionkit.create_model(cfg)
    with pytest.raises(ConfigError, match="num_classes: 3, but the data has 2 classes"):
        visionkit.create_model(CONFIG, label_names={"class": ["a", "b"]})
    camvid = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car"]
    camvid += ["pedestrian", "bicyclist"]  # 11: every name shown (the last one was cut)
    with pytest.raises(ConfigError, match=rf"but the data has 11 classes \({', '.join(camvid)}\)"):
        visionkit.create_model(CONFIG, label_names={"class": camvid})
    many = [f"c{i}" for i in range(20)]
    with pytest.raises(ConfigError, match=r"20 classes \(c0, c1, .*, c11, \.\.\.\)"):
        visionkit.create_model(CONFIG, label_names={"class": many})
    for count in (0, -2):  # built, then a raw torch error at the first predict
        bad = {"model": {**cfg["model"], "heads": {"cls": {"name": "mlp", "num_classes": count}}}}
        with pytest.raises(
            ConfigError, match=f"model.heads.cls.num_classes: at least 1, got {count}"
        ):
            visionkit.create_model(bad)
    with pytest.raises(ConfigError, match=r"label_names: a mapping of label family to class names"):
        visionkit.create_model(cfg, label_names=["a", "b"])  # was an AttributeError


def test_classification_loss_counts_only_labelled_images_and_touches_all_parameters():
    head = mlp([8, 16], num_classes=3, hidden_dims=[4], dropout=0.0)
    feats = [torch.rand(4, 8, 4, 4), torch.rand(4, 16, 2, 2)]
    out = head(feats)
    labels = torch.tensor([0, -1, 2, -1])
    loss = head.loss(out, {"class": labels})["ce"]
    expected = torch.nn.functional.cross_entropy(out["logits"][[0, 2]], labels[[0, 2]])
    torch.testing.assert_close(loss, expected)
    # no labelled image at all: exactly zero, finite, yet every parameter gets a gradient
    empty = head.loss(head(feats), {"class": torch.full((4,), -1)})["ce"]
    assert empty.item() == 0.0
    empty.backward()
    assert all(p.grad is not None for p in head.parameters())


def test_model_loss_is_the_weighted_sum_of_head_losses():
    backbone = visionkit.create_backbone("simple_cnn")
    heads = {
        "a": ClassificationHead(backbone.out_channels, num_classes=3),
        "b": ClassificationHead(backbone.out_channels, num_classes=2),
    }
    model = VisionModel(backbone, heads, loss_weights={"a": 2.0, "b": 0.5})
    out = model(torch.rand(2, 3, 32, 32))
    losses = model.loss(out, {"class": torch.tensor([1, 0])})
    torch.testing.assert_close(losses["loss"], 2.0 * losses["a/loss"] + 0.5 * losses["b/loss"])


@pytest.mark.parametrize(
    "returned, got",
    [
        (lambda t: t.sum(), "a tensor of shape []"),  # a bare tensor: AttributeError on .values
        (lambda t: {}, "an empty dict"),  # sum() of nothing: an int without .detach
        (lambda t: {"ce": t}, "{'ce': a tensor of shape [2, 3]}"),  # unreduced: balancer error
        (lambda t: {"ce": 0.5}, "{'ce': float}"),
    ],
)
def test_a_head_loss_that_breaks_the_contract_is_named(returned, got):
    class Bare(ClassificationHead):
        def loss(self, outputs, targets):
            return returned(outputs["logits"])

    backbone = visionkit.create_backbone("simple_cnn")
    model = VisionModel(backbone, {"mine": Bare(backbone.out_channels, num_classes=3)})
    out = model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ConfigError) as err:
        model.loss(out, {"class": torch.tensor([1, 0])})
    assert f"model.heads.mine: Bare.loss returned {got}; a head's loss returns a dict of " in str(
        err.value
    )


def test_predict_takes_uint8_images_of_any_size_and_names_classes():
    model = visionkit.create_model(CONFIG, label_names={"class": ["x", "y", "z"]})
    images = [np.zeros((50, 70, 3), np.uint8), np.full((130, 20, 3), 255, np.uint8)]
    preds = model.predict(images)
    assert len(preds) == 2
    for p in preds:
        assert p["cls"]["name"] in {"x", "y", "z"}
        assert p["cls"]["scores"].shape == (3,)
        assert abs(float(p["cls"]["scores"].sum()) - 1) < 1e-5
    preds[0]["cls"]["scores"].mul_(2)  # plain tensors, not inference tensors: changed in place
    batch = torch.zeros(2, 3, 40, 40, dtype=torch.uint8)
    assert [p["cls"]["label"] for p in model.predict(batch)] == [preds[0]["cls"]["label"]] * 2
    with pytest.raises(ValueError, match="expects uint8 RGB arrays"):
        model.predict([np.full((10, 10), 100.0, np.float32)])  # floats in 0..1 would be read


def test_load_refuses_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        visionkit.load(tmp_path / "nope.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="not a visionkit checkpoint"):
        visionkit.load(tmp_path / "plain.ckpt")
    (tmp_path / "trunc.ckpt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        visionkit.load(tmp_path / "trunc.ckpt")


@pytest.mark.reliability
def test_a_stored_config_this_version_does_not_build_names_the_checkpoint(tmp_path, capsys):
    """A checkpoint of another visionkit version (a head key since renamed) was "invalid
    configuration: model.heads.det.old_option: unknown key" on ``export`` / ``predict``, a
    config the user never wrote; the message names the checkpoint and what to do."""
    import copy

    from tests.inference.detectors import detector, save_checkpoint
    from visionkit.cli import main

    model = detector()
    meta = copy.deepcopy(model.meta)
    meta["config"]["model"]["heads"]["det"]["old_option"] = 3
    model.meta = meta
    ckpt = save_checkpoint(model, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError) as info:
        visionkit.load(ckpt)
    assert str(info.value) == (
        f"cannot load checkpoint {ckpt}: the config stored in it does not build a model with "
        f"visionkit {visionkit.__version__}:\n"
        "  model.heads.det.old_option: unknown key; did you mean 'box_coding'?\n"
        "written by another version? read it with the visionkit that wrote it, or start a run "
        f"of this version from its weights: model.init_from={ckpt}"
    )
    meta["config"]["model"]["heads"]["det"] = {"name": "my_head"}  # a plugin not imported
    ckpt = save_checkpoint(model, tmp_path / "plugin.ckpt")
    with pytest.raises(CheckpointError) as info:
        visionkit.load(ckpt)
    message = str(info.value)
    assert message.endswith("import it before loading") and "init_from" not in message
    code = main(["export", "--checkpoint", str(ckpt), "--format", "onnx", "--no-check"])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot load checkpoint {ckpt}: the config stored in it" in err
    assert "Traceback" not in err and not ckpt.with_suffix(".onnx").exists()


def test_load_says_what_a_file_is_when_it_is_not_a_checkpoint(tmp_path):
    """A run folder, a TorchScript export, a checkpoint mapped to a GPU this machine lacks:
    each named, not "truncated or corrupt" or "does not exist"."""
    from tests.inference.detectors import detector, save_checkpoint
    from visionkit.export import export

    model = detector()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    ckpt = save_checkpoint(model, tmp_path / "run" / "checkpoints" / "best.ckpt")
    with pytest.raises(
        CheckpointError, match=r"is a folder; give a checkpoint file, e\.g\. .*best"
    ):
        visionkit.load(tmp_path / "run")
    (tmp_path / "model.onnx").write_bytes(b"onnx")  # Ultralytics' predict model=best.onnx
    with pytest.raises(CheckpointError, match=r"an ONNX export, not a checkpoint: run it with"):
        visionkit.load(tmp_path / "model.onnx")
    traced = export(model, "torchscript", tmp_path / "model.pt", check=False).path
    with pytest.raises(CheckpointError, match=r"a TorchScript export, not a checkpoint: read it"):
        visionkit.load(traced)
    if not torch.cuda.is_available():
        with pytest.raises(CheckpointError, match="no CUDA GPU; map_location='cpu' reads it"):
            visionkit.load(ckpt, map_location="cuda")


def test_load_rebuilds_a_safetensors_export_from_its_header(tmp_path):
    from tests.inference.detectors import detector, photo
    from visionkit.export import export

    model = detector()
    path = export(model, "safetensors", tmp_path / "model.safetensors", check=False).path
    loaded = visionkit.load(path)
    (want,), (got,) = model.predict(photo()), loaded.predict(photo())
    assert torch.equal(got["det"]["boxes"], want["det"]["boxes"]) and len(want["det"]["boxes"])
    assert got["det"]["names"] == want["det"]["names"]
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "weights.safetensors")  # weights alone
    with pytest.raises(CheckpointError, match=r"not a visionkit safetensors export .*init_from"):
        visionkit.load(tmp_path / "weights.safetensors")


def test_load_refuses_pickle_payloads_without_running_them(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    torch.save({"visionkit": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refused"):
        visionkit.load(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_list_heads_lists_the_registered_heads():
    assert {"linear", "mlp"} <= set(visionkit.list_heads())


FOCAL_YAML = """
model:
  backbone: {name: simple_cnn, out_indices: [2, 3, 4]}
  neck: {name: fpn, out_channels: 16}
  heads:
    det: {name: fcos, num_classes: 2, num_convs: 1, focal_alpha: 0.5, focal_gamma: 0.0}
    box: {name: retinanet, num_classes: 2, num_convs: 1, focal_gamma: 1.0}
"""


def test_focal_loss_parameters_are_set_from_yaml(tmp_path):
    path = tmp_path / "focal.yaml"
    path.write_text(FOCAL_YAML)
    cfg = visionkit.load_config(path)
    assert cfg.model.heads["det"]["focal_alpha"] == 0.5
    assert cfg.model.heads["box"]["focal_alpha"] == 0.25  # the default, filled in
    torch.manual_seed(0)
    model = visionkit.create_model(cfg)
    det, box = model.heads["det"], model.heads["box"]
    assert (det.focal_alpha, det.focal_gamma) == (0.5, 0.0)
    assert (box.focal_alpha, box.focal_gamma) == (0.25, 1.0)
    # ... and they reach the loss: the default gamma down-weights the easy background points.
    features = model.neck(model.backbone(torch.rand(1, 3, 64, 64)))
    out = det(features)
    batch = {"boxes": [torch.tensor([[8.0, 8.0, 40.0, 40.0]])], "labels": [torch.tensor([1])]}
    set_from_yaml = det.loss(out, batch)["cls"]
    det.focal_alpha, det.focal_gamma = 0.25, 2.0
    assert det.loss(out, batch)["cls"] < set_from_yaml
    with pytest.raises(ConfigError, match="focal_gama: unknown key; did you mean 'focal_gamma'"):
        visionkit.load_config(path, ["model.heads.det.focal_gama=1"])


def test_a_runs_config_given_as_the_checkpoint_is_named_a_config(tmp_path, capsys):
    """``visionkit predict --checkpoint runs/x/config.yaml`` (the run's file a first user
    sees first) said "truncated or corrupt (not a file torch.save wrote)"; it says it is a
    config, and names the run's checkpoints."""
    from tests.helpers import run, write_image
    from tests.inference.detectors import detector, save_checkpoint

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    ckpt = save_checkpoint(detector(), tmp_path / "run" / "checkpoints" / "best.ckpt")
    config = tmp_path / "run" / "config.yaml"
    config.write_text("name: x\nmodel: {backbone: {name: simple_cnn}}\n")
    with pytest.raises(CheckpointError, match=rf"a config file, not a checkpoint: .*e\.g\. {ckpt}"):
        visionkit.load(config)
    write_image(tmp_path / "a.png", size=(16, 16))
    argv = ["predict", "--checkpoint", config, "--input", tmp_path / "a.png"]
    code, _, err = run(argv, capsys)
    assert code == 1 and f"{config}: a config file, not a checkpoint: give the .ckpt" in err
