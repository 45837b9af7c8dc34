"""Transfer and fine-tuning: ``model.init_from``, ``model.freeze``, ``optimizer.param_groups``."""

from __future__ import annotations

import copy
import logging
import shutil
from types import SimpleNamespace

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import visionkit
from visionkit.build import lr_schedule, optimizer_factory
from visionkit.config import load_config
from visionkit.engine.runner import train
from visionkit.engine.system import VisionSystem
from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.transfer import load_matching
from visionkit.models.weights import read_weights

BACKBONE = {"name": "simple_cnn", "out_indices": [2, 3, 4]}
NECK = {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5}
CLS = {"name": "linear", "num_classes": 3}
DET = {"name": "fcos", "num_convs": 1, "num_classes": 3}
CLASSIFIER = ["heads.cls.classifier.3.weight", "heads.cls.classifier.3.bias"]


def model_config(**heads) -> dict:
    return {"model": {"backbone": dict(BACKBONE), "neck": dict(NECK), "heads": heads}}


def build(config: dict, seed: int = 0):
    torch.manual_seed(seed)
    return visionkit.create_model(config)


def save_lightning_style(model, path) -> None:
    """What a visionkit run writes: the model's tensors under ``state_dict`` with ``model.``."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "visionkit": model.meta, "epoch": 3}, path)


def outputs_of(model, images):
    model.eval()
    with torch.no_grad():
        return model(images)


def run_config(shapes_root, tmp_path, name, heads, **model_extra) -> dict:
    return {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "model": {"backbone": dict(BACKBONE), "neck": dict(NECK), "heads": heads, **model_extra},
        "data": {
            "train": {
                "format": "coco",
                "images": str(shapes_root / "train"),
                "class_field": "background",
            },
            "image_size": 64,
            "batch_size": 8,
            "num_workers": 0,
        },
        "optimizer": {"name": "adamw", "lr": 0.003},
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 3,
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
            "log_every_n_steps": 1,
        },
    }


def test_adding_a_head_and_training_only_it_keeps_the_old_head_bit_identical(
    shapes_root, tmp_path, caplog
):
    det = {"name": "fcos", "num_convs": 1}
    first, _ = train(run_config(shapes_root, tmp_path, "det", {"det": det}))
    old_ckpt = first / "checkpoints" / "last.ckpt"
    init_file = tmp_path / "init.ckpt"
    shutil.copy(old_ckpt, init_file)

    frozen = ["backbone", "neck", "heads.det"]
    config = run_config(
        shapes_root,
        tmp_path,
        "det_cls",
        {"det": det, "cls": {"name": "linear"}},
        init_from=str(init_file),
        freeze=frozen,
    )
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        second, _ = train(config)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "visionkit.models.transfer"]
    assert "(backbone.*, neck.*, heads.det.*)" in line
    assert "initialised 2 not in the file (heads.cls.*)" in line

    new_ckpt = second / "checkpoints" / "last.ckpt"
    init_file.unlink()  # the trained checkpoint loads without the file it started from
    old, new = visionkit.load(old_ckpt), visionkit.load(new_ckpt)
    for key, value in old.state_dict().items():  # weights and BatchNorm statistics
        assert torch.equal(value, new.state_dict()[key]), key
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    before, after = outputs_of(old, images)["det"], outputs_of(new, images)["det"]
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key

    # only the new head was optimised, and it did move
    ckpt = torch.load(new_ckpt, weights_only=True)
    (opt,) = ckpt["optimizer_states"]
    assert sum(len(g["params"]) for g in opt["param_groups"]) == 2
    assert len(opt["state"]) == 2
    assert all(s["exp_avg"].abs().sum() > 0 for s in opt["state"].values())
    assert ckpt["visionkit"]["config"]["model"]["freeze"] == frozen


def test_another_class_count_reinitialises_exactly_the_classifier(tmp_path, caplog):
    source = build(model_config(cls=CLS, det=DET), seed=1)
    save_lightning_style(source, tmp_path / "src.ckpt")

    five = model_config(cls={**CLS, "num_classes": 5}, det=DET)
    fresh = build(five)
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        tuned = build({**five, "model": {**five["model"], "init_from": str(tmp_path / "src.ckpt")}})
    report = tuned.transfer_report
    assert report.mismatched == CLASSIFIER
    assert report.shapes[CLASSIFIER[0]] == ((3, 128), (5, 128))
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.loaded + report.mismatched) == sorted(tuned.state_dict())
    src, new, init = source.state_dict(), tuned.state_dict(), fresh.state_dict()
    for key in report.loaded:
        assert torch.equal(new[key], src[key]), key
    for key in CLASSIFIER:  # the freshly built model's own initialisation
        assert torch.equal(new[key], init[key]), key
    (line,) = [r.getMessage() for r in caplog.records if r.name == "visionkit.models.transfer"]
    assert "re-initialised 2 of another shape" in line
    assert "heads.cls.classifier.3.weight [3, 128] in the file, [5, 128] here" in line


def test_dropping_a_head_ignores_its_tensors_and_keeps_the_other_head(tmp_path):
    source = build(model_config(cls=CLS, det=DET), seed=1)
    path = tmp_path / "two_heads.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))

    config = model_config(cls=CLS)
    config["model"].pop("neck")
    config["model"]["init_from"] = str(path)
    single = build(config)
    report = single.transfer_report
    det_names = [k for k in source.state_dict() if k.startswith(("heads.det.", "neck."))]
    assert sorted(report.unexpected) == sorted(det_names)
    assert report.missing == [] and report.mismatched == []
    images = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(
        outputs_of(single, images)["cls"], outputs_of(source, images)["cls"], rtol=0, atol=0
    )
    assert "ignored" in report.summary() and "heads.det.*" in report.summary()


def test_load_matching_reads_plain_and_ddp_state_dicts_and_refuses_strangers(tmp_path):
    source = build(model_config(cls=CLS))
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "ddp.pt")
    assert set(read_weights(tmp_path / "ddp.pt")) == set(source.state_dict())
    target = build(model_config(cls=CLS), seed=5)
    report = load_matching(target, tmp_path / "ddp.pt")
    assert report.missing == report.mismatched == report.unexpected == []
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="none of its 1 tensors matches"):
        load_matching(target, tmp_path / "other.pt")
    torch.save({"epoch": 3}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no tensors found"):
        load_matching(target, tmp_path / "empty.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_matching(target, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_matching(target, tmp_path / "absent.safetensors")


TV_CLASSIFIER = {"model": {"backbone": {"name": "torchvision/resnet18"}, "heads": {"cls": CLS}}}


@pytest.mark.reliability
def test_a_classifiers_state_dict_as_init_from_names_backbone_pretrained(tmp_path):
    """torchvision's / timm's ResNet file, given where a whole model's belongs."""
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pth")
    with pytest.raises(CheckpointError) as err:
        load_matching(build(TV_CLASSIFIER), tmp_path / "resnet18.pth")
    assert "none of its 122 tensors matches" in str(err.value)
    assert (
        f"give it as model.backbone.pretrained={tmp_path / 'resnet18.pth'} (and no "
        "model.init_from)" in str(err.value)
    )


