"""The model-against-model comparison: :class:`BenchmarkCase`, and :class:`RecipeCase`, whose
"ours" is a shipped recipe's model. The cases themselves live in ``detection.py``,
``segmentation.py``, ``multitask.py`` and ``classification.py`` beside this file."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from benchmarks.harness import Settings
from visionkit import build
from visionkit.build.model import create_model
from visionkit.config import Config, OptimizerConfig
from visionkit.errors import ConfigError


class BenchmarkCase:
    """One comparison: our model and a baseline, measured on the same inputs.

    A subclass builds the two models and knows how to feed each; the harness
    (:func:`run_case`) does the timing, the precision (autocast around ``train_loss`` and
    ``infer``, each side at :meth:`precision_of`), ``inference_mode``, the optimiser steps and
    the memory readings. ``which`` is ``"ours"`` or ``"baseline"`` throughout.

    Attributes:
        section: the results section and Markdown table this case belongs to.
        name: the case's name (the recipe's file stem).
        labels: a short description of each model, for the tables.
    """

    section: ClassVar[str] = ""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.labels = {"ours": "ours", "baseline": "baseline"}
        self.batch_size = settings.batch_size or 8  # training batch

    def build_ours(self) -> nn.Module:
        """Our model, untrained."""
        raise NotImplementedError

    def build_baseline(self) -> nn.Module:
        """The baseline model, untrained; nothing may be downloaded."""
        raise NotImplementedError

    def make_batch(self, which: str, batch_size: int) -> Any:
        """Inputs and targets of ``batch_size`` images for one model; the same ``seed`` gives
        the same pixels and targets to both models, each in its own input format."""
        raise NotImplementedError

    def train_loss(self, which: str, model: nn.Module, batch: Any) -> Tensor:
        """Forward and loss of one training batch: a scalar to back-propagate."""
        raise NotImplementedError

    def infer(self, which: str, model: nn.Module, batch: Any) -> Any:
        """Predictions for one batch, post-processing included."""
        raise NotImplementedError

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimiser of a training step (the same kind for both models)."""
        return torch.optim.AdamW(model.parameters(), lr=1e-3)

    def outputs_per_image(self, which: str, predictions: Any) -> float | None:
        """Mean number of predicted objects per image (detections), or None."""
        return None

    def train_memory_format(self, which: str) -> torch.memory_format:
        """Memory format of a model's weights and batches while it trains (NCHW here)."""
        return torch.contiguous_format

    def describe(self) -> dict[str, Any]:
        """Case facts recorded in the results (sizes, recipe path, ...)."""
        return {}

    def precision_of(self, which: str) -> str:
        """``"fp32"`` or ``"bf16"``: the settings' ``precision`` for ours, and for the baseline
        unless ``baseline_precision`` is given."""
        _check_side(which)
        if which == "baseline" and self.settings.baseline_precision is not None:
            return self.settings.baseline_precision
        return self.settings.precision

    def size_of(self, which: str) -> tuple[int, int] | None:
        """The ``(H, W)`` one side's images have; ``None`` for a case without one size."""
        _check_side(which)
        return None

    def sides_differ(self) -> bool:
        """Whether ours and the baseline run at different precisions or image sizes."""
        return self.precision_of("ours") != self.precision_of("baseline") or self.size_of(
            "ours"
        ) != self.size_of("baseline")

    def autocast(self, which: str) -> contextlib.AbstractContextManager:
        """bf16 autocast on the CPU when ``which`` side runs at bf16 (:meth:`precision_of`),
        else nothing."""
        if self.precision_of(which) == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _check_side(which: str) -> None:
    if which not in ("ours", "baseline"):
        raise ValueError(f"which: expected 'ours' or 'baseline', got {which!r}")


