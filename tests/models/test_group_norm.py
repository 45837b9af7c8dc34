"""``visionkit.models.norm.GroupNorm``: ``nn.GroupNorm``'s values, gradients and state dict, with
a small half-precision channels-last map on the CPU normalised in channels-first memory (there
PyTorch's channels-last kernel is slow) and given back channels-last."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionkit.models.heads._semantic import conv_gn_relu
from visionkit.models.norm import GroupNorm, norm_layer


def pair(channels: int = 16, groups: int = 4) -> tuple[nn.GroupNorm, GroupNorm]:
    reference = nn.GroupNorm(groups, channels)
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-0.5, 0.5)
    ours = GroupNorm(groups, channels)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [True, False])
def test_values_and_gradients_are_nn_group_norms(channels_last, dtype):
    reference, ours = pair()
    x = (torch.randn(3, 16, 7, 5) * 3 + 1).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(3, 16, 7, 5).to(dtype)
    outputs = []
    for module in (reference, ours):
        module.zero_grad()
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            y = module(xi)
        y.backward(grad)
        outputs.append((y, xi.grad, module.weight.grad, module.bias.grad))
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    for got, want in zip(outputs[1], outputs[0], strict=True):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, atol=tolerance, rtol=tolerance)
    y = outputs[1][0]
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert y.is_contiguous() == (not channels_last)


def test_only_small_half_precision_channels_last_maps_with_few_channels_a_group_are_copied():
    def copies(shape, groups=32, dtype=torch.bfloat16, channels_last=True):
        x = torch.zeros(shape, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return GroupNorm(groups, shape[1])._copies(x)

    assert copies((8, 128, 24, 24))  # FCOS's towers at stride 8 of a 192 px batch
    assert copies((8, 64, 64, 64), dtype=torch.float16)
    assert not copies((8, 128, 24, 24), dtype=torch.float32)  # as fast as the copies in fp32
    assert not copies((8, 128, 24, 24), channels_last=False)  # channels-first already
    assert not copies((8, 256, 48, 48))  # 8 channels a group
    assert not copies((8, 128, 96, 96))  # over copy_max_elements
    assert not copies((8, 128, 24, 24), groups=16)  # 8 channels a group


def test_other_ranks_are_left_to_nn_group_norm():
    reference, ours = pair()
    x = torch.randn(2, 16, 9)
    torch.testing.assert_close(ours(x), reference(x))


def test_the_heads_and_necks_normalise_with_it_and_keep_their_state_dict_keys():
    assert type(norm_layer("group", 48)) is GroupNorm and norm_layer("group", 48).num_groups == 16
    block = conv_gn_relu(8, 24)
    assert type(block[1]) is GroupNorm and block[1].num_groups == 8  # 24 channels: 8 groups of 3
    assert list(block.state_dict()) == ["0.weight", "1.weight", "1.bias"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_it_scripts_and_traces(dtype):
    _, ours = pair()
    x = torch.randn(1, 16, 4, 4).to(dtype).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(torch.jit.script(ours)(x), ours(x))
    torch.testing.assert_close(torch.jit.trace(ours, x)(x), ours(x))
