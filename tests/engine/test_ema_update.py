"""The EMA update (``ema``): every float tensor moved by the ramped decay, integer buffers
copied, through Lightning's weight averaging as training runs it."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from visionkit.engine.ema import ema_decay, ema_multi_avg_fn


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def _train_a_step(model: nn.Module) -> None:
    model.train()
    model(torch.randn(2, 3, 8, 8))  # BatchNorm statistics and num_batches_tracked move
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)


def test_the_average_follows_the_ramped_decay_for_weights_and_statistics():
    model = _model()
    average = AveragedModel(model, use_buffers=True, multi_avg_fn=ema_multi_avg_fn(0.99, 5))
    expected = {k: v.clone().double() for k, v in model.state_dict().items()}
    for update in range(8):
        _train_a_step(model)
        average.update_parameters(model)
        d = ema_decay(0.99, 5, update)  # the first update copies (AveragedModel's n == 0)
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                previous = expected[name] if update else value.double()
                expected[name] = d * previous + (1 - d) * value.double() if update else previous
    averaged = average.module.state_dict()
    for name, value in expected.items():
        if averaged[name].is_floating_point():
            assert torch.allclose(averaged[name].double(), value, atol=1e-6), name
    assert math.isclose(ema_decay(0.99, 5, 5), 0.99 * (1 - math.exp(-1)))
    assert ema_decay(0.99, 0, 1) == 0.99  # no warm-up: the decay from the first update


def test_integer_buffers_are_the_models_counts_not_an_average_of_them():
    model = _model()
    average = AveragedModel(model, use_buffers=True, multi_avg_fn=ema_multi_avg_fn(0.999, 200))
    for _ in range(6):
        _train_a_step(model)
        average.update_parameters(model)
    assert int(model[1].num_batches_tracked) == 6
    assert int(average.module[1].num_batches_tracked) == 6


def test_a_model_converted_after_the_average_was_made_is_averaged_in_the_averages_dtype():
    """Lightning builds the average before ``trainer.precision: bf16-true`` converts the model:
    the bf16 weights are averaged into the float32 copy (a foreach lerp refused them)."""
    model = _model()
    average = AveragedModel(model, use_buffers=True, multi_avg_fn=ema_multi_avg_fn(0.9, 0))
    model.to(torch.bfloat16)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5)
        average.update_parameters(model)
    weight = average.module[0].weight
    assert weight.dtype == torch.float32
    # the first update copies (+0.5), then two of decay 0.9: +0.55, +0.645
    assert torch.allclose(weight, _model()[0].weight + 0.645, atol=0.02)
