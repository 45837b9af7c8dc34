"""An export's metadata carries the model's config, which held the training machine's
absolute paths (``output_dir: /home/alice/...``, the dataset folders, ``init_from``): a shipped
model told where its author keeps things. They are stored as their last part now, listed in
``visionkit.shortened_paths``, and the model is rebuilt from the metadata as before."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.export.test_end_to_end import HEADS, LABELS, tiny_model
from tests.helpers import run
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


def folder_dataset(root, seed: int) -> None:
    """Two 32 px images in each of the classes ``noisy`` and ``plain`` under ``root``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in ("noisy", "plain"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_an_export_evaluated_asks_for_the_data_paths_it_shortened(tmp_path, monkeypatch, capsys):
    """``visionkit eval --checkpoint model.safetensors`` on the training machine said ``val
    does not exist`` (the shortened root read from the current folder) and, where the current
    folder held a ``val/``, scored that other dataset without a word. A shortened path is now
    unset: the command asks for it, and the path given is evaluated."""
    data = tmp_path / "machine" / "data" / "val"
    folder_dataset(data, 0)
    model = tiny_model({"cls": HEADS["cls"]}, {"class": ["noisy", "plain"]})
    config = model.meta["config"]
    config["output_dir"] = str(tmp_path / "runs")
    config["data"] = {
        **config["data"],
        "image_size": 32,
        "val": {"format": "folder", "root": str(data)},
    }
    path = tmp_path / "model.safetensors"
    export(model, "safetensors", path, check=False)
    assert read_safetensors_metadata(path)["config"]["data"]["val"]["root"] == "val"
    elsewhere = tmp_path / "elsewhere"
    folder_dataset(elsewhere / "val", 1)  # another dataset called val: never read
    monkeypatch.chdir(elsewhere)
    code, out, err = run(["eval", "--checkpoint", path], capsys)
    assert code == 1 and not out.strip(), out
    assert "an export keeps no data paths of its config" in err
    assert "data.val.root: the export stored only the last part of this path (val)" in err
    assert "give it with data.val.root=DIR" in err
    code, out, err = run(["eval", "--checkpoint", path, f"data.val.root={data}"], capsys)
    assert code == 0, err[-2000:]
    assert "cls/top1" in json.loads(out.strip().splitlines()[-1])


def test_a_re_export_keeps_the_list_of_shortened_paths(tmp_path):
    """A model loaded from an export and exported again still says which paths were cut."""
    import visionkit

    first = tmp_path / "first.safetensors"
    export(machine_paths_model(), "safetensors", first, check=False)
    second = tmp_path / "second.safetensors"
    export(visionkit.load(first), "safetensors", second, check=False)
    assert (
        read_safetensors_metadata(second)["shortened_paths"]
        == (read_safetensors_metadata(first)["shortened_paths"])
    )
