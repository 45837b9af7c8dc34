"""The check after every export: the exported model against PyTorch on the same inputs.

:func:`verify` runs the exported file and the model it came from (fp32, eval mode) on the same
random normalised inputs, at batch sizes 1 and 2 and two image sizes, and raises
:class:`~visionkit.errors.ExportError` when an output differs by more than ``atol``, measured
as ``|exported - torch| / max(1, |torch|)``: absolute for values up to 1 (logits), relative
above (box distances in pixels, whose float32 rounding grows with their size).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from visionkit.build.model import model_from_meta
from visionkit.choices import DEFAULT_ATOL
from visionkit.choices import EXPORT_FORMATS as FORMATS
from visionkit.errors import ExportError
from visionkit.export.end_to_end import (
    SIZES_NAME,
    NmsSettings,
    output_layout,
    reference_outputs,
)
from visionkit.export.graph import (
    INPUT_NAME,
    ExportModule,
    check_sizes_of,
    export_model,
    output_name,
    outputs_of,
)
from visionkit.export.onnx import onnx_session
from visionkit.export.torchscript import read_torchscript
from visionkit.models.model import VisionModel

BATCH_SIZES = (1, 2)


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
        detections: of an end-to-end (``--nms``) check, how many of PyTorch's detections it
            compared (``None`` for the raw outputs); 0 compares the graph's box decoding and
            NMS on nothing, which :meth:`table` says.
    """

    max_abs: dict[str, float]
    max_error: dict[str, float]
    worst_input: dict[str, tuple[int, ...]]
    problems: list[str]
    atol: float
    batch_sizes: list[int]
    image_sizes: list[tuple[int, int]]
    detections: int | None = None

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
        if self.detections == 0:  # random inputs that score nothing at --conf
            lines.append(
                "note: no detection scored the score threshold on the random check inputs, so "
                "the boxes, scores and NMS compared none; export with a lower --conf to check "
                "them, or compare on your photos (visionkit.inference.onnx_runtime.OnnxPredictor)"
            )
        compared = f"max |diff| / max(1, |torch|) = {self.overall:.3g}"
        lines.append(
            f"check passed: {compared} <= tolerance {self.atol:g} (--atol)"
            if self.ok
            else f"check FAILED: {compared}, tolerance {self.atol:g} (--atol)"
            + (f"; {len(self.problems)} problem(s)" if self.problems else "")
        )
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


def raise_if_failed(report: CheckReport, what: str) -> None:
    if report.ok:
        return
    raise ExportError(
        f"{what} does not match PyTorch within {report.atol:g} "
        f"(largest |diff| / max(1, |torch|): {report.overall:.3g}):\n{report.table()}"
    )


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
    :func:`check_sizes`; the first defaults to the config's evaluation size).

    ONNX runs in onnxruntime (CPU), TorchScript with ``torch.jit.load``; a safetensors file is
    loaded through ``model.init_from`` into a freshly built model of the same config.

    Raises:
        ExportError: a shape differs, an output is missing, or an output differs by more than
            ``atol`` (see :class:`CheckReport`); the message holds the whole table.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; valid: {', '.join(FORMATS)}")
    model = export_model(checkpoint_or_model)
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        sizes = check_sizes_of(model, image_size)
        paths = outputs_of(model, sizes[0])
        names = [output_name(p) for p in paths]
        module = ExportModule(model, paths).eval()
        if format == "onnx":
            session = onnx_session(path)
            graph_outputs = [o.name for o in session.get_outputs()]
            if graph_outputs != names:
                raise ExportError(f"{path}: outputs {graph_outputs}, the model has {names}")
            run = lambda x: _run_graph(session, names, {INPUT_NAME: x.numpy()}, path)  # noqa: E731
            what = f"the ONNX export {path}"
        elif format == "torchscript":
            run = partial(_run_traced, read_torchscript(path)[0], path)
            what = f"the TorchScript export {path}"
        else:
            reloaded = model_from_meta(model.meta, init_from=path.resolve(), source=path).eval()
            run = ExportModule(reloaded, paths).eval()
            what = f"the model loaded from {path} (model.init_from)"
        report = compare(module, run, names, sizes, batch_sizes, atol)
        raise_if_failed(report, what)
        return report
    finally:
        model.train(was_training)


