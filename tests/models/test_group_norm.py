"""``visionkit.models.norm.GroupNorm``: ``nn.GroupNorm``'s values, gradients and state dict, with
a channels-last map (``trainer.channels_last``) normalised in channels-first memory (PyTorch's
CPU kernel for channels-last input is several times slower) and given back channels-last."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionkit.models.heads._semantic import conv_gn_relu
from visionkit.models.norm import GroupNorm, group_count, norm_layer


def pair(channels: int = 16, groups: int = 4) -> tuple[nn.GroupNorm, GroupNorm]:
    reference = nn.GroupNorm(groups, channels)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    ours = GroupNorm(groups, channels)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


@pytest.mark.parametrize("channels_last", [True, False])
def test_values_and_gradients_are_nn_group_norms(channels_last):
    reference, ours = pair()
    x = torch.randn(3, 16, 7, 5) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(3, 16, 7, 5)
    outputs = []
    for module in (reference, ours):
        xi = x.clone().requires_grad_()
        y = module(xi)
        y.backward(grad)
        outputs.append((y, xi.grad, module.weight.grad, module.bias.grad))
    for got, want in zip(outputs[1], outputs[0], strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    y = outputs[1][0]
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert y.is_contiguous() == (not channels_last)


def test_a_channels_last_bf16_map_under_autocast_stays_bf16_and_channels_last():
    _, ours = pair()
    x = torch.randn(2, 16, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x.bfloat16())
        want = nn.functional.group_norm(x.bfloat16(), 4, ours.weight, ours.bias, ours.eps)
    assert y.dtype == want.dtype
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y.float(), want.float(), atol=2e-2, rtol=2e-2)


def test_other_ranks_are_left_to_nn_group_norm():
    reference, ours = pair()
    x = torch.randn(2, 16, 9)
    torch.testing.assert_close(ours(x), reference(x))


def test_the_heads_and_necks_normalise_with_it_and_keep_their_state_dict_keys():
    assert type(norm_layer("group", 48)) is GroupNorm and norm_layer("group", 48).num_groups == 16
    block = conv_gn_relu(8, 24)
    assert type(block[1]) is GroupNorm and block[1].num_groups == group_count(24) == 8
    assert list(block.state_dict()) == ["0.weight", "1.weight", "1.bias"]


def test_it_scripts_and_traces():
    _, ours = pair()
    x = torch.randn(1, 16, 4, 4).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(torch.jit.script(ours)(x), ours(x))
    torch.testing.assert_close(torch.jit.trace(ours, x)(x), ours(x))
