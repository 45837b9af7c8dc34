"""``init_from: torchvision:<model>``: torchvision's detectors and segmentation backbones mapped
onto visionkit's modules (:mod:`visionkit.models.torchvision_detectors`).

Each torchvision model is built with random weights (seeded; BatchNorm statistics taken from
a batch so they are not the identity), saved as a state dict in the layout of the published
file, and loaded with ``init_from: torchvision:<model>=<file>``; the visionkit model must
compute the same raw outputs (to 1e-4 of their range) and the same detections (scores to 1e-3,
boxes to 1e-3 plus the bound that the raw differences put on them). No network.
"""

from __future__ import annotations

import logging
import re

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.detection.image_list import ImageList

import visionkit
from visionkit.config import load_config
from visionkit.errors import CheckpointError, ConfigError

SIZE = 128  # a multiple of 128: torchvision's P7 stride is then exactly 128, as visionkit's
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
# The same postprocessing on both sides; no cap below the candidates (5 levels x 100), so that
# the boxes torchvision returns empty (clipped to nothing), which visionkit drops, take no place.
THRESHOLDS = {
    "score_thresh": 0.3,
    "nms_thresh": 0.5,
    "topk_candidates": 100,
    "detections_per_img": 1000,
}


def images(seed: int, count: int = 2) -> torch.Tensor:
    """Images in 0..1, ``[count, 3, SIZE, SIZE]``, as torchvision's models take them."""
    return torch.rand(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def normalised(x: torch.Tensor) -> torch.Tensor:
    """What visionkit's pipeline feeds the model (torchvision's own normalisation)."""
    return (x - MEAN) / STD


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Seeded weights far from any initialisation: BatchNorm statistics from a batch (so they
    are not the identity), affine norms and head layers drawn at random, FCOS's regression
    biased positive (relu(0) boxes would be empty, which visionkit drops)."""
    torch.manual_seed(seed)
    body = model.backbone.body if hasattr(model.backbone, "body") else model.backbone
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    with torch.no_grad():
        for m in norms:
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
        for m in norms:
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 1.0  # running statistics := those of the next batch
        body.train()
        body(normalised(images(seed + 100, 4)))
        for name, param in model.named_parameters():
            if name.startswith("head.") and ".conv." in name and param.ndim == 4:
                nn.init.normal_(param, std=0.02)
            elif name.startswith("head.") and name.endswith("cls_logits.weight"):
                nn.init.normal_(param, std=0.005)
            elif name.startswith("head.") and name.endswith("cls_logits.bias"):
                nn.init.normal_(param, mean=-2.0, std=0.5)
            elif name.startswith("head.") and ("bbox_reg" in name or "bbox_ctrness" in name):
                nn.init.normal_(param, std=0.01)
                if name.endswith("bbox_reg.bias") and hasattr(model.head, "box_coder"):  # FCOS
                    nn.init.uniform_(param, 1.0, 2.0)
    return model.eval()


def assert_close_to_scale(ours: torch.Tensor, theirs: torch.Tensor, tol: float = 1e-4) -> None:
    """Equal to ``tol`` of the outputs' largest magnitude. FCOS and RetinaNet v2 come out
    bit-identical; RetinaNet v1's eps fold (exact in real numbers) rounds each BatchNorm's
    weight in fp32, ~2e-5 of the logits' range after 53 BatchNorms of a random network."""
    assert ours.shape == theirs.shape
    error, scale = (ours - theirs).abs().max().item(), theirs.abs().max().item()
    assert error <= tol * scale, f"max difference {error:.3g} > {tol} x {scale:.3g}"


def old_layout(state: dict[str, torch.Tensor], retinanet_v1: bool) -> dict[str, torch.Tensor]:
    """The names of the published files written before torchvision 0.13 (FCOS, RetinaNet v1):
    ``fpn.inner_blocks.i.weight``, and RetinaNet v1's head convs as ``conv.2i.weight``."""
    out = {}
    for name, value in state.items():
        name = re.sub(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.0\.", r"\1.", name)
        if retinanet_v1:
            name = re.sub(
                r"^(head\.\w+_head\.conv)\.(\d+)\.0\.",
                lambda m: f"{m[1]}.{2 * int(m[2])}.",
                name,
            )
        out[name] = value
    return out


def detector_config(kind: str, init_from: str | None, num_classes: int = 91, **head) -> dict:
    extra = "conv_from_c" if kind == "retinanet_v2" else "conv_from_p"
    if kind == "fcos":
        spec = {"name": "fcos", "box_coding": "relu", "grid_offset": 0.0}
    else:
        spec = {"name": "retinanet", "grid_offset": 0.0, "round_anchors": True}
        spec["norm"] = "group" if kind == "retinanet_v2" else "none"
    return {
        "model": {
            "backbone": {"name": "torchvision/resnet50", "out_indices": [2, 3, 4]},
            "neck": {
                "name": "fpn",
                "out_channels": 256,
                "min_level": 3,
                "max_level": 7,
                "extra_blocks": extra,
            },
            "heads": {"det": {**spec, "num_classes": num_classes, **THRESHOLDS, **head}},
            "init_from": init_from,
        }
    }


BUILDERS = {
    "fcos": ("fcos_resnet50_fpn", torchvision.models.detection.fcos_resnet50_fpn),
    "retinanet_v1": ("retinanet_resnet50_fpn", torchvision.models.detection.retinanet_resnet50_fpn),
    "retinanet_v2": (
        "retinanet_resnet50_fpn_v2",
        torchvision.models.detection.retinanet_resnet50_fpn_v2,
    ),
}


@pytest.fixture(scope="module", params=list(BUILDERS))
def detector(request, tmp_path_factory):
    """``(kind, torchvision model, its file)`` for each detector, its file in the layout
    torchvision publishes it."""
    kind = request.param
    name, builder = BUILDERS[kind]
    torch.manual_seed(0)
    model = builder(
        weights=None,
        weights_backbone=None,
        min_size=SIZE,
        max_size=SIZE,
        **THRESHOLDS,
    )
    randomise(model, seed=1)
    if kind == "retinanet_v1":  # the COCO file was trained with eps 0 (torchvision sets it)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = 0.0
    state = model.state_dict()
    if kind != "retinanet_v2":
        state = old_layout(state, retinanet_v1=kind == "retinanet_v1")
    path = tmp_path_factory.mktemp(kind) / f"{name}.pth"
    torch.save(state, path)
    return kind, model, path


@pytest.mark.slow
def test_the_raw_outputs_and_detections_equal_torchvisions(detector, caplog):
    kind, tv_model, path = detector
    name = BUILDERS[kind][0]
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        model = visionkit.create_model(detector_config(kind, f"torchvision:{name}={path}")).eval()
    report = model.transfer_report
    assert report.missing == [] and report.mismatched == [] and report.unexpected == []
    assert f"init_from torchvision:{name}={path}: loaded {len(report.loaded)} of" in caplog.text

    x = images(seed=2)
    with torch.no_grad():
        features = list(tv_model.backbone(normalised(x)).values())
        expected = tv_model.head(features)
        anchors = tv_model.anchor_generator(ImageList(x, [(SIZE, SIZE)] * len(x)), features)[0]
        raw = model(normalised(x))["det"]
        tv_detections = tv_model(list(x))
    assert_close_to_scale(raw["cls_logits"], expected["cls_logits"])
    if kind == "fcos":  # visionkit's distances are in pixels, torchvision's in strides
        strides = raw["point_strides"][None, :, None]
        assert_close_to_scale(raw["bbox_regression"], expected["bbox_regression"] * strides)
        assert_close_to_scale(raw["centerness"], expected["bbox_ctrness"][..., 0])
        torch.testing.assert_close(raw["points"], (anchors[:, :2] + anchors[:, 2:]) / 2)
        # a corner is the point minus / plus a distance: it moves as the distances do
        box_error = (raw["bbox_regression"] - expected["bbox_regression"] * strides).abs().max()
    else:
        assert_close_to_scale(raw["bbox_regression"], expected["bbox_regression"])
        torch.testing.assert_close(raw["anchors"], anchors, rtol=0, atol=0)
        # a corner is the centre (dx·w from the anchor's) minus / plus half the width
        # (w·exp(dw)): a difference e in the deltas moves it by up to e·w·(1 + exp(dw) / 2)
        delta_error = (raw["bbox_regression"] - expected["bbox_regression"]).abs().max()
        widest = (anchors[:, 2:] - anchors[:, :2]).max()
        growth = 1 + expected["bbox_regression"].abs().max().exp() / 2
        box_error = delta_error * widest * growth

    detections = model.heads["det"].postprocess(raw, [(SIZE, SIZE)] * len(x))
    for ours, theirs in zip(detections, tv_detections, strict=True):
        size = theirs["boxes"][:, 2:] - theirs["boxes"][:, :2]
        theirs = {k: v[(size >= 1e-2).all(1)] for k, v in theirs.items()}  # visionkit drops empty
        assert len(theirs["boxes"]) > 10
        torch.testing.assert_close(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["scores"], theirs["scores"], rtol=0, atol=1e-3)
        # bit-identical raw outputs (FCOS, RetinaNet v2) decode to the same boxes up to fp32
        # rounding; RetinaNet v1's (see assert_close_to_scale) to their bound on the corners
        atol = 1e-3 + box_error.item()
        torch.testing.assert_close(ours["boxes"], theirs["boxes"], rtol=0, atol=atol)


@pytest.mark.slow
def test_for_other_classes_the_class_layer_is_reinitialised_and_reported(detector, caplog):
    kind, _, path = detector
    name = BUILDERS[kind][0]
    torch.manual_seed(3)
    fresh = visionkit.create_model(detector_config(kind, None, num_classes=3))
    torch.manual_seed(3)
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        model = visionkit.create_model(
            detector_config(kind, f"torchvision:{name}={path}", num_classes=3)
        )
    report = model.transfer_report
    layer = ["heads.det.cls_logits.weight", "heads.det.cls_logits.bias"]
    assert report.mismatched == layer
    assert report.missing == [] and report.unexpected == []
    anchors = 1 if kind == "fcos" else 9
    assert (
        f"re-initialised 2 of another shape (heads.det.cls_logits.weight "
        f"[{91 * anchors}, 256, 3, 3] in the file, [{3 * anchors}, 256, 3, 3] here; "
        f"heads.det.cls_logits.bias [{91 * anchors}] in the file, [{3 * anchors}] here)"
    ) in caplog.text
    own, new = model.state_dict(), fresh.state_dict()
    for key in layer:  # left as a fresh model initialises it
        torch.testing.assert_close(own[key], new[key], rtol=0, atol=0)
    file = torch.load(path, weights_only=True)
    torch.testing.assert_close(
        own["backbone.body.conv1.weight"], file["backbone.body.conv1.weight"]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "builder"),
    [
        ("deeplabv3_resnet50", torchvision.models.segmentation.deeplabv3_resnet50),
        ("fcn_resnet50", torchvision.models.segmentation.fcn_resnet50),
    ],
)
def test_a_segmentation_models_resnet50_loads_into_the_backbone(name, builder, tmp_path, caplog):
    torch.manual_seed(0)
    tv_model = randomise(builder(weights=None, weights_backbone=None, aux_loss=True), seed=4)
    path = tmp_path / f"{name}.pth"
    torch.save(tv_model.state_dict(), path)
    config = {
        "model": {
            "backbone": {"name": "torchvision/resnet50"},
            "heads": {"cls": {"name": "linear", "num_classes": 3}},
            "init_from": f"torchvision:{name}={path}",
        }
    }
    with caplog.at_level(logging.INFO, logger="visionkit.models.transfer"):
        model = visionkit.create_model(config)
    report, own = model.transfer_report, model.state_dict()
    file = torch.load(path, weights_only=True)
    backbone = {k: v for k, v in file.items() if k.startswith("backbone.")}
    assert len(backbone) == 318 and sorted(report.loaded) == sorted(
        "backbone.body." + k.removeprefix("backbone.") for k in backbone
    )
    for key, value in backbone.items():
        torch.testing.assert_close(own["backbone.body." + key.removeprefix("backbone.")], value)
    assert report.missing and all(k.startswith("heads.cls.") for k in report.missing)
    assert sorted(report.unexpected) == sorted(k for k in file if not k.startswith("backbone."))
    assert "(classifier.*, aux_classifier.*)" in caplog.text
    assert "it was trained dilated" in caplog.text


@pytest.mark.reliability
@pytest.mark.parametrize("kind", list(BUILDERS))
def test_a_model_that_cannot_compute_torchvisions_lists_every_difference(kind, tmp_path):
    name = BUILDERS[kind][0]
    config = detector_config(kind, f"torchvision:{name}={tmp_path / 'never_read.pth'}")
    config["model"]["heads"]["det"]["grid_offset"] = 0.5
    config["model"]["neck"]["max_level"] = 6
    config["model"]["backbone"]["name"] = "resnet50"
    with pytest.raises(ConfigError) as err:
        visionkit.create_model(config)
    assert str(err.value).splitlines()[1:] == [
        f"  model.backbone.name: 'resnet50', but init_from torchvision:{name} holds a "
        "torchvision ResNet-50; expected 'torchvision/resnet50'",
        f"  model.neck.max_level: 6, but init_from torchvision:{name} needs max_level: 7",
        f"  model.heads.det.grid_offset: 0.5, but init_from torchvision:{name} needs "
        "grid_offset: 0.0 to compute what torchvision's model computes",
    ]


@pytest.mark.reliability
def test_a_file_of_another_torchvision_model_is_refused_naming_it(tmp_path):
    path = tmp_path / "retinanet_v2.pth"
    torch.save(  # the names and P6 input channels that identify RetinaNet v2
        {
            "backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7),
            "backbone.fpn.extra_blocks.p6.weight": torch.zeros(256, 2048, 1, 1),
            "head.regression_head.bbox_reg.weight": torch.zeros(36, 256, 3, 3),
        },
        path,
    )
    with pytest.raises(CheckpointError) as err:
        visionkit.create_model(detector_config("fcos", f"torchvision:fcos_resnet50_fpn={path}"))
    assert str(err.value) == (
        f"cannot load checkpoint {path}: init_from names torchvision's fcos_resnet50_fpn, but "
        "the file holds torchvision's retinanet_resnet50_fpn_v2 (first tensors: "
        "backbone.body.conv1.weight, backbone.fpn.extra_blocks.p6.weight, "
        "head.regression_head.bbox_reg.weight); write init_from: "
        f"torchvision:retinanet_resnet50_fpn_v2={path}"
    )


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "torchvision:fcos_resnet50",
            "model.init_from: expected torchvision:<model> or torchvision:<model>=/path/to/"
            "file.pth, <model> one of fcos_resnet50_fpn, retinanet_resnet50_fpn, "
            "retinanet_resnet50_fpn_v2, deeplabv3_resnet50, fcn_resnet50, got "
            "'torchvision:fcos_resnet50'",
        ),
        (
            "torchvision:fcos_resnet50_fpn=",
            "model.init_from: expected a file after '=' (torchvision:fcos_resnet50_fpn=/path/"
            "to/file.pth), or no '=' for torchvision's published weights, got "
            "'torchvision:fcos_resnet50_fpn='",
        ),
    ],
)
def test_a_bad_torchvision_value_is_a_config_error(value, message):
    config = detector_config("fcos", value)
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert message in str(err.value)


