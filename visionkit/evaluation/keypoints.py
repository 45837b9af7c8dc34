"""Keypoint evaluation: OKS mAP through pycocotools ``COCOeval(iouType="keypoints")``.

A keypoint head's predictions (boxes, scores, labels and ``keypoints`` ``[N, K, 3]`` in
original-image pixel indices) become COCO keypoint results (``image_id``, ``category_id``,
``keypoints`` ``[x1, y1, s1, ...]``, ``score``: no ``bbox``, so ``loadRes`` takes each
detection's box and area from its keypoints, as for COCO's own keypoint results) and are
scored with the head's per-keypoint sigmas (``kpt_oks_sigmas``) against the ground truth the
dataset kept. The boxes are scored too (``bbox``, the detection metrics of
:mod:`visionkit.evaluation.coco`).

By hand, the same numbers: ``gt = COCO(file)``, ``dt = gt.loadRes(evaluator.keypoint_results)``,
``ev = COCOeval(gt, dt, "keypoints")``, ``ev.params.kpt_oks_sigmas = np.array(sigmas)``,
``ev.params.catIds`` = the categories with ``keypoints``, then ``evaluate / accumulate /
summarize``; ``ev.stats`` are ``kpt_mAP``, ``kpt_mAP50``, ... in :data:`KEYPOINT_KEYS` order.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from visionkit.errors import ConfigError, DataError
from visionkit.evaluation.coco import CocoEvaluator, load_coco_gt, to_coco_results

#: The 10 numbers of ``COCOeval.summarize()`` for keypoints, in order (metric names get
#: the head's name and ``kpt_`` in front: ``pose/kpt_mAP``).
KEYPOINT_KEYS = (
    "mAP", "mAP50", "mAP75", "mAP_medium", "mAP_large",
    "AR", "AR50", "AR75", "AR_medium", "AR_large",
)  # fmt: skip


def keypoint_ground_truth(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of a COCO ground truth that ``COCOeval(iouType="keypoints")`` accepts:
    annotations without ``keypoints`` get K zeros (``num_keypoints`` 0: ignored), and those
    without ``num_keypoints`` get the count of ``v > 0``."""
    data = copy.deepcopy(data)
    count = max((len(c.get("keypoints") or []) for c in data.get("categories", [])), default=0)
    for ann in data.get("annotations") or []:
        if ann.get("keypoints") is None:
            ann["keypoints"], ann["num_keypoints"] = [0] * (3 * count), 0
        elif "num_keypoints" not in ann:
            ann["num_keypoints"] = int(sum(v > 0 for v in ann["keypoints"][2::3]))
    return data


def keypoint_results(
    image_id: int, prediction: dict[str, Any], category_ids: list[int]
) -> list[dict[str, Any]]:
    """One image's predictions as COCO keypoint results (see the module docstring)."""
    boxes = to_coco_results(image_id, prediction, category_ids)
    points = prediction["keypoints"].detach().float().cpu().numpy()
    if len(points) != len(boxes):
        raise ValueError(f"image {image_id}: {len(points)} keypoint rows for {len(boxes)} boxes")
    return [
        {
            "image_id": r["image_id"],
            "category_id": r["category_id"],
            "keypoints": [float(v) for v in p.reshape(-1)],
            "score": r["score"],
        }
        for r, p in zip(boxes, points, strict=True)
    ]


