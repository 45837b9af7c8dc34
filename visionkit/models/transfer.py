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

from torch import Tensor, nn

from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.torchvision_detectors import (
    ARCHITECTURES,
    PREFIX,
    has_place_for,
    identify,
    parse_source,
    torchvision_weights,
)
from visionkit.models.weights import (
    BACKBONE_PREFIX,
    LoadReport,
    compress,
    load_weights,
    read_weights,
)

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
        detector = identify(tensors)  # torchvision's detector file given as a plain path
        if detector is not None and ARCHITECTURES[detector].kind == "segmentation":
            detector = None  # its backbone.* names match none of a visionkit model's
        report = load_weights(model, tensors, context="init_from", label=str(source))
    few = len(report.loaded) < len(model.state_dict()) / 2  # another backbone, say
    fits = detector is not None and has_place_for(model, detector)
    logger.log(logging.WARNING if few or fits else logging.INFO, "%s", report.summary())
    if detector is not None and not fits:
        logger.info(
            "model.init_from: %s holds torchvision's %s; its FPN and head have no place in this "
            "model (it has no fpn neck with a %s head): its backbone tensors were loaded",
            source,
            detector,
            ARCHITECTURES[detector].kind,
        )
    elif detector is not None:
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


#: A BatchNorm's count of batches seen: it does not change what the layer computes (except
#: with ``momentum=None``), so a checkpoint without it (torchvision's FrozenBatchNorm2d
#: files) holds the backbone all the same.
BATCH_COUNT = "num_batches_tracked"


def pretrained_beneath(
    model: nn.Module,
    report: LoadReport,
    pretrained_backbone: Callable[[], nn.Module],
    label: str = "model.backbone.pretrained",
) -> list[str]:
    """Give the backbone tensors that ``model.init_from`` lacked (``report``) the backbone's
    pretrained weights, built by ``pretrained_backbone`` only when there are such tensors.

    ``model.init_from`` replaces the tensors it holds, so the pretrained weights
    (``model.backbone.pretrained``) are read only beneath it: a checkpoint that holds the whole
    backbone (a visionkit run's, torchvision's COCO detector; a BatchNorm's
    ``num_batches_tracked`` is not needed) needs no ImageNet download, and a machine without
    network access fine-tunes from it. The tensors go through the one weight loader
    (:func:`~visionkit.models.weights.load_weights`), only those the pretrained file itself
    held (a local file's ``load_report``), so the result is what loading the pretrained weights
    first and ``init_from`` over them gives; what neither file held stays as initialised, and
    the log says so. Returns the names filled (in the model's names; empty when ``init_from``
    held the whole backbone).
    """
    lacking = [
        name[len(BACKBONE_PREFIX) :]
        for name in (*report.missing, *report.mismatched, *report.with_layer)
        if name.startswith(BACKBONE_PREFIX) and name.rpartition(".")[2] != BATCH_COUNT
    ]
    if not lacking:
        logger.info(
            "model.backbone.pretrained: not read, model.init_from gave every tensor of the backbone"
        )
        return []
    built = pretrained_backbone()
    source = built.state_dict()
    held = getattr(built, "load_report", None)  # a local file: the tensors it really held
    if held is not None:
        in_file = {held.prefix + name for name in held.loaded}
        source = {key: value for key, value in source.items() if key in in_file}
    offered = {key: source[key] for key in lacking if key in source}
    backbone = model.get_submodule("backbone")
    filled: list[str] = []
    if offered:
        try:
            filled = load_weights(backbone, offered, context="pretrained", label=label).loaded
        except CheckpointError:  # not one of them fits (another shape): none filled
            filled = []
    stay = [key for key in lacking if key not in set(filled)]
    universe = [BACKBONE_PREFIX + k for k in backbone.state_dict() if not k.endswith(BATCH_COUNT)]

    def shown(keys: list[str]) -> str:
        return ", ".join(compress([BACKBONE_PREFIX + key for key in keys], universe))

    message = (
        f"model.backbone.pretrained: {len(filled)} backbone tensors model.init_from lacked "
        f"come from the pretrained weights ({shown(filled) or 'none'})"
    )
    if stay:
        message += f"; {len(stay)} stay as initialised, in neither file ({shown(stay)})"
    logger.log(logging.WARNING if stay else logging.INFO, "%s", message)
    return [BACKBONE_PREFIX + key for key in filled]
