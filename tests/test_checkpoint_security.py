"""RELIABILITY.md, "Security", and the checkpoint rows of "Training and checkpoints" that
concern loading: pickle payloads refused at every entry point, safe loading only (lint),
configs that cannot run code, GPU checkpoints on a CPU-only host, truncated checkpoints."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

import visionkit
from tests.helpers import run
from visionkit.errors import CheckpointError

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[1]
HAS_EXPORT = importlib.util.find_spec("visionkit.cli.export") is not None


class Payload:
    """Unpickling this creates the file ``path`` (what an attacker's checkpoint would do)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


ENTRY_POINTS = ["train --resume", "model.init_from", "eval", "predict", "export"]


def entry_points(ckpt: Path, trained: dict[str, Path], out: Path) -> dict[str, list]:
    """The command line of every entry point that reads a checkpoint given by the user."""
    config, images = trained["config"], trained["data"] / "images"
    points = {
        "train --resume": ["train", "--config", config, "--output-dir", out / "r", "--resume", ckpt],
        "model.init_from": ["train", "--config", config, "--output-dir", out / "i",
                            f"model.init_from={ckpt}"],
        "eval": ["eval", "--checkpoint", ckpt],
        "predict": ["predict", "--checkpoint", ckpt, "--input", images, "--output-dir", out / "p"],
        "export": ["export", "--checkpoint", ckpt, "--format", "safetensors",
                   "--output", out / "e.safetensors"],
    }  # fmt: skip
    if not HAS_EXPORT:
        del points["export"]
    return points


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_pickle_payload_is_refused_and_never_runs(entry_point, trained, tmp_path, capsys):
    if entry_point == "export" and not HAS_EXPORT:
        pytest.skip("visionkit.cli.export cannot be imported (visionkit export not present)")
    marker = tmp_path / "pwned"
    ckpt = torch.load(trained["ckpt"], weights_only=True, map_location="cpu")
    ckpt["extra"] = Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(ckpt, evil)
    code, _, err = run(entry_points(evil, trained, tmp_path)[entry_point], capsys)
    assert code == 1
    assert f"cannot load checkpoint {evil}: refused" in err, err[-1500:]
    assert "(a pickled io.open)" in err  # the pickled global is named
    assert "weights_only=False" not in err  # torch's unsafe advice is not passed on
    assert not marker.exists()


def test_a_pickle_payload_is_refused_by_visionkit_load(trained, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = torch.load(trained["ckpt"], weights_only=True, map_location="cpu")
    ckpt["extra"] = Payload(marker)
    torch.save(ckpt, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refused"):
        visionkit.load(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_a_truncated_or_corrupt_checkpoint_is_a_clear_error_naming_the_file(
    trained, tmp_path, capsys
):
    data = trained["ckpt"].read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    text = tmp_path / "notes.ckpt"  # a text file: its bytes are pickle opcodes (KeyError: 101)
    text.write_text("hello, I am text\n")
    for bad in (truncated, garbage, text):
        for name, argv in entry_points(bad, trained, tmp_path).items():
            code, _, err = run(argv, capsys)
            assert code == 1, name
            assert f"cannot load checkpoint {bad}: truncated or corrupt" in err, (name, err[-1500:])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            visionkit.load(bad)


def test_a_gpu_checkpoint_loads_on_a_cpu_only_host(trained, tmp_path, capsys, monkeypatch):
    ckpt = torch.load(trained["ckpt"], weights_only=True, map_location="cpu")
    gpu = tmp_path / "gpu.ckpt"
    with monkeypatch.context() as m:  # record every storage as a CUDA one, as a GPU run does
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(ckpt, gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA"):  # what a load without map_location does
        torch.load(gpu, weights_only=True)
    model = visionkit.load(gpu)
    assert next(model.parameters()).device.type == "cpu"
    code, out, err = run(["eval", "--checkpoint", gpu], capsys)
    assert code == 0, err[-2000:]
    code, _, err = run(
        ["predict", "--checkpoint", gpu, "--input", trained["data"] / "images",
         "--output-dir", tmp_path / "p", "--no-draw"],
        capsys,
    )  # fmt: skip
    assert code == 0, err[-2000:]


def test_checkpoints_hold_only_tensors_and_plain_types(trained):
    ckpt = torch.load(trained["ckpt"], weights_only=True, map_location="cpu")

    def walk(obj, where="ckpt"):
        if isinstance(obj, dict):
            for k, v in obj.items():
                assert isinstance(k, (str, int)), where
                walk(v, f"{where}[{k!r}]")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(v, f"{where}[{i}]")
        else:
            assert obj is None or isinstance(obj, (torch.Tensor, str, int, float, bool)), where

    walk(ckpt)
    assert isinstance(ckpt["visionkit"]["config"], dict)


def test_a_config_cannot_run_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    code, _, err = run(["train", "--config", config], capsys)
    assert code == 2 and str(config) in err
    assert not marker.exists()


#: The modules whose loaders the lint checks, and the loaders (each must be called as
#: ``module.loader(...)``, so that the lint sees the call).
UNSAFE_LOADERS = {
    "torch": ("load",),
    "torch.serialization": ("load",),
    "pickle": ("load", "loads", "Unpickler"),
    "yaml": ("load", "unsafe_load", "full_load"),
}


def unsafe_loads(path: Path) -> list[str]:
    """``torch.load`` without ``weights_only=True``, ``pickle.load(s)``, ``yaml.load`` (and
    ``yaml.unsafe_load`` / ``full_load``) calls in one source file."""
    found = []
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        # imports that would hide a call from the check below: from torch import load,
        # from pickle import loads, import pickle as p, torch.serialization.load(...)
        if isinstance(node, ast.ImportFrom) and node.module in UNSAFE_LOADERS:
            hidden = [a.name for a in node.names if a.name in UNSAFE_LOADERS[node.module]]
            if hidden:
                found.append(f"{shown}:{node.lineno}: from {node.module} import {hidden[0]}")
            continue
        if isinstance(node, ast.Import):
            renamed = [a for a in node.names if a.name in UNSAFE_LOADERS and a.asname]
            if renamed:
                found.append(f"{shown}:{node.lineno}: import {renamed[0].name} as ...")
            continue
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        name = f"{owner.id}.{node.func.attr}" if isinstance(owner, ast.Name) else None
        if isinstance(owner, ast.Attribute) and isinstance(owner.value, ast.Name):
            name = f"{owner.value.id}.{owner.attr}.{node.func.attr}"  # torch.serialization.load
        if name == "torch.serialization.load":
            name = "torch.load"
        where = f"{shown}:{node.lineno}: {name}("
        if name == "torch.load":
            safe = any(
                k.arg == "weights_only"
                and isinstance(k.value, ast.Constant)
                and k.value.value is True
                for k in node.keywords
            )
            if not safe:
                found.append(where + " without weights_only=True")
        elif name in (
            "pickle.load",
            "pickle.loads",
            "yaml.load",
            "yaml.unsafe_load",
            "yaml.full_load",
        ):
            found.append(where)
    return sorted(found, key=lambda f: int(f.split(":")[1]))  # in line order


def test_lint_every_load_is_safe():
    files = [
        f for d in ("visionkit", "tools", "benchmarks") for f in sorted((ROOT / d).rglob("*.py"))
    ]
    assert len(files) > 100
    problems = [p for f in files for p in unsafe_loads(f)]
    assert not problems, "\n".join(problems)


def test_lint_finds_what_it_forbids(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import pickle, torch, yaml\n"
        "torch.load('a')\n"
        "torch.load('a', weights_only=False)\n"
        "torch.load('a', weights_only=True)\n"
        "pickle.load(open('a', 'rb'))\n"
        "yaml.load('a')\n"
        "yaml.safe_load('a')\n"
        "from torch import load\n"
        "from pickle import loads as l\n"
        "import pickle as p\n"
        "torch.serialization.load('a')\n"
        "torch.serialization.load('a', weights_only=True)\n"
        "from yaml import safe_load\n"
    )
    found = unsafe_loads(sample)
    assert [f.split(":")[1] for f in found] == ["2", "3", "5", "6", "8", "9", "10", "11"]
