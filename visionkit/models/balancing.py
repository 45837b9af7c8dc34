"""Loss balancing: how the heads' losses make the model's total loss.

``fixed`` weighs each head by its configured ``loss_weight``; ``uncertainty`` and ``magnitude``
multiply those weights by automatic factors (``model.loss_balancing`` in a config).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


class FixedWeighting(nn.Module):
    """``total = Σ_h w_h · L_h`` with the constant per-head weights ``w_h``.

    >>> total, weights = FixedWeighting({"a": 2.0})({"a": torch.tensor(3.0)})
    >>> float(total), float(weights["a"])
    (6.0, 2.0)
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__()
        self.weights = {name: float(w) for name, w in weights.items()}

    def forward(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The total and each head's effective weight (detached)."""
        total = sum(self.weights[name] * loss for name, loss in losses.items())
        weights = {name: loss.new_tensor(self.weights[name]) for name, loss in losses.items()}
        return total, weights


class UncertaintyWeighting(nn.Module):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    One learnable log-variance ``s_h`` per head (``log_vars.<head>``, initialised to 0, so
    training starts at the fixed weights)::

        total = Σ_h w_h · (exp(-s_h) · L_h + s_h)

    one form for every head (the classification form of the paper, without its factor 1/2 on
    ``s_h``); its optimum is ``exp(-s_h) = 1 / L_h``, i.e. each head contributes about ``w_h``.
    The effective weight is ``w_h · exp(-s_h)``. When a head's loss is exactly zero (no image of
    the batch carries its label) its ``s_h`` term is multiplied by 0: the total stays finite and
    ``s_h`` gets a zero gradient (still connected, so DDP sees every parameter used) instead of
    drifting towards ever larger weights on batches without labels.

    >>> balancer = UncertaintyWeighting({"a": 1.0})
    >>> total, weights = balancer({"a": torch.tensor(3.0)})
    >>> float(total.detach()), float(weights["a"])
    (3.0, 1.0)
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__()
        self.weights = {name: float(w) for name, w in weights.items()}
        self.log_vars = nn.ParameterDict({name: nn.Parameter(torch.zeros(())) for name in weights})

    def forward(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The total and each head's effective weight (detached)."""
        total: Tensor | int = 0
        weights = {}
        for name, loss in losses.items():
            log_var = self.log_vars[name]
            precision = torch.exp(-log_var)
            labelled = (loss.detach() != 0).to(precision.dtype)
            total = total + self.weights[name] * (precision * loss + labelled * log_var)
            weights[name] = (self.weights[name] * precision).detach()
        return total, weights  # type: ignore[return-value]


class MagnitudeWeighting(nn.Module):
    """Normalisation by running loss magnitude: ``total = Σ_h w_h · L_h / m_h``.

    ``m_h`` (buffer ``running_loss.<head>``) is an exponential moving average of the head's
    loss, updated in training mode only: ``m ← momentum · m + (1 - momentum) · L`` (the first
    value sets it). A loss that is exactly zero (no labelled image in the batch) or not finite
    leaves ``m_h`` unchanged; before a head's first value its factor is 1. The weights are
    detached: no gradient flows through ``m_h``.

    >>> balancer = MagnitudeWeighting({"a": 1.0}, momentum=0.5)
    >>> total, weights = balancer({"a": torch.tensor(4.0)})
    >>> float(total), float(weights["a"])
    (1.0, 0.25)
    """

    def __init__(self, weights: Mapping[str, float], momentum: float = 0.99) -> None:
        super().__init__()
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.weights = {name: float(w) for name, w in weights.items()}
        self.momentum = momentum
        self.running_loss = nn.Module()
        for name in weights:
            self.running_loss.register_buffer(name, torch.zeros(()))

    def forward(self, losses: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The total and each head's effective weight (detached)."""
        total: Tensor | int = 0
        weights = {}
        for name, loss in losses.items():
            mean = self.running_loss.get_buffer(name)
            with torch.no_grad():
                value = loss.detach().to(mean.dtype)
                if self.training:
                    seen = (value != 0) & torch.isfinite(value)
                    moved = torch.where(
                        mean > 0, self.momentum * mean + (1 - self.momentum) * value, value
                    )
                    mean.copy_(torch.where(seen, moved, mean))
                factor = torch.where(mean > 0, 1 / mean.clamp(min=1e-12), torch.ones_like(mean))
                weights[name] = self.weights[name] * factor
            total = total + weights[name] * loss
        return total, weights  # type: ignore[return-value]


LOSS_BALANCERS = {
    "fixed": FixedWeighting,
    "uncertainty": UncertaintyWeighting,
    "magnitude": MagnitudeWeighting,
}


def make_loss_balancer(
    name: str, weights: Mapping[str, float], momentum: float = 0.99
) -> nn.Module:
    """The loss balancer ``name`` (``fixed``, ``uncertainty``, ``magnitude``) over ``weights``."""
    if name not in LOSS_BALANCERS:
        raise ValueError(f"unknown loss balancing {name!r}; valid: {', '.join(LOSS_BALANCERS)}")
    if name == "magnitude":
        return MagnitudeWeighting(weights, momentum=momentum)
    return LOSS_BALANCERS[name](weights)
