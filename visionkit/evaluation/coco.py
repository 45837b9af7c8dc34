"""COCO box and mask evaluation through pycocotools ``COCOeval``.

Predictions (original-image xyxy boxes, contiguous labels, optionally bool masks) become a
COCO results list (``image_id``, ``category_id`` of the file, ``bbox`` xywh, ``score``, and
with ``"segm"`` a compressed-RLE ``segmentation`` whose ``counts`` is a ``str``), gathered from
every process, and are scored against the ground truth the dataset kept
(:meth:`~visionkit.data.readers.coco.CocoDataset.coco_ground_truth`: its annotation file less
the annotations the reader dropped, e.g. zero-area boxes; masks are scored on the images whose
annotations all have a usable segmentation, ``info.images_without_masks`` left out; a box
missing from the file, or of zero width or height, is the tight box of the annotation's
segmentation, ``info.boxes_from_segmentation``) — so running pycocotools by hand on
:attr:`CocoEvaluator.results` and that file, less those annotations and with those boxes
(and, for ``segm``, on those images), gives the same numbers.

Masks are scored as the COCO ``segm`` result format (and detectron2) has it: without the
``bbox`` key, so that a detection's area — which decides the small / medium / large ranges —
is its mask's, not its box's (``COCO.loadRes`` takes the box area whenever ``bbox`` is
present). By hand: ``gt.loadRes(segm_results(results))`` with ``iouType="segm"``.

Besides the 12 summary numbers, each evaluation gives the boxes' precision, recall and F1 at
IoU 0.50 at the score threshold of the best F1 (``<head>/P``, ``<head>/R``, ``<head>/F1``,
``<head>/F1_conf``: :mod:`visionkit.evaluation.confidence`), as Ultralytics' validation table
prints P and R.

>>> ev = CocoEvaluator("det", "data/shapes/val/annotations.json", [1, 2, 3])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from torch import nn

from visionkit.checkpoint import write_atomic
from visionkit.data.readers.coco_fields import text_crowd_note
from visionkit.errors import ConfigError, DataError
from visionkit.evaluation.coco_fills import fill_gt_defaults
from visionkit.evaluation.confidence import NO_F1, best_conf, f1_curve

logger = logging.getLogger(__name__)

# The 12 numbers of COCOeval.summarize(), in order.
SUMMARY_KEYS = (
    "mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip
IOU_TYPES = {"bbox": "", "segm": "mask_"}  # COCOeval iouType -> prefix of its metric names
#: metric name of each value of confidence.best_conf
F1_KEYS = {"conf": "F1_conf", "P": "P", "R": "R", "F1": "F1"}


def load_coco_gt(
    annotations: str | os.PathLike,
    data: dict[str, Any] | None = None,
    filled: dict[str, int] | None = None,
) -> Any:
    """A quiet ``pycocotools.coco.COCO`` of the ground-truth file, or of ``data`` (a COCO
    object such as a reader's kept ground truth; ``annotations`` then only names it).
    ``filled``, if given, is updated with the counts of :func:`fill_gt_defaults`.

    Annotations without ``iscrowd`` (or with ``null``) get ``0`` (one that is neither 0 nor
    1 is refused: :func:`fill_gt_defaults`), those without ``area`` (or with one that is no
    number above 0: ``null``, ``"64"``, ``0``, as some exports write it) the area of their
    ``segmentation`` (else of their box, ``w * h``), and those without ``id`` one after the
    largest id: ``COCO`` and ``COCOeval`` need all three and would fail with a ``KeyError``
    (or a ``TypeError`` comparing ``None`` with the area ranges, or rank an object of area 0
    small). An ``iscrowd`` written as the text ``"0"`` / ``"1"`` is read as 0 / 1, in a warning
    of its own (pycocotools on the file as it is reads any non-empty text as a crowd).
    Each fill is counted in one warning. The file is never
    modified (nor is ``data``: the annotations filled are copies).
    """
    from pycocotools.coco import COCO

    if data is not None:
        data = {**data, "annotations": [dict(a) for a in data.get("annotations") or []]}
    else:
        try:
            with open(annotations, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as err:
            raise DataError(f"cannot read the ground truth {annotations}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations", []), list):
        raise DataError(f"{annotations}: expected a COCO object with an 'annotations' list")
    counts = fill_gt_defaults(data, str(annotations))
    if filled is not None:
        filled.update(counts)
    if counts["iscrowd_text"]:
        logger.warning("%s: %s", annotations, text_crowd_note(counts["iscrowd_text"]))
    filled = {k: n for k, n in counts.items() if k != "iscrowd_text"}
    if any(filled.values()):
        logger.warning(
            "%s: %d annotations without 'area' or with one that is no number above 0 (filled "
            "with their segmentation's area, else the box's w*h), %d without 'iscrowd' (filled "
            "with 0), %d without 'id' (numbered after the largest id)",
            annotations,
            filled["area"],
            filled["iscrowd"],
            filled["id"],
        )
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def encode_masks(masks: Any) -> list[dict[str, Any]]:
    """Bool / 0-1 masks ``[N, H, W]`` (tensor or array) as compressed RLEs ``{"size": [H, W],
    "counts": str}`` (JSON-serialisable; ``pycocotools.mask.decode`` reads them back). One
    mask at a time: the ``[H, W, N]`` uint8 copy pycocotools wants of all of them at once
    took twice the masks' own memory again (2.4 GB more for 100 masks of a 12-megapixel
    photo)."""
    from pycocotools import mask as mask_utils

    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    if len(masks) == 0:
        return []
    rles = [mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8)) for mask in masks]
    return [{"size": [int(x) for x in r["size"]], "counts": r["counts"].decode()} for r in rles]


def to_coco_results(
    image_id: int,
    prediction: dict[str, Any],
    category_ids: list[int],
    masks: bool = False,
) -> list[dict[str, Any]]:
    """One image's ``{"boxes", "scores", "labels"}`` as COCO result dicts (bbox in xywh);
    with ``masks``, also its ``"masks"`` (bool ``[K, H0, W0]`` at the original image size) as
    RLE ``segmentation``."""
    boxes = prediction["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
    scores = prediction["scores"].detach().float().cpu().numpy().reshape(-1)
    labels = prediction["labels"].detach().cpu().numpy().reshape(-1)
    outside = labels[(labels < 0) | (labels >= len(category_ids))]
    if outside.size:  # a -1 would silently be the last category
        raise ValueError(
            f"image {image_id}: predicted labels {sorted(set(outside.tolist()))} are not class "
            f"indices "
            f"0..{len(category_ids) - 1} (the {len(category_ids)} categories evaluated: "
            f"ids {list(category_ids)[:10]}{' ...' if len(category_ids) > 10 else ''})"
        )
    wh = boxes[:, 2:] - boxes[:, :2]
    results = [
        {
            "image_id": int(image_id),
            "category_id": int(category_ids[int(label)]),
            "bbox": [float(boxes[i, 0]), float(boxes[i, 1]), float(wh[i, 0]), float(wh[i, 1])],
            "score": float(scores[i]),
        }
        for i, label in enumerate(labels)
    ]
    if masks:
        if prediction.get("masks") is None:
            raise ValueError(
                f"image {image_id}: segm evaluation needs predictions with 'masks' (bool "
                "[K, H, W]); this head predicts none"
            )
        rles = encode_masks(prediction["masks"])
        if len(rles) != len(results):
            raise ValueError(f"image {image_id}: {len(rles)} masks for {len(results)} boxes")
        for result, rle in zip(results, rles, strict=True):
            result["segmentation"] = rle
    return results


def segm_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results in the COCO ``segm`` format: copies without ``bbox``, so ``loadRes``
    computes each detection's area from its mask."""
    return [{k: v for k, v in r.items() if k != "bbox"} for r in results]


