"""Pictures and tables of the validations, written into the run folder.

:class:`ValidationPictures` is a Lightning callback (rank 0 writes; the sanity check is
skipped). It writes:

- ``plots/val_predictions.png``, at the end: the first ``num_images`` (8) validation images
  (shared out over the sets of a mix, each caption starting with its set's name), each with
  the model's predictions drawn (left) and the ground truth drawn (right), by
  :func:`visionkit.inference.draw.draw_predictions`. It costs a forward pass over those
  images and the drawing, so it is written by ``trainer.validate`` runs only — ``visionkit train``
  validates ``best.ckpt`` once more when training ends, so the grid shows the best
  checkpoint — unless ``grid_during_fit=True`` (after every validation).

After **every** validation it (re)writes:

- ``plots/confusion_<head>.png`` for each classification head (images, top-1) and each
  semantic head (pixels): the confusion matrix over the **whole** validation set, normalised
  per true class (rows sum to 1), with the class names. It costs nothing extra: it is the
  evaluator's own matrix, counted over every process (:func:`class_confusion`).
- ``per_class_ap_<head>.csv`` and ``per_class_ap_<head>.md`` for each detection / instance
  head with a COCO evaluator: AP, AP50 and AP75 per category (and the mask APs of an
  instance head), read from the evaluator's COCOeval ``precision`` array
  (:meth:`~visionkit.evaluation.coco.CocoEvaluator.per_class_ap`);
  ``per_class_iou_<head>.*`` for each semantic head (IoU and pixels per class) and
  ``per_class_recall_<head>.*`` for each classification head (:func:`write_class_tables`).

The last validation wins: after :func:`visionkit.engine.runner.train`, which validates
``best.ckpt`` once more at the end, every file shows the best checkpoint.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from visionkit.checkpoint import write_atomic
from visionkit.data.datasets import first_images, set_label, val_sets
from visionkit.evaluation.plots import draw_matrix, save_image
from visionkit.evaluation.tasks import TASKS
from visionkit.inference.draw import draw_predictions, enlarged


class ValidationPictures(L.Callback):
    """Writes the validation pictures and per-class tables described in this module.

    Args:
        run_dir: the run folder (pictures go to ``run_dir/plots``).
        val_dataset: the raw validation dataset (or a name → dataset dict); ``None``: the
            ``datasets["val"]`` of the trainer's datamodule.
        num_images: how many validation images the prediction grid shows.
        grid_during_fit: draw the grid after every validation of ``trainer.fit`` too, not only
            in ``trainer.validate`` runs.
    """

    def __init__(
        self,
        run_dir: str | Path,
        val_dataset: Any = None,
        num_images: int = 8,
        grid_during_fit: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.val_dataset = val_dataset
        self.num_images = num_images
        self.grid_during_fit = grid_during_fit

    # ---------------------------------------------------------------- writing
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        model = pl_module.model
        plots = self.run_dir / "plots"
        for key, evaluator in pl_module.evaluators.items():
            name = key.replace("@", "_")
            write_class_tables(evaluator, self.run_dir, name)
            found = class_confusion(evaluator)
            if found is not None and found[0].sum() > 0:
                counts, names, unit = found
                plot_confusion(counts, names, plots / f"confusion_{name}.png", name, unit=unit)
        if self.grid_during_fit or trainer.state.fn != TrainerFn.FITTING:
            samples, labels = self._samples(trainer)
            if samples:
                write_prediction_grid(model, samples, plots / "val_predictions.png", labels)

    def _samples(self, trainer: L.Trainer) -> tuple[list[dict[str, Any]], list[str]]:
        """The first ``num_images`` raw validation samples (shared out over several sets) and
        the caption prefix of each, naming its set when there are several."""
        val = self.val_dataset
        if val is None:
            val = getattr(getattr(trainer, "datamodule", None), "datasets", {}).get("val")
        sets = val_sets(val)
        first = first_images(sets, self.num_images)
        return [ds[i] for _, ds, i in first], [set_label(name, sets) for name, _, _ in first]


def label_names(model: Any, head_name: str) -> list[str]:
    """Class names of a head: its ``class_names``, else the model's names of its task's label
    family, else ``"0", "1", ...``."""
    head = model.heads[head_name]
    names = getattr(head, "class_names", None)
    spec = TASKS.get(getattr(head, "task", None))
    if not names and spec is not None:
        names = (model.meta.get("label_names") or {}).get(spec.labels, [])
    if not names or len(names) != head.num_classes:
        names = [str(i) for i in range(head.num_classes)]
    return list(names)


def ground_truth(model: Any, sample: dict[str, Any]) -> dict[str, Any]:
    """A sample's labels in the shape of a prediction, per head (so
    :func:`~visionkit.inference.draw.draw_predictions` draws them; no scores), each by its
    task's ``ground_truth`` (:data:`visionkit.evaluation.tasks.TASKS`)."""
    truth: dict[str, Any] = {}
    for name, head in model.heads.items():
        spec = TASKS.get(getattr(head, "task", None))
        if spec is None or spec.ground_truth is None:
            continue
        names = label_names(model, name) if hasattr(head, "num_classes") else None
        entry = spec.ground_truth(head, sample, names)
        colours = (model.meta.get("class_colours") or {}).get(spec.labels)
        if entry is not None and colours and "mask" in entry:  # as its predictions are drawn
            entry = {**entry, "colours": colours}
        if entry is not None:
            truth[name] = entry
    return truth


