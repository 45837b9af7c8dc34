"""Export a model to ONNX, TorchScript or safetensors, and check the result against PyTorch.

Every format holds the whole model: the backbone, the neck and every head. The ONNX graph and
the TorchScript module take a normalised batch ``images`` float32 ``[B, 3, H, W]`` and return
the heads' raw outputs (what ``VisionModel.forward`` returns) as a flat tuple of named tensors,
``<head>.<key>`` (e.g. ``cls.logits``, ``det.cls_logits``, ``det.points``). The batch size is
dynamic, and so are ``H`` and ``W`` (the TorchScript module takes multiples of
:data:`SIZE_DIVISOR`, the padding that ``visionkit``'s collate applies; the ONNX graph takes any
size and pads it so itself, :mod:`visionkit.export.input_padding`). Post-processing (decoding, NMS, mask upsampling) is not in
the graph: :class:`visionkit.inference.onnx_runtime.OnnxPredictor` runs the heads' own
``postprocess`` on the outputs, reading what it needs from the model's metadata (config, class
names, category ids, mean/std, output names).

After exporting, :func:`export` runs the exported model and PyTorch (fp32, eval mode) on the
same random inputs at batch sizes 1 and 2 and two image sizes, and raises
:class:`~visionkit.errors.ExportError` when an output differs by more than ``atol``, measured
as ``|exported - torch| / max(1, |torch|)``: absolute for values up to 1 (logits), relative
above (box distances in pixels, whose float32 rounding grows with their size).

>>> import visionkit
>>> model = visionkit.create_model({"model": {"backbone": {"name": "simple_cnn"},
...     "heads": {"cls": {"name": "linear", "num_classes": 3}}}, "data": {"image_size": 64}})
>>> report = export(model, "onnx", "model.onnx")  # doctest: +SKIP
>>> report.check.overall <= 1e-4  # doctest: +SKIP
True

``export(model, "onnx", path, nms=True)`` puts decoding, thresholds and NMS in the graph
(:mod:`~visionkit.export.end_to_end`); :mod:`visionkit.export.standalone` runs such a file
with onnxruntime, NumPy and Pillow only.

The modules: :mod:`~visionkit.export.graph` (the input and the flat named outputs),
:mod:`~visionkit.export.metadata`, one module per format (:mod:`~visionkit.export.onnx`,
:mod:`~visionkit.export.torchscript`, :mod:`~visionkit.export.safetensors`) and
:mod:`~visionkit.export.verify` (the comparison with PyTorch).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from visionkit.checkpoint import write_atomic
from visionkit.choices import DEFAULT_ATOL, DEFAULT_OPSET, EXPORTERS
from visionkit.choices import EXPORT_FORMATS as FORMATS
from visionkit.errors import DiskFullError, ExportError
from visionkit.export.end_to_end import NmsSettings, output_layout
from visionkit.export.exporter_output import log_beside
from visionkit.export.graph import (
    INPUT_NAME,
    SIZE_DIVISOR,
    ExportModule,
    OutputPath,
    check_sizes,
    check_sizes_of,
    export_model,
    flatten_outputs,
    output_name,
    outputs_of,
    unflatten_outputs,
)
from visionkit.export.metadata import export_metadata, read_metadata
from visionkit.export.onnx import check_opset, export_onnx, onnx_session, require
from visionkit.export.safetensors import export_safetensors, read_safetensors_metadata
from visionkit.export.torchscript import EXTRA_FILE as TORCHSCRIPT_META
from visionkit.export.torchscript import export_torchscript, read_torchscript
from visionkit.export.verify import (
    BATCH_SIZES,
    CheckReport,
    compare,
    verify,
    verify_end_to_end,
)
from visionkit.inference.options import prediction_conf
from visionkit.models.averaged_weights import check_weights
from visionkit.models.model import VisionModel

HALF_ATOL = 2e-2  # float16 keeps about 3 significant digits

# Input axes that stay dynamic in each format's graph (safetensors holds no graph).
DYNAMIC_AXES = {"onnx": ("batch", "height", "width"), "torchscript": ("batch", "height", "width")}


@dataclass
class ExportReport:
    """What :func:`export` wrote and how it compared.

    Attributes:
        path: the written file.
        format: ``onnx``, ``torchscript`` or ``safetensors``.
        exporter: for ONNX, ``"dynamo"`` (``torch.onnx.export(dynamo=True)``) or
            ``"torchscript"`` (the TorchScript-based exporter, used when the first fails).
        output_names: the exported outputs, in order.
        dynamic: which input axes are dynamic (``batch``, ``height``, ``width``).
        check: the comparison with PyTorch (``None`` with ``check=False``).
        notes: what happened on the way (e.g. why the fallback exporter was used).
    """

    path: Path
    format: str
    output_names: list[str]
    exporter: str | None = None
    dynamic: list[str] = field(default_factory=list)
    check: CheckReport | None = None
    notes: list[str] = field(default_factory=list)


#: The file suffixes each format's files usually have (the first one in examples).
SUFFIXES = {
    "onnx": (".onnx",),
    "torchscript": (".pt", ".pth", ".torchscript", ".ts"),
    "safetensors": (".safetensors",),
}


def export(
    checkpoint_or_model: VisionModel | str | os.PathLike,
    format: str,
    output: str | os.PathLike,
    *,
    image_size: int | Sequence[int] | None = None,
    opset: int = DEFAULT_OPSET,
    atol: float = DEFAULT_ATOL,
    check: bool = True,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    nms: bool = False,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    half: bool = False,
    exporter: str = "auto",
    weights: str | None = None,
) -> ExportReport:
    """Export a model, then check the file against PyTorch (:func:`verify`).

    Args:
        checkpoint_or_model: a :class:`VisionModel`, or a checkpoint written by ``visionkit
            train`` (read by :func:`visionkit.load`, ``weights_only=True``).
        format: ``"onnx"`` (graph of backbone, neck and every head; dynamic batch, H and W),
            ``"torchscript"`` (``torch.jit.trace`` of the same module) or ``"safetensors"``
            (the state dict; loads back through ``model.init_from``).
        output: the file to write. It is written beside itself under a hidden name, checked,
            and only then renamed over ``output`` (atomically): an export that fails or
            differs leaves a previous ``output`` as it was. It may not be the checkpoint,
            nor an existing file other than an export of ``format`` (a ``last.ckpt``, a state
            dict ``model.pth``, a ``.yaml``: refused, the file kept).
        image_size: first image size of the check (default: the config's evaluation size,
            ``data.val_image_size`` or ``data.image_size``), rounded up to a multiple of
            :data:`SIZE_DIVISOR`; the second is one divisor taller and two wider.
        opset: ONNX opset version, from 7 to the newest the installed onnx knows; below 18,
            ``exporter="auto"`` uses the TorchScript-based exporter (the dynamo exporter writes
            18 and above), and a file of another opset than asked is an ``ExportError``.
        atol: largest ``|exported - torch| / max(1, |torch|)`` allowed (see :class:`CheckReport`).
        check: run the comparison (on ``batch_sizes`` × the two image sizes).
        nms: ONNX only: an end-to-end graph (:mod:`visionkit.export.end_to_end`): inputs
            ``images`` and ``image_sizes``, outputs the final predictions (detections after
            NMS, class probabilities, label maps), checked against the heads' own
            ``postprocess``.
        conf, iou, max_det: with ``nms``, the score threshold, NMS IoU threshold and
            detections per image baked into the graph (default: the threshold of
            ``visionkit predict`` — each head's best-F1 score at the checkpoint's last
            validation, else 0.25: :func:`~visionkit.inference.options.prediction_conf` —,
            each head's ``nms_thresh`` and ``detections_per_img``).
        half: with ``nms``: weights and input ``images`` in float16 (outputs stay float32);
            checked against the float32 model, with ``atol`` at least :data:`HALF_ATOL`
            (:func:`~visionkit.export.verify.verify_end_to_end`).
        exporter: ONNX only: ``"auto"`` (``torch.onnx.export(dynamo=True)``, the
            TorchScript-based exporter when it fails), ``"dynamo"`` or ``"torchscript"`` (that
            one only: the TorchScript-based exporter traces in about a fifth of the time).
        weights: of a checkpoint trained with ``ema.enabled: true``, its averaged (EMA)
            weights (``None`` / ``"ema"``) or its raw ones (``"raw"``: a run's ``last.ckpt``);
            the export's metadata records which (``meta["weights"]``). A model passed in holds
            one set: another is an error.

    Returns:
        An :class:`ExportReport`; ``report.check.table()`` lists the differences of each output.

    Raises:
        ExportError: an unknown format, a failed export, or differences above ``atol``.
        CheckpointError: the checkpoint cannot be loaded.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; valid: {', '.join(FORMATS)}")
    check_weights(weights, "export", checkpoint_or_model)
    if atol < 0:
        raise ExportError(f"atol must be >= 0, got {atol}")
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown ONNX exporter {exporter!r}; valid: {', '.join(EXPORTERS)}")
    if exporter != "auto" and format != "onnx":
        raise ExportError(f"exporter {exporter!r} is a choice of --format onnx, not {format!r}")
    if format == "onnx":
        check_opset(opset)
    settings = NmsSettings(conf, iou, max_det) if nms else None
    if not nms and (conf, iou, max_det) != (None, None, None):
        raise ExportError("conf, iou and max_det are settings of the end-to-end export: add nms")
    if half and settings is None:
        raise ExportError("half (float16) is offered for the end-to-end ONNX export: add nms")
    if half:
        atol = max(atol, HALF_ATOL)
    if settings is not None:
        if format != "onnx":
            raise ExportError(f"nms (end-to-end export) is for --format onnx, not {format!r}")
        settings.check()
    if isinstance(output, str) and output.endswith(("/", os.sep)) and not Path(output).is_file():
        raise ExportError(  # Path() drops the separator: a file named like the folder was written
            f"{output} names a folder (it ends in {output[-1]}); --output / output names the file "
            f"to write, e.g. {Path(output) / ('model' + SUFFIXES[format][0])}"
        )
    output = Path(output)
    if output.is_dir():
        raise ExportError(
            f"{output} is a folder; --output / output names the file to write, e.g. "
            f"{output / ('model' + SUFFIXES[format][0])}"
        )
    if isinstance(checkpoint_or_model, (str, os.PathLike)) and _same_file(
        checkpoint_or_model, output
    ):
        raise ExportError(
            f"{output}: that is the checkpoint being exported; write the export to another file"
        )
    kind = _kind_of_existing(output, format)
    if kind is not None:
        raise ExportError(
            f"{output} exists and is {kind}, not {_a(format)} export: it is kept (an export "
            f"replaces only an earlier export of its format); name a new file, e.g. "
            f"{output.with_name(output.stem + '-export' + SUFFIXES[format][0])}, or move it away"
        )
    model = export_model(checkpoint_or_model, weights)
    if settings is not None and settings.conf is None:  # what visionkit predict keeps
        settings = dataclasses.replace(settings, conf=prediction_conf(model))
    if half:
        model = copy.deepcopy(model).half()
    # staged under a suffix of the format (the output's own when it is one): the check reads
    # it back, a safetensors file through model.init_from, which goes by the suffix
    suffix = output.suffix if output.suffix.lower() in SUFFIXES[format] else SUFFIXES[format][0]
    staging = output.with_name(f".{output.stem}.partial{suffix}")
    was_training = model.training
    model.eval()
    try:
        paths = outputs_of(model, check_sizes_of(model, image_size)[0])
        if settings is not None:
            paths = [(o["head"], o["key"]) for o in output_layout(model, settings)]
        report = ExportReport(
            path=output, format=format, output_names=list(map(output_name, paths))
        )
        if format == "onnx":
            report.exporter, report.notes = export_onnx(
                model, paths, staging, opset, settings, exporter, log_beside(output)
            )
        elif format == "torchscript":
            report.exporter = export_torchscript(model, paths, staging)
        else:
            export_safetensors(model, paths, staging)
        report.dynamic = list(DYNAMIC_AXES.get(format, ()))
        if settings is not None:
            from visionkit.models.heads.fcos_mask import FCOSMaskHead

            report.notes += [
                f"head {name!r} (fcos_mask): its boxes only; the masks are not in an --nms "
                "export (an export without --nms keeps the raw outputs they are made from)"
                for name, head in model.heads.items()
                if isinstance(head, FCOSMaskHead)
            ]
        usual = SUFFIXES[format]
        if output.suffix.lower() not in usual:  # written as asked; tools go by the suffix
            report.notes.append(
                f"{output.name}: {_a(format)} file, but {format} files usually end in "
                f"{' or '.join(usual)}; tools that go by the suffix may not open it"
            )
        if check and settings is not None:
            report.check = verify_end_to_end(
                model, staging, settings, image_size=image_size, atol=atol, batch_sizes=batch_sizes
            )
        elif check:
            report.check = verify(
                model, format, staging, image_size=image_size, atol=atol, batch_sizes=batch_sizes
            )
        write_atomic(output, lambda tmp: os.replace(staging, tmp))
        with contextlib.suppress(OSError):  # an earlier failure's log is stale now
            log_beside(output).unlink(missing_ok=True)
        return report
    except ExportError as err:
        kept = "left as it was" if output.exists() else "not written"
        raise ExportError(
            f"{str(err).replace(str(staging), str(output))} ({output} {kept})"
        ) from None
    except DiskFullError as err:  # name the file the user asked for, not the staging file
        raise DiskFullError(
            output, err.reason, err.needed, err.free, err.at_least, output.exists()
        ) from err
    finally:
        staging.unlink(missing_ok=True)
        model.train(was_training)


def _a(format: str) -> str:
    """``"an onnx"``, ``"a safetensors"``."""
    return f"{'an' if format == 'onnx' else 'a'} {format}"


def _kind_of_existing(path: Path, format: str) -> str | None:
    """What the file at ``path`` is, when it is there and is not an earlier visionkit export of
    ``format`` (told by its content: visionkit's metadata in the ONNX model, the safetensors
    header or the TorchScript archive; not by its suffix): ``"a .ckpt file"``, ``"a file
    without visionkit's metadata (...)"``; ``None`` where nothing is lost by replacing it."""
    if not path.is_file() or _is_visionkit_export(path, format):
        return None
    if path.suffix.lower() not in SUFFIXES[format]:
        return f"a {path.suffix} file" if path.suffix else "a file without a suffix"
    return "a file without visionkit's metadata (another program's, a checkpoint, a state dict?)"


def _is_visionkit_export(path: Path, format: str) -> bool:
    """Whether ``path`` is a file ``visionkit export --format format`` wrote."""
    try:
        if format == "torchscript":  # torch.jit.save keeps extra files as <name>/extra/<file>
            with zipfile.ZipFile(path) as archive:
                return any(n.endswith("/extra/" + TORCHSCRIPT_META) for n in archive.namelist())
        if format == "safetensors":
            read_safetensors_metadata(path)
            return True
        props = require("onnx").load(str(path), load_external_data=False).metadata_props
        read_metadata({p.key: p.value for p in props})
        return True
    except Exception:  # unreadable as that format, or without visionkit's metadata
        return False


def _same_file(a: str | os.PathLike, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one existing file (through links too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing: not the same file
        return False


__all__ = [
    "BATCH_SIZES",
    "DEFAULT_ATOL",
    "DEFAULT_OPSET",
    "EXPORTERS",
    "FORMATS",
    "INPUT_NAME",
    "SIZE_DIVISOR",
    "CheckReport",
    "ExportModule",
    "ExportReport",
    "NmsSettings",
    "OutputPath",
    "check_sizes",
    "compare",
    "export",
    "export_metadata",
    "flatten_outputs",
    "onnx_session",
    "output_name",
    "read_metadata",
    "read_safetensors_metadata",
    "read_torchscript",
    "unflatten_outputs",
    "verify",
    "verify_end_to_end",
]
