"""Export a model to ONNX, TorchScript or safetensors, and check the result against PyTorch.

Every format holds the whole model: the backbone, the neck and every head. The ONNX graph and
the TorchScript module take a normalised batch ``images`` float32 ``[B, 3, H, W]`` and return
the heads' raw outputs (what ``VisionModel.forward`` returns) as a flat tuple of named tensors,
``<head>.<key>`` (e.g. ``cls.logits``, ``det.cls_logits``, ``det.points``). The batch size is
dynamic, and so are ``H`` and ``W`` (any multiple of :data:`SIZE_DIVISOR`, the padding that
``visionkit``'s collate applies). Post-processing (decoding, NMS, mask upsampling) is not in
the graph: :class:`visionkit.inference.onnx_runtime.OnnxPredictor` runs the heads' own ``postprocess``
on the outputs, reading what it needs from the model's metadata (config, class names,
category ids, mean/std, output names).

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
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from visionkit.errors import ExportError
from visionkit.models.model import VisionModel

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript", "safetensors")
DEFAULT_ATOL = 1e-4
DEFAULT_OPSET = 18
SIZE_DIVISOR = 32  # H and W of the inputs are multiples of this (as visionkit's collate pads)
BATCH_SIZES = (1, 2)
INPUT_NAME = "images"
META_PREFIX = "visionkit."
METADATA_VERSION = 1
TORCHSCRIPT_EXTRA_FILE = "visionkit.json"

OutputPath = tuple[str | int, ...]  # head name, then dict keys / list indices


# ---- outputs: a flat list of named tensors ------------------------------------------------------
def _walk(value: Any, path: OutputPath) -> Iterator[tuple[OutputPath, Tensor]]:
    if isinstance(value, Tensor):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, (*path, str(key)))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, (*path, i))
    else:
        raise ExportError(
            f"output {'.'.join(map(str, path))} is a {type(value).__name__}; only tensors "
            "(in dicts and lists) can be exported"
        )


def flatten_outputs(outputs: Mapping[str, Any]) -> list[tuple[OutputPath, Tensor]]:
    """``VisionModel.forward``'s nested outputs as ``(path, tensor)`` pairs in a stable order
    (heads, then each head's keys, in insertion order; list items by index)."""
    return list(_walk(outputs, ()))


def output_name(path: OutputPath) -> str:
    """``("det", "cls_logits")`` → ``"det.cls_logits"``."""
    return ".".join(map(str, path))


def unflatten_outputs(paths: Sequence[Sequence[str | int]], values: Sequence[Any]) -> dict:
    """Inverse of :func:`flatten_outputs`: nested dicts (and lists, for integer keys)."""
    root: dict = {}
    for path, value in zip(paths, values, strict=True):
        node: Any = root
        for key, nxt in zip(path[:-1], path[1:], strict=True):
            child = [] if isinstance(nxt, int) else {}
            if isinstance(node, list):
                while len(node) <= key:
                    node.append(None)
                node[key] = node[key] if node[key] is not None else child
                node = node[key]
            else:
                node = node.setdefault(key, child)
        last = path[-1]
        if isinstance(node, list):
            while len(node) <= last:
                node.append(None)
        node[last] = value
    return root


class ExportModule(nn.Module):
    """A :class:`VisionModel` whose ``forward(images)`` returns its raw outputs as a flat tuple,
    in the order of ``paths`` (see :func:`flatten_outputs`)."""

    def __init__(self, model: VisionModel, paths: Sequence[OutputPath]) -> None:
        super().__init__()
        self.model = model
        self.paths = [tuple(p) for p in paths]

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        outputs: Any = self.model(images)
        flat = []
        for path in self.paths:
            value = outputs
            for key in path:
                value = value[key]
            flat.append(value)
        return tuple(flat)


# ---- sizes --------------------------------------------------------------------------------------
def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def round_up(size: int | Sequence[int], divisor: int = SIZE_DIVISOR) -> tuple[int, int]:
    """``(H, W)`` rounded up to multiples of ``divisor`` (what the collate pads to)."""
    h, w = _pair(size)
    return math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor


def check_sizes(image_size: int | Sequence[int]) -> list[tuple[int, int]]:
    """The two image sizes of the check: ``image_size`` rounded up to a multiple of
    :data:`SIZE_DIVISOR`, and one taller by 1 and wider by 2 divisors."""
    h, w = round_up(image_size)
    return [(h, w), (h + SIZE_DIVISOR, w + 2 * SIZE_DIVISOR)]


def largest_stride(model: VisionModel) -> int:
    """The largest stride of the backbone's and the neck's feature maps."""
    strides = list(getattr(model.backbone, "strides", [SIZE_DIVISOR]))
    strides += list(getattr(model.neck, "strides", []) or [])
    return max(int(s) for s in strides)


def trace_size(model: VisionModel) -> tuple[int, int]:
    """The image size the graph is traced at: 2 × 3 cells of the largest stride, so that no
    feature map is 1 pixel (which the tracer would take as a constant) and H differs from W."""
    unit = max(largest_stride(model), SIZE_DIVISOR)
    return 2 * unit, 3 * unit


# ---- metadata -----------------------------------------------------------------------------------
def model_from_meta(
    meta: Mapping[str, Any], init_from: str | os.PathLike | None = None
) -> VisionModel:
    """The model that ``meta`` (``model.meta`` of a visionkit model, as stored in every export
    and checkpoint) describes: untrained, or with the matching tensors of ``init_from``.
    Build it under ``torch.device("meta")`` for a weight-free model (preprocessing and the
    heads' ``postprocess`` need no weights)."""
    from visionkit.models.factory import create_model

    if "config" not in meta:
        raise ExportError("the model carries no config in its metadata (model.meta['config'])")
    config = copy.deepcopy(dict(meta["config"]))
    config["model"]["backbone"]["pretrained"] = False
    config["model"]["init_from"] = str(init_from) if init_from is not None else None
    extra = {k: v for k, v in meta.items() if k not in ("config", "label_names", "format_version")}
    return create_model(config, label_names=meta.get("label_names") or None, extra_meta=extra)


def preprocess_steps(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The evaluation transforms (before normalisation) that ``VisionModel.predict`` runs."""
    from visionkit.data.transforms import pipeline_steps

    return pipeline_steps(meta["config"]["data"], train=False)


def export_metadata(
    model: VisionModel, paths: Sequence[OutputPath], exporter: str | None = None
) -> dict[str, str]:
    """String metadata stored in the exported file (ONNX ``metadata_props``, TorchScript extra
    file, safetensors header): everything post-processing needs."""
    meta = model.meta
    if "config" not in meta:
        raise ExportError("the model carries no config in its metadata (model.meta['config'])")
    heads = {
        name: {
            "builder": meta["config"]["model"]["heads"][name]["name"],
            "task": getattr(head, "task", None),
            "outputs": [output_name(p) for p in paths if p[0] == name],
        }
        for name, head in model.heads.items()
    }
    values: dict[str, Any] = {
        "metadata_version": METADATA_VERSION,
        "meta": meta,
        "config": meta["config"],
        "label_names": meta.get("label_names", {}),
        "category_ids": meta.get("category_ids", []),
        "mean": [float(v) for v in model.backbone.mean],
        "std": [float(v) for v in model.backbone.std],
        "image_size": list(_pair(meta["config"].get("data", {}).get("image_size", 128))),
        "preprocess": preprocess_steps(meta),
        "input": {"name": INPUT_NAME, "layout": "NCHW", "dtype": "float32", "normalised": True},
        "size_divisor": SIZE_DIVISOR,
        "outputs": [{"name": output_name(p), "head": p[0], "path": list(p)} for p in paths],
        "heads": heads,
    }
    if exporter is not None:
        values["exporter"] = exporter
    return {META_PREFIX + key: json.dumps(value) for key, value in values.items()}


def read_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """Inverse of :func:`export_metadata`: ``{"config": ..., "outputs": ..., ...}``."""
    out = {
        k[len(META_PREFIX) :]: json.loads(v) for k, v in props.items() if k.startswith(META_PREFIX)
    }
    if "meta" not in out or "outputs" not in out:
        raise ExportError("not a visionkit export: no visionkit.meta / visionkit.outputs metadata")
    return out


# ---- the check ----------------------------------------------------------------------------------
@dataclass
class CheckReport:
    """How far an exported model is from PyTorch, per output.

    Two figures per output, each the largest over every input compared:

    - ``max_abs``: ``|exported - torch|``;
    - ``max_error``: ``|exported - torch| / max(1, |torch|)`` — the absolute difference where
      values are at most 1 in magnitude (logits, scores), the relative one above (box
      distances and anchors in pixels, whose float32 rounding grows with their size). This is
      the figure compared with ``atol``.

    Attributes:
        max_abs, max_error: output name → the figures above; ``inf`` where the shapes differ
            or a value is NaN in only one of them.
        worst_input: output name → the input shape ``(B, 3, H, W)`` of its ``max_error``.
        problems: shape mismatches and missing outputs, one line each.
        atol: the tolerance.
        batch_sizes, image_sizes: the inputs compared.
    """

    max_abs: dict[str, float]
    max_error: dict[str, float]
    worst_input: dict[str, tuple[int, ...]]
    problems: list[str]
    atol: float
    batch_sizes: list[int]
    image_sizes: list[tuple[int, int]]

    @property
    def overall(self) -> float:
        """The largest ``max_error`` (what ``atol`` bounds)."""
        return max(self.max_error.values(), default=0.0)

    @property
    def overall_abs(self) -> float:
        """The largest ``max_abs``."""
        return max(self.max_abs.values(), default=0.0)

    @property
    def ok(self) -> bool:
        return not self.problems and self.overall <= self.atol

    def table(self) -> str:
        """One line per output, then the overall figures and what was compared."""
        width = max([len("overall"), len("output"), *map(len, self.max_error)])
        header = "max |exported - torch|  max |diff| / max(1, |torch|)  worst input"
        lines = [f"{'output':<{width}}  {header}"]
        for name, error in self.max_error.items():
            shape = "x".join(map(str, self.worst_input.get(name, ()))) if error else ""
            lines.append(f"{name:<{width}}  {self.max_abs[name]:<22.3g}  {error:<30.3g}  {shape}")
        sizes = ", ".join(f"{h}x{w}" for h, w in self.image_sizes)
        lines.append(
            f"{'overall':<{width}}  {self.overall_abs:<22.3g}  {self.overall:<30.3g}  "
            f"(tolerance {self.atol:g}; batch sizes {', '.join(map(str, self.batch_sizes))}; "
            f"image sizes {sizes})"
        )
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _differences(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """``(max |got - ref|, max |got - ref| / max(1, |ref|))``."""
    ref, got = np.asarray(ref, dtype=np.float64), np.asarray(got, dtype=np.float64)
    if not ref.size:
        return 0.0, 0.0
    with np.errstate(invalid="ignore"):
        diff = np.where(ref == got, 0.0, np.abs(ref - got))  # equal infinities are equal
    both_nan = np.isnan(ref) & np.isnan(got)
    diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
    scale = np.maximum(1.0, np.nan_to_num(np.abs(ref), nan=1.0, posinf=1.0))
    return float(diff.max()), float((diff / scale).max())


def compare(
    reference: Callable[[Tensor], Sequence[Tensor]],
    exported: Callable[[Tensor], Sequence[Any]],
    names: Sequence[str],
    image_sizes: Sequence[tuple[int, int]],
    batch_sizes: Sequence[int] = BATCH_SIZES,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> CheckReport:
    """Run ``reference`` (PyTorch) and ``exported`` on the same random normalised batches
    (``N(0, 1)``, one per batch size × image size) and record each output's differences."""
    generator = torch.Generator().manual_seed(seed)
    max_abs = dict.fromkeys(names, 0.0)
    max_error = dict.fromkeys(names, 0.0)
    worst: dict[str, tuple[int, ...]] = {}
    problems: list[str] = []
    for h, w in image_sizes:
        for b in batch_sizes:
            images = torch.randn(b, 3, h, w, generator=generator)
            with torch.no_grad():
                ref = [t.detach().float().cpu().numpy() for t in reference(images)]
            got = [
                np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v)
                for v in exported(images)
            ]
            if len(got) != len(names):
                problems.append(f"input {b}x3x{h}x{w}: {len(got)} outputs, expected {len(names)}")
                continue
            for name, r, g in zip(names, ref, got, strict=True):
                if r.shape != g.shape:
                    problems.append(
                        f"{name}: shape {list(g.shape)}, PyTorch {list(r.shape)} "
                        f"(input {b}x3x{h}x{w})"
                    )
                    diff = error = math.inf
                else:
                    diff, error = _differences(r, g)
                max_abs[name] = max(max_abs[name], diff)
                if error > max_error[name] or name not in worst:
                    max_error[name], worst[name] = max(error, max_error[name]), (b, 3, h, w)
    return CheckReport(
        max_abs, max_error, worst, problems, atol, list(batch_sizes), list(image_sizes)
    )


def _raise_if_failed(report: CheckReport, what: str) -> None:
    if report.ok:
        return
    raise ExportError(
        f"{what} does not match PyTorch within {report.atol:g} "
        f"(largest |diff| / max(1, |torch|): {report.overall:.3g}):\n{report.table()}"
    )


# ---- exporters ----------------------------------------------------------------------------------
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


def _load_model(checkpoint_or_model: VisionModel | str | os.PathLike) -> VisionModel:
    if isinstance(checkpoint_or_model, VisionModel):
        model = checkpoint_or_model
        params = list(model.parameters()) + list(model.buffers())
        if any(
            p.device.type != "cpu" or (p.is_floating_point() and p.dtype != torch.float32)
            for p in params
        ):
            model = copy.deepcopy(model).cpu().float()
        return model
    from visionkit.models.factory import load

    return load(checkpoint_or_model)  # weights_only=True (visionkit.checkpoint.load_checkpoint)


def _write_atomic(output: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``output``, then rename it over ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


def _require(module: str) -> Any:
    """Import an optional dependency of ONNX export (the ``onnx`` extra)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(
            f"ONNX export needs {module}, which is not installed: pip install 'visionkit[onnx]'"
        ) from None


def onnx_session(path: str | os.PathLike) -> Any:
    """An onnxruntime session on the CPU."""
    ort = _require("onnxruntime")

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export_onnx(
    model: VisionModel,
    module: ExportModule,
    names: list[str],
    paths: list[OutputPath],
    output: Path,
    opset: int,
    report: ExportReport,
) -> None:
    onnx = _require("onnx")

    sample = torch.randn(2, 3, *trace_size(model), generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        try:
            _onnx_dynamo(module, sample, names, raw, opset)
            report.exporter = "dynamo"
        except Exception as err:  # the fallback exporter is tried on any failure of the first
            reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            report.notes.append(
                f"dynamo exporter failed ({reason}); used the TorchScript-based one"
            )
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
            report.exporter = "torchscript"
        proto = onnx.load(str(raw))
    onnx.helper.set_model_props(proto, export_metadata(model, paths, report.exporter))
    proto.doc_string = (
        "visionkit model: normalised images [B, 3, H, W] (H, W multiples of "
        f"{SIZE_DIVISOR}) -> raw head outputs; see the visionkit.* metadata"
    )
    _write_atomic(output, lambda p: onnx.save(proto, str(p)))
    report.dynamic = ["batch", "height", "width"]


def _export_torchscript(
    model: VisionModel,
    module: ExportModule,
    paths: list[OutputPath],
    output: Path,
    report: ExportReport,
) -> None:
    sample = torch.randn(2, 3, *trace_size(model), generator=torch.Generator().manual_seed(0))
    extra = {TORCHSCRIPT_EXTRA_FILE: json.dumps(export_metadata(model, paths, "torch.jit.trace"))}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        traced = torch.jit.trace(module, (sample,), check_trace=False)
        _write_atomic(output, lambda p: torch.jit.save(traced, str(p), _extra_files=extra))
    report.exporter = "torch.jit.trace"
    report.dynamic = ["batch", "height", "width"]


def read_torchscript(path: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """A TorchScript export and its metadata (see :func:`read_metadata`)."""
    extra = {TORCHSCRIPT_EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, read_metadata(json.loads(extra[TORCHSCRIPT_EXTRA_FILE]))


def _export_safetensors(model: VisionModel, paths: list[OutputPath], output: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    metadata = export_metadata(model, paths)
    _write_atomic(output, lambda p: save_file(state, str(p), metadata=metadata))


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The visionkit metadata of a safetensors export (see :func:`read_metadata`)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return read_metadata(f.metadata() or {})


def _outputs_of(model: VisionModel, size: tuple[int, int]) -> list[OutputPath]:
    """The paths of the model's raw outputs (one forward pass on zeros)."""
    with torch.no_grad():
        return [path for path, _ in flatten_outputs(model(torch.zeros(1, 3, *size)))]


def _check_sizes_of(model: VisionModel, image_size: int | Sequence[int] | None):
    size = image_size or model.meta.get("config", {}).get("data", {}).get("image_size", 128)
    return check_sizes(size)


def verify(
    checkpoint_or_model: VisionModel | str | os.PathLike,
    format: str,
    path: str | os.PathLike,
    *,
    image_size: int | Sequence[int] | None = None,
    atol: float = DEFAULT_ATOL,
    batch_sizes: Sequence[int] = BATCH_SIZES,
) -> CheckReport:
    """Compare an exported file with the model it came from (what :func:`export` runs after
    writing): the same random inputs at ``batch_sizes`` × two image sizes (see
    :func:`check_sizes`; the first defaults to the config's ``data.image_size``).

    ONNX runs in onnxruntime (CPU), TorchScript with ``torch.jit.load``; a safetensors file is
    loaded through ``model.init_from`` into a freshly built model of the same config.

    Raises:
        ExportError: a shape differs, an output is missing, or an output differs by more than
            ``atol`` (see :class:`CheckReport`); the message holds the whole table.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; valid: {', '.join(FORMATS)}")
    model = _load_model(checkpoint_or_model)
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        sizes = _check_sizes_of(model, image_size)
        paths = _outputs_of(model, sizes[0])
        names = [output_name(p) for p in paths]
        module = ExportModule(model, paths).eval()
        if format == "onnx":
            session = onnx_session(path)
            graph_outputs = [o.name for o in session.get_outputs()]
            if graph_outputs != names:
                raise ExportError(f"{path}: outputs {graph_outputs}, the model has {names}")
            run = lambda x: session.run(names, {INPUT_NAME: x.numpy()})  # noqa: E731
            what = f"the ONNX export {path}"
        elif format == "torchscript":
            run, _ = read_torchscript(path)
            what = f"the TorchScript export {path}"
        else:
            reloaded = model_from_meta(model.meta, init_from=path.resolve()).eval()
            run = ExportModule(reloaded, paths).eval()
            what = f"the model loaded from {path} (model.init_from)"
        report = compare(module, run, names, sizes, batch_sizes, atol)
        _raise_if_failed(report, what)
        return report
    finally:
        model.train(was_training)


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
) -> ExportReport:
    """Export a model, then check the file against PyTorch (:func:`verify`).

    Args:
        checkpoint_or_model: a :class:`VisionModel`, or a checkpoint written by ``visionkit
            train`` (read by :func:`visionkit.load`, ``weights_only=True``).
        format: ``"onnx"`` (graph of backbone, neck and every head; dynamic batch, H and W),
            ``"torchscript"`` (``torch.jit.trace`` of the same module) or ``"safetensors"``
            (the state dict; loads back through ``model.init_from``).
        output: the file to write (atomically).
        image_size: first image size of the check (default: the config's
            ``data.image_size``), rounded up to a multiple of :data:`SIZE_DIVISOR`; the second
            is one divisor taller and two wider.
        opset: ONNX opset version.
        atol: largest ``|exported - torch| / max(1, |torch|)`` allowed (see :class:`CheckReport`).
        check: run the comparison (on ``batch_sizes`` × the two image sizes).

    Returns:
        An :class:`ExportReport`; ``report.check.table()`` lists the differences of each output.

    Raises:
        ExportError: an unknown format, a failed export, or differences above ``atol``.
        CheckpointError: the checkpoint cannot be loaded.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; valid: {', '.join(FORMATS)}")
    if atol < 0:
        raise ExportError(f"atol must be >= 0, got {atol}")
    model = _load_model(checkpoint_or_model)
    output = Path(output)
    was_training = model.training
    model.eval()
    try:
        paths = _outputs_of(model, _check_sizes_of(model, image_size)[0])
        names = [output_name(p) for p in paths]
        module = ExportModule(model, paths).eval()
        report = ExportReport(path=output, format=format, output_names=names)
        if format == "onnx":
            _export_onnx(model, module, names, paths, output, opset, report)
        elif format == "torchscript":
            _export_torchscript(model, module, paths, output, report)
        else:
            _export_safetensors(model, paths, output)
        if check:
            report.check = verify(
                model, format, output, image_size=image_size, atol=atol, batch_sizes=batch_sizes
            )
        return report
    finally:
        model.train(was_training)
