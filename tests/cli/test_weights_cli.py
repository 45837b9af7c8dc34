"""``visionkit weights pull NAME...`` and ``visionkit weights list``, run as a user runs them,
with a fake Hugging Face hub and ``file://`` torchvision URLs (no network)."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.helpers import run
from tests.models.backbones.hub_fakes import (
    fake_hf_hub,
    forbid_downloads,
    isolated_caches,
    serve_torchvision_file,
)

TIMM_TAG = "test_convnext.r160_in1k"
DETECTOR = "fcos_resnet50_fpn"  # the file served for it is tiny: pull only downloads and reads


@pytest.fixture
def caches(monkeypatch, tmp_path):
    return isolated_caches(monkeypatch, tmp_path / "cache")


def test_pull_then_list_both_caches(caches, monkeypatch, tmp_path, capsys):
    hf_cache, hub = caches
    torch.manual_seed(0)
    served = tmp_path / "model.safetensors"
    state = timm.create_model("test_convnext").state_dict()
    save_file(state, str(served))
    calls = fake_hf_hub(monkeypatch, {f"timm/{TIMM_TAG}/model.safetensors": served})
    detector = serve_torchvision_file(
        monkeypatch, DETECTOR, {"head.weight": torch.ones(2, 3)}, tmp_path / "served"
    )

    code, out, err = run(["weights", "pull", TIMM_TAG, f"torchvision:{DETECTOR}"], capsys)
    assert code == 0, err
    timm_line, tv_line = out.splitlines()
    assert timm_line.startswith(f"downloaded {TIMM_TAG}: {hf_cache}/models--timm--{TIMM_TAG}/")
    assert timm_line.endswith(f"/model.safetensors (1.1 MB, {len(state)} tensors)")
    assert tv_line.startswith(f"downloaded torchvision:{DETECTOR}: {hub / detector.name} (")
    assert tv_line.endswith(", 1 tensors)")
    assert (hub / detector.name).read_bytes() == detector.read_bytes()
    assert calls == [(f"timm/{TIMM_TAG}", "model.safetensors")]

    # Pulling again downloads nothing.
    forbid_downloads(monkeypatch)
    code, out, _ = run(["weights", "pull", f"timm/{TIMM_TAG}", f"torchvision:{DETECTOR}"], capsys)
    assert code == 0
    assert [line.split(":")[0] for line in out.splitlines()] == [
        f"already cached timm/{TIMM_TAG}",
        "already cached torchvision",
    ]

    code, out, err = run(["weights", "list"], capsys)
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["NAME", "SIZE", "FILE", "CACHE"]
    assert [row.split()[0] for row in rows] == [f"timm/{TIMM_TAG}", f"torchvision:{DETECTOR}"]
    assert rows[0].split()[-2:] == [
        f"models--timm--{TIMM_TAG}/snapshots/{'c0ffee' + '0' * 34}/model.safetensors",
        str(hf_cache),
    ]
    assert rows[1].split()[-2:] == [detector.name, str(hub)]
    assert f"2 cached weights files (Hugging Face hub: {hf_cache}; torch hub: {hub})" in err


def test_list_with_empty_caches(caches, capsys):
    hf_cache, hub = caches
    code, out, err = run(["weights", "list"], capsys)
    assert code == 0 and out == ""
    assert f"no cached weights (Hugging Face hub: {hf_cache}; torch hub: {hub})" in err


@pytest.mark.reliability
def test_pull_an_unknown_name_suggests_close_ones(caches, capsys):
    code, _, err = run(["weights", "pull", "torchvision:fcos_resnet50"], capsys)
    assert code == 2
    assert "error: no pretrained weights named 'torchvision:fcos_resnet50'" in err
    assert "did you mean" in err and "'torchvision:fcos_resnet50_fpn'" in err


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["MyWeights.pth", "ImageNetWeights.pth.tar"])
def test_pull_of_a_files_name_says_a_file_is_given_as_pretrained(caches, capsys, name):
    """Was "torchvision has no weights enum MyWeights": read as torchvision's spelling."""
    code, out, err = run(["weights", "pull", name], capsys)
    assert code == 2 and out == ""
    assert f"error: {name!r} is a file's name: `visionkit weights pull` fetches" in err
    assert f"`pretrained: /path/to/{name}` in a config" in err
    assert "weights enum" not in err


