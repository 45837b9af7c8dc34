"""ONNX export: ``torch.onnx.export`` with the dynamo exporter (dynamic batch, H and W), the
TorchScript-based exporter as the fallback, the metadata in ``metadata_props``; and the
onnxruntime session that runs the file.

``onnx`` and ``onnxruntime`` are optional (the ``onnx`` extra); they are imported when used.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from visionkit.checkpoint import write_atomic
from visionkit.choices import DYNAMO_MIN_OPSET, EXPORTERS, MIN_OPSET
from visionkit.errors import ExportError
from visionkit.export.end_to_end import (
    PIXEL_KEYS,
    SIZES_NAME,
    EndToEndModule,
    NmsSettings,
    output_layout,
)
from visionkit.export.exporter_output import (
    captured_output,
    failure_message,
    keep_log,
    log_beside,
    short_reason,
)
from visionkit.export.graph import (
    INPUT_NAME,
    SIZE_DIVISOR,
    ExportModule,
    OutputPath,
    output_name,
    trace_sample,
)
from visionkit.export.input_padding import PAD_MIN_OPSET, pad_input
from visionkit.export.metadata import META_PREFIX, export_metadata, input_metadata
from visionkit.models.model import VisionModel

logger = logging.getLogger("visionkit.export")


def _inputs(module: torch.nn.Module, sample: Tensor) -> tuple[tuple[Tensor, ...], list[str]]:
    """The sample inputs and input names: ``images``, and ``image_sizes`` for end to end."""
    if isinstance(module, EndToEndModule):
        sizes = torch.tensor([list(sample.shape[-2:])] * sample.shape[0], dtype=torch.int64)
        return (sample, sizes), [INPUT_NAME, SIZES_NAME]
    return (sample,), [INPUT_NAME]


def _onnx_dynamo(
    module: torch.nn.Module, sample: Tensor, names: list[str], path: Path, opset: int
) -> None:
    from torch.export import Dim

    rows = Dim("height_blocks", min=1, max=8192 // SIZE_DIVISOR)
    cols = Dim("width_blocks", min=1, max=8192 // SIZE_DIVISOR)
    batch = Dim("batch", min=1, max=4096)
    shapes = {INPUT_NAME: {0: batch, 2: SIZE_DIVISOR * rows, 3: SIZE_DIVISOR * cols}}
    inputs, input_names = _inputs(module, sample)
    if len(inputs) > 1:
        shapes[SIZES_NAME] = {0: batch}
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=input_names,
            output_names=names,
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=shapes,
            external_data=False,
            verbose=False,
        )


def _onnx_torchscript(
    module: torch.nn.Module, sample: Tensor, names: list[str], path: Path, opset: int
) -> None:
    inputs, input_names = _inputs(module, sample)
    axes: dict[str, dict[int, str]] = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    if len(inputs) > 1:
        axes[SIZES_NAME] = {0: "batch"}
        dims = {"B": "batch", "H": "height", "W": "width", "C": "classes"}
        for out in output_layout(module.model, NmsSettings()):
            axes[out["name"]] = {
                i: dims.get(d, f"{out['head']}_detections")
                for i, d in enumerate(out["shape"])
                if isinstance(d, str)
            }
    with captured_output() as printed, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated
        try:
            torch.onnx.export(
                module,
                inputs,
                str(path),
                input_names=input_names,
                output_names=names,
                opset_version=opset,
                dynamo=False,
                dynamic_axes=axes,
            )
        except Exception as err:  # its graph dump, printed from C++, kept off the terminal
            raise TorchScriptExportFailed(err, printed) from err


class TorchScriptExportFailed(Exception):
    """The TorchScript-based exporter's exception and what it printed (``printed.text``)."""

    def __init__(self, err: Exception, printed: Any) -> None:
        super().__init__(short_reason(err))
        self.err, self.printed = err, printed


