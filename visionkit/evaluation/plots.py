"""The pictures of ``visionkit eval``: precision-recall and F1-confidence curves and detection
confusion matrices, drawn as Ultralytics draws them, and the one heat-map drawer of the package
(:func:`draw_matrix`, also used for the classification confusion matrices of training,
``engine/pictures.py``).

- :func:`pr_curves` reads COCOeval's own ``precision`` array (IoU 0.50, area all, 100
  detections per image): the curve of each class and their mean, AP50 per class.
- :func:`match_detections` is the matching of one image behind the detection confusion matrix
  (Ultralytics' ``ConfusionMatrix.process_batch``): detections scoring at least ``conf`` are
  matched to ground-truth boxes of any class at IoU >= ``iou``, one to one, highest IoU first;
  rows are predicted classes, columns true classes, and the last row / column is
  "background": a true object no detection matched is counted in the background row (missed),
  a detection that matched nothing in the background column (false positive).
- :func:`confusion_conf` is the matrix's score threshold: ``max(conf, 0.25)`` (Ultralytics
  draws it at 0.25 when ``val`` runs at its mAP threshold 0.001), or the threshold asked for
  explicitly (``visionkit eval --matrix-conf``); :func:`detection_confusion` is the matrix of one
  evaluator with its class order, as ``visionkit eval --json`` prints it.
- :func:`eval_dir` picks a new folder of the checkpoint's run for them (``eval``, ``eval-2``,
  ...), and :func:`write_eval_plots` writes, for one COCO evaluator, ``pr_curve_<name>.png`` (and
  ``pr_curve_<name>_mask.png`` for masks), ``f1_curve_<name>.png`` (F1 against the score
  threshold: :func:`plot_f1_curve`; ``f1_curve_<name>_mask.png``),
  ``confusion_matrix_<name>.png`` (counts) and ``confusion_matrix_<name>_normalized.png``
  (each true column sums to 1).

:func:`pyplot` and :func:`save_figure` are the package's one way to draw with matplotlib (imported
only when a picture is drawn) and to write a figure (atomically, like every file visionkit
writes: :func:`~visionkit.checkpoint.write_atomic`); :func:`save_image` writes a PIL picture.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from visionkit.checkpoint import run_folder_of, unused_folder, write_atomic
from visionkit.errors import VisionkitError

#: Ultralytics' score threshold of the confusion matrix when none is given (its ``val`` runs
#: with conf 0.001 for mAP, and the matrix then uses 0.25).
CONFUSION_CONF = 0.25
CONFUSION_IOU = 0.5


def confusion_conf(conf: float | None = None, matrix_conf: float | None = None) -> float:
    """The score threshold of the detection confusion matrix: ``matrix_conf`` when given,
    else ``max(conf, CONFUSION_CONF)``, ``CONFUSION_CONF`` without ``conf``.

    ``conf`` is the detection threshold of the evaluation, kept low for mAP (COCO AP integrates
    the precision-recall curve down to its lowest scores); at 0.001 or 0.05 a matrix would count
    every low-scoring guess as a false positive, so the matrix never goes under 0.25 unless
    asked (Ultralytics: ``conf = 0.25 if conf in {None, 0.001} else conf``).

    >>> confusion_conf(), confusion_conf(0.001), confusion_conf(0.5), confusion_conf(0.001, 0.01)
    (0.25, 0.25, 0.5, 0.01)
    """
    if matrix_conf is not None:
        return float(matrix_conf)
    return CONFUSION_CONF if conf is None else max(float(conf), CONFUSION_CONF)


def match_detections(
    gt_boxes: Any,
    gt_labels: Any,
    boxes: Any,
    labels: Any,
    scores: Any,
    num_classes: int,
    iou: float = CONFUSION_IOU,
    conf: float = CONFUSION_CONF,
) -> np.ndarray:
    """The detection confusion matrix of one image: int64 ``[C + 1, C + 1]``, rows predicted
    class, columns true class, index ``C`` background.

    Args:
        gt_boxes: ``[G, 4]`` xyxy ground-truth boxes; ``gt_labels``: ``[G]`` classes in
            ``0..C-1``.
        boxes, labels, scores: ``[N, 4]`` xyxy detections, their classes and scores.
        num_classes: ``C``.
        iou: a detection and a true box match when their IoU is at least this.
        conf: detections scoring below this are left out.

    Matching ignores the classes (so a detection of the wrong class on an object counts in
    the cell of that confusion); each detection and each true box is matched at most once,
    pairs taken by decreasing IoU. A matched pair adds 1 at ``[predicted, true]``; an unmatched
    true box at ``[C, true]``; an unmatched detection at ``[predicted, C]``.
    """
    gt_boxes = torch.as_tensor(np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4))
    gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    keep = np.asarray(scores, dtype=np.float64).reshape(-1) >= conf
    boxes, labels = torch.as_tensor(boxes[keep]), labels[keep]
    for name, values in (("gt_labels", gt_labels), ("labels", labels)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must be in 0..{num_classes - 1}, got {values.tolist()}")
    matrix = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    matched_gt = np.full(len(gt_labels), -1)
    matched_det = np.zeros(len(labels), dtype=bool)
    if len(gt_labels) and len(labels):
        overlaps = box_iou(gt_boxes, boxes).numpy()  # [G, N]
        gi, di = np.nonzero(overlaps >= iou)
        for k in np.argsort(-overlaps[gi, di], kind="stable"):
            g, d = gi[k], di[k]
            if matched_gt[g] < 0 and not matched_det[d]:
                matched_gt[g], matched_det[d] = d, True
    for g, true in enumerate(gt_labels):
        predicted = labels[matched_gt[g]] if matched_gt[g] >= 0 else num_classes
        matrix[predicted, true] += 1
    for d in np.nonzero(~matched_det)[0]:
        matrix[labels[d], num_classes] += 1
    return matrix


def coco_confusion(
    gt: Any,
    results: Sequence[dict[str, Any]],
    image_ids: Sequence[int],
    cat_ids: Sequence[int],
    iou: float = CONFUSION_IOU,
    conf: float = CONFUSION_CONF,
) -> np.ndarray:
    """:func:`match_detections` summed over ``image_ids``, from a ``pycocotools.coco.COCO``
    ground truth and a COCO results list (xywh ``bbox``); class ``k`` is ``cat_ids[k]``.
    Crowd annotations are left out (they are neither objects to find nor false positives'
    partners); results of other categories are left out, as COCOeval does."""
    index = {int(c): k for k, c in enumerate(cat_ids)}
    per_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        if int(r["category_id"]) in index:
            per_image.setdefault(int(r["image_id"]), []).append(r)
    total = np.zeros((len(index) + 1, len(index) + 1), dtype=np.int64)
    for image_id in image_ids:
        anns = [
            a
            for a in gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
            if not a.get("iscrowd", 0) and int(a["category_id"]) in index
        ]
        dets = per_image.get(int(image_id), [])
        total += match_detections(
            [_xyxy(a["bbox"]) for a in anns],
            [index[int(a["category_id"])] for a in anns],
            [_xyxy(r["bbox"]) for r in dets],
            [index[int(r["category_id"])] for r in dets],
            [r["score"] for r in dets],
            len(index),
            iou,
            conf,
        )
    return total


def _xyxy(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def pr_curves(details: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recall points ``[R]``, precision ``[K, R]`` and AP50 ``[K]`` per category of one
    :func:`~visionkit.evaluation.coco.coco_evaluate` ``details`` dict, from COCOeval's
    ``precision`` at IoU 0.50, area all, 100 detections per image. A category without ground
    truth (COCO's -1) has ``nan`` precision and AP; without results precision is all 0."""
    recall = np.asarray(details.get("recall", np.linspace(0.0, 1.0, 101)), dtype=np.float64)
    precision = details.get("precision")
    count = len(details["cat_ids"])
    if precision is None:
        curves = np.zeros((count, len(recall)))
    else:
        curves = np.asarray(precision[0, :, :, 0, -1], dtype=np.float64).T.copy()  # [K, R]
        curves[curves < 0] = np.nan
    return recall, curves, curves.mean(1)