@pytest.mark.reliability
def test_pull_offline_names_the_cache_path(caches, monkeypatch, capsys):
    _, hub = caches
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    forbid_downloads(monkeypatch)
    code, out, err = run(["weights", "pull", "torchvision/resnet18"], capsys)
    assert code == 1 and out == ""
    assert "error: pretrained weights for 'torchvision/resnet18' are not in the local cache" in err
    assert str(hub / "resnet18-f37072fd.pth") in err
    assert "VISIONKIT_OFFLINE=1 is set (offline)" in err
    assert "`visionkit weights pull` needs network access" in err
    assert "unset the offline switch to download" in err
    assert "with `visionkit weights pull torchvision/resnet18`" not in err  # not itself again


@pytest.mark.reliability
def test_pull_of_a_file_that_is_not_weights_is_an_error_naming_it(
    caches, monkeypatch, tmp_path, capsys
):
    _, hub = caches
    served = serve_torchvision_file(
        monkeypatch, DETECTOR, b"<html>login page</html>", tmp_path / "served"
    )
    code, out, err = run(["weights", "pull", f"torchvision:{DETECTOR}"], capsys)
    assert code == 1 and out == ""
    assert f"error: cannot load checkpoint {hub / served.name}: " in err
    assert f"delete the file and run `visionkit weights pull torchvision:{DETECTOR}` again" in err


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["resnet18.bogus", "timm/resnet18.a1_in1kk"])
def test_a_timm_name_with_an_unknown_tag_lists_the_tags_without_a_traceback(caches, capsys, name):
    code, out, err = run(["weights", "pull", name], capsys)
    assert code == 2 and out == ""
    assert "Traceback" not in err
    prefix = name[: -len(name.removeprefix("timm/"))]
    tag = name.split(".")[1]
    assert f"error: {name!r}: timm has no pretrained tag {tag!r} for resnet18" in err
    assert f"{prefix}resnet18.a1_in1k" in err and f"`{prefix}resnet18` alone" in err


@pytest.mark.reliability
def test_torchvisions_own_spelling_pulls_that_member_and_lists_it(
    caches, monkeypatch, tmp_path, capsys
):
    _, hub = caches
    served = serve_torchvision_file(
        monkeypatch,
        "resnet50",
        {"fc.bias": torch.ones(3)},
        tmp_path / "served",
        member="IMAGENET1K_V1",
    )
    code, out, err = run(["weights", "pull", "ResNet50_Weights.IMAGENET1K_V1"], capsys)
    assert code == 0, err  # was "no pretrained weights named ..." with no close name
    assert out.startswith(f"downloaded ResNet50_Weights.IMAGENET1K_V1: {hub / served.name} (")
    code, out, _ = run(["weights", "list"], capsys)
    assert out.splitlines()[1].startswith("torchvision/resnet50 (IMAGENET1K_V1)  ")

    code, _, err = run(["weights", "pull", "ResNet50_Weights.IMAGENET1K_V3"], capsys)
    assert code == 2
    assert "'ResNet50_Weights.IMAGENET1K_V3': ResNet50_Weights has no member 'IMAGENET1K_V3'" in err
    assert "its members: IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT (DEFAULT is IMAGENET1K_V2)" in err


@pytest.mark.reliability
def test_timms_hf_hub_spelling_names_the_name_to_write(caches, capsys):
    code, _, err = run(["weights", "pull", "hf-hub:timm/resnet18.a1_in1k"], capsys)
    assert code == 2
    assert "write 'resnet18.a1_in1k' (or 'timm/resnet18.a1_in1k'), without 'hf-hub:'" in err