def keypoints_evaluate(
    gt: Any,
    results: list[dict[str, Any]],
    sigmas: Sequence[float],
    image_ids: list[int] | None = None,
    printed: list[str] | None = None,
) -> dict[str, float]:
    """``COCOeval(iouType="keypoints")`` with ``sigmas`` on the categories of ``gt`` that
    define ``keypoints``; the 10 summary numbers (``nan`` where COCO reports -1, zeros without
    results). ``printed`` receives the lines ``COCOeval.summarize()`` printed."""
    from pycocotools.cocoeval import COCOeval

    cats = [c["id"] for c in gt.dataset.get("categories", []) if c.get("keypoints")]
    if not cats:
        raise DataError(
            "keypoint evaluation: no category of the ground truth has a 'keypoints' list, so "
            "no object could be scored (COCO keypoint format: categories[].keypoints)"
        )
    unknown = sorted({r["image_id"] for r in results} - set(gt.getImgIds()))
    if unknown:
        raise DataError("keypoint predictions refer to images not in the ground truth:", unknown)
    results = [r for r in results if r["category_id"] in cats]
    if not results:
        return {k: 0.0 for k in KEYPOINT_KEYS}
    for r in results:
        if len(r["keypoints"]) != 3 * len(sigmas):
            raise DataError(
                f"image_id {r['image_id']}: a prediction has {len(r['keypoints']) // 3} "
                f"keypoints, the evaluation has {len(sigmas)} sigmas (kpt_oks_sigmas)"
            )
    with contextlib.redirect_stdout(io.StringIO()) as out:
        ev = COCOeval(gt, gt.loadRes([dict(r) for r in results]), iouType="keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.params.catIds = cats
        if image_ids is not None:
            ev.params.imgIds = sorted(set(image_ids))
        ev.evaluate()
        ev.accumulate()
        start = out.tell()
        ev.summarize()
    if printed is not None:
        printed += out.getvalue()[start:].splitlines()
    return {
        k: (float(v) if v >= 0 else math.nan) for k, v in zip(KEYPOINT_KEYS, ev.stats, strict=True)
    }


class KeypointEvaluator(CocoEvaluator):
    """``reset / process / evaluate`` for a keypoint head: box metrics (``<head>/mAP``, ...)
    and OKS metrics (``<head>/kpt_mAP``, ``<head>/kpt_mAP50``, ...).

    Args:
        head: the head's name (metric prefix).
        annotations: the ground-truth COCO json of the evaluated split.
        category_ids: ``category_ids[label]`` is the file's category id of ``label``.
        sigmas: per-keypoint OKS sigmas.
        ground_truth: the COCO object to score against (the dataset's kept ground truth);
            ``None``: the ``annotations`` file.
    """

    def __init__(
        self,
        head: str,
        annotations: str | os.PathLike,
        category_ids: list[int],
        sigmas: Sequence[float],
        ground_truth: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(head, annotations, category_ids, ("bbox",), ground_truth)
        self.sigmas = [float(s) for s in sigmas]
        self.keypoint_results: list[dict[str, Any]] = []
        self._kpt_gt = None

    def reset(self) -> None:
        super().reset()
        self.keypoint_results = []

    def process(self, batch: dict[str, Any], predictions: list[dict[str, Any]]) -> None:
        super().process(batch, predictions)
        for image_id, prediction in zip(batch["image_ids"].tolist(), predictions, strict=True):
            self.keypoint_results += keypoint_results(image_id, prediction, self.category_ids)

    def evaluate(self) -> dict[str, float]:
        kept = self.keypoint_results
        metrics = super().evaluate()  # gathers the box results across processes
        boxes, self.results = self.results, kept  # gather() reads self.results
        results, image_ids = self.gather()
        self.results, self.keypoint_results = boxes, results
        if self._kpt_gt is None:
            data = self.ground_truth
            if data is None:
                try:
                    with open(self.annotations, encoding="utf-8") as f:
                        data = json.load(f)
                except (OSError, ValueError) as err:
                    raise DataError(
                        f"cannot read the ground truth {self.annotations}: {err}"
                    ) from None
            self._kpt_gt = load_coco_gt(self.annotations, keypoint_ground_truth(data))
        printed: list[str] = []
        stats = keypoints_evaluate(self._kpt_gt, results, self.sigmas, image_ids, printed)
        self.keypoint_summary = printed or None  # what eval prints
        metrics.update({f"{self.head}/kpt_{k}": v for k, v in stats.items()})
        return metrics

    @property
    def summary_types(self) -> tuple[str, ...]:
        return (*self.iou_types, "keypoints")

    def summary(self, iou_type: str = "bbox") -> list[str] | None:
        """As :meth:`CocoEvaluator.summary`, and for ``"keypoints"`` the lines of the OKS
        evaluation's ``COCOeval.summarize()``."""
        if iou_type != "keypoints":
            return super().summary(iou_type)
        if not hasattr(self, "keypoint_summary"):
            raise RuntimeError(f"{self.head}: no 'keypoints' evaluation yet; call evaluate()")
        return self.keypoint_summary


def keypoint_evaluator(
    prefix: str, head: nn.Module, dataset: Any, category_ids: Sequence[int] | None
) -> nn.Module | None:
    """The task table's factory: a :class:`KeypointEvaluator` against the dataset's kept
    ground truth (``None`` without an annotation file).

    Raises:
        ConfigError: the dataset's keypoints are not the head's ``num_keypoints``.
    """
    if getattr(dataset, "ann_path", None) is None:
        return None
    schema = getattr(dataset, "keypoint_schema", None)
    if schema is not None and len(schema.names) != head.num_keypoints:
        raise ConfigError(
            f"model.heads.{prefix}.num_keypoints: {head.num_keypoints}, but {dataset.ann_path} "
            f"defines {len(schema.names)} keypoints ({', '.join(schema.names)})"
        )
    names = list(getattr(head, "keypoint_names", None) or ())
    unnamed = names == [str(k) for k in range(len(names))]  # the head's default names
    if schema is not None and names and not unnamed and schema.names != names:  # in order
        raise ConfigError(
            f"{dataset.ann_path} names its keypoints {schema.names}, the model {names}: each "
            "point would be scored against another (OKS compares them in order); give the "
            "evaluation set the training set's keypoint names in its order"
        )
    ids = list(category_ids or dataset.category_ids)
    kept = getattr(dataset, "coco_ground_truth", None)
    truth = kept() if kept is not None else None
    if truth is not None and schema is not None:  # the kept categories carry id and name only
        truth["categories"] = [
            {**c, "keypoints": list(schema.names), "skeleton": schema.skeleton}
            if c["id"] in schema.categories
            else c
            for c in truth["categories"]
        ]
    return KeypointEvaluator(prefix, dataset.ann_path, ids, head.kpt_oks_sigmas, truth)


#: The one ``model.*`` override ``eval`` takes: the OKS sigmas a keypoint head is scored with.
SIGMA_OVERRIDE = re.compile(r"model\.heads\.([^.]+)\.kpt_oks_sigmas$")


def eval_sigmas(
    model: nn.Module, heads: Mapping[str, Any], keys: Sequence[str]
) -> dict[str, list[float]]:
    """The OKS sigmas of each ``model.heads.<name>.kpt_oks_sigmas`` among the override ``keys``
    (of ``eval``), by head name: what ``heads`` (the overridden config's ``model.heads``) gives
    that keypoint head of ``model``, checked; :func:`scored_with` applies them.

    Raises:
        ConfigError: the head is not a keypoint head, or the sigmas are not ``num_keypoints``
            positive numbers.
    """
    problems, chosen = [], {}
    for key in keys:
        match = SIGMA_OVERRIDE.match(key)
        if match is None:
            continue
        name = match.group(1)
        head = dict(model.heads.items()).get(name)
        if head is None or not hasattr(head, "kpt_oks_sigmas"):
            kinds = ", ".join(f"{n} ({type(h).__name__})" for n, h in model.heads.items())
            problems.append(f"{key}: {name!r} is not a keypoint head of the model ({kinds})")
            continue
        sigmas = heads[name].get("kpt_oks_sigmas")
        count = head.num_keypoints
        numbers = isinstance(sigmas, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in sigmas
        )
        if not (
            numbers and len(sigmas) == count and all(math.isfinite(v) and v > 0 for v in sigmas)
        ):
            names = ", ".join(head.keypoint_names)
            problems.append(
                f"{key}: {sigmas!r}; expected {count} positive numbers, one per keypoint ({names})"
            )
            continue
        chosen[name] = [float(v) for v in sigmas]
    if problems:
        raise ConfigError(problems)
    return chosen


@contextlib.contextmanager
def scored_with(model: nn.Module, sigmas: Mapping[str, list[float]]) -> Iterator[None]:
    """Within the block, each keypoint head named in ``sigmas`` (:func:`eval_sigmas`) has those
    sigmas, for the evaluators built in it; its own come back after (a model in memory is
    scored with other sigmas once, not changed)."""
    heads = dict(model.heads.items())
    kept = {name: heads[name].kpt_oks_sigmas for name in sigmas}
    try:
        for name, values in sigmas.items():
            heads[name].kpt_oks_sigmas = values
        yield
    finally:
        for name, values in kept.items():
            heads[name].kpt_oks_sigmas = values