@pytest.mark.reliability
def test_a_classifiers_file_as_a_torchvision_detector_names_backbone_pretrained(tmp_path):
    file = tmp_path / "resnet50-11ad3fa6.pth"  # torchvision's ImageNet ResNet-50, say
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.bias": torch.zeros(1000)}, file)
    with pytest.raises(CheckpointError) as err:
        visionkit.create_model(detector_config("fcos", f"torchvision:fcos_resnet50_fpn={file}"))
    assert "the file holds no torchvision model visionkit knows" in str(err.value)
    assert f"give it as model.backbone.pretrained={file} (and no model.init_from)" in str(err.value)


@pytest.mark.reliability
def test_offline_without_the_cached_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    with pytest.raises(CheckpointError) as err:
        visionkit.create_model(detector_config("fcos", "torchvision:fcos_resnet50_fpn"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "fcos_resnet50_fpn_coco-99b0c9b7.pth"
    assert str(err.value) == (
        f"torchvision's fcos_resnet50_fpn weights are not in torch hub's cache ({cached}) "
        "and were not downloaded: VISIONKIT_OFFLINE=1 is set (offline). "
        "Fetch them with `visionkit weights pull torchvision:fcos_resnet50_fpn` (on a machine "
        "with network access, then copy the file to the same place here), or give a local "
        "copy: init_from: torchvision:fcos_resnet50_fpn=/path/to/fcos_resnet50_fpn_coco-"
        "99b0c9b7.pth; or start without them: model.init_from=null"
    )


@pytest.mark.reliability
def test_a_truncated_published_file_in_the_cache_says_to_delete_it_and_pull_again(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "fcos_resnet50_fpn_coco-99b0c9b7.pth"
    cached.parent.mkdir(parents=True)
    torch.save({"backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7)}, cached)
    cached.write_bytes(cached.read_bytes()[:3000])  # a copy that stopped half-way
    with pytest.raises(CheckpointError) as err:
        visionkit.create_model(detector_config("fcos", "torchvision:fcos_resnet50_fpn"))
    assert str(err.value).startswith(f"cannot load checkpoint {cached}: truncated or corrupt")
    assert (
        "delete the file and run `visionkit weights pull torchvision:fcos_resnet50_fpn` again"
        in str(err.value)
    )


@pytest.mark.slow
@pytest.mark.parametrize("detector", ["fcos"], indirect=True)
def test_the_published_file_is_read_from_torch_hubs_cache(detector, tmp_path, monkeypatch):
    """``torchvision:<model>`` with the file already in torch hub's cache: no download."""
    _, _, path = detector
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "fcos_resnet50_fpn_coco-99b0c9b7.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    model = visionkit.create_model(detector_config("fcos", "torchvision:fcos_resnet50_fpn"))
    assert model.transfer_report.source == f"torchvision:fcos_resnet50_fpn ({cached})"
    assert model.transfer_report.ok
