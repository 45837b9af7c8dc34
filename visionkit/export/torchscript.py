"""TorchScript export: ``torch.jit.trace`` of the exported module (dynamic batch, H and W),
with the metadata as the extra file ``visionkit.json``."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from visionkit.checkpoint import write_atomic
from visionkit.errors import ExportError
from visionkit.export.graph import ExportModule, OutputPath, trace_sample
from visionkit.export.metadata import export_metadata, read_metadata
from visionkit.models.model import VisionModel

EXPORTER = "torch.jit.trace"
EXTRA_FILE = "visionkit.json"


def export_torchscript(model: VisionModel, paths: list[OutputPath], output: Path) -> str:
    """Trace ``model`` (outputs ``paths``) and save it to ``output``, atomically; returns the
    exporter's name.

    Raises:
        ExportError: the backbone's size would be traced as a constant (a plain ViT's patch
            grid: ``traced_size_fixed``); nothing is written.
    """
    if getattr(model.backbone, "traced_size_fixed", False):
        raise ExportError(
            f"{model.backbone.name}: torch.jit.trace would keep the patch grid of one input size "
            "as a constant (its position table is interpolated in Python), so a TorchScript "
            "export would run at that size only; export --format onnx (its sizes stay "
            "dynamic) or --format safetensors"
        )
    module = ExportModule(model, paths).eval()
    extra = {EXTRA_FILE: json.dumps(export_metadata(model, paths, EXPORTER))}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        traced = torch.jit.trace(module, (trace_sample(model),), check_trace=False)

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # to a path name, a full disk aborts the process
                torch.jit.save(traced, f, _extra_files=extra)

        write_atomic(output, save)
    return EXPORTER


def read_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript export and its metadata (see :func:`~visionkit.export.read_metadata`).

    Raises:
        ExportError: the file does not exist, is not a TorchScript file (a checkpoint given
            for it: torch calls that a corrupt file), or has no visionkit metadata.
    """
    if not os.path.isfile(path):
        raise ExportError(f"{path}: file does not exist")
    extra = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as err:
        reason = str(err).split(". ")[0]  # torch adds that the file is likely corrupted
        raise ExportError(
            f"{path}: not a TorchScript file torch.jit.load can read ({reason}); visionkit "
            "export --format torchscript writes one, and visionkit.load reads a .ckpt"
        ) from None
    if not extra[EXTRA_FILE]:
        raise ExportError(
            f"{path}: a TorchScript file without visionkit's metadata ({EXTRA_FILE}), so not "
            "a visionkit export; torch.jit.load reads it"
        )
    return module, read_metadata(json.loads(extra[EXTRA_FILE]))