def plot_pr_curve(
    recall: np.ndarray, curves: np.ndarray, ap50: np.ndarray, names: Sequence[str], path: Path
) -> None:
    """Ultralytics' ``PR_curve.png``: one thin line per class labelled with its AP50 (grey and
    unlabelled beyond 20 classes), the mean over the classes with ground truth in bold blue
    labelled ``all classes <mAP50> mAP@0.5``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 6), tight_layout=True)
    many = len(names) > 20
    for k, name in enumerate(names):
        if np.isnan(ap50[k]):
            continue
        if many:
            ax.plot(recall, curves[k], linewidth=1, color="grey")
        else:
            ax.plot(recall, curves[k], linewidth=1, label=f"{name} {ap50[k]:.3f}")
    defined = ~np.isnan(ap50)
    if defined.any():
        mean = curves[defined].mean(0)
        label = f"all classes {ap50[defined].mean():.3f} mAP@0.5"
        ax.plot(recall, mean, linewidth=3, color="blue", label=label)
    finish_curve(fig, ax, ("Recall", "Precision"), "Precision-Recall Curve", path)


def finish_curve(fig: Any, ax: Any, labels: tuple[str, str], title: str, path: Path) -> None:
    """Axis labels (x, y), both axes 0-1, the legend beside the plot, the title; saved."""
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    ax.set_title(title)
    save_figure(fig, path)


def plot_f1_curve(
    curve: dict[str, Any], names: Sequence[str], path: Path, floor: float = 0.0
) -> None:
    """Ultralytics' ``F1_curve.png``: F1 against the score threshold, one thin line per class
    with ground truth (grey and unlabelled beyond 20 classes; ``names`` per ``curve["cat_ids"]``)
    and the mean in bold blue, labelled ``all classes <F1> at <score>`` (its best on the
    smoothed curve, not under ``floor``: :func:`~visionkit.evaluation.confidence.best_conf`)."""
    from visionkit.evaluation.confidence import best_conf

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 6), tight_layout=True)
    many = len(names) > 20
    for name, f1 in zip(names, curve["F1_per_class"], strict=True):
        if many:
            ax.plot(curve["conf"], f1, linewidth=1, color="grey")
        else:
            ax.plot(curve["conf"], f1, linewidth=1, label=name)
    best = best_conf(curve["P"], curve["R"], curve["F1"], curve["conf"], floor)
    found = best["F1"] > 0
    label = f"all classes {best['F1']:.2f}" + (f" at {best['conf']:.2f}" if found else "")
    ax.plot(curve["conf"], curve["F1"], linewidth=3, color="blue", label=label)
    if found:
        ax.axvline(best["conf"], color="blue", linewidth=1, linestyle=":")
    finish_curve(fig, ax, ("Confidence", "F1"), "F1-Confidence Curve (IoU 0.50)", path)


def plot_detection_confusion(
    matrix: np.ndarray, names: Sequence[str], path: Path, normalize: bool, title: str = ""
) -> None:
    """A :func:`coco_confusion` matrix as Ultralytics draws ``confusion_matrix.png`` (counts)
    and ``confusion_matrix_normalized.png`` (each true column divided by its total): rows
    predicted, columns true, with a ``background`` row and column."""
    labels = [*names, "background"]
    values = matrix.astype(np.float64)
    if normalize:
        values = values / (values.sum(0, keepdims=True) + 1e-9)
    kind = "Confusion Matrix Normalized" if normalize else "Confusion Matrix"
    draw_matrix(
        values,
        labels,
        labels,
        path,
        title=f"{kind} {title}".strip(),
        xlabel="True",
        ylabel="Predicted",
        fmt=".2f" if normalize else ".0f",
        vmax=1.0 if normalize else None,
        blank_below=0.005 if normalize else 0.5,
    )


def draw_matrix(
    values: Any,
    rows: Sequence[str],
    columns: Sequence[str],
    path: Path,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    fmt: str = ".2f",
    vmax: float | None = None,
    blank_below: float | None = None,
) -> None:
    """A heat map of ``values[row, column]`` with the row and column names and, up to 30
    rows and columns, each cell's value (``fmt``; cells under ``blank_below`` left empty), as a
    PNG at ``path`` (its folder is made)."""
    plt = pyplot()
    values = np.asarray(values, dtype=np.float64)
    top = vmax if vmax is not None else max(float(values.max(initial=0.0)), 1e-9)
    side = max(4.0, 0.55 * max(len(rows), len(columns)) + 2)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, int(side * 9)), fontsize=10)  # a small matrix cut it
    if max(len(rows), len(columns)) <= 30:
        for r in range(len(rows)):
            for c in range(len(columns)):
                value = float(values[r, c])
                if blank_below is not None and value < blank_below:
                    continue
                colour = "white" if value > 0.5 * top else "black"
                ax.text(
                    c, r, format(value, fmt), ha="center", va="center", fontsize=7, color=colour
                )
    fig.tight_layout()
    save_figure(fig, path)


def eval_dir(checkpoint: str | os.PathLike) -> Path:
    """A new folder for the files of one ``visionkit eval`` of ``checkpoint``: ``<run>/eval``
    where ``<run>`` is the run folder (the checkpoint's folder, or the folder above when that
    is ``checkpoints/``), else the first of ``eval-2``, ``eval-3``, ... that does not exist yet
    (:func:`~visionkit.checkpoint.unused_folder`), so earlier results are never overwritten.
    The folder is made here; one that cannot be made is a :class:`~visionkit.errors.
    VisionkitError` naming it."""
    chosen = unused_folder(run_folder_of(checkpoint) / "eval", Path.exists)
    try:
        chosen.mkdir(parents=True)
    except OSError as err:
        raise VisionkitError(
            f"cannot make the folder of the eval plots {chosen}: {err.strerror or err}; "
            "--no-plots skips the plots"
        ) from None
    return chosen


def detection_confusion(evaluator: Any, conf: float = CONFUSION_CONF) -> dict[str, Any] | None:
    """The box confusion matrix (:func:`coco_confusion` at score ``conf``, IoU
    :data:`CONFUSION_IOU`) of one evaluated :class:`~visionkit.evaluation.coco.CocoEvaluator`,
    with its class order: ``{"classes": [*names, "background"], "category_ids": [...],
    "conf": ..., "iou": ..., "matrix": [[int]]}``, rows predicted and columns true class (the
    last of each background). ``None`` when the evaluator has not scored."""
    details = next(iter(evaluator.details.values()), None)
    if details is None:
        return None
    gt = evaluator.coco_gt
    cat_ids = [int(c) for c in details["cat_ids"]]
    matrix = coco_confusion(
        gt, evaluator.results, details["image_ids"] or [], cat_ids, CONFUSION_IOU, conf
    )
    return {
        "classes": [*(gt.cats[c].get("name", str(c)) for c in cat_ids), "background"],
        "category_ids": cat_ids,
        "conf": float(conf),
        "iou": CONFUSION_IOU,
        "matrix": matrix.tolist(),
    }


def write_eval_plots(
    evaluator: Any, name: str, folder: Path, conf: float = CONFUSION_CONF
) -> list[Path]:
    """The PNGs of one evaluated :class:`~visionkit.evaluation.coco.CocoEvaluator` (see the
    module docstring) in ``folder``; returns their paths. ``conf``: the confusion matrix's
    score threshold (:func:`confusion_conf` picks it for ``visionkit eval``). The confusion
    matrix is of boxes, also for an instance head."""
    gt = evaluator.coco_gt
    written = []

    def names_of(cat_ids: Sequence[int]) -> list[str]:
        return [gt.cats[c].get("name", str(c)) for c in cat_ids]

    for iou_type, details in evaluator.details.items():
        recall, curves, ap50 = pr_curves(details)
        suffix = "" if iou_type == "bbox" else "_mask"
        path = folder / f"pr_curve_{name}{suffix}.png"
        plot_pr_curve(recall, curves, ap50, names_of(details["cat_ids"]), path)
        written.append(path)
        f1 = details.get("f1")
        if f1 is not None:
            path = folder / f"f1_curve_{name}{suffix}.png"
            plot_f1_curve(f1, names_of(f1["cat_ids"]), path, evaluator.score_floor)
            written.append(path)
    confusion = detection_confusion(evaluator, conf)
    if confusion is None:
        return written
    matrix = np.asarray(confusion["matrix"], dtype=np.int64)
    names = confusion["classes"][:-1]
    for normalize, suffix in ((False, ""), (True, "_normalized")):
        path = folder / f"confusion_matrix_{name}{suffix}.png"
        plot_detection_confusion(matrix, names, path, normalize, title=f"({name})")
        written.append(path)
    return written


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG at ``path`` (its folder made, the file written atomically) and
    close it."""
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    finally:
        pyplot().close(fig)


def save_image(image: Any, path: Path) -> None:
    """Write the PIL image ``image`` as a PNG at ``path`` (its folder made, atomically)."""
    write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