def require(module: str) -> Any:
    """Import an optional dependency of ONNX export (the ``onnx`` extra)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(
            f"ONNX export needs {module}, which is not installed: pip install 'visionkit[onnx]'"
        ) from None


def onnx_session(path: str | os.PathLike) -> Any:
    """An onnxruntime session on the CPU.

    Raises:
        ExportError: the file does not exist, or onnxruntime cannot read it (a checkpoint or
            another file given for the ``.onnx``).
    """
    ort = require("onnxruntime")

    if not os.path.isfile(path):
        raise ExportError(f"{path}: file does not exist")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's InvalidProtobuf, Fail, ...: Exception's subclasses
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(
            f"{path}: not an ONNX model onnxruntime can read ({reason}); "
            "visionkit export --checkpoint CKPT --format onnx writes one, and visionkit.load "
            "reads a .ckpt or .safetensors"
        ) from None


def check_opset(opset: int) -> None:
    """Refuse an opset no exporter writes (below :data:`~visionkit.choices.MIN_OPSET`, or
    above the newest the installed ``onnx`` knows), before any work.

    Raises:
        ExportError: naming the opset and the range.
    """
    newest = require("onnx").defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ExportError(
            f"opset {opset!r}: expected a whole number from {MIN_OPSET} to {newest} (the newest "
            f"the installed onnx knows); the default is 18, e.g. --opset 17 for an older runtime"
        )


def written_opset(proto: Any) -> int | None:
    """The version of the default ONNX domain a graph imports."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def export_onnx(
    model: VisionModel,
    paths: list[OutputPath],
    output: Path,
    opset: int,
    nms: NmsSettings | None = None,
    exporter: str = "auto",
    error_log: Path | None = None,
) -> tuple[str, list[str]]:
    """Write the ONNX graph of ``model`` (outputs ``paths``) to ``output``, atomically.

    With ``nms``, the graph is :class:`~visionkit.export.end_to_end.EndToEndModule` (decoding,
    score threshold and NMS inside; ``paths`` are then ``(head, key)`` of its outputs) and the
    metadata gains ``visionkit.end_to_end`` (inputs, outputs with shapes and dtypes, and each
    detection head's baked-in ``conf`` / ``iou`` / ``max_det`` / ``topk_candidates``).

    ``exporter``: ``"auto"`` (the dynamo exporter, the TorchScript-based one when it fails),
    ``"dynamo"`` or ``"torchscript"`` (that one only; the latter is several times faster).
    When the TorchScript-based one fails, what it printed (its IR graph) goes to ``error_log``
    (default ``<output>.export-error.txt``), not the terminal.

    Returns:
        The exporter used (``"dynamo"``, or ``"torchscript"`` when the first failed or was
        asked for) and notes on the way (why the fallback was used).

    Raises:
        ExportError: ``onnx`` is not installed, an unknown ``exporter``, or the exporters tried
        failed.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown ONNX exporter {exporter!r}; valid: {', '.join(EXPORTERS)}")
    onnx = require("onnx")

    module = (ExportModule(model, paths) if nms is None else EndToEndModule(model, nms)).eval()
    names = [output_name(p) for p in paths]
    sample = trace_sample(model).to(next(model.parameters()).dtype)  # float16 with half
    notes: list[str] = []
    if exporter == "auto" and opset < DYNAMO_MIN_OPSET:
        notes.append(
            f"opset {opset} is below {DYNAMO_MIN_OPSET}, the lowest the dynamo exporter writes: "
            "the TorchScript-based exporter wrote it"
        )
        exporter = "torchscript"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        try:
            if exporter == "torchscript":
                _onnx_torchscript(module, sample, names, raw, opset)
            else:
                _onnx_dynamo(module, sample, names, raw, opset)
        except TorchScriptExportFailed as failed:
            log = keep_log(error_log or log_beside(output), failed.err, failed.printed.text)
            raise ExportError(failure_message(failed.err, opset, log)) from failed.err
        except Exception as err:  # the fallback exporter is tried on any failure of the first
            reason = f"{type(err).__name__}: {short_reason(err)}"
            if exporter != "auto":
                raise ExportError(
                    f"ONNX export with the {exporter} exporter failed: {reason}"
                ) from err
            notes.append(f"dynamo exporter failed ({reason}); used the TorchScript-based one")
            logger.warning(
                "torch.onnx.export(dynamo=True) failed (%s); trying dynamo=False", reason
            )
            try:
                _onnx_torchscript(module, sample, names, raw, opset)
            except TorchScriptExportFailed as failed:
                log = keep_log(error_log or log_beside(output), failed.err, failed.printed.text)
                raise ExportError(
                    f"ONNX export failed with both exporters: dynamo: {reason}; "
                    + failure_message(failed.err, opset, log)
                ) from failed.err
            exporter = "torchscript"
        exporter = "dynamo" if exporter == "auto" else exporter
        proto = onnx.load(str(raw))
    written = written_opset(proto)
    if written != opset:  # the dynamo exporter writes 18 when its conversion down fails
        hint = (
            f"; --exporter torchscript writes opsets below {DYNAMO_MIN_OPSET} (--exporter auto "
            "uses it for them)"
            if exporter == "dynamo"
            else ""
        )
        raise ExportError(
            f"the {exporter} exporter wrote opset {written}, not the {opset} asked for{hint}"
        )
    padded = opset >= PAD_MIN_OPSET
    layout = output_layout(model, nms) if nms is not None else []
    cropped = [o["name"] for o in layout if o["key"] in PIXEL_KEYS] if padded else []
    if padded:  # any H, W: padded in the graph, never shifted feature maps
        pad_input(proto, onnx, crop=cropped)  # an end-to-end mask: the input's H x W
    else:
        notes.append(
            f"opset {opset} is below {PAD_MIN_OPSET}: the graph cannot pad its input, so give "
            f"it heights and widths that are multiples of {SIZE_DIVISOR} (others give wrong "
            f"outputs without an error); opset {PAD_MIN_OPSET} or later pads them itself"
        )
    props = export_metadata(model, paths, exporter)
    half = sample.dtype == torch.float16
    if half:
        props[META_PREFIX + "half"] = "true"
    props[META_PREFIX + "input"] = json.dumps(
        {**input_metadata("float16" if half else "float32"), **padding_metadata(padded, cropped)}
    )
    what = "raw head outputs"
    if isinstance(module, EndToEndModule):
        what = "final predictions (decoded, NMS); see visionkit.end_to_end"
        props[META_PREFIX + "end_to_end"] = json.dumps(end_to_end_metadata(module, nms))
    onnx.helper.set_model_props(proto, props)
    sizes = (
        f"any H, W: padded with zeros at the bottom/right to multiples of {SIZE_DIVISOR} in the "
        "graph"
        if padded
        else f"H, W multiples of {SIZE_DIVISOR}"
    )
    proto.doc_string = (
        f"visionkit model: normalised images [B, 3, H, W] ({sizes}) -> {what}; see the "
        "visionkit.* metadata"
    )
    write_atomic(output, lambda p: onnx.save(proto, str(p)))
    return exporter, notes


def padding_metadata(padded: bool, cropped: list[str] | None = None) -> dict[str, Any]:
    """What the ``input`` entry of an ONNX file says of its height and width (``cropped``: the
    outputs cut back to the input's ``H × W``)."""
    if padded:
        cut = f" ({', '.join(cropped)}: cut back to the input's H x W)" if cropped else ""
        return {
            "size_divisor": SIZE_DIVISOR,
            "padded_in_graph": True,
            "sizes": f"any H, W: the graph pads them with zeros at the bottom/right to "
            f"multiples of {SIZE_DIVISOR} (as visionkit's collate); outputs are those of the "
            f"padded input{cut}",
        }
    return {
        "size_divisor": SIZE_DIVISOR,
        "padded_in_graph": False,
        "sizes": f"H and W must be multiples of {SIZE_DIVISOR} (pad with zeros at the "
        "bottom/right): other sizes give wrong outputs without an error",
    }


def end_to_end_metadata(module: EndToEndModule, nms: NmsSettings) -> dict[str, Any]:
    """``visionkit.end_to_end``: the inputs, the outputs (name, head, key, shape, dtype), each
    detection head's baked-in settings and each head's kind."""
    return {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": ["B", 3, "H", "W"],
                "dtype": str(next(module.model.parameters()).dtype).removeprefix("torch."),
            },
            {"name": SIZES_NAME, "shape": ["B", 2], "dtype": "int64"},
        ],
        "outputs": output_layout(module.model, nms),
        "nms": module.settings,
        "kinds": module.kinds,
        "class_names": {
            name: list(getattr(head, "class_names", None) or []) or None
            for name, head in module.model.heads.items()
        },
    }
