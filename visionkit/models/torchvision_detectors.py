"""torchvision's COCO-pretrained models as a starting point: ``init_from: torchvision:<model>``.

``model.init_from`` takes, besides a checkpoint path (:mod:`visionkit.models.transfer`):

* ``torchvision:<model>``: the ``DEFAULT`` weights of that torchvision model's weights enum,
  read from torch hub's cache and downloaded into it on first use
  (:func:`visionkit.models.hub.weights_file`; nothing is downloaded with
  ``VISIONKIT_OFFLINE=1``, and ``visionkit weights pull torchvision:<model>`` fetches ahead);
* ``torchvision:<model>=<path>``: a local file holding that torchvision model's state dict
  (a copy of the published file, or a torchvision model you trained yourself; a training
  checkpoint that nests it under ``model`` is fine).

``<model>`` is a key of :data:`ARCHITECTURES`. The file's tensors are renamed to visionkit's
modules, then loaded by the one weight loader (:func:`visionkit.models.weights.load_weights`,
so the :class:`~visionkit.models.weights.LoadReport` says what was loaded):

* ``backbone.body.*`` (detectors) or ``backbone.*`` (segmentation) → ``backbone.body.*``
  (visionkit's ``torchvision/resnet50``);
* ``backbone.fpn.inner_blocks.i`` / ``layer_blocks.i`` → ``neck.fpn.inner_blocks.i`` /
  ``layer_blocks.i``; ``backbone.fpn.extra_blocks.p6`` / ``p7`` →
  ``neck.fpn.extra_blocks.convs.0`` / ``convs.1``;
* ``head.classification_head.conv.*`` / ``cls_logits`` → ``heads.<head>.cls_tower.*`` /
  ``cls_logits``;
* ``head.regression_head.conv.*`` / ``bbox_reg`` / ``bbox_ctrness`` (FCOS) →
  ``heads.<head>.bbox_tower.*`` / ``bbox_pred`` / ``centerness``.

``<head>`` is the model's one head of the detector's kind (``fcos``, ``fcos_mask`` or
``retinanet``). The files' older names (``inner_blocks.i.weight``, RetinaNet's
``conv.2i.weight``, as the v1 files store them) are read too. The classifier
(``cls_logits``) loads only when the head has COCO's 91 classes; for another class count its
shape differs, so it is reported as re-initialised and keeps its fresh initialisation.
Values that torchvision's model implies without storing them are filled in: FCOS's
per-level ``scales`` (torchvision has none: 1), the bias of a conv followed by GroupNorm (0),
``num_batches_tracked`` of a FrozenBatchNorm2d (0). The v1 RetinaNet file was trained with
BatchNorm ``eps = 0`` (torchvision sets it when loading); its BatchNorm weights are scaled by
``sqrt((var + 1e-5) / var)`` so that visionkit's BatchNorm (``eps = 1e-5``) computes the same.

The model must be built to compute what torchvision's computes (:func:`check_model` raises a
:class:`~visionkit.errors.ConfigError` listing every difference): backbone
``torchvision/resnet50`` feeding strides 8, 16, 32 to an ``fpn`` neck with 256 channels,
levels 3..7, extra levels from P5 (``conv_from_p``: FCOS, RetinaNet v1) or C5
(``conv_from_c``: RetinaNet v2); an FCOS head with ``box_coding: relu``, ``grid_offset: 0``;
a RetinaNet head with ``round_anchors: true``, ``grid_offset: 0`` (and ``norm: group`` for
v2). The segmentation models (``deeplabv3_resnet50``, ``fcn_resnet50``) give their ResNet-50
only (to a ``torchvision/resnet50`` backbone; it was trained dilated, with layer3 and layer4
at stride 8, but the convs apply one for one to an undilated backbone).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.backbones.pretrained import WeightsNotCachedError, read_cached
from visionkit.models.heads.fcos import FCOSHead
from visionkit.models.heads.retinanet import RetinaNetHead
from visionkit.models.hub import weights_file, weights_source
from visionkit.models.necks.fpn import FPN
from visionkit.models.weights import backbone_hint, read_weights

logger = logging.getLogger("visionkit.models.transfer")

PREFIX = "torchvision:"
BACKBONE = "torchvision/resnet50"
FPN_STRIDES = [8, 16, 32]  # ResNet-50's layer2..layer4, what torchvision's FPN reads
RETINANET_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))


@dataclass(frozen=True)
class Architecture:
    """What a torchvision model needs of a visionkit model to be loaded into it.

    Attributes:
        kind: ``"fcos"``, ``"retinanet"`` or ``"segmentation"`` (backbone only).
        extra_blocks: the ``fpn`` neck's ``extra_blocks`` (detectors only).
        head: ``attribute → (config key, value)`` the head must have.
        bn_eps: the BatchNorm epsilon the file's weights were used with.
    """

    kind: str
    extra_blocks: str | None = None
    head: dict[str, tuple[str, Any]] = field(default_factory=dict)
    bn_eps: float = 1e-5


def _tower(norm: str) -> dict[str, tuple[str, Any]]:
    return {"num_convs": ("num_convs", 4), "width": ("width", 256), "norm": ("norm", norm)}


_RETINANET = {
    "anchor_sizes_per_stride": ("anchor_sizes_per_stride", 4.0),
    "anchor_scales": ("scales", list(RETINANET_SCALES)),
    "aspect_ratios": ("aspect_ratios", [0.5, 1.0, 2.0]),
    "grid_offset": ("grid_offset", 0.0),
    "round_anchors": ("round_anchors", True),
}

#: The torchvision models ``init_from: torchvision:<model>`` accepts.
ARCHITECTURES: dict[str, Architecture] = {
    "fcos_resnet50_fpn": Architecture(
        "fcos",
        "conv_from_p",
        {
            **_tower("group"),
            "box_coding": ("box_coding", "relu"),
            "grid_offset": ("grid_offset", 0.0),
        },
    ),
    "retinanet_resnet50_fpn": Architecture(
        "retinanet", "conv_from_p", {**_tower("none"), **_RETINANET}, bn_eps=0.0
    ),
    "retinanet_resnet50_fpn_v2": Architecture(
        "retinanet", "conv_from_c", {**_tower("group"), **_RETINANET}
    ),
    "deeplabv3_resnet50": Architecture("segmentation"),
    "fcn_resnet50": Architecture("segmentation"),
}


@dataclass(frozen=True)
class TorchvisionSource:
    """A parsed ``torchvision:<model>[=<path>]``: the model name and the local file, if any."""

    name: str
    path: Path | None = None

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES[self.name]


def parse_source(value: str) -> TorchvisionSource | None:
    """``torchvision:<model>`` or ``torchvision:<model>=<path>`` → :class:`TorchvisionSource`;
    ``None`` for any other value (a checkpoint path).

    Raises:
        ValueError: the value starts with ``torchvision:`` but names no model of
            :data:`ARCHITECTURES`, or ``=`` is followed by no path (the message says what
            was expected; the caller names the key and the value).
    """
    if not value.startswith(PREFIX):
        return None
    name, sep, path = value[len(PREFIX) :].partition("=")
    name, path = name.strip(), path.strip()
    if name not in ARCHITECTURES:
        raise ValueError(
            "expected torchvision:<model> or torchvision:<model>=/path/to/file.pth, <model> "
            f"one of {', '.join(ARCHITECTURES)}"
        )
    if sep and not path:
        raise ValueError(
            f"expected a file after '=' (torchvision:{name}=/path/to/file.pth), or no '=' for "
            "torchvision's published weights"
        )
    return TorchvisionSource(name, Path(path).expanduser() if sep else None)


def torchvision_weights(
    model: nn.Module, source: TorchvisionSource
) -> tuple[dict[str, Tensor], str]:
    """The tensors of ``source`` under ``model``'s names, and a label for the report.

    Checks the model first (:func:`check_model`), then reads the file and checks that it
    holds the named torchvision model (:func:`identify`).

    Raises:
        ConfigError: the model cannot compute what the torchvision model computes.
        CheckpointError: the file is missing, unreadable, unsafe, not downloadable, or holds
            another model's weights.
    """
    head_name = check_model(model, source)
    if source.path is not None:
        path, label = source.path, f"{PREFIX}{source.name}={source.path}"
        tensors = read_weights(path)
    else:
        path = _published_file(source.name)
        label = f"{PREFIX}{source.name} ({path})"
        tensors = read_cached(weights_source(PREFIX + source.name), path)  # says what to do
    found = identify(tensors)
    if found != source.name:
        holds = f"torchvision's {found}" if found else "no torchvision model visionkit knows"
        hint = (
            f"; write init_from: {PREFIX}{found}={path}"
            if found
            else backbone_hint(tensors, model.state_dict(), path)
        )
        raise CheckpointError(
            path,
            f"init_from names torchvision's {source.name}, but the file holds {holds} "
            f"(first tensors: {', '.join(list(tensors)[:3])}){hint}",
        )
    converted = convert(tensors, model, source.architecture, head_name)
    if source.architecture.kind == "segmentation":
        logger.info(
            "%s%s: only its ResNet-50 maps onto visionkit; it was trained dilated (layer3 and "
            "layer4 at stride 8), here the backbone has strides %s: the weights apply conv "
            "for conv",
            PREFIX,
            source.name,
            list(getattr(model.backbone, "strides", [])),
        )
    return converted, label


def _published_file(name: str) -> Path:
    """torch hub's cached copy of torchvision's published weights, downloaded when missing."""
    try:
        return weights_file(PREFIX + name)
    except WeightsNotCachedError as err:
        reason = (
            f"were not downloaded: {err.reason}. Fetch them with `visionkit weights pull "
            f"{PREFIX}{name}` (on a machine with network access, then copy the file to the "
            f"same place here), or give a local copy: init_from: {PREFIX}{name}=/path/to/"
            f"{Path(err.path).name}; or start without them: model.init_from=null"
        )
        message = (
            f"torchvision's {name} weights are not in torch hub's cache ({err.path}) and " + reason
        )
        raise CheckpointError(err.path, reason, message) from None


def check_model(model: nn.Module, source: TorchvisionSource) -> str | None:
    """The name of the head the detector's head maps onto (``None`` for a segmentation
    model's backbone-only weights).

    Raises:
        ConfigError: one line per difference between ``model`` and what the torchvision model
            computes, each naming the config key and the value it needs.
    """
    arch, where = source.architecture, f"init_from {PREFIX}{source.name}"
    backbone = getattr(model, "backbone", None)
    problems = []
    if getattr(backbone, "name", None) != BACKBONE:
        problems.append(
            f"model.backbone.name: {getattr(backbone, 'name', None)!r}, but {where} holds a "
            f"torchvision ResNet-50; expected {BACKBONE!r}"
        )
    if arch.kind == "segmentation":
        if problems:
            raise ConfigError(problems)
        return None
    problems += _neck_problems(getattr(model, "neck", None), backbone, arch, where)
    head_class = FCOSHead if arch.kind == "fcos" else RetinaNetHead
    heads = getattr(model, "heads", {})
    names = [n for n, h in heads.items() if isinstance(h, head_class)]
    if len(names) != 1:
        kind = "fcos (or fcos_mask)" if arch.kind == "fcos" else "retinanet"
        found = ", ".join(f"{n} ({type(h).__name__})" for n, h in heads.items()) or "none"
        problems.append(
            f"model.heads: {where} maps onto one {kind} head; the model has {len(names)} "
            f"(heads: {found})"
        )
        raise ConfigError(problems)
    head = heads[names[0]]
    for attribute, (key, expected) in arch.head.items():
        actual = getattr(head, attribute)
        if not _same(actual, expected):
            problems.append(
                f"model.heads.{names[0]}.{key}: {_plain(actual)!r}, but {where} needs "
                f"{key}: {_plain(expected)!r} to compute what torchvision's model computes"
            )
    if problems:
        raise ConfigError(problems)
    return names[0]


def has_place_for(model: nn.Module, name: str) -> bool:
    """Whether ``model`` has the parts of torchvision's detector ``name`` (a key of
    :data:`ARCHITECTURES` of kind ``fcos`` or ``retinanet``) that its file holds beyond a
    backbone: an ``fpn`` neck and a head of the detector's kind. Only then is ``init_from:
    torchvision:<name>=PATH`` advice to give (:func:`check_model` then lists any setting still
    to change); a classifier on its ResNet-50 uses the backbone alone."""
    arch = ARCHITECTURES[name]
    head_class = FCOSHead if arch.kind == "fcos" else RetinaNetHead
    heads = getattr(model, "heads", {})
    return isinstance(getattr(model, "neck", None), FPN) and any(
        isinstance(head, head_class) for head in heads.values()
    )


def _neck_problems(neck: Any, backbone: Any, arch: Architecture, where: str) -> list[str]:
    if not isinstance(neck, FPN):
        return [f"model.neck: {where} needs an fpn neck (got {type(neck).__name__})"]
    extra = getattr(neck.fpn.extra_blocks, "mode", None)
    settings = {
        "out_channels": (neck.out_channels[0], 256),
        "min_level": (neck.min_level, 3),
        "max_level": (neck.max_level, 7),
        "extra_blocks": (extra, arch.extra_blocks),
    }
    problems = [
        f"model.neck.{key}: {actual!r}, but {where} needs {key}: {expected!r}"
        for key, (actual, expected) in settings.items()
        if actual != expected
    ]
    strides = [list(getattr(backbone, "strides", []))[i] for i in neck.indices]
    if not problems and strides != FPN_STRIDES:
        problems.append(
            f"model.backbone.out_indices: the fpn neck reads backbone strides {strides}, but "
            f"{where} needs ResNet-50's layer2..layer4 (strides {FPN_STRIDES}): out_indices: "
            "[2, 3, 4]"
        )
    return problems


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(expected)
            and all(_same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    if isinstance(expected, float) and not isinstance(actual, bool):
        return isinstance(actual, (int, float)) and math.isclose(actual, expected, abs_tol=1e-6)
    return actual == expected


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def identify(tensors: Mapping[str, Tensor]) -> str | None:
    """Which model of :data:`ARCHITECTURES` a torchvision state dict belongs to, from its
    names and the input channels of P6 (``None`` when it is none of them)."""
    if "backbone.conv1.weight" in tensors:  # segmentation: the ResNet at ``backbone``
        if any(k.startswith("classifier.0.convs.") for k in tensors):  # DeepLabV3's ASPP
            return "deeplabv3_resnet50"
        return "fcn_resnet50" if "classifier.0.weight" in tensors else None
    p6 = tensors.get("backbone.fpn.extra_blocks.p6.weight")
    if "backbone.body.conv1.weight" not in tensors or p6 is None or p6.ndim != 4:
        return None
    if "head.regression_head.bbox_ctrness.weight" in tensors:
        return "fcos_resnet50_fpn"
    if "head.regression_head.bbox_reg.weight" not in tensors:
        return None
    return "retinanet_resnet50_fpn_v2" if p6.shape[1] == 2048 else "retinanet_resnet50_fpn"


_OLD_FPN = re.compile(r"^backbone\.fpn\.(inner|layer)_blocks\.(\d+)\.(weight|bias)$")
_TOWER = re.compile(r"^head\.(classification|regression)_head\.conv\.(\d+)(?:\.(\d+))?\.(\w+)$")
_HEAD_LAYERS = {
    "head.classification_head.cls_logits.": "cls_logits.",
    "head.regression_head.bbox_reg.": "bbox_pred.",
    "head.regression_head.bbox_ctrness.": "centerness.",
}
_EXTRA = {"backbone.fpn.extra_blocks.p6.": "convs.0.", "backbone.fpn.extra_blocks.p7.": "convs.1."}


def visionkit_name(name: str, arch: Architecture, head: str | None) -> str | None:
    """The visionkit name of torchvision's tensor ``name`` (``None``: it maps nowhere)."""
    if arch.kind == "segmentation":
        return "backbone.body." + name[len("backbone.") :] if name.startswith("backbone.") else None
    if name.startswith("backbone.body."):
        return name
    if match := _OLD_FPN.match(name):
        return f"neck.fpn.{match[1]}_blocks.{match[2]}.0.{match[3]}"
    if name.startswith(("backbone.fpn.inner_blocks.", "backbone.fpn.layer_blocks.")):
        return "neck." + name[len("backbone.") :]
    for old, new in _EXTRA.items():
        if name.startswith(old):
            return "neck.fpn.extra_blocks." + new + name[len(old) :]
    if match := _TOWER.match(name):
        tower = "cls_tower" if match[1] == "classification" else "bbox_tower"
        index = int(match[2])
        if match[3] is not None:  # Conv2dNormActivation i: conv (0), norm (1), ReLU
            step = 3 if arch.head["norm"][1] == "group" else 2
            index = index * step + int(match[3])
        return f"heads.{head}.{tower}.{index}.{match[4]}"
    for old, new in _HEAD_LAYERS.items():
        if name.startswith(old):
            return f"heads.{head}.{new}{name[len(old) :]}"
    return None


