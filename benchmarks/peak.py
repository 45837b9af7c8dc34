"""The machine's matrix-multiply peak, measured: square ``torch.mm`` at fp32 and bf16.

The achieved FLOP/s of a model means little alone; divided by what this machine's matrix
multiplication reaches with the same threads, in the same run, it says how much of the CPU a
training step uses. For each precision and each side ``n`` the harness times
``torch.mm(a, b)`` of two ``n x n`` matrices (``2 n^3`` FLOPs); the repetitions of every
(precision, side) alternate in rounds, as the models' do, so a burst of load from elsewhere
lowers them alike. The peak of a precision is the best median over the sides: large enough
matrices that the kernel is compute-bound. bf16 multiplies ``torch.bfloat16`` tensors, the
kernel that bf16 autocast calls for a convolution's or linear layer's matrix product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from benchmarks.harness import median, time_alternating

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_flops(n: int) -> int:
    """FLOPs of one ``n x n`` by ``n x n`` matrix product (a multiply-add is 2)."""
    return 2 * n**3


def measure_matmul_peak(
    sizes: Sequence[int],
    precisions: Sequence[str] = ("fp32", "bf16"),
    reps: int = 5,
    warmup: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Median GFLOP/s of square matrix products at each precision and side.

    Returns:
        ``{"method": ..., "sizes": [...], "reps": reps, "fp32": {"gflops_per_s": peak,
        "best_size": n, "by_size": {"2048": {"median_s", "gflops_per_s", "times_s"}}},
        "bf16": {...}}``: ``gflops_per_s`` of a precision is the best median over the sides.
    """
    calls: dict[str, Callable[[], object]] = {}
    for precision in precisions:
        dtype = DTYPES[precision]
        for n in sizes:
            gen = torch.Generator().manual_seed(n)
            a = torch.randn(n, n, generator=gen).to(dtype)
            b = torch.randn(n, n, generator=gen).to(dtype)
            out = torch.empty(n, n, dtype=dtype)
            calls[f"{precision}/{n}"] = lambda a=a, b=b, out=out: torch.mm(a, b, out=out)
    for _ in range(warmup):
        for call in calls.values():
            call()
    times = time_alternating(calls, reps)
    results: dict[str, Any] = {
        "method": "torch.mm of two square matrices, best median over the sides",
        "sizes": list(sizes),
        "reps": reps,
    }
    for precision in precisions:
        by_size = {}
        for n in sizes:
            seconds = times[f"{precision}/{n}"]
            by_size[str(n)] = {
                "median_s": median(seconds),
                "gflops_per_s": matmul_flops(n) / median(seconds) / 1e9,
                "times_s": seconds,
            }
        best = max(by_size, key=lambda k: by_size[k]["gflops_per_s"])
        results[precision] = {
            "gflops_per_s": by_size[best]["gflops_per_s"],
            "best_size": int(best),
            "by_size": by_size,
        }
        log(
            f"[peak] {precision} matmul: "
            + ", ".join(f"{n}: {v['gflops_per_s']:.1f}" for n, v in by_size.items())
            + f" GFLOP/s -> peak {results[precision]['gflops_per_s']:.1f}"
        )
    return results