def _run_traced(module: Any, path: Any, images: Tensor) -> Any:
    """The traced ``module`` on ``images``, its failure an :class:`ExportError`: a model that
    computes a size in Python (a plain ViT's position table, its patch grid) is traced at one
    input size and fails at another."""
    try:
        return module(images)
    except RuntimeError as err:
        shape = "x".join(str(d) for d in images.shape)
        last = str(err).strip().splitlines()[-1][:300]
        raise ExportError(
            f"the TorchScript export {path} cannot run on an input of {shape} ({last}): "
            "torch.jit.trace may have kept a size the model computes from its input as a "
            "constant; export --format onnx (its sizes stay dynamic) or --format safetensors"
        ) from None


def _run_graph(session: Any, names: list[str], feed: dict[str, Any], path: Any) -> list[Any]:
    """``session.run``, its failure an :class:`ExportError` (onnxruntime raises its own
    exception types, with its node names: a graph the exporter wrote that onnxruntime cannot
    run at this size)."""
    try:
        return session.run(names, feed)
    except Exception as err:  # onnxruntime's InvalidArgument, Fail, RuntimeException, ...
        shape = "x".join(str(d) for d in next(iter(feed.values())).shape)
        first = str(err).strip().splitlines()[0][:300]
        raise ExportError(
            f"onnxruntime cannot run the exported graph {path} on an input of {shape} "
            f"({type(err).__name__}: {first}); try "
            "--exporter torchscript (or dynamo), another --opset, or export --format "
            "torchscript / safetensors"
        ) from None


def _paired(
    layout: Sequence[dict[str, Any]],
    ref_values: Sequence[Any],
    got_values: Sequence[Any],
    atol: float,
    problems: list[str],
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """End-to-end outputs of PyTorch and of the file with each detection head's rows (its
    ``[N, ...]`` outputs: boxes, scores, labels, batch_index, keypoints, embeddings) paired:
    each PyTorch detection with the file's of the same image and label whose box is nearest
    (closest pairs first, within ``atol`` of the box's size), the unpaired left out.

    Sorting both by position paired other detections as soon as a box moved by a rounding
    (every float16 file failed its check). A detection without a counterpart is expected
    where near-equal scores trade places: within ``atol`` of its image's lowest kept score
    (``max_det``), or beside a box of the other side that overlaps it (IoU 0.5) with a score
    within ``atol`` (NMS kept the other); more others than an ``atol`` fraction of the
    detections are a problem, appended to ``problems``."""
    ref = [np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v) for v in ref_values]
    got = [np.asarray(v.detach().cpu() if isinstance(v, Tensor) else v) for v in got_values]
    for out in layout:
        if out["key"] != "boxes":
            continue
        rows = [j for j, o in enumerate(layout) if o["head"] == out["head"]]
        rows = [j for j in rows if layout[j]["shape"][:1] == ["N"]]
        keys = {layout[j]["key"]: j for j in rows}
        b, lab, img, score = (keys[k] for k in ("boxes", "labels", "batch_index", "scores"))
        scale = np.maximum(1.0, np.abs(ref[b]).max(axis=1, initial=0.0))[:, None]
        cost = np.abs(ref[b][:, None, :].astype(np.float64) - got[b][None, :, :]).max(axis=2)
        cost /= scale
        other = (ref[lab][:, None] != got[lab][None, :]) | (ref[img][:, None] != got[img][None, :])
        cost[other | (cost > atol)] = np.inf
        pairs = []
        while cost.size and np.isfinite(cost.min()):
            i, j = np.unravel_index(np.argmin(cost), cost.shape)
            pairs.append((i, j))
            cost[i, :], cost[:, j] = np.inf, np.inf
        pairs.sort()
        mine, theirs = [i for i, _ in pairs], [j for _, j in pairs]
        lowest: dict[int, float] = {}  # per image: the lowest score kept on either side
        for values in (ref, got):
            for image, value in zip(values[img].tolist(), values[score].tolist(), strict=True):
                lowest[image] = min(lowest.get(image, value), value)
        sides = ((ref, got, mine, "PyTorch's"), (got, ref, theirs, "the file's"))
        for values, others, paired, side in sides:
            unpaired = [k for k in range(len(values[b])) if k not in set(paired)]
            overlap = box_iou(
                torch.as_tensor(values[b]).float(), torch.as_tensor(others[b]).float()
            )
            swapped = (  # NMS kept another of two near-equal overlapping boxes
                (overlap.numpy() >= 0.5)
                & (np.abs(values[score][:, None] - others[score][None, :]) <= atol)
                & (values[lab][:, None] == others[lab][None, :])
                & (values[img][:, None] == others[img][None, :])
            ).any(axis=1)
            floor = [lowest[int(i)] + atol for i in values[img].tolist()]
            high = [k for k in unpaired if values[score][k] > floor[k] and not swapped[k]]
            if len(high) > atol * len(values[b]):  # a fraction, as for mask pixels
                problems.append(
                    f"{out['head']}: {len(high)} of {side} detections scoring more than "
                    f"{atol} above their image's lowest kept score have no counterpart of the "
                    f"same label within {atol}"
                )
        for j in rows:
            ref[j], got[j] = ref[j][mine], got[j][theirs]
    return ref, got


