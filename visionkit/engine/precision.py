"""``precision: auto``: bf16 mixed precision where the hardware runs it natively, else fp32."""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """Turn ``"auto"`` into a Lightning precision string; any other value is returned as is.

    ``auto`` picks ``bf16-mixed`` on a CUDA GPU that supports bf16 and on a CPU with AVX-512
    BF16 or AMX, else ``32-true``. The choice is logged.
    """
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu:
        chosen = "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
        why = "GPU with bf16" if chosen != "32-true" else "GPU without bf16"
    else:
        chosen = "bf16-mixed" if cpu_supports_bf16() else "32-true"
        why = "CPU with AVX-512 BF16/AMX" if chosen != "32-true" else "CPU without native bf16"
    logger.info("precision: auto -> %s (%s)", chosen, why)
    return chosen
