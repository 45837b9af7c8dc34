"""safetensors export: the model's state dict with the metadata in the header; it loads back
through ``model.init_from`` into a model built from that metadata."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from visionkit.checkpoint import write_atomic
from visionkit.export.graph import OutputPath
from visionkit.export.metadata import export_metadata, read_metadata
from visionkit.models.model import VisionModel


def export_safetensors(model: VisionModel, paths: list[OutputPath], output: Path) -> None:
    """Write the state dict of ``model`` and its metadata to ``output``, atomically."""
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    metadata = export_metadata(model, paths)
    write_atomic(output, lambda p: save_file(state, str(p), metadata=metadata))


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The visionkit metadata of a safetensors export (see
    :func:`~visionkit.export.read_metadata`)."""
    with safe_open(str(path), framework="pt") as f:
        return read_metadata(f.metadata() or {})
