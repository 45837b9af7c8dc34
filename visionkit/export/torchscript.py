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
from visionkit.export.graph import ExportModule, OutputPath, trace_sample
from visionkit.export.metadata import export_metadata, read_metadata
from visionkit.models.model import VisionModel

EXPORTER = "torch.jit.trace"
EXTRA_FILE = "visionkit.json"


def export_torchscript(model: VisionModel, paths: list[OutputPath], output: Path) -> str:
    """Trace ``model`` (outputs ``paths``) and save it to ``output``, atomically; returns the
    exporter's name."""
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
    """A TorchScript export and its metadata (see :func:`~visionkit.export.read_metadata`)."""
    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, read_metadata(json.loads(extra[EXTRA_FILE]))