def convert(
    tensors: Mapping[str, Tensor], model: nn.Module, arch: Architecture, head: str | None
) -> dict[str, Tensor]:
    """torchvision's ``tensors`` under ``model``'s names (see the module docstring); names
    that map nowhere are kept as they are, so the loader reports them as ignored."""
    out: dict[str, Tensor] = {}
    for name, value in tensors.items():
        out[visionkit_name(name, arch, head) or name] = value
    own = model.state_dict()
    modules = dict(model.named_modules())
    for name, value in own.items():
        if name in out:
            continue
        owner, _, leaf = name.rpartition(".")
        if (
            leaf == "scales"
            and isinstance(modules.get(owner), FCOSHead)
            and owner == f"heads.{head}"
        ):
            out[name] = torch.ones_like(value)  # torchvision's FCOS has no per-level scale
        elif (
            leaf == "bias"
            and isinstance(modules.get(owner), nn.Conv2d)
            and f"{owner}.weight" in out
        ):
            out[name] = torch.zeros_like(value)  # a conv without bias (before GroupNorm)
        elif leaf == "num_batches_tracked" and f"{owner}.running_mean" in out:
            out[name] = torch.zeros_like(value)  # FrozenBatchNorm2d keeps no count
    _fold_bn_eps(out, modules, arch.bn_eps)
    return out


def _fold_bn_eps(out: dict[str, Tensor], modules: Mapping[str, nn.Module], file_eps: float) -> None:
    """Scale the BatchNorm weights of ``out`` so that each BatchNorm of the model, with its own
    ``eps``, computes in eval mode what the file's computed with ``file_eps``."""
    for name, module in modules.items():
        weight, var = out.get(f"{name}.weight"), out.get(f"{name}.running_var")
        if not isinstance(module, nn.modules.batchnorm._BatchNorm) or module.eps == file_eps:
            continue
        if weight is None or var is None or weight.shape != var.shape:
            continue
        var64 = var.double()
        factor = ((var64 + module.eps) / (var64 + file_eps)).sqrt()
        factor = torch.where(var64 + file_eps > 0, factor, torch.ones_like(factor))
        out[f"{name}.weight"] = (weight.double() * factor).to(weight.dtype)