def build_optimizer(cfg: OptimizerConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimiser (name, lr, weight decay, momentum / betas) over ``model``, built
    as training builds it (:func:`visionkit.build.build_optimizer`: fused)."""
    return build.build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])


def synthetic_boxes(
    gen: torch.Generator, batch_size: int, n: int, num_classes: int, size: tuple[int, int]
) -> tuple[list[Tensor], list[Tensor]]:
    """Per image ``n`` random xyxy boxes in absolute pixels of an image of ``size`` ``(H, W)``
    (sides 1/8 to 1/2 of the image) and ``n`` labels in ``0..num_classes-1``, ``[n, 4]`` and
    ``[n]``. The boxes are drawn relative to the image and then scaled, so one seed gives the
    same relative boxes (and labels) at every size.

    >>> small = synthetic_boxes(torch.Generator().manual_seed(0), 1, 2, 3, (32, 64))
    >>> large = synthetic_boxes(torch.Generator().manual_seed(0), 1, 2, 3, (64, 128))
    >>> torch.allclose(2 * small[0][0], large[0][0]), torch.equal(small[1][0], large[1][0])
    (True, True)
    """
    height, width = size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    boxes, labels = [], []
    for _ in range(batch_size):
        wh = 0.125 + 0.375 * torch.rand(n, 2, generator=gen)
        xy = torch.rand(n, 2, generator=gen) * (1 - wh)
        boxes.append(torch.cat([xy, xy + wh], dim=1) * scale)
        labels.append(torch.randint(0, num_classes, (n,), generator=gen))
    return boxes, labels


def recipe_image_size(cfg: Config) -> tuple[int, int]:
    """``data.image_size`` of a recipe as ``(H, W)``."""
    size = cfg.data.image_size
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class RecipeCase(BenchmarkCase):
    """A case whose "ours" is a shipped recipe's model, built untrained by
    :func:`visionkit.create_model`; its inputs are normalised by that model's backbone. The
    image size and training batch are the recipe's unless the settings give them.

    Attributes:
        image_size: our model's ``(H, W)``: ``settings.image_size`` or the recipe's.
        baseline_image_size: the baseline's: ``settings.baseline_image_size`` or ours.
    """

    def __init__(self, name: str, settings: Settings, config: Config, recipe: str) -> None:
        super().__init__(name, settings)
        self.config = config
        self.recipe = recipe
        self.image_size = tuple(settings.image_size or recipe_image_size(config))
        self.baseline_image_size = tuple(settings.baseline_image_size or self.image_size)
        self.batch_size = settings.batch_size or config.data.batch_size
        self._mean = self._std = None  # the backbone's normalisation, set by build_ours

    def build_ours(self) -> nn.Module:
        model = create_model(self.config)
        self._mean = torch.tensor(model.backbone.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(model.backbone.std).view(1, 3, 1, 1)
        return model

    def size_of(self, which: str) -> tuple[int, int]:
        """``(H, W)`` of ``which`` side's images: :attr:`image_size` for ours,
        :attr:`baseline_image_size` for the baseline."""
        _check_side(which)
        return self.baseline_image_size if which == "baseline" else self.image_size

    def describe(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "image_size": list(self.image_size),
            "num_classes": getattr(self, "num_classes", None),
        }

    def train_memory_format(self, which: str) -> torch.memory_format:
        """NHWC for ours when the recipe trains that way (``trainer.channels_last``, as
        :class:`~visionkit.engine.system.VisionSystem` does); the baselines stay NCHW, their
        libraries' default. Inference runs NCHW for both, like ``model.predict``."""
        if which == "ours" and self.config.trainer.channels_last:
            return torch.channels_last
        return torch.contiguous_format

    def normalise(self, images: Tensor) -> Tensor:
        """``images`` in ``0..1`` normalised as our model's data pipeline does."""
        if self._mean is None:
            raise RuntimeError("build_ours() first: its backbone gives the normalisation")
        return (images - self._mean) / self._std


def single_head(config: Config, recipe: str, allowed: Sequence[str], what: str):
    """The one head of a single-task recipe, ``(key, spec)``; its kind must be in ``allowed``
    and its ``num_classes`` set."""
    heads = {key: spec["name"] for key, spec in config.model.heads.items()}
    (key, head), *others = config.model.heads.items()
    if others or head["name"] not in allowed:
        raise ConfigError(
            f"{recipe}: the {what} benchmark needs exactly one {' or '.join(allowed)} head, "
            f"got {heads}"
        )
    if head.get("num_classes") is None:
        raise ConfigError(f"{recipe}: model.heads.{key}.num_classes must be set to benchmark it")
    return key, head
