"""Backbone builder arguments from a config or a checkpoint never make a library load a file
(issue 18, item 1): timm < 1.0.26 unpickles ``checkpoint_path`` with ``weights_only=False``."""

from __future__ import annotations

import pickle

import pytest
import torch

import visionkit
from tests.helpers import run
from visionkit.models.backbones import BackboneError, create_backbone
from visionkit.models.backbones.base import Arguments, refuse_unsafe_kwargs


class _Payload:
    """Unpickling this writes a marker file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture()
def evil_file(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "weights.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Payload(str(marker))}, f)
    return path, marker


@pytest.mark.parametrize("key", ["checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay"])
def test_timm_file_arguments_are_refused_before_timm_sees_them(evil_file, key):
    path, marker = evil_file
    value = str(path) if key == "checkpoint_path" else {"file": str(path)}
    with pytest.raises(BackboneError, match=rf"model\.backbone\.kwargs\.{key}: refused"):
        create_backbone("resnet18", **{key: value})
    assert not marker.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": "DEFAULT"}, r"kwargs\.weights: refused"),
        ({"cache_dir": "hub"}, r"kwargs\.cache_dir: refused"),
        ({"model_url": "x"}, r"kwargs\.model_url: refused"),
        ({"norm_layer": "/tmp/n.py"}, r"kwargs\.norm_layer: '/tmp/n.py' looks like a path"),
        ({"norm_layer": "http://example.invalid/x"}, r"looks like a path or URL"),
    ],
)
def test_other_file_like_arguments_are_refused(kwargs, message):
    with pytest.raises(BackboneError, match=message):
        create_backbone("torchvision/resnet18", **kwargs)


def test_architecture_arguments_still_pass():
    backbone = create_backbone("resnet18", out_indices=[2, 3, 4], drop_path_rate=0.1)
    assert backbone.strides == [8, 16, 32]
    assert create_backbone("simple_cnn", widths=[8, 8, 8, 8, 8]).out_channels[-1] == 8


def test_a_config_carrying_checkpoint_path_is_refused(evil_file):
    path, marker = evil_file
    config = {
        "model": {
            "backbone": {"name": "resnet18", "kwargs": {"checkpoint_path": str(path)}},
            "heads": {"cls": {"name": "linear", "num_classes": 2}},
        }
    }
    with pytest.raises(BackboneError, match="checkpoint_path: refused"):
        visionkit.create_model(config)
    assert not marker.exists()


def test_a_safe_checkpoint_whose_metadata_names_a_file_is_refused(evil_file, tmp_path):
    """The .ckpt itself loads with weights_only=True; the config inside it must not smuggle a
    file to timm through visionkit.load (nor predict/export/init_from, which use it)."""
    path, marker = evil_file
    model = visionkit.create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn"},
                "heads": {"cls": {"name": "linear", "num_classes": 2}},
            }
        }
    )
    meta = dict(model.meta)
    meta["config"]["model"]["backbone"] = {
        "name": "resnet18",
        "pretrained": False,
        "out_indices": None,
        "kwargs": {"checkpoint_path": str(path)},
    }
    ckpt = tmp_path / "shared.ckpt"
    torch.save({"state_dict": {}, "visionkit": meta}, ckpt)
    with pytest.raises(BackboneError, match="checkpoint_path: refused"):
        visionkit.load(ckpt)
    assert not marker.exists()


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        (
            "resnet18",
            {"drop_path": 0.1},
            "not an argument of timm's ResNet (resnet18) (did you mean 'drop_path_rate'?)",
        ),
        (
            "torchvision/resnet18",
            {"zero_init": True},
            "not an argument of torchvision's ResNet (resnet18) (did you mean 'zero_init_residual'?)",
        ),
        (
            "simple_cnn",
            {"width": [8] * 5},
            "not an argument of backbone 'simple_cnn' (did you mean 'widths'?)",
        ),
    ],
)
def test_only_the_architectures_own_arguments_are_allowed(name, kwargs, message):
    """The allow-list: an argument the architecture's class does not take is refused before
    the library sees it (it raised TypeError from deep inside timm), with a close name and the
    list of the arguments it does take."""
    with pytest.raises(BackboneError) as info:
        create_backbone(name, **kwargs)
    assert f"model.backbone.kwargs.{next(iter(kwargs))}: {message}" in str(info.value)
    assert (
        "drop_path_rate" in str(info.value)
        or "widths" in str(info.value)
        or "groups" in str(info.value)
    )


def test_file_like_names_are_refused_even_where_the_architecture_takes_them():
    """The deny rules stay behind the allow-list: an architecture argument named like a file
    (or an open ``**kwargs`` builder) is refused all the same."""
    with pytest.raises(BackboneError, match=r"kwargs\.weights_path: refused"):
        refuse_unsafe_kwargs({"weights_path": "w"}, Arguments(["weights_path"], "X"))
    with pytest.raises(BackboneError, match=r"kwargs\.model_url: refused"):
        refuse_unsafe_kwargs({"model_url": "x"}, Arguments(None, "X"))
    refuse_unsafe_kwargs({"depth": 3}, Arguments(None, "X"))  # an open builder: others pass


def test_an_unknown_backbone_argument_in_a_config_is_an_error_not_a_traceback(
    tiny_config, tmp_path, capsys
):
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config))
    code, _, err = run(
        ["train", "--config", config, "model.backbone.kwargs.batchnorm=false"], capsys
    )
    assert code == 2  # what the config wrote: the exit status of config errors
    assert (
        "model.backbone.kwargs.batchnorm: not an argument of backbone 'simple_cnn' (did you mean 'batch_norm'?)"
        in err
    )
    assert "Traceback" not in err


def test_what_the_library_takes_passes_though_its_class_does_not_name_it():
    """The allow-list asks the library (a build on the meta device) beyond the class's
    signature: arguments timm's builder functions consume (``bn_eps``), those of a
    ``features_only`` class (MobileNetV3's ``output_stride``); an argument a torchvision
    builder sets itself is refused by name."""
    assert create_backbone("efficientnet_b0", bn_eps=1e-3).strides[-1] == 32
    found = create_backbone("mobilenetv3_large_100", out_indices=[0, 1, 2, 3], output_stride=16)
    assert found.strides == [2, 4, 8, 16]
    with pytest.raises(BackboneError) as info:
        create_backbone("torchvision/resnet18", block="BasicBlock")
    assert "kwargs.block: set by the builder of torchvision's ResNet (resnet18) itself" in str(
        info.value
    )
