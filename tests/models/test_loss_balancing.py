"""Loss balancing (``model.loss_balancing``): fixed weights, uncertainty weighting, running
magnitude; effective weights reported and logged; heads without labels in a batch."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torchmetrics import Metric

import visionkit
from visionkit.build import optimizer_factory, optimizer_param_groups
from visionkit.config import load_config
from visionkit.engine.system import VisionSystem
from visionkit.errors import ConfigError

TWO_HEADS = {
    "model": {
        "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
        "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
        "heads": {
            "cls": {"name": "linear", "num_classes": 3},
            "det": {"name": "fcos", "num_convs": 1, "num_classes": 3},
        },
    }
}


def two_heads(balancing: dict | None = None, **weights: float):
    cfg = {"model": {**TWO_HEADS["model"], "heads": dict(TWO_HEADS["model"]["heads"])}}
    for name, weight in weights.items():
        cfg["model"]["heads"][name] = {**cfg["model"]["heads"][name], "loss_weight": weight}
    if balancing is not None:
        cfg["model"]["loss_balancing"] = balancing
    torch.manual_seed(0)
    return visionkit.create_model(cfg)


def labelled_batch(with_boxes: bool = True) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(1)
    images = torch.rand(2, 3, 64, 64)
    targets = {"class": torch.tensor([1, 2])}
    if with_boxes:
        targets["boxes"] = [
            torch.tensor([[4.0, 4.0, 30.0, 30.0]]),
            torch.tensor([[10.0, 8, 50, 40]]),
        ]
        targets["labels"] = [torch.tensor([0]), torch.tensor([2])]
    return images, targets


def test_fixed_weights_from_the_config_scale_the_total_exactly():
    model = two_heads(cls=2.0, det=0.25)
    images, targets = labelled_batch()
    losses = model.loss(model(images), targets)
    assert losses["det/loss"] > 0 and losses["cls/loss"] > 0
    torch.testing.assert_close(
        losses["loss"], 2.0 * losses["cls/loss"] + 0.25 * losses["det/loss"], rtol=0, atol=1e-6
    )
    assert float(losses["cls/weight"]) == 2.0 and float(losses["det/weight"]) == 0.25
    assert not losses["cls/weight"].requires_grad
    assert not any(k.startswith("loss_balancer.") for k in model.state_dict())


def test_uncertainty_log_variances_are_parameters_learned_without_weight_decay():
    model = two_heads({"name": "uncertainty"}, det=0.5)
    state = model.state_dict()
    assert {"loss_balancer.log_vars.cls", "loss_balancer.log_vars.det"} <= set(state)
    cfg = load_config({**TWO_HEADS, "optimizer": {"weight_decay": 0.1}})
    groups = optimizer_param_groups(model, cfg.optimizer)
    log_vars = {id(p) for p in model.loss_balancer.parameters()}
    for group in groups:
        if any(id(p) in log_vars for p in group["params"]):
            assert group["weight_decay"] == 0.0

    images, targets = labelled_batch()
    losses = model.loss(model(images), targets)
    # s = 0 at the start: the fixed weights, total = Σ w·(exp(-s)·L + s)
    torch.testing.assert_close(losses["loss"], losses["cls/loss"] + 0.5 * losses["det/loss"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        losses = model.loss(model(images), targets)
        losses["loss"].backward()
        optimizer.step()
    s = {name: float(p.detach()) for name, p in model.loss_balancer.log_vars.items()}
    assert all(value != 0.0 for value in s.values()), s
    losses = model.loss(model(images), targets)
    for name, w in (("cls", 1.0), ("det", 0.5)):
        assert float(losses[f"{name}/weight"]) == pytest.approx(w * math.exp(-s[name]))
    expected = sum(
        w * (math.exp(-s[name]) * float(losses[f"{name}/loss"]) + s[name])
        for name, w in (("cls", 1.0), ("det", 0.5))
    )
    assert float(losses["loss"].detach()) == pytest.approx(expected, rel=1e-5)
    # learned values travel with the state dict
    again = two_heads({"name": "uncertainty"}, det=0.5)
    again.load_state_dict(model.state_dict())
    assert float(again.loss_balancer.log_vars["det"].detach()) == s["det"]


@pytest.mark.parametrize("name", ["fixed", "uncertainty", "magnitude"])
def test_a_head_without_labels_in_the_batch_keeps_the_total_finite_and_its_grads_zero(name):
    model = two_heads({"name": name})
    images, targets = labelled_batch(with_boxes=False)  # classes only: det has no labels
    losses = model.loss(model(images), targets)
    assert float(losses["det/loss"]) == 0.0
    assert math.isfinite(float(losses["loss"].detach())) and float(losses["loss"].detach()) > 0
    assert all(math.isfinite(float(losses[f"{h}/weight"])) for h in ("cls", "det"))
    losses["loss"].backward()
    det_grads = [p.grad for p in model.heads["det"].parameters()]
    assert all(g is not None and torch.all(g == 0) for g in det_grads)
    if name == "uncertainty":
        log_vars = model.loss_balancer.log_vars
        assert log_vars["det"].grad is not None and float(log_vars["det"].grad) == 0.0
        assert float(log_vars["cls"].grad) != 0.0
    # no head labelled at all: the total is an exact, connected zero
    model.zero_grad()
    none = model.loss(model(images), {"class": torch.tensor([-1, -1])})
    assert float(none["loss"].detach()) == 0.0 and none["loss"].requires_grad
    none["loss"].backward()


def test_magnitude_divides_by_a_running_mean_updated_in_training_only():
    model = two_heads({"name": "magnitude", "momentum": 0.5}, det=3.0)
    images, targets = labelled_batch()
    model.train()
    first = model.loss(model(images), targets)
    # the first value sets the mean: each head contributes exactly its fixed weight
    assert float(first["loss"].detach()) == pytest.approx(1.0 + 3.0, rel=1e-5)
    mean_cls = float(model.loss_balancer.running_loss.cls)
    assert mean_cls == pytest.approx(float(first["cls/loss"]))
    assert "loss_balancer.running_loss.det" in model.state_dict()
    # a batch without detection labels leaves det's mean alone
    mean_det = float(model.loss_balancer.running_loss.det)
    model.loss(model(images), labelled_batch(with_boxes=False)[1])
    assert float(model.loss_balancer.running_loss.det) == mean_det
    model.eval()
    with torch.no_grad():
        frozen = {k: v.clone() for k, v in model.loss_balancer.state_dict().items()}
        out = model.loss(model(images), targets)
    assert all(torch.equal(frozen[k], v) for k, v in model.loss_balancer.state_dict().items())
    assert float(out["det/weight"]) == pytest.approx(3.0 / mean_det)


def test_unknown_balancing_and_bad_momentum_are_config_errors():
    with pytest.raises(ConfigError, match="model.loss_balancing.name"):
        load_config(
            {**TWO_HEADS, "model": {**TWO_HEADS["model"], "loss_balancing": {"name": "gradnorm"}}}
        )
    with pytest.raises(ConfigError, match="model.loss_balancing.momentum"):
        load_config(
            {
                **TWO_HEADS,
                "model": {
                    **TWO_HEADS["model"],
                    "loss_balancing": {"name": "magnitude", "momentum": 1.0},
                },
            }
        )


class _Recorder:
    """Stands in for the Lightning trainer during one ``training_step``."""

    world_size = 1

    def __init__(self, optimizer):
        self.optimizers = [optimizer]
        self.strategy = SimpleNamespace(reduce=lambda tensor, reduce_op: tensor)  # one process


def test_training_step_logs_every_head_loss_weight_and_group_learning_rate(monkeypatch):
    model = two_heads({"name": "uncertainty"})
    cfg = load_config(
        {**TWO_HEADS, "optimizer": {"lr": 0.01, "param_groups": {"backbone": {"lr_mult": 0.1}}}}
    )
    system = VisionSystem(model, optimizer_factory(cfg.optimizer))
    optimizer = torch.optim.AdamW(optimizer_param_groups(model, cfg.optimizer))
    logged: dict[str, float] = {}

    def log(name, value, **kwargs):
        value = value.compute() if isinstance(value, Metric) else value  # an epoch mean
        logged[name] = float(torch.as_tensor(value).detach())

    monkeypatch.setattr(system, "log", log)
    monkeypatch.setattr(system, "log_dict", lambda d, **kw: [log(k, v) for k, v in d.items()])
    system._trainer = _Recorder(optimizer)
    images, targets = labelled_batch()
    system.training_step({"images": images, **targets}, 0)
    for head in ("cls", "det"):
        assert logged[f"train/{head}/weight"] == 1.0
        assert logged[f"train/{head}/loss_step"] == logged[f"train/{head}/loss_epoch"] > 0
    assert logged["train/lr"] == pytest.approx(0.01)
    assert logged["train/lr_backbone"] == pytest.approx(0.001)