def coco_evaluate(
    gt: Any,
    results: list[dict[str, Any]],
    image_ids: list[int] | None = None,
    iou_type: str = "bbox",
    details: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Run ``COCOeval(iouType=iou_type)`` (``"bbox"`` or ``"segm"``); returns the 12 summary
    numbers (``nan`` where COCO reports -1, e.g. no small objects). No results at all gives
    zeros, not a crash. A result for an image the ground truth lacks is a
    :class:`~visionkit.errors.DataError`; results of categories it lacks are left out (logged at
    debug level): a ground truth with a subset of the model's categories scores those.
    ``"segm"`` scores :func:`segm_results` of ``results``; ``results`` itself is never modified.
    A ``details`` dict receives COCOeval's ``precision`` array (``[T iou, R recall, K category,
    A area, M max dets]``, ``None`` without results), ``cat_ids`` (the K categories),
    ``image_ids`` (the images scored), ``recall`` (the R recall points), ``summary``: the
    lines ``COCOeval.summarize()`` printed (its 12 "Average Precision / Recall" lines, captured,
    ``None`` without results), and ``f1``: the F1-confidence curve at IoU 0.50
    (:func:`~visionkit.evaluation.confidence.f1_curve`; ``None`` without results)."""
    from pycocotools.cocoeval import COCOeval

    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    known_images = set(gt.getImgIds())
    known_cats = set(gt.getCatIds())
    bad = [
        f"image_id {r['image_id']} (category_id {r['category_id']})"
        for r in results
        if r["image_id"] not in known_images
    ]
    if bad:
        raise DataError("predictions refer to images not in the ground truth:", bad)
    # A model may predict categories that a (subset) ground truth lacks: COCOeval scores the
    # ground truth's categories only, so those predictions would count nowhere. Leave them out.
    kept = [r for r in results if r["category_id"] in known_cats]
    if len(kept) < len(results):
        logger.debug(
            "%d predictions of categories not in the ground truth left out (categories %s)",
            len(results) - len(kept),
            sorted({r["category_id"] for r in results if r["category_id"] not in known_cats}),
        )
        results = kept
    if iou_type == "segm":
        bad = _mask_problems(gt, results)
        if bad:
            raise DataError("mask predictions must have their image's size (H, W):", bad)
    if details is not None:
        details.update(
            precision=None, cat_ids=sorted(known_cats), image_ids=image_ids, summary=None, f1=None
        )
    if not results:
        return {k: 0.0 for k in SUMMARY_KEYS}
    scored = segm_results(results) if iou_type == "segm" else [dict(r) for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(scored)
        ev = COCOeval(gt, dt, iouType=iou_type)
        if image_ids is not None:
            ev.params.imgIds = sorted(set(image_ids))
        ev.evaluate()
        ev.accumulate()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        ev.summarize()
    if details is not None:
        details.update(
            precision=ev.eval["precision"],
            recall=ev.params.recThrs,
            cat_ids=list(ev.params.catIds),
            summary=printed.getvalue().splitlines(),
            f1=f1_curve(ev),
        )
    return {
        k: (float(v) if v >= 0 else math.nan) for k, v in zip(SUMMARY_KEYS, ev.stats, strict=True)
    }


def _mask_problems(gt: Any, results: list[dict[str, Any]]) -> list[str]:
    """Results without a ``segmentation`` or whose mask size is not their image's."""
    problems = []
    for r in results:
        image = gt.imgs[r["image_id"]]
        expected = [image["height"], image["width"]]
        if "segmentation" not in r:
            problems.append(f"image_id {r['image_id']}: no segmentation")
        elif list(r["segmentation"]["size"]) != expected:
            size = list(r["segmentation"]["size"])
            problems.append(f"image_id {r['image_id']}: mask size {size}, image size {expected}")
    return problems


