"""Backbones: one registry of multi-scale feature extractors.

``create_backbone(name)`` builds any registered backbone: the built-in ``simple_cnn``, every
timm model that supports ``features_only`` (``resnet18`` or ``timm/resnet18``), and the
torchvision classification CNNs (``torchvision/resnet18``). All of them follow the
:class:`~visionkit.models.backbones.base.Backbone` contract.

The submodules are imported explicitly below; each registers its names when imported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from visionkit.errors import CheckpointError, ConfigError
from visionkit.models.backbones import simple_cnn, timm_backbones, torchvision_backbones
from visionkit.models.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    BackboneError,
    FeatureBackbone,
    OutIndicesError,
    builder_arguments,
    refuse_unsafe_kwargs,
    select_levels,
)
from visionkit.models.backbones.pretrained import (
    WeightsNotCachedError,
    load_pretrained_file,
    torch_hub_file,
)
from visionkit.models.weights import LoadReport
from visionkit.registry import BACKBONES, UnknownNameError

logger = logging.getLogger(__name__)


class UnsupportedBackboneError(UnknownNameError, BackboneError):
    """A timm/torchvision model that exists but cannot serve as a backbone (says why)."""


#: Strings that mean a bool where ``pretrained`` takes a bool or a file.
WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def create_backbone(
    name: str,
    pretrained: bool | str | os.PathLike[str] = False,
    out_indices: Sequence[int] | None = None,
    read_pretrained: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """Build the backbone registered as ``name``.

    Args:
        name: A name from :func:`list_backbones` (``"resnet18"``, ``"timm/convnext_atto"``,
            ``"torchvision/mobilenet_v3_large"``, ``"simple_cnn"``); timm names may carry a
            pretrained tag (``"resnet18.a1_in1k"``).
        pretrained: ``False`` for random init; ``True`` for the library's pretrained weights
            (timm: Hugging Face hub, torchvision: torch hub), read from the library's cache
            and downloaded into it when missing, unless ``HF_HUB_OFFLINE=1`` or
            ``VISIONKIT_OFFLINE=1`` (then a missing file raises
            :class:`WeightsNotCachedError`, as a failed download does; ``visionkit weights
            pull NAME`` fetches ahead of time); or a path to a local ``.safetensors`` /
            ``.pth`` / ``.pt`` / ``.bin`` state dict (a full classification checkpoint is
            fine: the classifier's keys are reported as unexpected), built as for the
            library's weights (googlenet: ``transform_input=True``, unless ``kwargs`` say
            otherwise; the arguments added are logged). Loading a path attaches
            a :class:`LoadReport` as ``backbone.load_report`` and logs it on the
            ``visionkit.models.backbones`` logger.
        out_indices: Feature levels to return, indexing the levels the model exposes
            (negative allowed); ``None`` returns them all.
        read_pretrained: ``False``: read no weights file, for a model whose weights come from
            elsewhere (``model.init_from``, a checkpoint). ``pretrained=True`` still builds
            the architecture the library's weights imply: torchvision's builders change some
            with them (googlenet's ``transform_input=True``), and the same arguments are
            given here (:func:`pretrained_arguments`). A path adds none: a run that read it
            wrote those it added into its config's ``model.backbone.kwargs``
            (:func:`implied_arguments`), and a checkpoint whose config lacks them was built
            without them.
        **kwargs: Architecture arguments of the builder; ``None`` values are dropped so the
            builder's defaults apply.

    Returns:
        An ``nn.Module`` mapping images ``[B, 3, H, W]`` to a list of NCHW feature maps
        ``[B, out_channels[i], ~H / strides[i], ~W / strides[i]]``, with attributes
        ``name``, ``out_channels``, ``strides``, ``mean`` and ``std``.

    Raises:
        UnknownNameError: ``name`` is not registered (the message suggests close names).
        CheckpointError: A ``pretrained`` file is missing, unreadable, unsafe or unrelated.
        WeightsNotCachedError: ``pretrained=True``, the weights are not cached locally, and
            they could not be downloaded (offline switch set, or no network).

    Example:
        >>> import torch
        >>> from visionkit.models.backbones import create_backbone
        >>> backbone = create_backbone("simple_cnn", out_indices=(2, 3, 4))
        >>> backbone.strides, backbone.out_channels
        ([8, 16, 32], [64, 96, 128])
        >>> [tuple(f.shape) for f in backbone(torch.zeros(2, 3, 64, 64))]
        [(2, 64, 8, 8), (2, 96, 4, 4), (2, 128, 2, 2)]
    """
    builder = backbone_builder(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if kwargs:  # only the architecture's arguments, and never one that could load a file
        refuse_unsafe_kwargs(kwargs, builder_arguments(builder, name))
    if out_indices is not None:
        kwargs["out_indices"] = out_indices
    weights_file = None
    is_file = isinstance(pretrained, (str, os.PathLike))
    if read_pretrained:
        check_text(pretrained)
    if (pretrained is True and not read_pretrained) or (is_file and read_pretrained):
        # the architecture the library's weights imply, built without reading them, or for a
        # file of them read now (a file does not say: googlenet's transform_input is no
        # tensor); a path not read is a checkpoint's, whose kwargs say how it was built
        kwargs.update(_implied(builder, name, kwargs, pretrained if is_file else None))
    if not read_pretrained:
        pretrained = False
    if isinstance(pretrained, (str, os.PathLike)):
        weights_file = pretrained
    elif pretrained:
        kwargs["pretrained"] = True
    try:
        backbone = builder(**kwargs)
    except (TypeError, ValueError, ArithmeticError, AssertionError, IndexError) as err:
        given = {k: v for k, v in kwargs.items() if k not in ("out_indices", "pretrained")}
        if not given:
            raise
        raise BackboneError(  # a value of the wrong type or range fails deep in the library
            f"model.backbone.kwargs: {name} cannot be built with {given} "
            f"({type(err).__name__}: {err}); check each value's type and range"
        ) from err
    if weights_file is not None:
        prefixes = ("", "body.") if isinstance(backbone, FeatureBackbone) else ("",)
        load_pretrained_file(backbone, weights_file, prefixes)
    return backbone


#: Arguments the library's weights imply that change nothing the weights compute (torchvision's
#: ``aux_logits`` adds a classifier a backbone leaves out, ``init_weights`` only initialises):
#: the log's way out for weights trained otherwise never names them.
SAME_FUNCTION = frozenset({"aux_logits", "init_weights"})


def implied_arguments(name: str, kwargs: Mapping[str, Any], file: Any = None) -> dict[str, Any]:
    """The arguments the library's weights of backbone ``name`` imply
    (:func:`pretrained_arguments`) that ``kwargs`` do not give, as building it with a weights
    ``file`` (read now) adds them, and says which."""
    return _implied(backbone_builder(name), name, kwargs, file)


def _implied(builder: Any, name: str, kwargs: Mapping[str, Any], file: Any) -> dict[str, Any]:
    """:func:`implied_arguments` for ``builder``; for a ``file``, those that change what the
    weights compute (googlenet's ``transform_input``, not ``SAME_FUNCTION``'s) are logged,
    with the way out."""
    try:
        implied = pretrained_arguments(builder)
    except BackboneError:  # no published weights (any more): none implied
        implied = {}
    added = {key: value for key, value in implied.items() if kwargs.get(key) is None}
    changing = {k: v for k, v in added.items() if k not in SAME_FUNCTION}
    if changing and file is not None:
        logger.info(
            "%s: built with %s for %s, as for the library's pretrained weights (for weights "
            "trained otherwise, set model.backbone.kwargs: {%s})",
            name,
            ", ".join(f"{k}={v!r}" for k, v in changing.items()),
            file,
            ", ".join(
                f"{k}: {str(not v).lower() if isinstance(v, bool) else v}"
                for k, v in changing.items()
            ),
        )
    return added


def pretrained_arguments(builder: Any) -> dict[str, Any]:
    """The architecture arguments the library's weights imply for the backbone ``builder``
    builds (``builder.pretrained_arguments()``: torchvision's googlenet takes
    ``transform_input=True`` with its weights; ``{}`` for a builder that does not say).

    Raises:
        BackboneError: the library publishes no weights for it (``simple_cnn``).
    """
    implied = getattr(builder, "pretrained_arguments", None)
    return implied() if implied is not None else {}


def check_text(pretrained: object) -> None:
    """Refuse a ``pretrained`` text that is no file and means something else: a bool written
    as a word (``"true"``), torchvision's name of a weights file
    (``ResNet50_Weights.IMAGENET1K_V1``).

    Raises:
        ConfigError: the message says what to write.
    """
    if not isinstance(pretrained, str) or os.path.exists(pretrained):
        return
    said = pretrained.strip().lower()
    if said in WORDS:
        raise ConfigError(
            f"pretrained={pretrained!r}: a string names a weights file; for the library's "
            f"weights give {WORDS[said]} (a bool, not a string)"
        )
    member = torchvision_backbones.weights_member(pretrained)  # ResNet50_Weights.X
    if member is not None:
        raise ConfigError(enum_as_pretrained(pretrained, *member))


def check_pretrained(name: str, pretrained: bool | str | os.PathLike[str]) -> None:
    """What :func:`create_backbone` would refuse of ``pretrained``, checked without reading or
    downloading a file (``model.init_from`` may hold every backbone tensor, so that the file
    is never read): a word or torchvision's spelling for a file (:func:`check_text`), a file
    that does not exist, ``True`` for a backbone whose library publishes no weights.

    Raises:
        ConfigError, CheckpointError, BackboneError: as :func:`create_backbone` would.
    """
    check_text(pretrained)
    if isinstance(pretrained, (str, os.PathLike)):
        if not Path(pretrained).expanduser().exists():
            raise CheckpointError(Path(pretrained).expanduser(), "file does not exist")
    elif pretrained:
        pretrained_arguments(backbone_builder(name))


def enum_as_pretrained(text: str, model: str, member: Any) -> str:
    """What to write for ``pretrained: ResNet50_Weights.IMAGENET1K_V1`` (torchvision's name of
    a weights file, where a file or a bool goes): for a detector ``init_from`` starts from,
    ``init_from: torchvision:<model>``; for a model that is not a backbone, why."""
    from visionkit.models.torchvision_detectors import ARCHITECTURES, PREFIX

    where = f"pretrained={text!r} names torchvision's weights of {model}"
    if model in ARCHITECTURES:
        return (
            f"{where}, a model to start from, not a backbone's weights: write "
            f"`model.init_from: {PREFIX}{model}` (docs/detection.md) and `pretrained: false`"
        )
    if model not in torchvision_backbones.torchvision_backbone_names():
        reason = torchvision_backbones.excluded_reason(model)
        return (
            f"{where}, which is not a backbone"
            + (f" ({reason})" if reason else " (not a classification model)")
            + "; see `visionkit list backbones` for those that are"
        )
    default = type(member).DEFAULT
    path = torch_hub_file(member.url)
    return (
        f"{where}, where a file or true goes: "
        f"`pretrained: true` on backbone torchvision/{model} takes its DEFAULT "
        f"({type(member).__name__}.{default.name}); for this file, `visionkit weights pull "
        f"{text}` downloads it to {path}, then `pretrained: {path}`"
    )


def list_backbones(pattern: str | None = None) -> list[str]:
    """Registered backbone names, sorted; ``pattern`` filters with fnmatch (``"resnet*"``)."""
    return BACKBONES.names(pattern)


def backbone_builder(name: str) -> Any:
    """The builder registered as ``name``.

    Raises:
        UnsupportedBackboneError: ``name`` is a timm / torchvision model that cannot serve as
            a backbone (the message says why: a fixed input size, no feature maps, ...).
        UnknownNameError: any other unregistered name (the message suggests close names).
    """
    try:
        return BACKBONES.get(name)
    except UnknownNameError as e:
        spelling = timm_backbones.hf_hub_spelling(name)  # hf-hub:timm/resnet18.a1_in1k
        if spelling is not None:
            raise spelling from None
        arch = name.removeprefix(timm_backbones.PREFIX).split(".", 1)[0]
        reason = None
        if name.startswith(torchvision_backbones.PREFIX):
            reason = torchvision_backbones.excluded_reason(
                name[len(torchvision_backbones.PREFIX) :]
            )
        elif arch in _all_timm_names():
            reason = timm_backbones.excluded_reason(arch)
        if reason is None:
            raise
        raise UnsupportedBackboneError(
            f"{name!r} cannot be used as a backbone: {reason}. See list_backbones() for the "
            "models that can (visionkit list backbones)."
        ) from e


def _all_timm_names() -> set[str]:
    import timm

    return set(timm.list_models())


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "BackboneError",
    "FeatureBackbone",
    "LoadReport",
    "OutIndicesError",
    "UnsupportedBackboneError",
    "WeightsNotCachedError",
    "create_backbone",
    "list_backbones",
    "select_levels",
    "simple_cnn",
    "timm_backbones",
    "torchvision_backbones",
]