def write_prediction_grid(
    model: Any,
    samples: list[dict[str, Any]],
    path: Path,
    labels: list[str] | None = None,
    min_side: int = 192,
) -> None:
    """A PNG with one row per sample: the predictions drawn (left; as ``visionkit predict``
    keeps them: each box head at its best-F1 score threshold of the last validation,
    :func:`~visionkit.inference.options.prediction_conf`) and the ground truth drawn (right),
    each under a caption that starts with the sample's entry of ``labels`` (its validation
    set's name); images whose shorter side is under ``min_side`` pixels are enlarged by a
    whole factor."""
    from PIL import Image, ImageDraw

    images = [np.asarray(s["image"]) for s in samples]
    predictions = model.predict(images, batch_size=len(images))
    labels = labels or [""] * len(samples)
    caption, gap = 14, 4
    rows = []
    for index, (sample, image, prediction, label) in enumerate(
        zip(samples, images, predictions, labels, strict=True)
    ):
        scale = max(1, -(-min_side // min(image.shape[:2])))  # small images: enlarged, then
        pictures = []  # drawn, so that their captions are as readable as a large image's
        for shown in (prediction, ground_truth(model, sample)):
            big, shown = enlarged(image, shown, scale)
            pictures.append(Image.fromarray(draw_predictions(big, shown)))
        height = max(p.height for p in pictures) + caption
        row = Image.new("RGB", (sum(p.width for p in pictures) + gap, height), (255, 255, 255))
        draw = ImageDraw.Draw(row)
        x = 0
        for title, picture in zip(("prediction", "ground truth"), pictures, strict=True):
            row.paste(picture, (x, caption))
            caption_text = f"{label}{title}, image {sample.get('image_id', index)}"
            draw.text((x + 2, 1), caption_text, fill=0)
            x += picture.width + gap
        rows.append(row)
    grid = Image.new(
        "RGB",
        (max(r.width for r in rows), sum(r.height for r in rows) + gap * (len(rows) - 1)),
        (255, 255, 255),
    )
    y = 0
    for row in rows:
        grid.paste(row, (0, y))
        y += row.height + gap
    save_image(grid, path)


def plot_confusion(
    counts: Tensor, names: list[str], path: Path, title: str = "", unit: str = "images"
) -> None:
    """The confusion matrix ``counts[true, predicted]`` (of ``unit``: images, pixels)
    normalised per true class (row), as a heat map with the class names and the share in each
    cell (:func:`visionkit.evaluation.plots.draw_matrix`)."""
    counts = counts.double()
    totals = counts.sum(1, keepdim=True)
    shares = torch.where(totals > 0, counts / totals.clamp(min=1), torch.zeros_like(counts))
    draw_matrix(
        shares.numpy(),
        names,
        names,
        path,
        title=f"{title} confusion (rows normalised, {int(counts.sum())} {unit})".strip(),
        xlabel="predicted",
        ylabel="true",
        vmax=1.0,
    )


def class_confusion(evaluator: Any) -> tuple[Tensor, list[str], str] | None:
    """``(counts[true, predicted], class names, unit)`` of an evaluator that has scored and
    counts (true, predicted) classes: a semantic head's pixels, a classification head's images
    (top-1); ``None`` for others (COCO evaluators have their own box matrix)."""
    if getattr(evaluator, "global_confusion", None) is not None:
        counts, unit = evaluator.global_confusion, "pixels"
    elif getattr(evaluator, "confusion", None) is not None and hasattr(evaluator, "per_class"):
        counts, unit = evaluator.confusion, "images"
    else:
        return None
    names = evaluator.class_names or [str(i) for i in range(counts.shape[0])]
    return counts.cpu(), list(names), unit


def ap_table(evaluator: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of a COCO evaluator's per-class AP table: per category
    ``category_id``, ``name``, ``instances``, ``AP``, ``AP50`` and ``AP75`` (and ``mask_AP``,
    ... for masks), from :meth:`~visionkit.evaluation.coco.CocoEvaluator.per_class_ap`; the
    last row is their mean over the categories (``nan`` ones left out)."""
    rows: dict[int, dict[str, Any]] = {}
    for iou_type in evaluator.iou_types:
        prefix = "" if iou_type == "bbox" else "mask_"
        for entry in evaluator.per_class_ap(iou_type):
            row = rows.setdefault(
                entry["category_id"],
                {k: entry[k] for k in ("category_id", "name", "instances")},
            )
            row.update({f"{prefix}{k}": entry[k] for k in ("AP", "AP50", "AP75")})
    table = list(rows.values())
    columns = list(dict.fromkeys(k for row in table for k in row))
    numbers = [c for c in columns if "AP" in c]
    mean = {"category_id": "", "name": "mean", "instances": sum(r["instances"] for r in table)}
    for column in numbers:
        mean[column] = defined_mean(r[column] for r in table)
    return columns, [*table, mean]


def defined_mean(values: Iterable[float]) -> float:
    """The mean of ``values`` without their ``nan`` ones (the mean row of a per-class table);
    ``nan`` when none is defined."""
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan


def ap_title(name: str) -> str:
    """The heading of the per-class AP table of head (or evaluator) ``name``."""
    return f"Per-class AP of `{name}` (COCO, area all, 100 detections per image)"


def markdown_table(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """``rows`` as the lines of a Markdown table; floats with 3 decimals, ``n/a`` for ``nan``."""
    return [
        f"| {' | '.join(columns)} |",
        f"| {' | '.join('---' for _ in columns)} |",
        *(
            "| "
            + " | ".join(
                _cell(row[c]) if isinstance(row[c], float) else str(row[c]) for c in columns
            )
            + " |"
            for row in rows
        ),
    ]


def class_table(evaluator: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of a classification evaluator's per-class numbers
    (:meth:`~visionkit.evaluation.ClassificationEvaluator.per_class`: ``class``, ``name``,
    ``images``, ``recall``, ``precision``); the last row is their mean over the classes
    (macro averages as torchmetrics' and scikit-learn's: over the classes with images or
    predictions, an undefined value counted 0, e.g. the precision of a class never predicted)
    and the total images."""
    rows = evaluator.per_class()
    mean: dict[str, Any] = {"class": "", "name": "mean", "images": sum(r["images"] for r in rows)}
    seen = [r for r in rows if r["images"] or not math.isnan(r["precision"])]
    for column in ("recall", "precision"):
        values = [0.0 if math.isnan(r[column]) else r[column] for r in seen]
        mean[column] = sum(values) / len(values) if values else math.nan
    return ["class", "name", "images", "recall", "precision"], [*rows, mean]


def iou_table(evaluator: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and rows of a semantic evaluator's last confusion matrix: per class ``class``
    (its label), ``name``, ``pixels`` (ground-truth pixels counted) and ``IoU`` (``nan`` for
    a class neither in the ground truth nor predicted); the last row is the mean IoU over the
    other classes (the ``mIoU`` metric) and the total pixels."""
    from visionkit.evaluation.semantic import iou_from_confusion

    confusion = evaluator.global_confusion  # [C, C], rows ground truth
    iou = iou_from_confusion(confusion).tolist()
    pixels = confusion.sum(1).tolist()
    names = evaluator.class_names or [str(i) for i in range(len(iou))]
    rows: list[dict[str, Any]] = [
        {"class": i, "name": names[i], "pixels": int(pixels[i]), "IoU": float(iou[i])}
        for i in range(len(iou))
    ]
    rows.append({"class": "", "name": "mean", "pixels": int(sum(pixels)), "IoU": defined_mean(iou)})
    return ["class", "name", "pixels", "IoU"], rows


#: The kinds of per-class table (:func:`per_class_table`) and the names of their files in a
#: run folder (``<prefix>_<head>.csv`` / ``.md``).
PER_CLASS_FILES = {"ap": "per_class_ap", "iou": "per_class_iou", "recall": "per_class_recall"}


def per_class_table(evaluator: Any) -> tuple[str, list[str], list[dict[str, Any]]] | None:
    """``(kind, columns, rows)`` of an evaluator's per-class numbers, the last row their mean:
    ``"ap"`` for a COCO evaluator that has evaluated (:func:`ap_table`), ``"iou"`` for a
    semantic one (:func:`iou_table`), ``"recall"`` for a classification one
    (:func:`class_table`); ``None`` for one without classes (embeddings)."""
    if hasattr(evaluator, "per_class_ap") and getattr(evaluator, "details", None):
        return "ap", *ap_table(evaluator)
    if getattr(evaluator, "global_confusion", None) is not None:
        return "iou", *iou_table(evaluator)
    if hasattr(evaluator, "per_class") and evaluator.per_class():
        return "recall", *class_table(evaluator)
    return None


def table_title(kind: str, name: str) -> str:
    """The heading of a per-class table of ``kind`` (:data:`PER_CLASS_FILES`) of ``name``."""
    if kind == "ap":
        return ap_title(name)
    if kind == "iou":
        return f"Per-class IoU of `{name}` (pixels at the original image size)"
    return f"Per-class top-1 recall and precision of `{name}`"


def write_class_tables(evaluator: Any, run_dir: Path, name: str) -> None:
    """``per_class_<kind>_<name>.csv`` and ``.md`` (:data:`PER_CLASS_FILES`) of an evaluator
    with per-class numbers (:func:`per_class_table`): AP, AP50 and AP75 per category (and
    ``mask_AP``, ... for masks), IoU per class, or top-1 recall and precision per class."""
    table = per_class_table(evaluator)
    if table is None:
        return
    kind, columns, rows = table
    stem = f"{PER_CLASS_FILES[kind]}_{name}"

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    write_atomic(run_dir / f"{stem}.csv", write_csv)
    text = table_title(kind, name) + "\n\n" + "\n".join(markdown_table(columns, rows)) + "\n"
    write_atomic(run_dir / f"{stem}.md", lambda tmp: tmp.write_text(text, "utf-8"))


def _cell(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"
