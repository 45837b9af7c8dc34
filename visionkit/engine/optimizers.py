"""The configured optimiser: ``optimizer.name`` (``sgd``, ``adam``, ``adamw``) over parameter
groups, with PyTorch's fused kernels where they apply.

Fused (``fused=True``): one kernel updates every parameter, instead of a handful of tensor
ops per parameter. On a CPU the AdamW step of a ResNet-18 FPN model takes about 16 ms
instead of 73-114 ms (one thread), which is 10-15 % of a training step of the shapes
recipes (docs/benchmarks.md). A fused optimiser unscales fp16 gradients itself, so it is not
used under a ``GradScaler`` (``16-mixed``), where gradient clipping needs the unscaled
gradients first.

>>> import torch
>>> from visionkit.config import OptimizerConfig
>>> opt = build_optimizer(OptimizerConfig(name="adamw", lr=0.01), [torch.nn.Parameter(torch.ones(2))])
>>> type(opt).__name__, opt.defaults["fused"]
('AdamW', True)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from visionkit.config import OptimizerConfig

FUSED_DEVICES = ("cpu", "cuda")  # where PyTorch has fused Adam/AdamW/SGD kernels


def build_optimizer(
    cfg: OptimizerConfig, params: Iterable[Any], fused: bool = True
) -> torch.optim.Optimizer:
    """``cfg``'s optimiser over ``params`` (tensors or parameter groups, which may set their
    own ``lr`` / ``weight_decay``); ``fused`` when asked and every parameter is a floating
    tensor on a device with fused kernels. ``cfg.weight_decay`` is the default of groups
    that set none."""
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    tensors = [p for group in groups for p in group["params"]]
    fused = fused and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in tensors)
    options = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "fused": fused or None}
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, momentum=cfg.momentum, nesterov=cfg.nesterov, **options)
    optimizer = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return optimizer(groups, betas=cfg.betas, **options)


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` runs PyTorch's fused kernels."""
    return bool(optimizer.defaults.get("fused"))
