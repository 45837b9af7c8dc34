"""Fine-tuning and transfer: ``model.init_from`` loads the matching tensors of a checkpoint.

:func:`load_matching` is what ``model.init_from`` runs (``visionkit.create_model``), through
the one weight loader, :func:`visionkit.models.weights.load_weights`: every tensor of the file
whose name and shape match the model is copied in; the model's tensors the file lacks keep
their fresh initialisation (a new head); those whose shape differs (a classifier for another
number of classes) are not loaded, so they stay freshly initialised; the file's names the
model lacks (a dropped head) are ignored. Files are read safely (``weights_only=True``).

``init_from: torchvision:<model>`` (or ``torchvision:<model>=/path/file.pth``) starts from
torchvision's COCO-pretrained FCOS / RetinaNet (backbone, FPN and head) or the ResNet-50 of
its segmentation models: :mod:`visionkit.models.torchvision_detectors` renames the file's
tensors to the model's, and the same loader loads them and reports.

>>> import visionkit
>>> cfg = {"model": {"backbone": {"name": "simple_cnn"},
...                  "heads": {"cls": {"name": "linear", "num_classes": 3}}}}
>>> trained = visionkit.create_model(cfg).state_dict()  # or a checkpoint path
>>> cfg["model"]["heads"]["cls"]["num_classes"] = 5
>>> report = load_matching(visionkit.create_model(cfg), trained)
>>> report.mismatched
['heads.cls.classifier.3.weight', 'heads.cls.classifier.3.bias']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from visionkit.errors import ConfigError
from visionkit.models.torchvision_detectors import (
    PREFIX,
    identify,
    parse_source,
    torchvision_weights,
)
from visionkit.models.weights import LoadReport, compress, load_weights, read_weights

logger = logging.getLogger(__name__)


def load_matching(model: nn.Module, source: str | os.PathLike | Mapping[str, Tensor]) -> LoadReport:
    """Copy into ``model`` every tensor of ``source`` whose name and shape match.

    Args:
        model: usually a freshly built model (``visionkit.create_model``), so what is not
            loaded keeps its fresh initialisation.
        source: a checkpoint file (see :func:`visionkit.models.weights.read_weights`), a
            state dict, or ``torchvision:<model>[=<path>]``
            (:mod:`~visionkit.models.torchvision_detectors`).

    Returns:
        The :class:`~visionkit.models.weights.LoadReport`; its one-line summary is logged at
        INFO level (WARNING when fewer than half of the model's tensors are loaded).

    Raises:
        CheckpointError: the file cannot be read safely, or not one of its tensors matches.
        ConfigError: a ``torchvision:`` source that names no known model, or a model that
            cannot compute what that torchvision model computes.
    """
    torchvision = None
    if isinstance(source, str):
        try:
            torchvision = parse_source(source)
        except ValueError as err:
            raise ConfigError(f"model.init_from: {err}, got {source!r}") from None
    detector = None
    if torchvision is not None:
        weights, label = torchvision_weights(model, torchvision)
        report = load_weights(model, weights, context="init_from", label=label)
    elif isinstance(source, Mapping):
        report = load_weights(model, source, context="init_from")
    else:
        tensors = read_weights(source)
        detector = identify(tensors)  # torchvision's file given as a plain path
        report = load_weights(model, tensors, context="init_from", label=str(source))
    few = len(report.loaded) < len(model.state_dict()) / 2  # another backbone, say
    logger.log(logging.WARNING if few or detector else logging.INFO, "%s", report.summary())
    if detector:
        logger.warning(
            "model.init_from: %s holds torchvision's %s, whose names visionkit's model shares "
            "for the backbone only (backbone.body.*): its FPN and head were not loaded. "
            "model.init_from: %s%s=%s maps them too (docs/detection.md)",
            source,
            detector,
            PREFIX,
            detector,
            source,
        )
    return report


BACKBONE_PREFIX = "backbone."


def pretrained_beneath(
    model: nn.Module, report: LoadReport, pretrained_backbone: Callable[[], nn.Module]
) -> list[str]:
    """Give the backbone tensors that ``model.init_from`` lacked (``report``) the backbone's
    pretrained weights, built by ``pretrained_backbone`` only when there are such tensors.

    ``model.init_from`` replaces the tensors it holds, so the pretrained weights
    (``model.backbone.pretrained``) are read only beneath it: a checkpoint that holds the whole
    backbone (a visionkit run's, torchvision's COCO detector) needs no ImageNet download, and
    a machine without network access fine-tunes from it. The result is what loading the
    pretrained weights first and ``init_from`` over them gives. Returns the names filled (in
    the model's names; empty when ``init_from`` held the whole backbone).
    """
    lacking = [
        name
        for name in (*report.missing, *report.mismatched, *report.with_layer)
        if name.startswith(BACKBONE_PREFIX)
    ]
    if not lacking:
        logger.info(
            "model.backbone.pretrained: not read, model.init_from gave every tensor of the backbone"
        )
        return []
    source = pretrained_backbone().state_dict()
    own = model.get_submodule("backbone").state_dict()
    fill = {}
    for name in lacking:
        key = name[len(BACKBONE_PREFIX) :]
        if key in source and source[key].shape == own[key].shape:
            fill[key] = source[key]
    with torch.no_grad():
        model.get_submodule("backbone").load_state_dict(fill, strict=False)
    universe = [BACKBONE_PREFIX + k for k in own]
    logger.info(
        "model.backbone.pretrained: %d backbone tensors model.init_from lacked come from the "
        "pretrained weights (%s)",
        len(fill),
        ", ".join(compress([BACKBONE_PREFIX + k for k in fill], universe)),
    )
    return [BACKBONE_PREFIX + k for k in fill]
