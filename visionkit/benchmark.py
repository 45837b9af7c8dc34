"""Speed benchmarks of the shipped recipes against a baseline model measured in the same run.

Each *case* pairs our model (built from a recipe by :func:`visionkit.create_model`, untrained)
with a baseline built from another library (torchvision for detection), fed the same synthetic
images and targets at the same size and precision. For both models the harness measures:

- training images/s: forward + loss + backward + optimiser step at ``batch_size``;
- inference ms/image at each of ``infer_batch_sizes``: eval mode, ``torch.inference_mode``,
  post-processing (decoding, NMS) included;
- peak resident memory (process-wide, see :class:`PeakRSS`) while training and while inferring.

Every figure is the median of ``reps`` timed repetitions after ``warmup`` untimed ones. The
timed repetitions of the two models alternate in rounds (ours, baseline; ours, baseline; ...),
and each ratio ours / baseline is the median over rounds of the ratio within a round, so load
from other processes on a shared machine falls on both alike. The ratios are the figures to
read, not the absolute speeds.

Cases: :class:`DetectionCase` (FCOS / RetinaNet recipes against torchvision's FCOS /
RetinaNet with a ResNet-18 FPN) and :class:`SegmentationCase` (semantic recipes against
torchvision's ``deeplabv3_mobilenet_v3_large``). A new comparison (classification against a
timm model, ...) is one more :class:`BenchmarkCase` subclass and one entry in :data:`CASES`;
measurements that are not model-against-model (data pipeline, COCO evaluation,
matmul peak) are further sections of the same results dict, each rendered by its own table
function.

>>> durations = iter([0.0, 1.0, 1.0, 4.0, 4.0, 6.0])  # a fake clock: calls take 1, 3, 2 s
>>> times = time_alternating({"f": lambda: None}, reps=3, clock=lambda: next(durations))
>>> times, median(times["f"])
({'f': [1.0, 3.0, 2.0]}, 2.0)
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import json
import os
import platform
import re
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from visionkit.config import Config, OptimizerConfig, load_config
from visionkit.errors import ConfigError

RESULTS_SCHEMA = 1
REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPE_DIR = REPO_ROOT / "configs" / "shapes"
DEFAULT_RECIPES = ("fcos_r18", "retinanet_r18", "semseg_fpn_r18")
# Ratios ours / baseline where larger is better; only these can carry a floor.
HIGHER_IS_BETTER = ("train_images_per_s",)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """What one benchmark run measures and how.

    Attributes:
        precision: ``"fp32"`` or ``"bf16"`` (autocast on the CPU, for both models alike).
        threads: torch intra-op threads.
        image_size: ``(H, W)`` fed to both models; ``None`` takes each recipe's
            ``data.image_size``.
        batch_size: training batch.
        infer_batch_sizes: batches at which inference latency is measured.
        warmup: untimed repetitions before each timed series (at least 1; peak memory is
            measured over them).
        reps: timed repetitions; each figure is their median.
        boxes_per_image: synthetic ground-truth objects per training image.
        seed: seed of the synthetic images and targets.
    """

    precision: str = "fp32"
    threads: int = 1
    image_size: tuple[int, int] | None = None
    batch_size: int = 8
    infer_batch_sizes: tuple[int, ...] = (1, 8)
    warmup: int = 2
    reps: int = 5
    boxes_per_image: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision: expected 'fp32' or 'bf16', got {self.precision!r}")
        if self.warmup < 1 or self.reps < 1 or self.batch_size < 1 or self.threads < 1:
            raise ValueError("warmup, reps, batch_size and threads must be at least 1")
        if not self.infer_batch_sizes or min(self.infer_batch_sizes) < 1:
            raise ValueError("infer_batch_sizes: expected one or more sizes >= 1")


# Defaults of --quick (each is overridden by the option given explicitly): under a minute.
QUICK = {
    "image_size": (128, 128),
    "batch_size": 4,
    "infer_batch_sizes": (1, 4),
    "warmup": 1,
    "reps": 5,
}


def resolve_precision_name(precision: str) -> str:
    """``fp32`` / ``bf16`` as given; ``auto`` as :func:`~visionkit.engine.precision.resolve_precision`
    decides for the CPU (``bf16`` on AVX-512 BF16 / AMX, else ``fp32``)."""
    if precision == "auto":
        from visionkit.engine.precision import resolve_precision

        return "bf16" if resolve_precision("auto", "cpu").startswith("bf16") else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision: expected fp32, bf16 or auto, got {precision!r}")
    return precision


# --------------------------------------------------------------------------- timing and memory


def median(values: Sequence[float]) -> float:
    """The median of the repetitions (the mean of the middle two for an even count)."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def time_alternating(
    fns: Mapping[str, Callable[[], object]],
    reps: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds of each call of each function, ``reps`` rounds, the functions alternating
    within each round (so a burst of load from elsewhere hits every function alike)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return times


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median over rounds of ``numerators[i] / denominators[i]``: for timings taken back
    to back in each round, a ratio that load changing during the run affects little.

    >>> paired_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 1.0])
    3.0
    """
    if len(numerators) != len(denominators):
        raise ValueError("paired_ratio: the two series differ in length")
    return median([n / d for n, d in zip(numerators, denominators, strict=True)])


class PeakRSS:
    """Peak resident set size of this process, in MiB.

    Read with ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: it is process-wide, so it counts
    everything resident (Python, torch, both models of a case, memory that earlier phases
    left allocated), not one model alone. On Linux the high-water mark can be reset
    (``/proc/self/clear_refs``), so a peak read after :meth:`reset` is the peak since; the
    resident size at the reset (:meth:`current`) tells how much of it was there before.
    Elsewhere it is the peak since the process started (``resettable`` is then False).
    """

    def __init__(self) -> None:
        self.resettable = self._clear()

    @staticmethod
    def _clear() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        """Start a new peak from the current resident size (where the OS allows it), after
        handing memory freed by earlier phases back to the OS (glibc keeps it otherwise)."""
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        if self.resettable:
            self._clear()

    @staticmethod
    def current() -> float:
        """The resident size now, in MiB (0 where ``/proc/self/statm`` is absent)."""
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return 0.0
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    @staticmethod
    def read() -> float:
        """The peak so far, in MiB."""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB (bytes on macOS)
        return peak / 2**20 if platform.system() == "Darwin" else peak / 2**10


# --------------------------------------------------------------------------- cases


class BenchmarkCase:
    """One comparison: our model and a baseline, measured on the same inputs.

    A subclass builds the two models and knows how to feed each; the harness
    (:func:`run_case`) does the timing, the precision (autocast around ``train_loss`` and
    ``infer``), ``inference_mode``, the optimiser steps and the memory readings.
    ``which`` is ``"ours"`` or ``"baseline"`` throughout.

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

    def describe(self) -> dict[str, Any]:
        """Case facts recorded in the results (sizes, recipe path, ...)."""
        return {}

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on the CPU when the settings ask for it, else nothing."""
        if self.settings.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def build_optimizer(cfg: OptimizerConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimiser (name, lr, weight decay, momentum / betas) over ``model``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def recipe_image_size(cfg: Config) -> tuple[int, int]:
    """``data.image_size`` of a recipe as ``(H, W)``."""
    size = cfg.data.image_size
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class RecipeCase(BenchmarkCase):
    """A case whose "ours" is a shipped recipe's model, built untrained by
    :func:`visionkit.create_model`; its inputs are normalised by that model's backbone."""

    def __init__(self, name: str, settings: Settings, config: Config, recipe: str) -> None:
        super().__init__(name, settings)
        self.config = config
        self.recipe = recipe
        self.image_size = settings.image_size or recipe_image_size(config)
        self._mean = self._std = None  # the backbone's normalisation, set by build_ours

    def build_ours(self) -> nn.Module:
        from visionkit.factory import create_model

        model = create_model(self.config)
        self._mean = torch.tensor(model.backbone.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(model.backbone.std).view(1, 3, 1, 1)
        return model

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


class DetectionCase(RecipeCase):
    """A detection recipe against torchvision's FCOS or RetinaNet with a ResNet-18 FPN.

    The baseline is built as ``torchvision.models.detection.fcos_resnet50_fpn`` /
    ``retinanet_resnet50_fpn`` build theirs without pretrained weights, with ResNet-18: all
    layers trainable, ``nn.BatchNorm2d``, C3–C5 into a 256-channel FPN with P6/P7 from P5
    (``LastLevelP6P7(256, 256)``), the default heads (4 convs, GroupNorm for FCOS), and
    ``num_classes`` of the recipe: both torchvision heads use a sigmoid focal loss over
    ``num_classes`` channels with labels ``0..C-1`` and no background channel, as ours.

    Both models see the same images: ``[B, 3, H, W]`` in ``0..1``. Ours receives them
    normalised by the backbone's mean/std, done once outside the timed region (in training
    the data pipeline does it); torchvision receives the list of ``0..1`` images and its
    ``GeneralizedRCNNTransform`` normalises, resizes (``min_size``/``max_size`` set to the
    same size, so the resize keeps the size) and batches them inside the timed region, and
    maps boxes back to the input size in inference.
    """

    section: ClassVar[str] = "detection"

    def __init__(self, name: str, settings: Settings, config: Config, recipe: str) -> None:
        super().__init__(name, settings, config, recipe)
        self.head_name, head = single_head(config, recipe, ("fcos", "retinanet"), "detection")
        self.kind = head["name"]
        self.num_classes = int(head["num_classes"])
        neck = config.model.neck or {}
        levels = f"P{neck.get('min_level')}-P{neck.get('max_level')}" if neck else "no neck"
        baseline = "FCOS" if self.kind == "fcos" else "RetinaNet"
        self.labels = {
            "ours": f"visionkit: {config.model.backbone.name}, {neck.get('name', '')} "
            f"{neck.get('out_channels', '')} {levels}, {self.kind} "
            f"{head.get('num_convs')}-conv towers",
            "baseline": f"torchvision {baseline}: resnet18, FPN 256 P3-P7, 4-conv towers",
        }

    def describe(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "image_size": list(self.image_size),
            "num_classes": self.num_classes,
            "boxes_per_image": self.settings.boxes_per_image,
        }

    def build_baseline(self) -> nn.Module:
        from torchvision.models.detection import FCOS, RetinaNet
        from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
        from torchvision.ops.feature_pyramid_network import LastLevelP6P7

        backbone = resnet_fpn_backbone(
            backbone_name="resnet18",
            weights=None,
            norm_layer=nn.BatchNorm2d,  # what fcos_resnet50_fpn uses when untrained
            trainable_layers=5,
            returned_layers=[2, 3, 4],
            extra_blocks=LastLevelP6P7(256, 256),
        )
        detector = FCOS if self.kind == "fcos" else RetinaNet
        return detector(
            backbone,
            num_classes=self.num_classes,
            min_size=min(self.image_size),
            max_size=max(self.image_size),
        )

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(self.config.optimizer, model)

    def synthetic(self, batch_size: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Images ``[B, 3, H, W]`` uniform in ``0..1``; per image ``boxes_per_image`` xyxy
        boxes (sides 1/8 to 1/2 of the image) and labels in ``0..C-1``."""
        gen = torch.Generator().manual_seed(self.settings.seed)
        height, width = self.image_size
        images = torch.rand(batch_size, 3, height, width, generator=gen)
        n = self.settings.boxes_per_image
        scale = torch.tensor([width, height], dtype=torch.float32)
        boxes, labels = [], []
        for _ in range(batch_size):
            wh = (0.125 + 0.375 * torch.rand(n, 2, generator=gen)) * scale
            xy = torch.rand(n, 2, generator=gen) * (scale - wh)
            boxes.append(torch.cat([xy, xy + wh], dim=1))
            labels.append(torch.randint(0, self.num_classes, (n,), generator=gen))
        return images, boxes, labels

    def make_batch(self, which: str, batch_size: int) -> Any:
        images, boxes, labels = self.synthetic(batch_size)
        if which == "ours":
            return {"images": self.normalise(images), "boxes": boxes, "labels": labels}
        targets = [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels, strict=True)]
        return {"images": list(images), "targets": targets}

    def train_loss(self, which: str, model: nn.Module, batch: Any) -> Tensor:
        if which == "ours":
            return model.loss(model(batch["images"]), batch)["loss"]
        return sum(model(batch["images"], batch["targets"]).values())

    def infer(self, which: str, model: nn.Module, batch: Any) -> Any:
        if which == "ours":
            images = batch["images"]
            sizes = [tuple(images.shape[-2:])] * len(images)
            return model.postprocess(model(images), sizes)
        return model(batch["images"])

    def outputs_per_image(self, which: str, predictions: Any) -> float | None:
        if which == "ours":
            counts = [len(p[self.head_name]["boxes"]) for p in predictions]
        else:
            counts = [len(p["boxes"]) for p in predictions]
        return sum(counts) / max(1, len(counts))


# The normalisation torchvision's segmentation weights were trained with (its models take
# normalised tensors, unlike its detectors, which normalise inside).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegmentationCase(RecipeCase):
    """A semantic-segmentation recipe (one ``semantic_fpn`` or ``deeplabv3plus`` head) against
    torchvision's ``deeplabv3_mobilenet_v3_large``.

    The baseline is ``deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
    num_classes=C, aux_loss=False)``: nothing is downloaded. It is a dilated MobileNetV3-Large
    (output stride 16, 960 channels) → torchvision's ``DeepLabHead`` (ASPP with rates 12/24/36
    and 256 channels, BatchNorm, dropout, a 3x3 conv and a 1x1 classifier), logits upsampled
    bilinearly to the input size inside ``forward``.

    Both models see the same images (``[B, 3, H, W]`` uniform in ``0..1``, the same seed), each
    normalised once outside the timed region: ours by its backbone's mean/std, torchvision's by
    the ImageNet mean/std its weights use (its segmentation models take normalised tensors).
    Training targets are the same random label map ``[B, H, W]`` in ``0..C-1``: ours gets it as
    ``{"semantic", "has_semantic"}`` through ``model.loss`` (the recipe's loss: cross-entropy,
    plus dice when the recipe sets ``dice_weight``), torchvision's
    ``F.cross_entropy(out["out"], target, ignore_index=255)``; both use the recipe's
    optimiser. Inference returns an argmax label map at the input size for each image: ours
    through ``model.postprocess(outputs, sizes, sizes)``, torchvision's
    ``model(images)["out"].argmax(1)``.
    """

    section: ClassVar[str] = "segmentation"
    HEADS: ClassVar[tuple[str, ...]] = ("semantic_fpn", "deeplabv3plus")

    def __init__(self, name: str, settings: Settings, config: Config, recipe: str) -> None:
        super().__init__(name, settings, config, recipe)
        self.head_name, head = single_head(config, recipe, self.HEADS, "segmentation")
        if settings.batch_size < 2:
            raise ConfigError(
                f"{recipe}: the segmentation benchmark trains at batch >= 2 (torchvision's ASPP "
                f"batch-normalises a pooled 1x1 map), got --batch-size {settings.batch_size}"
            )
        self.kind = head["name"]
        self.num_classes = int(head["num_classes"])
        neck = config.model.neck or {}
        parts = [config.model.backbone.name]
        if neck:
            parts.append(
                f"{neck.get('name', '')} {neck.get('out_channels', '')} "
                f"P{neck.get('min_level')}-P{neck.get('max_level')}"
            )
        parts.append(f"{self.kind} {head.get('channels', 128)} ch")
        self.labels = {
            "ours": "visionkit: " + ", ".join(parts),
            "baseline": "torchvision DeepLabV3: mobilenet_v3_large (dilated, stride 16), "
            "ASPP 256 ch",
        }

    def describe(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "image_size": list(self.image_size),
            "num_classes": self.num_classes,
        }

    def build_baseline(self) -> nn.Module:
        from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

        return deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=self.num_classes, aux_loss=False
        )

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(self.config.optimizer, model)

    def synthetic(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """Images ``[B, 3, H, W]`` uniform in ``0..1`` and a label map ``[B, H, W]`` (int64)
        uniform in ``0..C-1``."""
        gen = torch.Generator().manual_seed(self.settings.seed)
        height, width = self.image_size
        images = torch.rand(batch_size, 3, height, width, generator=gen)
        labels = torch.randint(0, self.num_classes, (batch_size, height, width), generator=gen)
        return images, labels

    def make_batch(self, which: str, batch_size: int) -> Any:
        images, labels = self.synthetic(batch_size)
        if which == "ours":
            return {
                "images": self.normalise(images),
                "semantic": labels,
                "has_semantic": torch.ones(batch_size, dtype=torch.bool),
            }
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return {"images": (images - mean) / std, "target": labels}

    def train_loss(self, which: str, model: nn.Module, batch: Any) -> Tensor:
        if which == "ours":
            return model.loss(model(batch["images"]), batch)["loss"]
        import torch.nn.functional as F

        return F.cross_entropy(model(batch["images"])["out"], batch["target"], ignore_index=255)

    def infer(self, which: str, model: nn.Module, batch: Any) -> Any:
        images = batch["images"]
        if which == "ours":
            sizes = [tuple(images.shape[-2:])] * len(images)
            return [
                p[self.head_name]["mask"] for p in model.postprocess(model(images), sizes, sizes)
            ]
        return model(images)["out"].argmax(1)


class MultitaskCase(RecipeCase):
    """A recipe with several heads against its single-task models run one after another
    (issue #5: the multi-task model's inference should cost at most 50 % of theirs).

    Ours is the recipe's model, built by :func:`visionkit.create_model`: the backbone (and
    the neck) run once per batch and every head reads them. The baseline is one single-task
    model per head, built from the same recipe with only that head kept in ``model.heads``
    (same backbone and neck configuration, same image size; the neck is dropped when that head
    reads the backbone, as a ``linear`` classifier does), so the comparison isolates the
    sharing. Heads supported: classification, detection (``fcos`` / ``retinanet``) and
    semantic segmentation.

    Every model gets the same batch: images ``[B, 3, H, W]`` uniform in ``0..1`` normalised by
    the backbone's mean/std outside the timed region, a class per image, ``boxes_per_image``
    boxes per image and a label map, all random (the same seed). Training: ours takes one step
    of the joint loss (``model.loss(...)["loss"]``, the recipe's loss balancing); the baseline
    one step of each single model in sequence (the sum of the three independent losses, one
    backward and the recipe's optimiser over all three models: per parameter the same update
    as three separate steps). Inference: ``model(images)`` + ``model.postprocess`` of every
    head; the baseline's call runs the single models one after another and is timed as one
    unit. The ratios in the table are ours / baseline: for ms/image, 0.5 or less meets the
    target.
    """

    section: ClassVar[str] = "multitask"
    TASKS: ClassVar[tuple[str, ...]] = ("classification", "detection", "semantic")

    def __init__(self, name: str, settings: Settings, config: Config, recipe: str) -> None:
        from visionkit.factory import head_class

        super().__init__(name, settings, config, recipe)
        heads = config.model.heads
        self.tasks = {key: head_class(spec["name"]).task for key, spec in heads.items()}
        unsupported = {k: heads[k]["name"] for k, t in self.tasks.items() if t not in self.TASKS}
        if len(heads) < 2 or unsupported:
            raise ConfigError(
                f"{recipe}: the multi-task benchmark needs two or more heads of "
                f"{', '.join(self.TASKS)}; got { ({k: s['name'] for k, s in heads.items()}) }"
            )
        missing = [k for k, spec in heads.items() if spec.get("num_classes") is None]
        if missing:
            raise ConfigError(
                f"{recipe}: num_classes must be set in model.heads.{', '.join(missing)} "
                "to benchmark them"
            )
        self.num_classes = {key: int(spec["num_classes"]) for key, spec in heads.items()}
        names = ", ".join(f"{key} {spec['name']}" for key, spec in heads.items())
        neck = config.model.neck or {}
        trunk = config.model.backbone.name + (
            f" + {neck.get('name', '')} {neck.get('out_channels', '')}" if neck else ""
        )
        self.labels = {
            "ours": f"visionkit multi-task: {trunk}, heads {names}",
            "baseline": f"{len(heads)} single-task models in sequence ({trunk}): "
            + " + ".join(spec["name"] for spec in heads.values()),
        }

    def single_task_config(self, head: str) -> Config:
        """The recipe with only ``head`` in ``model.heads``; no neck when that head reads the
        backbone; no ``init_from`` (the models are untrained), ``freeze`` and optimiser
        parameter groups restricted to the modules the single model has."""
        from visionkit.factory import head_class

        data = self.config.to_dict()
        model = data["model"]
        model["heads"] = {head: model["heads"][head]}
        if head_class(model["heads"][head]["name"]).reads == "backbone":
            model["neck"] = None
        kept = ("backbone", f"heads.{head}") + (("neck",) if model["neck"] else ())

        def keeps(prefix: str) -> bool:
            return prefix == "heads" or any(prefix == k or prefix.startswith(k + ".") for k in kept)

        model["init_from"] = None
        model["freeze"] = [p for p in model.get("freeze") or [] if keeps(p)]
        groups = data.get("optimizer", {}).get("param_groups") or {}
        data.setdefault("optimizer", {})["param_groups"] = {
            p: g for p, g in groups.items() if keeps(p)
        }
        return load_config(data)

    def describe(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "image_size": list(self.image_size),
            "num_classes": self.num_classes,
            "heads": {k: s["name"] for k, s in self.config.model.heads.items()},
        }

    def build_baseline(self) -> nn.Module:
        from visionkit.factory import create_model

        return nn.ModuleDict(
            {head: create_model(self.single_task_config(head)) for head in self.tasks}
        )

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(self.config.optimizer, model)

    def make_batch(self, which: str, batch_size: int) -> Any:
        """The same normalised images and labels of every task for ours and the baseline."""
        gen = torch.Generator().manual_seed(self.settings.seed)
        height, width = self.image_size
        images = torch.rand(batch_size, 3, height, width, generator=gen)
        batch: dict[str, Any] = {"images": self.normalise(images)}
        n = self.settings.boxes_per_image
        scale = torch.tensor([width, height], dtype=torch.float32)
        for head, task in self.tasks.items():
            classes = self.num_classes[head]
            if task == "classification":
                batch["class"] = torch.randint(0, classes, (batch_size,), generator=gen)
            elif task == "detection":
                boxes, labels = [], []
                for _ in range(batch_size):
                    wh = (0.125 + 0.375 * torch.rand(n, 2, generator=gen)) * scale
                    xy = torch.rand(n, 2, generator=gen) * (scale - wh)
                    boxes.append(torch.cat([xy, xy + wh], dim=1))
                    labels.append(torch.randint(0, classes, (n,), generator=gen))
                batch.update(
                    boxes=boxes, labels=labels, has_boxes=torch.ones(batch_size, dtype=torch.bool)
                )
            else:
                batch["semantic"] = torch.randint(
                    0, classes, (batch_size, height, width), generator=gen
                )
                batch["has_semantic"] = torch.ones(batch_size, dtype=torch.bool)
        return batch

    def train_loss(self, which: str, model: nn.Module, batch: Any) -> Tensor:
        if which == "ours":
            return model.loss(model(batch["images"]), batch)["loss"]
        return sum(single.loss(single(batch["images"]), batch)["loss"] for single in model.values())

    def infer(self, which: str, model: nn.Module, batch: Any) -> Any:
        images = batch["images"]
        sizes = [tuple(images.shape[-2:])] * len(images)
        if which == "ours":
            return model.postprocess(model(images), sizes, sizes)
        per_model = [single.postprocess(single(images), sizes, sizes) for single in model.values()]
        return [
            {k: v for preds in per_image for k, v in preds.items()}
            for per_image in zip(*per_model, strict=True)
        ]


# Recipe head name → case class.
CASES: dict[str, type[BenchmarkCase]] = {
    "fcos": DetectionCase,
    "retinanet": DetectionCase,
    "semantic_fpn": SegmentationCase,
    "deeplabv3plus": SegmentationCase,
}


def resolve_recipe(recipe: str) -> Path:
    """A recipe path as given, or the name of a shipped recipe (``fcos_r18``)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = RECIPE_DIR / f"{recipe}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    raise ConfigError(f"recipe {recipe!r}: no such file, nor a shipped recipe ({', '.join(names)})")


def case_for_recipe(recipe: str, settings: Settings) -> BenchmarkCase:
    """The benchmark case of a recipe, chosen by its head (:data:`CASES`); a recipe with
    several heads is a :class:`MultitaskCase`."""
    path = resolve_recipe(recipe)
    config = load_config(path)
    heads = [spec["name"] for spec in config.model.heads.values()]
    case_class = CASES.get(heads[0]) if len(heads) == 1 else None
    if len(heads) > 1:
        case_class = MultitaskCase
    if case_class is None:
        raise ConfigError(
            f"{path}: no benchmark case for heads {heads}; cases exist for one head of: "
            f"{', '.join(sorted(CASES))}, or several heads (multi-task)"
        )
    return case_class(path.stem, settings, config, str(path))


# --------------------------------------------------------------------------- running


def _count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run_case(
    case: BenchmarkCase, log: Callable[[str], None] = print, rss: PeakRSS | None = None
) -> dict[str, Any]:
    """Measure one case; return its results (see :func:`run_benchmark` for the layout)."""
    s = case.settings
    rss = rss or PeakRSS()
    torch.manual_seed(s.seed)
    models = {"ours": case.build_ours(), "baseline": case.build_baseline()}
    entries: dict[str, dict[str, Any]] = {
        which: {"model": case.labels[which], "params": _count_params(model)}
        for which, model in models.items()
    }
    tag = f"[{case.section}/{case.name}]"

    # Training: forward + loss under autocast, backward and the optimiser step outside it.
    steps = {}
    for which, model in models.items():
        model.train()
        optimizer = case.make_optimizer(model)
        batch = case.make_batch(which, s.batch_size)

        def step(which=which, model=model, optimizer=optimizer, batch=batch) -> None:
            optimizer.zero_grad(set_to_none=True)
            with case.autocast():
                loss = case.train_loss(which, model, batch)
            loss.backward()
            optimizer.step()

        rss.reset()
        entries[which]["rss_start_train_mib"] = rss.current()
        for _ in range(s.warmup):
            step()
        entries[which]["peak_rss_train_mib"] = rss.read()
        steps[which] = step
    times = time_alternating(steps, s.reps)
    for which, seconds in times.items():
        rate = s.batch_size / median(seconds)
        entries[which].update(train_step_s=seconds, train_images_per_s=rate)
        log(
            f"{tag} {which:8s} train   batch {s.batch_size}: {median(seconds):.3f} s/step "
            f"-> {rate:.2f} images/s"
        )
    del steps, times
    for model in models.values():
        model.zero_grad(set_to_none=True)
    gc.collect()

    # Inference: eval mode, inference_mode, autocast, post-processing included.
    for which, model in models.items():
        model.eval()
        entries[which].update(infer_ms_per_image={}, infer_s={}, peak_rss_infer_mib=0.0)
    for b in s.infer_batch_sizes:
        calls = {}
        for which, model in models.items():
            batch = case.make_batch(which, b)

            def call(which=which, model=model, batch=batch) -> Any:
                with torch.inference_mode(), case.autocast():
                    return case.infer(which, model, batch)

            rss.reset()
            entry = entries[which]
            entry.setdefault("rss_start_infer_mib", rss.current())
            for _ in range(s.warmup):
                predictions = call()
            entry["peak_rss_infer_mib"] = max(entry["peak_rss_infer_mib"], rss.read())
            if b == max(s.infer_batch_sizes):
                entry["outputs_per_image"] = case.outputs_per_image(which, predictions)
            calls[which] = call
        for which, seconds in time_alternating(calls, s.reps).items():
            ms = 1000.0 * median(seconds) / b
            entries[which]["infer_s"][str(b)] = seconds
            entries[which]["infer_ms_per_image"][str(b)] = ms
            log(f"{tag} {which:8s} infer   batch {b}: {ms:.1f} ms/image")
    del models, calls
    gc.collect()

    ours, base = entries["ours"], entries["baseline"]
    # Ratios from the rounds (one ours, one baseline repetition back to back): robust to load
    # that changes during the run. The ratios of the medians are kept beside them.
    ratios = {"train_images_per_s": paired_ratio(base["train_step_s"], ours["train_step_s"])}
    of_medians = {"train_images_per_s": ours["train_images_per_s"] / base["train_images_per_s"]}
    for b in s.infer_batch_sizes:
        key, name = str(b), f"infer_ms_per_image_b{b}"
        ratios[name] = paired_ratio(ours["infer_s"][key], base["infer_s"][key])
        of_medians[name] = ours["infer_ms_per_image"][key] / base["infer_ms_per_image"][key]
    log(
        f"{tag} ours/baseline: train images/s {ratios['train_images_per_s']:.2f}x, "
        + ", ".join(
            f"ms/image b{b} {ratios[f'infer_ms_per_image_b{b}']:.2f}x" for b in s.infer_batch_sizes
        )
    )
    return {
        "case": case.name,
        **case.describe(),
        "ours": ours,
        "baseline": base,
        "ratios": ratios,
        "ratios_of_medians": of_medians,
    }


def machine_info(settings: Settings) -> dict[str, Any]:
    """CPU model, cores, library versions, threads, precision, date and load of this run."""
    import timm
    import torchvision

    cpu = platform.processor() or platform.machine()
    flags = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        cpu = found.group(1).strip() if found else cpu
        found = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
        flags = found.group(1) if found else ""
    from visionkit.engine.precision import cpu_supports_bf16

    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_bf16": cpu_supports_bf16(),
        "cpu_amx": "amx_tile" in flags.split(),
        "threads": torch.get_num_threads(),
        "precision": settings.precision,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "platform": platform.platform(),
        "load_average_start": _load_average(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: other work on the machine inflates timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_benchmark(
    recipes: Sequence[str], settings: Settings, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Measure every recipe; the results dict that ``--output-json`` writes::

        {"schema": 1, "machine": {...}, "settings": {...}, "command": "visionkit benchmark ...",
         "sections": {"detection": [{"case": "fcos_r18", "recipe": ..., "image_size": [H, W],
             "ours": {"model", "params", "train_images_per_s", "train_step_s": [...],
                      "infer_ms_per_image": {"1": ..., "8": ...}, "infer_s": {...},
                      "peak_rss_train_mib", "peak_rss_infer_mib", "rss_start_train_mib",
                      "rss_start_infer_mib", "outputs_per_image"},
             "baseline": {... the same ...},
             "ratios": {"train_images_per_s", "infer_ms_per_image_b1", ...},
             "ratios_of_medians": {... the same keys ...}}]}}

    Ratios are ours / baseline of each figure: above 1 is better for images/s, below 1 is
    better for ms/image. ``ratios`` are medians over rounds of the per-round ratio (see
    :func:`paired_ratio`); ``ratios_of_medians`` divide the two medians.
    """
    cases = [case_for_recipe(r, settings) for r in recipes]  # every recipe checked first
    rss = PeakRSS()
    sections: dict[str, list[dict[str, Any]]] = {}
    with _threads(settings.threads):
        info = machine_info(settings)
        log(
            f"benchmark: {len(cases)} case(s), {settings.precision}, {settings.threads} threads, "
            f"median of {settings.reps} after {settings.warmup} warm-up; CPU {info['cpu']}"
        )
        for case in cases:
            sections.setdefault(case.section, []).append(run_case(case, log, rss))
    info["peak_rss_resettable"] = rss.resettable
    info["load_average_end"] = _load_average()
    return {
        "schema": RESULTS_SCHEMA,
        "machine": info,
        "settings": asdict(settings),
        "command": command_line([c.name for c in cases], settings),
        "sections": sections,
    }


def command_line(recipes: Sequence[str], settings: Settings) -> str:
    """An explicit ``visionkit benchmark`` command that repeats a run's settings."""
    size = settings.image_size
    parts = [
        "visionkit benchmark --recipes",
        *recipes,
        f"--precision {settings.precision} --threads {settings.threads}",
        f"--image-size {size[0]} {size[1]}" if size else "",
        f"--batch-size {settings.batch_size} --infer-batch-sizes",
        *(str(b) for b in settings.infer_batch_sizes),
        f"--warmup {settings.warmup} --reps {settings.reps}",
    ]
    return " ".join(p for p in parts if p)


# --------------------------------------------------------------------------- floors


def read_floors(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Read a floors file: ``{"floors": {"<section>/<case>": {"<ratio>": floor}}}``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read floors file: {err}", str(path)) from None
    floors = data.get("floors") if isinstance(data, dict) else None
    problems = []
    if not isinstance(floors, dict):
        problems.append('expected {"floors": {"<section>/<case>": {"<ratio>": number}}}')
        floors = {}
    for key, metrics in floors.items():
        if not isinstance(metrics, dict):
            problems.append(f"floors.{key}: expected a mapping of ratio name to number")
            continue
        for metric, value in metrics.items():
            if metric not in HIGHER_IS_BETTER:
                problems.append(
                    f"floors.{key}.{metric}: a floor needs a ratio where larger is better "
                    f"({', '.join(HIGHER_IS_BETTER)})"
                )
            elif not isinstance(value, (int, float)) or isinstance(value, bool):
                problems.append(f"floors.{key}.{metric}: expected a number, got {value!r}")
    if problems:
        raise ConfigError(problems, str(path))
    return floors


def check_floors(
    results: Mapping[str, Any], floors: Mapping[str, Mapping[str, float]]
) -> tuple[list[str], list[str]]:
    """Compare the ratios of ``results`` with their floors.

    Returns:
        ``(failures, notes)``: one message per ratio below its floor, and one per floor whose
        case was not measured in this run.
    """
    measured = {
        f"{section}/{entry['case']}": entry["ratios"]
        for section, entries in results.get("sections", {}).items()
        for entry in entries
    }
    failures, notes = [], []
    for key, metrics in floors.items():
        if key not in measured:
            notes.append(f"{key}: not measured in this run; floor not checked")
            continue
        for metric, floor in metrics.items():
            ratio = measured[key].get(metric)
            if ratio is None:
                failures.append(f"{key}: ratio {metric} missing from the results")
            elif ratio < floor:
                failures.append(
                    f"{key}: {metric} ours/baseline = {ratio:.2f}, below the floor {floor:.2f}"
                )
    return failures, notes


# --------------------------------------------------------------------------- output


def marker(tag: str, end: bool = False) -> str:
    return f"<!-- benchmark:{tag}:{'end' if end else 'start'} -->"


def write_markdown_section(path: str | os.PathLike, tag: str, body: str) -> None:
    """Put ``body`` between the ``benchmark:<tag>`` start/end markers of a Markdown file,
    leaving everything outside them untouched; append the markers and body at the end of the
    file when they are absent (creating the file if needed)."""
    path = Path(path)
    start, end = marker(tag), marker(tag, end=True)
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        text = text[:i] + block + text[j + len(end) :]
    elif i >= 0 or j >= 0:
        raise ConfigError(f"unbalanced markers {start} / {end}", str(path))
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _n(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _rss(entry: Mapping[str, Any], phase: str) -> str:
    peak, start = entry[f"peak_rss_{phase}_mib"], entry.get(f"rss_start_{phase}_mib")
    return f"{peak:.0f}" + (f" (+{max(0.0, peak - start):.0f})" if start else "")


def _load_text(machine: Mapping[str, Any]) -> str:
    start, end = machine.get("load_average_start"), machine.get("load_average_end")
    if not start or not end:
        return ""
    return f", 1-min load average {start[0]:.1f} at the start and {end[0]:.1f} at the end"


def comparison_table(
    results: Mapping[str, Any],
    section: str,
    outputs_header: str | None = None,
    ratio_label: str = "ours / torchvision",
) -> str:
    """The Markdown of one model-against-model section: settings line, then one block of
    three rows (ours, baseline, ratio headed ``ratio_label``) per case; a column of
    ``outputs_per_image`` headed ``outputs_header`` when given."""
    s, m = results["settings"], results["machine"]
    batches = s["infer_batch_sizes"]
    entries = results["sections"].get(section, [])
    sizes = sorted({"×".join(str(v) for v in e["image_size"]) for e in entries})
    extra = f" {outputs_header} |" if outputs_header else ""
    lines = [
        f"Measured {m['date']} on {m['cpu']} ({m['cpus_usable']} usable cores, "
        f"{m['threads']} torch threads{_load_text(m)}), torch {m['torch']}, torchvision {m['torchvision']}, "
        f"timm {m['timm']}; **{s['precision']}**, {', '.join(sizes)} px, training batch "
        f"{s['batch_size']}, each figure the median of {s['reps']} after {s['warmup']} "
        f"warm-up repetitions; ratios are medians of the per-round ratios (the two models "
        f"timed back to back). Command: `{results['command']}`.",
        "",
        "| recipe | model | params (M) | train images/s | "
        + " | ".join(f"ms/image b{b}" for b in batches)
        + f" |{extra} peak RSS train / infer, MiB (+ over phase start) |",
        "| --- | --- | ---: | ---: | "
        + " | ".join("---:" for _ in batches)
        + (" | ---:" if outputs_header else "")
        + " | ---: |",
    ]
    for e in entries:
        for which, first in (("ours", f" {e['case']} "), ("baseline", " ")):
            r = e[which]
            per_image = r.get("outputs_per_image")
            cell = "" if per_image is None else f"{per_image:.0f}"
            lines.append(
                f"|{first}| {r['model']} | {r['params'] / 1e6:.1f} | "
                f"{_n(r['train_images_per_s'])} | "
                + " | ".join(_n(r["infer_ms_per_image"][str(b)]) for b in batches)
                + (f" | {cell}" if outputs_header else "")
                + f" | {_rss(r, 'train')} / {_rss(r, 'infer')} |"
            )
        ratios = e["ratios"]
        lines.append(
            f"| | **{ratio_label}** | | **{ratios['train_images_per_s']:.2f}×** | "
            + " | ".join(f"**{ratios[f'infer_ms_per_image_b{b}']:.2f}×**" for b in batches)
            + (" | | |" if outputs_header else " | |")
        )
    return "\n".join(lines)


def detection_table(results: Mapping[str, Any]) -> str:
    """The Markdown of the ``detection`` section (with a detections/image column)."""
    return comparison_table(results, "detection", "detections/image")


def segmentation_table(results: Mapping[str, Any]) -> str:
    """The Markdown of the ``segmentation`` section."""
    return comparison_table(results, "segmentation")


# Issue #5: the multi-task model's inference at most this fraction of the single-task models'.
MULTITASK_INFER_TARGET = 0.5


def multitask_table(results: Mapping[str, Any]) -> str:
    """The Markdown of the ``multitask`` section, with whether each inference ratio meets
    :data:`MULTITASK_INFER_TARGET`."""
    lines = [comparison_table(results, "multitask", ratio_label="multi-task / single-task")]
    for e in results["sections"].get("multitask", []):
        verdicts = [
            f"b{b} {e['ratios'][f'infer_ms_per_image_b{b}']:.3f}× "
            + (
                "(met)"
                if e["ratios"][f"infer_ms_per_image_b{b}"] <= MULTITASK_INFER_TARGET
                else "(not met)"
            )
            for b in results["settings"]["infer_batch_sizes"]
        ]
        lines.append(
            f"\n{e['case']}: inference target ≤ {MULTITASK_INFER_TARGET:.2f}× of the single-task "
            f"models in sequence: {', '.join(verdicts)}."
        )
    return "\n".join(lines)


# One table function per section.
TABLES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "detection": detection_table,
    "segmentation": segmentation_table,
    "multitask": multitask_table,
}


def write_json(path: str | os.PathLike, results: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a results file written by ``--output-json``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read benchmark results: {err}", str(path)) from None
    if not isinstance(data, dict) or data.get("schema") != RESULTS_SCHEMA:
        raise ConfigError(f"not a benchmark results file (schema {RESULTS_SCHEMA})", str(path))
    return data


# --------------------------------------------------------------------------- command


@dataclass
class Options:
    """The ``visionkit benchmark`` options (``None``: the default, or ``--quick``'s)."""

    recipes: Sequence[str] = DEFAULT_RECIPES
    precision: str = "auto"
    threads: int | None = None
    quick: bool = False
    image_size: Sequence[int] | None = None
    batch_size: int | None = None
    infer_batch_sizes: Sequence[int] | None = None
    warmup: int | None = None
    reps: int | None = None
    output_json: str | None = None
    markdown: str | None = None
    markdown_variant: str | None = None
    check_floors: str | None = None
    from_json: str | None = None


def settings_from_options(options: Options) -> Settings:
    """Settings from the options: explicit values first, then ``--quick``'s, then defaults."""
    chosen: dict[str, Any] = dict(QUICK) if options.quick else {}
    if options.image_size is not None:
        size = list(options.image_size)
        if len(size) not in (1, 2) or min(size) < 32:
            raise ConfigError(
                f"--image-size: expected one side or H W, each at least 32; got {size}",
                "benchmark options",
            )
        chosen["image_size"] = (size[0], size[-1])
    for name in ("batch_size", "warmup", "reps"):
        if getattr(options, name) is not None:
            chosen[name] = getattr(options, name)
    if options.infer_batch_sizes is not None:
        chosen["infer_batch_sizes"] = tuple(options.infer_batch_sizes)
    base = Settings(
        precision=resolve_precision_name(options.precision),
        threads=options.threads or torch.get_num_threads(),
    )
    try:
        return replace(base, **chosen)
    except ValueError as err:
        raise ConfigError(str(err), "benchmark options") from None


def run_command(options: Options, log: Callable[[str], None] = print) -> int:
    """``visionkit benchmark``: measure (or read ``--from-json``), write the JSON and the
    Markdown table, check the floors. Returns the exit code: 1 when a floor is not met."""
    if options.from_json:
        results = read_results(options.from_json)
    else:
        results = run_benchmark(options.recipes, settings_from_options(options), log)
    if options.output_json:
        write_json(options.output_json, results)
        log(f"wrote {options.output_json}")
    for section in results["sections"]:
        table = TABLES[section](results)
        log("\n" + table + "\n")
        if options.markdown:
            tag = f"{section}-{options.markdown_variant}" if options.markdown_variant else section
            write_markdown_section(options.markdown, tag, table)
            log(f"wrote the {marker(tag)} section of {options.markdown}")
    if options.check_floors:
        failures, notes = check_floors(results, read_floors(options.check_floors))
        for note in notes:
            log(f"floors: {note}")
        if failures:
            log(f"FAILED: performance floors of {options.check_floors} not met:")
            for failure in failures:
                log(f"  {failure}")
            return 1
        log(f"floors of {options.check_floors}: all met")
    return 0
