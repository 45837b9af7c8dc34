"""Learning-rate schedules, precision choice, the ImageFolder recipe end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionkit.build import lr_factor_fn
from visionkit.build import trainer as precision
from visionkit.config import SchedulerConfig
from visionkit.engine.runner import train

ROOT = Path(__file__).resolve().parents[2]


def test_cosine_schedule_warms_up_linearly_then_decays_to_the_floor():
    cfg = SchedulerConfig(
        name="cosine", warmup_epochs=1, warmup_start_factor=0.1, min_lr_factor=0.05
    )
    f = lr_factor_fn(cfg, total_steps=100, steps_per_epoch=10)
    assert f(0) == pytest.approx(0.1)
    assert f(5) == pytest.approx(0.55)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.05)


def test_step_schedule_multiplies_by_gamma_at_each_milestone():
    f = lr_factor_fn(SchedulerConfig(name="step", step_epochs=[2, 4], gamma=0.5), 60, 10)
    assert [f(s) for s in (0, 19, 20, 39, 40)] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_precision_auto_follows_the_hardware(monkeypatch):
    assert precision.resolve_precision("16-mixed") == "16-mixed"
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16-mixed"
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert precision.resolve_precision("auto", "cpu") == "32-true"


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_precision_auto_uses_fp16_on_gpus_that_only_emulate_bf16(monkeypatch, native, expected):
    """T4 / V100 report bf16 "supported" through emulation; auto must not pick it there."""
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return native or including_emulation

    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(precision.torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(precision.torch.cuda, "get_device_name", lambda i=None: "a GPU")
    monkeypatch.setattr(precision.torch.cuda, "get_device_capability", lambda i=None: (7, 5))
    assert precision.resolve_precision("auto", "gpu") == expected
    assert calls == [False]


def make_folder(root: Path, seed: int) -> None:
    """Two classes told apart by brightness; grayscale, RGBA and RGB files mixed."""
    rng = np.random.default_rng(seed)
    for label, (name, level) in enumerate([("dark", 40), ("light", 215)]):
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(level + rng.normal(0, 20, (40 + i, 48)), 0, 255).astype(np.uint8)
            mode = ["L", "RGBA", "RGB"][i % 3]
            image = Image.fromarray(pixels, "L").convert(mode)
            if mode == "RGBA":
                image.putalpha(255)
            image.save(root / name / f"{label}_{i}.png")


def test_classify_folder_recipe_learns_from_path_overrides_only(tmp_path):
    make_folder(tmp_path / "train", 0)
    make_folder(tmp_path / "val", 1)
    run_dir, metrics = train(
        ROOT / "configs" / "custom" / "classify_r18.yaml",
        [
            f"data.train.root={tmp_path / 'train'}",
            f"data.val.root={tmp_path / 'val'}",
            # keep the test small and fast: the recipe's sizes follow data.image_size
            "model.backbone.name=simple_cnn",
            "model.backbone.pretrained=false",
            "data.image_size=32",
            "data.num_workers=0",
            "data.batch_size=8",
            "trainer.max_epochs=4",
            "trainer.enable_progress_bar=false",
            "trainer.accelerator=cpu",
        ],
        output_dir=tmp_path / "run",
    )
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["cls/top1"] >= 0.9
    import torch

    ckpt = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["visionkit"]["label_names"]["class"] == ["dark", "light"]
    assert ckpt["visionkit"]["config"]["model"]["heads"]["cls"]["num_classes"] == 2
    transforms = ckpt["visionkit"]["config"]["data"]["transforms"]
    assert transforms["train"][1]["size"] == [32, 32]  # RandomResizedCrop
    assert transforms["val"][1] == {"name": "CenterCrop", "height": 32, "width": 32}


def test_training_warns_of_an_unused_image_size_and_of_validating_on_its_own_images(
    tiny_config, tmp_path, caplog
):
    import copy
    import logging

    from visionkit.engine.runner import train

    short = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    cfg = copy.deepcopy(tiny_config)
    cfg["data"]["val"] = dict(cfg["data"]["train"])
    cfg["data"]["transforms"] = {"val": [{"name": "Resize", "height": 32, "width": 32}]}
    cfg["data"]["image_size"] = 48  # the training pipeline (the default) follows it
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        train(cfg, short, output_dir=tmp_path / "a")
    assert "data.image_size=48 reaches no transform" not in caplog.text
    assert "data.val reads the same images as data.train" in caplog.text
    cfg["data"]["transforms"]["train"] = [{"name": "Resize", "height": 32, "width": 32}]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        train(cfg, short, output_dir=tmp_path / "b")
    assert "data.image_size=48 reaches no transform: each gives its own size" in caplog.text
    del cfg["data"]["image_size"]  # left at its default: not the user's to change
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="visionkit"):
        train(cfg, short, output_dir=tmp_path / "c")
    assert "reaches no transform" not in caplog.text


def test_an_image_size_that_no_transform_follows_is_warned_of():
    """A recipe with its own sizes (the identities recipe's 128 / 112) given another
    ``data.image_size`` would train at its own: that is said, naming the steps."""
    from visionkit.config import load_config
    from visionkit.data.image_size import unused_image_size_note

    recipe = ROOT / "configs" / "custom" / "identities_r18.yaml"
    paths = ["data.train.root=a", "data.val.root=b"]
    assert unused_image_size_note(load_config(recipe, paths).data) is None  # its own 112
    note = unused_image_size_note(load_config(recipe, [*paths, "data.image_size=64"]).data)
    assert note.startswith("data.image_size=64 reaches no transform: each gives its own size")
    assert "data.transforms.train[0] Resize height=128, width=128" in note
    assert "data.transforms.val[0] Resize height=112, width=112" in note
    classify = ROOT / "configs" / "custom" / "classify_r18.yaml"
    assert (
        unused_image_size_note(load_config(classify, [*paths, "data.image_size=64"]).data) is None
    )


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_trains_in_nhwc_and_its_checkpoints_load_as_usual(
    pyramid_config, channels_last
):
    import torch

    import visionkit
    from visionkit.engine.system import VisionSystem

    heads = {
        "det": {"name": "fcos", "num_classes": 3, "num_convs": 1},
        "seg": {"name": "semantic_fpn", "num_classes": 4, "channels": 16},
    }
    cfg = pyramid_config("nhwc", heads)
    cfg["trainer"].update(max_epochs=1, limit_train_batches=2, channels_last=channels_last)
    model = visionkit.create_model(cfg)
    system = VisionSystem(model, channels_last=channels_last)
    conv = next(
        m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1
    )
    nhwc = torch.channels_last
    assert conv.weight.is_contiguous(memory_format=nhwc) == channels_last

    seen = []
    conv.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    batch = {"images": torch.randn(2, 3, 64, 64), "semantic": torch.zeros(2, 64, 64).long()}
    _, losses = system._step(batch)
    assert torch.isfinite(losses["loss"])
    assert seen[0].is_contiguous(memory_format=nhwc) == channels_last

    run_dir, _ = train(cfg)  # the runner passes trainer.channels_last on
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    loaded = visionkit.load(checkpoint)  # NCHW weights, equal to the saved ones
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    conv_name = next(n for n, m in model.named_modules() if m is conv) + ".weight"
    assert state[f"model.{conv_name}"].is_contiguous(memory_format=nhwc) == channels_last
    for name, value in loaded.state_dict().items():
        assert value.is_contiguous(), name
        torch.testing.assert_close(value, state[f"model.{name}"], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_fused_optimizer_steps_like_the_plain_one(name):
    import torch

    from visionkit.build import build_optimizer, is_fused
    from visionkit.config import OptimizerConfig

    cfg = OptimizerConfig(name=name, lr=0.1, weight_decay=0.05)
    torch.manual_seed(0)
    start = [torch.randn(5, 3), torch.randn(3)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(3)]
    results = {}
    for fused in (True, False):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        groups = [{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}]
        optimizer = build_optimizer(cfg, groups, fused=fused)
        assert is_fused(optimizer) == fused
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g.clone()
            optimizer.step()
        results[fused] = params
    for a, b in zip(results[True], results[False], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.equal(a, start[0] if a.ndim == 2 else start[1])  # it did step


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_gradients_are_clipped_with_the_fused_optimizer(tiny_config, algorithm):
    import torch

    import visionkit
    from visionkit.build import build_optimizer, is_fused, optimizer_factory
    from visionkit.engine.system import VisionSystem

    tiny_config["model"]["heads"]["cls"]["num_classes"] = 4
    cfg = visionkit.load_config(tiny_config)
    system = VisionSystem(visionkit.create_model(cfg), optimizer_factory(cfg.optimizer))
    params = list(system.model.parameters())
    optimizer = build_optimizer(cfg.optimizer, params)
    assert is_fused(optimizer)
    for p in params:
        p.grad = torch.full_like(p, 3.0)
    system.configure_gradient_clipping(optimizer, 0.5, algorithm)
    grads = torch.cat([p.grad.flatten() for p in params])
    if algorithm == "norm":
        assert float(grads.norm()) == pytest.approx(0.5, rel=1e-3)  # was 3 * sqrt(n)
    else:
        assert float(grads.abs().max()) == pytest.approx(0.5)


def test_bf16_training_with_clipping_runs_on_the_fused_optimizer(tiny_config):
    # Lightning's mixed-precision plugin raises for a fused optimiser asked to clip; the
    # system clips itself instead.
    tiny_config["trainer"].update(
        max_epochs=1, limit_train_batches=2, precision="bf16-mixed", gradient_clip_val=1.0
    )
    run_dir, metrics = train(tiny_config)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert math.isfinite(metrics["cls/top1"])