def detected(output: dict[str, Any]) -> bool:
    """Whether an end-to-end output is a detection head's scores (``[N]``, one per box)."""
    return output["key"] == "scores" and output["shape"][:1] == ["N"]


def verify_end_to_end(
    model: VisionModel,
    path: str | os.PathLike,
    settings: NmsSettings,
    *,
    image_size: int | Sequence[int] | None = None,
    atol: float = DEFAULT_ATOL,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    seed: int = 0,
) -> CheckReport:
    """Compare an end-to-end ONNX file (``--nms``) with the heads' own ``postprocess`` on the
    same random batches (:func:`~visionkit.export.end_to_end.reference_outputs`).

    Detections are compared as sets (each paired with the nearest of its image and label:
    :func:`_paired`); a detection without a counterpart is a problem unless it scores within
    ``atol`` of the lowest kept score (where near-equal scores trade places). For a ``mask`` output the figure is the fraction of pixels whose
    label differs (a logit tie can flip one), bounded by ``atol`` like the others.

    Raises:
        ExportError: a count or shape differs, or a figure exceeds ``atol``.
    """
    session = onnx_session(path)
    layout = output_layout(model, settings)
    names = [o["name"] for o in layout]
    generator = torch.Generator().manual_seed(seed)
    max_abs = dict.fromkeys(names, 0.0)
    max_error = dict.fromkeys(names, 0.0)
    worst: dict[str, tuple[int, ...]] = {}
    problems: list[str] = []
    sizes = check_sizes_of(model, image_size)
    detections = 0  # PyTorch's, over every input
    dtype = next(model.parameters()).dtype  # float16 for a half export
    # a float16 file is checked against the float32 model it was made from: PyTorch's own
    # float16 on the CPU rounds more than the file's kernels (scores off by 0.02)
    reference = model if dtype == torch.float32 else copy.deepcopy(model).float()
    for h, w in sizes:
        for b in batch_sizes:
            images = torch.randn(b, 3, h, w, generator=generator).to(dtype)
            with torch.no_grad():
                expected = reference_outputs(reference, settings, images.float())
            feed = {INPUT_NAME: images.numpy(), SIZES_NAME: np.array([[h, w]] * b, np.int64)}
            # the TorchScript-based exporter drops image_sizes when no head reads it
            feed = {i.name: feed[i.name] for i in session.get_inputs()}
            outputs = _run_graph(session, names, feed, path)
            ref, got = _paired(layout, expected, outputs, atol, problems)
            detections += sum(len(r) for o, r in zip(layout, ref, strict=True) if detected(o))
            for out, r, g in zip(layout, ref, got, strict=True):
                name = out["name"]
                if r.shape != g.shape:
                    problems.append(
                        f"{name}: shape {list(g.shape)}, PyTorch {list(r.shape)} "
                        f"(input {b}x3x{h}x{w})"
                    )
                    diff = error = math.inf
                elif out["key"] == "mask":
                    diff = error = float((r != g).mean()) if r.size else 0.0
                else:
                    diff, error = _differences(r, g)
                max_abs[name] = max(max_abs[name], diff)
                if error > max_error[name] or name not in worst:
                    max_error[name], worst[name] = max(error, max_error[name]), (b, 3, h, w)
    boxes = any(map(detected, layout))  # a detection head (not only classes and label maps)
    report = CheckReport(
        max_abs,
        max_error,
        worst,
        problems,
        atol,
        list(batch_sizes),
        sizes,
        detections if boxes else None,
    )
    raise_if_failed(report, f"the end-to-end ONNX export {path}")
    return report
