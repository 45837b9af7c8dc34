"""ONNX export: ``torch.onnx.export`` with the dynamo exporter (dynamic batch, H and W), the
TorchScript-based exporter as the fallback, the metadata in ``metadata_props``; and the
onnxruntime session that runs the file.

``onnx`` and ``onnxruntime`` are optional (the ``onnx`` extra); they are imported when used.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from visionkit.checkpoint import write_atomic
from visionkit.errors import ExportError
from visionkit.export.graph import (
    INPUT_NAME,
    SIZE_DIVISOR,
    ExportModule,
    OutputPath,
    output_name,
    trace_sample,
)
from visionkit.export.metadata import export_metadata
from visionkit.models.model import VisionModel

logger = logging.getLogger("visionkit.export")

DEFAULT_OPSET = 18


def _onnx_dynamo(
    module: ExportModule, sample: Tensor, names: list[str], path: Path, opset: int
) -> None:
    from torch.export import Dim

    rows = Dim("height_blocks", min=1, max=8192 // SIZE_DIVISOR)
    cols = Dim("width_blocks", min=1, max=8192 // SIZE_DIVISOR)
    shapes = {
        INPUT_NAME: {
            0: Dim("batch", min=1, max=4096),
            2: SIZE_DIVISOR * rows,
            3: SIZE_DIVISOR * cols,
        }
    }
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (sample,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=names,
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=shapes,
            external_data=False,
            verbose=False,
        )


def _onnx_torchscript(
    module: ExportModule, sample: Tensor, names: list[str], path: Path, opset: int
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated
        torch.onnx.export(
            module,
            (sample,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=names,
            opset_version=opset,
            dynamo=False,
            dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"}},
        )


def require(module: str) -> Any:
    """Import an optional dependency of ONNX export (the ``onnx`` extra)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(
            f"ONNX export needs {module}, which is not installed: pip install 'visionkit[onnx]'"
        ) from None


def onnx_session(path: str | os.PathLike) -> Any:
    """An onnxruntime session on the CPU."""
    ort = require("onnxruntime")

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_onnx(
    model: VisionModel, paths: list[OutputPath], output: Path, opset: int
) -> tuple[str, list[str]]:
    """Write the ONNX graph of ``model`` (outputs ``paths``) to ``output``, atomically.

    Returns:
        The exporter used (``"dynamo"``, or ``"torchscript"`` when the first failed) and notes
        on the way (why the fallback was used).

    Raises:
        ExportError: ``onnx`` is not installed, or both exporters failed.
    """
    onnx = require("onnx")

    module = ExportModule(model, paths).eval()
    names = [output_name(p) for p in paths]
    sample = trace_sample(model)
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        try:
            _onnx_dynamo(module, sample, names, raw, opset)
            exporter = "dynamo"
        except Exception as err:  # the fallback exporter is tried on any failure of the first
            reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            notes.append(f"dynamo exporter failed ({reason}); used the TorchScript-based one")
            logger.warning(
                "torch.onnx.export(dynamo=True) failed (%s); trying dynamo=False", reason
            )
            try:
                _onnx_torchscript(module, sample, names, raw, opset)
            except Exception as err2:
                raise ExportError(
                    f"ONNX export failed with both exporters: dynamo: {reason}; TorchScript: "
                    f"{type(err2).__name__}: {err2}"
                ) from err2
            exporter = "torchscript"
        proto = onnx.load(str(raw))
    onnx.helper.set_model_props(proto, export_metadata(model, paths, exporter))
    proto.doc_string = (
        "visionkit model: normalised images [B, 3, H, W] (H, W multiples of "
        f"{SIZE_DIVISOR}) -> raw head outputs; see the visionkit.* metadata"
    )
    write_atomic(output, lambda p: onnx.save(proto, str(p)))
    return exporter, notes