TV_DETECTOR = {
    "model": {
        "backbone": {"name": "torchvision/resnet18", "out_indices": [2, 3, 4]},
        "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
        "heads": {"det": DET},
    }
}


@pytest.mark.reliability
@pytest.mark.parametrize("config", [TV_DETECTOR, TV_CLASSIFIER], ids=["fcos", "classifier"])
def test_a_torchvision_detector_file_as_a_plain_init_from_warns_its_fpn_and_head_are_not_loaded(
    tmp_path, caplog, config
):
    """``init_from: fcos.pth`` shares the backbone's names only: the torchvision: form maps the
    rest (was an INFO line of counts). A classifier on its ResNet uses the backbone alone, as
    it should: no advice to follow into a ConfigError, an INFO line that the FPN and head have
    no place in it."""
    body = torchvision.models.resnet18().state_dict()
    detector = {f"backbone.body.{k}": v for k, v in body.items() if not k.startswith("fc.")}
    detector["backbone.fpn.extra_blocks.p6.weight"] = torch.zeros(256, 256, 3, 3)
    detector["head.regression_head.bbox_reg.weight"] = torch.zeros(4, 256, 3, 3)
    detector["head.regression_head.bbox_ctrness.weight"] = torch.zeros(1, 256, 3, 3)
    torch.save(detector, tmp_path / "fcos.pth")
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        report = load_matching(build(config), tmp_path / "fcos.pth")
    assert report.source == str(tmp_path / "fcos.pth")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    advice = f"model.init_from: torchvision:fcos_resnet50_fpn={tmp_path / 'fcos.pth'}"
    if config is TV_DETECTOR:
        assert any(
            "holds torchvision's fcos_resnet50_fpn" in m
            and "its FPN and head were not loaded" in m
            and advice in m
            for m in warned
        ), warned
        return
    assert not any("torchvision:fcos_resnet50_fpn" in m for m in warned), warned  # was advised
    said = "holds torchvision's fcos_resnet50_fpn; its FPN and head have no place in this model"
    assert any(said in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_a_pickle_payload_as_init_from_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (marker.touch, ())

    source = build(model_config(cls=CLS))
    state = {f"model.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state, "extra": Payload()}, tmp_path / "evil.ckpt")
    config = model_config(cls=CLS)
    config["model"]["init_from"] = str(tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refused"):
        visionkit.create_model(config)
    assert not marker.exists()


def test_freeze_stops_gradients_and_keeps_batchnorm_in_eval_mode():
    config = model_config(cls=CLS, det=DET)
    config["model"]["freeze"] = ["backbone", "heads.det"]
    model = build(config)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not any(p.requires_grad for p in model.heads["det"].parameters())
    assert all(p.requires_grad for p in model.heads["cls"].parameters())
    assert all(p.requires_grad for p in model.neck.parameters())
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    model.eval()
    model.train()
    assert not any(m.training for m in norms) and not model.heads["det"].training
    assert model.training and model.neck.training and model.heads["cls"].training
    before = [m.running_mean.clone() for m in norms]
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(a, m.running_mean) for a, m in zip(before, norms, strict=True))


def test_unknown_module_prefixes_are_config_errors_naming_the_valid_ones():
    config = model_config(cls=CLS, det=DET)
    config["model"]["freeze"] = ["backbon"]
    config["optimizer"] = {"param_groups": {"heads.seg": {"lr_mult": 2.0}, "backbone": {}}}
    with pytest.raises(ConfigError) as info:
        visionkit.create_model(config)
    problems = info.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("model.freeze: 'backbon' is not a module of the model")
    assert problems[1].startswith("optimizer.param_groups: 'heads.seg' is not a module")
    assert "valid prefixes: backbone, neck, heads, heads.cls, heads.det" in problems[1]
    with pytest.raises(ConfigError, match="lr_mult: expected greater than or equal to 0"):
        load_config(
            {
                **config,
                "model": model_config(cls=CLS)["model"],
                "optimizer": {"param_groups": {"backbone": {"lr_mult": -1}}},
            }
        )


def optimizer_of(config: dict):
    model = build(config)
    cfg = load_config(config)
    system = VisionSystem(model, optimizer_factory(cfg.optimizer), lr_schedule(cfg.scheduler))
    system._trainer = SimpleNamespace(
        estimated_stepping_batches=10, max_epochs=2, precision="32-true"
    )
    return model, system.configure_optimizers()


def test_param_groups_scale_the_learning_rate_by_the_longest_matching_prefix():
    config = model_config(cls=CLS, det=DET)
    config["optimizer"] = {
        "lr": 0.01,
        "weight_decay": 0.05,
        "param_groups": {
            "backbone": {"lr_mult": 0.1},
            "heads": {"lr_mult": 0.5},
            "heads.det": {"lr_mult": 2.0},
            "backbone.stages.0": {"lr_mult": 0.0},
        },
    }
    config["scheduler"] = {"name": "constant"}
    config["model"]["freeze"] = ["neck"]
    model, configured = optimizer_of(config)
    optimizer = configured["optimizer"]
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    expected = {"backbone.stages.0": 0.0, "backbone": 0.001, "heads.det": 0.02, "heads": 0.005}
    for name, param in model.named_parameters():
        if name.startswith("neck."):
            assert id(param) not in lr_of, name  # frozen: not optimised
            continue
        prefix = next(p for p in expected if name.startswith(p + "."))
        assert lr_of[id(param)] == pytest.approx(expected[prefix]), name
        assert decay_of[id(param)] == (0.05 if param.ndim > 1 else 0.0), name
    names = [g["name"] for g in optimizer.param_groups]
    assert names == ["backbone", "backbone", "heads", "heads", "heads.det", "heads.det",
                     "backbone.stages.0", "backbone.stages.0"]  # fmt: skip
    scheduler = configured["lr_scheduler"]["scheduler"]
    assert scheduler.base_lrs == [g["lr"] for g in optimizer.param_groups]


def test_without_param_groups_every_parameter_gets_the_base_rate():
    config = model_config(cls=CLS)
    config["optimizer"] = {"lr": 0.02}
    model, configured = optimizer_of(config)
    groups = configured["optimizer"].param_groups
    assert [g["name"] for g in groups] == ["", ""]
    assert [g["weight_decay"] for g in groups] == [1e-4, 0.0]
    assert {g["lr"] for g in groups} == {0.02}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_freezing_everything_is_a_config_error():
    config = model_config(cls=CLS)
    config["model"]["freeze"] = ["backbone", "neck", "heads"]
    with pytest.raises(ConfigError, match="every parameter of the model is frozen"):
        optimizer_of(copy.deepcopy(config))


def test_a_layer_whose_weight_has_another_shape_keeps_its_bias_fresh_too(caplog):
    """A head's bias was loaded beside a weight of another shape (half a layer from the
    file); and a load of few tensors said so at INFO level only."""
    from torch import nn

    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    source = {k: torch.full_like(v, 7.0) for k, v in model.state_dict().items()}
    source["0.weight"] = torch.ones(3, 5)  # another input width; its bias [3] fits
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        report = load_matching(model, source)
    assert report.mismatched == ["0.weight"] and report.with_layer == ["0.bias"]
    assert torch.equal(model.state_dict()["0.bias"], fresh["0.bias"])
    assert torch.equal(model.state_dict()["2.bias"], source["2.bias"])
    assert "re-initialised 1 with their layer (0.bias)" in report.summary()
    assert not report.ok
    (record,) = [r for r in caplog.records if r.name == "visionkit.models.transfer"]
    assert record.levelno == logging.INFO  # 7 of 9 tensors loaded
    caplog.clear()
    source = {"2.weight": torch.ones(2, 3), "0.weight": torch.ones(3, 5)}
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        load_matching(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)), source)
    (record,) = [r for r in caplog.records if r.name == "visionkit.models.transfer"]
    assert record.levelno == logging.WARNING  # 1 of 9: another model, most likely
