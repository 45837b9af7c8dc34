"""FLOP counts with ``torch.utils.flop_counter.FlopCounterMode``, and the achieved FLOP/s.

The counter sees every matrix multiplication and convolution dispatched inside it (forward
and, for a training step, backward), whatever Python code runs them; elementwise ops,
pooling, normalisation, NMS and the optimiser are not counted (they are memory-bound: they
take time but add no FLOPs to the figure). A multiply-add is 2 FLOPs.

>>> from torch import nn
>>> layer = nn.Linear(16, 32)
>>> count_flops(lambda: layer(torch.zeros(4, 16)))  # 2 * batch * in * out
4096
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the matrix multiplications and convolutions that one call of ``fn`` runs
    (its backward too, when ``fn`` calls ``backward()``)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def achieved(flops: float, seconds: float, peak_flops_per_s: float | None) -> dict[str, float]:
    """``{"gflops_per_s", "peak_fraction"}`` of ``flops`` done in ``seconds`` (the fraction
    only when a peak is known)."""
    rate = flops / seconds if seconds > 0 else 0.0
    out = {"gflops_per_s": rate / 1e9}
    if peak_flops_per_s:
        out["peak_fraction"] = rate / peak_flops_per_s
    return out


def train_step_flops(step: Callable[[], torch.Tensor]) -> int:
    """FLOPs of one training step's forward, loss and backward: ``step`` returns the loss,
    whose ``backward()`` runs inside the counter."""
    return count_flops(lambda: step().backward())
