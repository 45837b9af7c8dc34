"""An export's metadata carries the model's config, which held the training machine's
absolute paths (``output_dir: /home/alice/...``, the dataset folders, ``init_from``): a shipped
model told where its author keeps things. They are stored as their last part now, listed in
``visionkit.shortened_paths``, and the model is rebuilt from the metadata as before."""

from __future__ import annotations

import json

import pytest

from tests.export.test_end_to_end import HEADS, LABELS, tiny_model
from visionkit.build.model import model_from_meta
from visionkit.export import export, read_safetensors_metadata

HOME = "/home/alice/projects/secret-client"


def machine_paths_model():
    """A tiny model whose config names absolute paths, as a trained run's does."""
    model = tiny_model({"cls": HEADS["cls"]}, {"class": LABELS["class"]})
    config = model.meta["config"]
    config["output_dir"] = f"{HOME}/runs"
    config["resume"] = f"{HOME}/runs/exp/checkpoints/last.ckpt"
    config["data"]["train"] = {"format": "folder", "root": f"{HOME}/data/train"}
    config["data"]["val"] = {"format": "folder", "root": "data/val"}  # relative: kept
    config["model"]["init_from"] = "torchvision:fcos_resnet50_fpn=C:\\Users\\alice\\w.pth"
    config["model"]["backbone"]["pretrained"] = "~/weights/simple.pth"
    return model


def test_no_absolute_path_of_the_training_machine_is_in_the_metadata(tmp_path):
    model = machine_paths_model()
    path = tmp_path / "model.safetensors"
    export(model, "safetensors", path, check=False)
    text = path.read_bytes()[:100_000].decode("utf-8", "replace")
    for private in ("/home/alice", "alice", "secret-client", "C:\\\\Users", "~/weights"):
        assert private not in text, private
    metadata = read_safetensors_metadata(path)
    config = metadata["config"]
    assert metadata["meta"]["config"] == config
    assert config["output_dir"] == "runs"
    assert config["resume"] is None  # a run's own checkpoint: nothing a user of the model needs
    assert config["data"]["train"]["root"] == "train"
    assert config["data"]["val"]["root"] == "data/val"
    assert config["model"]["init_from"] == "torchvision:fcos_resnet50_fpn=w.pth"
    assert config["model"]["backbone"]["pretrained"] == "simple.pth"
    assert sorted(metadata["shortened_paths"]) == sorted(
        ["output_dir", "resume", "data.train.root", "model.init_from", "model.backbone.pretrained"]
    )
    assert model.meta["config"]["output_dir"] == f"{HOME}/runs"  # the model itself untouched
    rebuilt = model_from_meta(json.loads(json.dumps(metadata["meta"])))  # still builds
    assert list(rebuilt.heads) == ["cls"]


@pytest.mark.parametrize(
    "value, shared",
    [
        ("runs", "runs"),
        ("/tmp/x/", "x"),
        ("D:/data/coco", "coco"),
        ("\\\\server\\share\\imgs", "imgs"),
        ("timm/resnet18", "timm/resnet18"),
        ("hf-hub:timm/resnet18.a1_in1k", "hf-hub:timm/resnet18.a1_in1k"),
    ],
)
def test_which_values_are_machine_paths(value, shared):
    from visionkit.export.metadata import shareable_config

    config, changed = shareable_config({"a": {"b": [value]}})
    assert config == {"a": {"b": [shared]}}
    assert changed == ([] if value == shared else ["a.b.0"])
