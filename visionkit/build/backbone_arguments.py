"""The architecture arguments a backbone's weights file implies (torchvision's googlenet:
``transform_input=True``, :func:`~visionkit.models.backbones.implied_arguments`), written
into the run's config so that its checkpoints rebuild the model they hold
(:func:`~visionkit.build.model_from_meta` adds none for a path: a checkpoint whose config
lacks them, written before they were added, was built without them), and kept from the
checkpoint a run resumes (:func:`resumed_arguments`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visionkit.checkpoint import load_checkpoint
from visionkit.config import Config
from visionkit.errors import CheckpointError
from visionkit.models.backbones import (
    SAME_FUNCTION,
    backbone_builder,
    implied_arguments,
    pretrained_arguments,
)
from visionkit.models.backbones.base import BackboneError
from visionkit.registry import UnknownNameError


def write_implied_arguments(cfg: Config, read_pretrained: bool = True) -> Config:
    """``cfg`` with ``model.backbone.kwargs`` holding the arguments reading its ``pretrained``
    file adds (logged) that change what the weights compute (not ``SAME_FUNCTION``'s, which
    the kwargs refuse: ``init_weights``), when the file is read (``read_pretrained``) and
    exists (a missing one is refused where it is read); changed in place, and returned."""
    b = cfg.model.backbone
    file = b.pretrained if isinstance(b.pretrained, (str, os.PathLike)) else None
    if read_pretrained and file is not None and Path(file).expanduser().is_file():
        added = implied_arguments(b.name, b.kwargs, file)
        b.kwargs.update({k: v for k, v in added.items() if k not in SAME_FUNCTION})
    return cfg


def resumed_arguments(cfg: Config, checkpoint: str | os.PathLike | None) -> Config:
    """``cfg`` with the implied arguments (:func:`~visionkit.models.backbones.
    pretrained_arguments`) that the config of the ``checkpoint`` a run resumes holds and
    ``cfg``'s ``model.backbone.kwargs`` do not give: the resumed model is the checkpoint's,
    which a run that read a weights file built with them (and one from before they were
    written, without); a copy where any is added."""
    if checkpoint is None:
        return cfg
    try:
        meta = load_checkpoint(checkpoint).get("visionkit")
        implied = pretrained_arguments(backbone_builder(cfg.model.backbone.name))
    except (CheckpointError, BackboneError, UnknownNameError):  # reported where built, read
        return cfg
    saved: Any = meta
    for key in ("config", "model", "backbone"):  # a checkpoint of another tool: none
        saved = saved.get(key) if isinstance(saved, Mapping) else None
    stored = saved.get("kwargs") if isinstance(saved, Mapping) else None
    if not isinstance(stored, Mapping) or saved.get("name") != cfg.model.backbone.name:
        return cfg
    given = cfg.model.backbone.kwargs
    kept = {k: stored[k] for k in implied if k in stored and given.get(k) is None}
    if not kept:
        return cfg
    cfg = cfg.model_copy(deep=True)
    cfg.model.backbone.kwargs.update(kept)
    return cfg