class CocoEvaluator(nn.Module):
    """``reset / process / evaluate`` for a detection or instance head against a COCO json.

    Args:
        head: the head's name; metric keys are ``"<head>/mAP"``, ``"<head>/mAP50"``, ... for
            boxes and ``"<head>/mask_mAP"``, ``"<head>/mask_mAP50"``, ... for masks.
        annotations: the ground-truth COCO json of the evaluated split.
        category_ids: ``category_ids[label]`` is the file's category id of contiguous ``label``.
        iou_types: what to score, of ``"bbox"`` and ``"segm"``; ``"segm"`` needs predictions
            with ``"masks"`` (bool ``[K, H0, W0]`` at the original image size).
        ground_truth: the COCO object to score against, e.g. the dataset's
            :meth:`~visionkit.data.readers.coco.CocoDataset.coco_ground_truth` (what the
            reader kept; masks are scored on the images its ``info.images_without_masks``
            leaves out, boxes on all); ``None``: the ``annotations`` file as it is.
        main_metric: the metric that ranks checkpoints, when not the task's own (``"mAP"``
            for an instance head scored on a set without masks).
    """

    main_metric: str | None = None
    #: the score threshold the evaluated detections were kept at (the head's ``score_thresh``
    #: in the evaluation, set by the training system): no best-F1 threshold is chosen under it
    score_floor: float = 0.0

    def __init__(
        self,
        head: str,
        annotations: str | os.PathLike,
        category_ids: list[int],
        iou_types: Sequence[str] = ("bbox",),
        ground_truth: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        iou_types = tuple(iou_types)
        if not iou_types or any(t not in IOU_TYPES for t in iou_types):
            raise ValueError(f"iou_types must be some of {sorted(IOU_TYPES)}, got {iou_types}")
        self.head = head
        self.annotations = str(annotations)
        self.category_ids = list(category_ids)
        self.iou_types = tuple(dict.fromkeys(iou_types))
        self.results: list[dict[str, Any]] = []
        self.image_ids: list[int] = []
        self.details: dict[str, dict[str, Any]] = {}  # per iou type: see coco_evaluate
        self.ground_truth = ground_truth
        self._gt = None
        self._filled: dict[str, int] = {}  # fill_gt_defaults' counts, once _gt is loaded

    def reset(self) -> None:
        self.results = []
        self.image_ids = []

    def process(self, batch: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
        """``predictions``: this head's per-image dicts in original image coordinates."""
        ids = batch["image_ids"].tolist()
        masks = "segm" in self.iou_types
        for image_id, prediction in zip(ids, predictions, strict=True):
            self.image_ids.append(int(image_id))
            self.results += to_coco_results(image_id, prediction, self.category_ids, masks)

    def gather(self) -> tuple[list[dict[str, Any]], list[int]]:
        """Results and image ids from every process (all of them on every rank).

        An image evaluated on several ranks (``DistributedSampler`` pads with repeats) keeps
        the results of the first rank only.
        """
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self.results, sorted(set(self.image_ids))
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, (self.results, self.image_ids))
        owner: dict[int, int] = {}
        for rank, (_, ids) in enumerate(parts):
            for image_id in ids:
                owner.setdefault(image_id, rank)
        results = [
            r for rank, (rs, _) in enumerate(parts) for r in rs if owner[r["image_id"]] == rank
        ]
        return results, sorted(owner)

    def evaluate(self) -> dict[str, float]:
        results, image_ids = self.gather()
        self.results = results
        metrics = {}
        unmasked = set((self.ground_truth or {}).get("info", {}).get("images_without_masks", ()))
        for iou_type in self.iou_types:
            self.details[iou_type] = {}
            scored, ids = results, image_ids
            if iou_type == "segm" and unmasked:  # images whose masks the data does not give
                scored = [r for r in results if r["image_id"] not in unmasked]
                ids = [i for i in image_ids if i not in unmasked]
            stats = coco_evaluate(self.coco_gt, scored, ids, iou_type, self.details[iou_type])
            metrics.update({f"{self.head}/{IOU_TYPES[iou_type]}{k}": v for k, v in stats.items()})
        best = self.best_f1()
        if best is not None:
            metrics.update({f"{self.head}/{F1_KEYS[k]}": v for k, v in best.items()})
        return metrics

    def best_f1(self) -> dict[str, float] | None:
        """The score threshold of the best F1 of the last evaluation and the precision, recall
        and F1 there (:func:`~visionkit.evaluation.confidence.best_conf`, not under
        :attr:`score_floor`), of the boxes (the first of ``iou_types``); without detections
        :data:`~visionkit.evaluation.confidence.NO_F1` (threshold ``nan``); ``None`` before an
        evaluation."""
        details = self.details.get(self.iou_types[0])
        if details is None:
            return None
        curve = details.get("f1")
        if curve is None:  # nothing detected (or no object to find)
            return dict(NO_F1)
        return best_conf(curve["P"], curve["R"], curve["F1"], curve["conf"], self.score_floor)

    @property
    def left_out(self) -> int:
        """Annotations of the evaluated images in the ``annotations`` file that the ground
        truth scored leaves out (those the reader dropped); 0 when the file is scored as is."""
        return self._ground_truth_count("left_out")

    @property
    def boxes_from_segmentation(self) -> int:
        """Annotations of the ground truth scored whose ``bbox`` the reader took from their
        segmentation (the file has none, or one of zero or negative width or height)."""
        return self._ground_truth_count("boxes_from_segmentation")

    def _ground_truth_count(self, key: str) -> int:
        """``info[key]`` of the kept ground truth (0 without one: the file scored as is)."""
        info = (self.ground_truth or {}).get("info") or {}
        return int(info.get(key, 0))

    @property
    def coco_gt(self) -> Any:
        """The ``pycocotools.coco.COCO`` ground truth scored against (loaded once)."""
        if self._gt is None:
            self._gt = load_coco_gt(self.annotations, self.ground_truth, self._filled)
        return self._gt

    @property
    def iscrowd_text(self) -> int:
        """Annotations of the ground truth scored whose ``iscrowd`` is the text ``"0"`` / ``"1"``,
        read as 0 / 1 (pycocotools on the file as it is reads any non-empty text as a crowd)."""
        _ = self.coco_gt  # loaded, and filled, once
        return self._filled.get("iscrowd_text", 0)

    @property
    def summary_types(self) -> tuple[str, ...]:
        """The iou types whose pycocotools summary :meth:`summary` gives: its ``iou_types``
        (a keypoint evaluator adds ``"keypoints"``)."""
        return self.iou_types

    def summary(self, iou_type: str = "bbox") -> list[str] | None:
        """The 12 lines pycocotools' ``COCOeval.summarize()`` printed for ``iou_type`` in the
        last :meth:`evaluate` (``None`` when there was nothing to score: no detections).

        Raises:
            RuntimeError: :meth:`evaluate` has not run for ``iou_type``.
        """
        if iou_type not in self.details:
            raise RuntimeError(f"{self.head}: no {iou_type!r} evaluation yet; call evaluate()")
        return self.details[iou_type].get("summary")

    def per_class_ap(self, iou_type: str = "bbox") -> list[dict[str, Any]]:
        """Per category of the ground truth, from the last :meth:`evaluate`: ``category_id``,
        ``name``, ``instances`` (non-crowd ground-truth objects in the scored images), ``AP``
        (IoU .50:.95), ``AP50`` and ``AP75``, read from COCOeval's ``precision`` at area "all"
        and 100 detections per image. ``nan`` where a category has no ground truth (COCO's -1);
        zeros when nothing was predicted.

        Raises:
            RuntimeError: :meth:`evaluate` has not run for ``iou_type``.
        """
        if iou_type not in self.details:
            raise RuntimeError(f"{self.head}: no {iou_type!r} evaluation yet; call evaluate()")
        details = self.details[iou_type]
        precision = details["precision"]  # [T, R, K, A, M] or None
        rows = []
        for k, cat_id in enumerate(details["cat_ids"]):
            ids = self._gt.getAnnIds(imgIds=details["image_ids"] or [], catIds=[cat_id])
            count = sum(not a.get("iscrowd", 0) for a in self._gt.loadAnns(ids))
            row = {
                "category_id": int(cat_id),
                "name": self._gt.cats[cat_id].get("name", str(cat_id)),
                "instances": count,
            }
            for key, thresholds in (
                ("AP", slice(None)),
                ("AP50", slice(0, 1)),
                ("AP75", slice(5, 6)),
            ):
                if precision is None:
                    row[key] = 0.0 if count else math.nan
                    continue
                values = precision[thresholds, :, k, 0, -1]
                values = values[values > -1]
                row[key] = float(values.mean()) if values.size else math.nan
            rows.append(row)
        return rows


def save_results(evaluators: Mapping[str, Any], path: Path) -> None:
    """``eval --save-predictions``: the exact COCO results each evaluator scored, in ``path``
    (several: each name before the suffix; OKS results beside, ``<stem>_keypoints.json``)."""
    coco = {n: e for n, e in evaluators.items() if hasattr(e, "results")}
    if not coco:
        raise ConfigError(
            "--save-predictions: the model has no head evaluated with COCO results", options=True
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    for name, evaluator in coco.items():
        target = path if len(coco) == 1 else path.with_name(f"{path.stem}_{name}{path.suffix}")
        texts = {target: json.dumps(evaluator.results)}  # a keypoint head's OKS list beside
        if hasattr(evaluator, "keypoint_results"):
            keypoints = target.with_name(f"{target.stem}_keypoints{target.suffix}")
            texts[keypoints] = json.dumps(evaluator.keypoint_results)
        for file, text in texts.items():
            write_atomic(file, lambda tmp, text=text: tmp.write_text(text))
