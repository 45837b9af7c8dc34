"""Multi-image augmentations: steps of ``data.transforms.train`` that take other samples of the
dataset, applied by :class:`~visionkit.data.datasets.TransformedDataset` (they need other
samples, which a per-sample albumentations pipeline never sees).

=============  =========  ===========================================================
step           applies    what it does
=============  =========  ===========================================================
``Mosaic``     first      albumentations' ``A.Mosaic`` over the raw sample and
                          ``grid_yx[0] * grid_yx[1] - 1`` other raw samples
``MixUp``      after      blends the transformed sample with another transformed one
``CopyPaste``  after      pastes instances of another transformed sample by their masks
``SwapHalves`` after      joins half of the image with the other half of another
                          sample's: a new, synthetic identity (embedding heads)
``Rotate...``  after      ``RotateIdentities``: quarter turns, each a new identity
=============  =========  ===========================================================

(``SwapHalves`` and ``RotateIdentities``: :mod:`visionkit.data.identity_mixing`.)

``Mosaic`` must be the first step of the pipeline, the per-sample steps (crops, flips, colour)
then work on the mosaic. ``MixUp`` and ``CopyPaste`` must come after every per-sample step:
they mix the pipeline's output (normalised tensors: a blend or a paste of normalised pixels
is the normalised blend or paste) with the output of the same pipeline on another sample,
in the order listed. Each draws its sample and its randomness from the pipeline's random
stream, so training stays reproducible and resumable.

Per-box labels travel with their boxes through all three: ``keypoints`` (``[N, K, 3]``; a
point that a Mosaic cell crops away gets visibility 0, one that a CopyPaste object covers
visibility 1, COCO's "labelled but hidden") and ``identities`` (``[N]``). A mosaic or a
MixUp annotates the classes all its images annotate (``annotated_classes``); its other images
come from its first image's set where sets annotate other box classes (:func:`draw`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import albumentations as A
import numpy as np
import pydantic
import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes

from visionkit.data.annotated_classes import ANNOTATED, intersection
from visionkit.data.batch import scale_about_pixel_centres
from visionkit.data.keypoint_transforms import pixel_index_scaling
from visionkit.errors import DataError, SampleError

Probability = Annotated[float, pydantic.Field(ge=0, le=1)]
#: The label keys of a Sample; two samples are mixed only when they carry the same ones
#: (in a mixed dataset a classification image is never blended into a detection one).
TARGETS = ("class", "identity", "boxes", "masks", "semantic", "keypoints", "identities")
#: Per-box label tensors of a transformed Sample, joined like the boxes by MixUp / CopyPaste.
PER_BOX = ("boxes", "labels", "masks", "keypoints", "identities")


def targets_of(sample: dict[str, Any]) -> tuple[str, ...]:
    """The label keys ``sample`` carries, of :data:`TARGETS`."""
    return tuple(key for key in TARGETS if sample.get(key) is not None)


def merge_skipped(sample: dict[str, Any], *others: dict[str, Any]) -> dict[str, Any]:
    """``sample`` with the ``skipped`` records (``on_bad_image: skip``) of ``others`` added."""
    records = [r for s in (sample, *others) for r in s.get("skipped") or ()]
    if records:
        sample["skipped"] = records
    return sample


class Mosaic:
    """``A.Mosaic`` fed with other raw samples, boxes, labels, instance masks, label map,
    keypoints and identities alike (``A.Mosaic`` itself carries boxes, keypoints and one
    ``mask``).

    Instance masks travel as channels of that one mask: channel 0 is the label map (zeros
    without one), channel 1 the index + 1 of the sample each pixel comes from, and channel
    ``2 + j`` instance ``j`` of every sample; a box keeps ``k * M + j`` (sample ``k``,
    instance ``j``, ``M`` the most instances of a sample), so its mask is channel ``2 + j``
    where channel 1 is ``k + 1``. Keypoint ``p`` of that box travels as an albumentations
    keypoint labelled ``(k * M + j) * K + p``; one cropped away comes back with visibility 0.
    Identities are looked up by the same box index. The image-level ``class`` is the first
    sample's.

    >>> from visionkit.data.transforms import bbox_params
    >>> mosaic = Mosaic(A.Mosaic(target_size=(32, 32), cell_shape=(32, 32)), bbox_params(), "t")
    >>> mosaic.compose.set_random_seed(0)
    >>> def raw(k):
    ...     return {"image": np.full((40, 40, 3), k, np.uint8), "image_id": k,
    ...             "boxes": np.array([[0.0, 0.0, 40.0, 40.0]]), "labels": np.array([k])}
    >>> out = mosaic(raw(0), [raw(1), raw(2), raw(3)])
    >>> out["image"].shape, sorted(out["labels"].tolist())
    ((32, 32, 3), [0, 1, 2, 3])
    """

    stage = "first"

    def __init__(self, transform: A.Mosaic, bbox_params: A.BboxParams, where: str) -> None:
        self.p = float(transform.p)
        transform.p = 1.0  # TransformedDataset draws p, so samples are read only when it applies
        points = A.KeypointParams(
            format="xy", label_fields=["keypoint_ids"], remove_invisible=False
        )
        self.compose = A.Compose([transform], bbox_params=bbox_params, keypoint_params=points)
        self.extra = int(transform.grid_yx[0]) * int(transform.grid_yx[1]) - 1
        self.where = where

    def __call__(self, sample: dict[str, Any], extras: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The mosaic of ``sample`` and ``extras`` (raw Samples) as one raw Sample; an extra
        carrying other label keys than ``sample`` is replaced by ``sample``."""
        keys = targets_of(sample)
        items = [sample] + [e if targets_of(e) == keys else sample for e in extras]
        with_masks, with_semantic = "masks" in keys, "semantic" in keys
        most = max(len(np.asarray(s.get("boxes", np.zeros((0, 4))))) for s in items)
        inputs = [self._inputs(s, k, most, with_masks) for k, s in enumerate(items)]
        with pixel_index_scaling():  # cells resized about pixel centres, as in apply_pipeline
            out = self.compose(**inputs[0], mosaic_metadata=inputs[1:])
        image = out["image"]
        kept = ("image_id", "orig_size", "path", "class", "identity", "keypoint_flip")
        result = {k: sample[k] for k in kept if k in sample}
        result["image"] = image
        if (annotated := intersection(items)) is not None:  # classes every cell annotates
            result[ANNOTATED] = annotated
        ids = np.asarray(out["instance_ids"], np.int64).reshape(-1)
        owner, j = ids // max(most, 1), ids % max(most, 1)
        if "keypoints" in keys:
            result["keypoints"] = self._keypoints(out, items, ids, max(most, 1))
        if "identities" in keys:
            result["identities"] = np.array(
                [np.asarray(items[o]["identities"])[i] for o, i in zip(owner, j, strict=True)],
                np.int64,
            )
        if "boxes" in keys:
            result["boxes"] = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
            result["labels"] = np.asarray(out["labels"], np.int64).reshape(-1)
        if with_masks:
            stack = np.asarray(out["mask"])
            masks = np.moveaxis(stack[..., 2 + j], -1, 0) if len(ids) else None
            own = stack[None, ..., 1] == (owner + 1)[:, None, None]
            empty = np.zeros((0, *image.shape[:2]), np.uint8)
            result["masks"] = (masks & own).astype(np.uint8) if masks is not None else empty
            if with_semantic:
                result["semantic"] = stack[..., 0]
        elif with_semantic:
            result["semantic"] = np.asarray(out["mask"])
        return merge_skipped(result, sample, *extras)

    @staticmethod
    def _keypoints(
        out: dict[str, Any], items: Sequence[dict[str, Any]], ids: np.ndarray, most: int
    ) -> np.ndarray:
        """``[N, K, 3]`` keypoints of the mosaic's boxes (``ids``: their ``k * M + j``) from
        the points ``out`` kept; the others get visibility 0."""
        count = np.asarray(items[0]["keypoints"]).shape[1]
        points = np.zeros((len(ids), count, 3), np.float32)
        labels = np.asarray(out["keypoint_ids"], np.int64).reshape(-1)
        if not (len(ids) and count and len(labels)):
            return points
        moved = np.asarray(out["keypoints"], np.float32).reshape(-1, 2)
        visibility = np.zeros((len(items) * most, count), np.float32)  # by box id k * M + j
        for k, item in enumerate(items):
            v = np.asarray(item["keypoints"], np.float32).reshape(-1, count, 3)[..., 2]
            visibility[k * most : k * most + len(v)] = v
        row_of = np.full(len(visibility), -1)  # box id → its row in the mosaic, -1: dropped
        row_of[ids] = np.arange(len(ids))
        box, part = np.divmod(labels, count)
        kept = row_of[box] >= 0
        rows, box, part = row_of[box[kept]], box[kept], part[kept]
        points[rows, part, :2] = moved[kept]
        points[rows, part, 2] = visibility[box, part]
        return points

    @staticmethod
    def _inputs(sample: dict[str, Any], k: int, most: int, with_masks: bool) -> dict[str, Any]:
        """One sample as ``A.Mosaic`` takes it (see the class docstring for the mask)."""
        boxes = np.asarray(sample.get("boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4)
        n = len(boxes)
        inputs = {
            "image": sample["image"],
            "bboxes": boxes,
            "labels": np.asarray(sample.get("labels", np.zeros(0)), np.int64).reshape(-1),
            "instance_ids": k * most + np.arange(n),
        }
        points = np.asarray(sample.get("keypoints", np.zeros((n, 0, 3))), np.float32)
        count = points.shape[1] if points.ndim == 3 else 0
        inputs["keypoints"] = points[..., :2].reshape(-1, 2)  # (none: an empty array)
        labels = inputs["instance_ids"][:, None] * count + np.arange(count)
        inputs["keypoint_ids"] = labels.reshape(-1)
        semantic = sample.get("semantic")
        if with_masks:
            h, w = sample["image"].shape[:2]
            stack = np.zeros((h, w, 2 + most), np.uint8)
            if semantic is not None:
                stack[..., 0] = semantic
            stack[..., 1] = k + 1
            if n:
                stack[..., 2 : 2 + n] = np.moveaxis(np.asarray(sample["masks"], np.uint8), 0, -1)
            inputs["mask"] = stack
        elif semantic is not None:
            inputs["mask"] = np.asarray(semantic, np.uint8)
        return inputs


def resized_like(partner: dict[str, Any], size: Sequence[int]) -> dict[str, Any]:
    """A transformed Sample resized to ``size`` ``(H, W)``: image bilinear, masks and label
    map nearest, boxes, keypoints and ``image_size`` scaled. The partner of a mix is brought to the size
    of the sample it is mixed into this way (pipelines ending in a fixed-size step, the usual
    training pipeline, give equal sizes and nothing is resized)."""
    h, w = int(size[0]), int(size[1])
    ph, pw = partner["image"].shape[-2:]
    if (ph, pw) == (h, w):
        return partner
    out = dict(partner)
    out["image"] = F.interpolate(partner["image"][None], (h, w), mode="bilinear")[0]
    for key in ("masks", "semantic"):
        value = partner.get(key)
        if value is not None:
            scaled = value.new_zeros((*value.shape[:-2], h, w))
            if value.numel():
                scaled = F.interpolate(value.reshape(-1, 1, ph, pw).float(), (h, w))
            out[key] = scaled.to(value.dtype).reshape(*value.shape[:-2], h, w)
    if partner.get("boxes") is not None:
        out["boxes"] = partner["boxes"] * torch.tensor([w / pw, h / ph, w / pw, h / ph])
    points = partner.get("keypoints")
    if points is not None and points.numel():  # [N, K, 3]: about pixel centres, as the image
        labelled = points[..., 2:] > 0
        scaled = scale_about_pixel_centres(points[..., :2], torch.tensor([w / pw, h / ph]))
        out["keypoints"] = torch.cat(
            [torch.where(labelled, scaled, points[..., :2]), points[..., 2:]], -1
        )
    ih, iw = partner["image_size"]
    out["image_size"] = (min(h, round(ih * h / ph)), min(w, round(iw * w / pw)))
    return out


def _joined(sample: dict[str, Any], partner: dict[str, Any], key: str, keep: Any = None) -> Any:
    mine = sample[key] if keep is None else sample[key][keep]
    return torch.cat([mine, partner[key].to(mine.dtype)])


class MixUp:
    """MixUp as YOLOX and Ultralytics do it: the image becomes ``r * image + (1 - r) *
    other`` with ``r ~ Beta(alpha, alpha)`` (``alpha: 32`` keeps ``r`` near 0.5), and the
    boxes, labels, instance masks, keypoints and identities of both are kept. A label map
    and an image-level ``class`` cannot be blended: they are those of the sample with weight
    ``>= 0.5``.

    >>> a = {"image": torch.zeros(3, 4, 4), "boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]]),
    ...      "labels": torch.tensor([0]), "image_size": (4, 4)}
    >>> b = {**a, "image": torch.ones(3, 4, 4), "labels": torch.tensor([1])}
    >>> out = MixUp(p=1.0)(a, b, np.random.default_rng(0))
    >>> out["labels"].tolist(), 0.3 < float(out["image"].mean()) < 0.7
    ([0, 1], True)
    """

    stage = "after"

    def check(self, sample: dict[str, Any]) -> str | None:
        """Why ``sample`` cannot be mixed (never: any transformed sample can)."""
        return None

    @pydantic.validate_call
    def __init__(
        self, p: Probability = 0.1, alpha: Annotated[float, pydantic.Field(gt=0)] = 32.0
    ) -> None:
        self.p, self.alpha = p, alpha
        self.where = "MixUp"

    def __call__(
        self, sample: dict[str, Any], partner: dict[str, Any], rng: np.random.Generator
    ) -> dict[str, Any]:
        partner = resized_like(partner, sample["image"].shape[-2:])
        r = float(rng.beta(self.alpha, self.alpha))
        out = dict(sample)
        out["image"] = sample["image"] * r + partner["image"] * (1.0 - r)
        for key in PER_BOX:
            if sample.get(key) is not None:
                out[key] = _joined(sample, partner, key)
        if r < 0.5:
            out.update({k: partner[k] for k in ("semantic", "class", "identity") if k in partner})
        out["image_size"] = tuple(map(max, sample["image_size"], partner["image_size"]))
        if (annotated := intersection([sample, partner])) is not None:  # what both annotate
            out[ANNOTATED] = annotated
        return merge_skipped(out, partner)


class CopyPaste:
    """Simple Copy-Paste (Ghiasi et al., 2021): a random subset of another sample's instances
    (each with probability 0.5, at least one) is pasted on top by their masks. Instances of
    the sample they cover lose those pixels; their boxes become the box of what is left, and
    an instance covered entirely is dropped; their keypoints under the pasted objects become
    hidden (visibility 1). A label map takes the pasted pixels' labels. Keypoints and
    identities of the pasted instances come with them. Needs instance masks
    (:class:`~visionkit.errors.DataError` without).

    >>> mask = torch.zeros(1, 4, 4, dtype=torch.uint8)
    >>> mask[0, :2, :2] = 1
    >>> a = {"image": torch.zeros(3, 4, 4), "boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]]),
    ...      "labels": torch.tensor([0]), "masks": mask, "image_size": (4, 4)}
    >>> b = {**a, "image": torch.ones(3, 4, 4), "labels": torch.tensor([1])}
    >>> CopyPaste(p=1.0)(a, b, np.random.default_rng(0))["labels"].tolist()  # 0 is covered
    [1]
    """

    stage = "after"
    #: The sample target it needs: a sample without it is left as it is where its dataset
    #: gives it to others (a partly segmented COCO file), and an error where it never does.
    needs = "masks"

    @pydantic.validate_call
    def __init__(self, p: Probability = 0.3) -> None:
        self.p = p
        self.where = "CopyPaste"

    def check(self, sample: dict[str, Any]) -> str | None:
        """Why ``sample`` cannot take pasted objects: it carries no instance masks."""
        if sample.get("masks") is not None:
            return None
        return (
            "has no instance masks, and CopyPaste pastes objects by their masks: train on a "
            "dataset with instance masks (COCO segmentations) with a head that learns from "
            "them (e.g. fcos_mask), so that visionkit reads them, or leave CopyPaste out"
        )

    def __call__(
        self, sample: dict[str, Any], partner: dict[str, Any], rng: np.random.Generator
    ) -> dict[str, Any]:
        if (problem := self.check(sample)) is not None:
            raise DataError(f"the sample {problem}")
        partner = resized_like(partner, sample["image"].shape[-2:])
        theirs = partner["masks"].bool()
        present = theirs.flatten(1).any(1).numpy()
        if not present.any():
            return merge_skipped(dict(sample), partner)
        chosen = present & (rng.random(len(present)) < 0.5)
        if not chosen.any():
            chosen[rng.choice(np.flatnonzero(present))] = True
        pick = torch.from_numpy(chosen)
        alpha = theirs[pick].any(0)
        mine = sample["masks"].bool()
        visible = mine & ~alpha
        had, has = mine.flatten(1).any(1), visible.flatten(1).any(1)
        keep = ~(had & ~has)  # fully covered instances go
        boxes = sample["boxes"].clone()
        cut = has & (mine & alpha).flatten(1).any(1)
        if cut.any():
            boxes[cut] = masks_to_boxes(visible[cut]) + torch.tensor([0.0, 0.0, 1.0, 1.0])
        out = dict(sample)
        out["image"] = torch.where(alpha, partner["image"], sample["image"])
        out["boxes"] = torch.cat([boxes[keep], partner["boxes"][pick]])
        out["labels"] = torch.cat([sample["labels"][keep], partner["labels"][pick]])
        if sample.get("keypoints") is not None:
            points = hidden_under(sample["keypoints"], alpha)
            out["keypoints"] = torch.cat([points[keep], partner["keypoints"][pick]])
        if sample.get("identities") is not None:
            out["identities"] = torch.cat([sample["identities"][keep], partner["identities"][pick]])
        pasted = theirs[pick].to(sample["masks"].dtype)
        out["masks"] = torch.cat([visible[keep].to(sample["masks"].dtype), pasted])
        if sample.get("semantic") is not None and partner.get("semantic") is not None:
            out["semantic"] = torch.where(alpha, partner["semantic"], sample["semantic"])
        out["image_size"] = tuple(map(max, sample["image_size"], partner["image_size"]))
        return merge_skipped(out, partner)


def hidden_under(keypoints: torch.Tensor, cover: torch.Tensor) -> torch.Tensor:
    """``keypoints`` ``[N, K, 3]`` with visibility 2 lowered to 1 (labelled, hidden) where
    the bool map ``cover`` ``[H, W]`` is set at the point's pixel."""
    points = keypoints.clone()
    h, w = cover.shape
    x = points[..., 0].round().long().clamp(0, w - 1)
    y = points[..., 1].round().long().clamp(0, h - 1)
    covered = cover[y, x] & (points[..., 2] == 2)
    points[..., 2] = torch.where(covered, torch.ones_like(points[..., 2]), points[..., 2])
    return points


#: The multi-image steps, by the ``name`` a config gives them. ``Mosaic`` is albumentations'
#: (built by :func:`visionkit.data.transforms.build_pipeline`, which wraps it in
#: :class:`Mosaic`); ``MixUp`` and ``CopyPaste`` are built from their parameters.
MULTI_IMAGE: dict[str, type] = {
    "Mosaic": Mosaic,
    "MixUp": MixUp,
    "CopyPaste": CopyPaste,
}  # + SwapHalves and RotateIdentities, added by visionkit.data.identity_mixing


def draw(dataset: Any, count: int, index: int | None = None) -> list[int]:
    """``count`` indices of ``dataset`` (a ``TransformedDataset``), with replacement, from its
    pipeline's random stream: among the partners of sample ``index`` (``MixedDataset.
    partners_of``: its own set's where sets annotate other box classes), else all."""
    rng = dataset.pipeline.random_generator
    partners_of = getattr(getattr(dataset, "dataset", None), "partners_of", None)
    among = range(len(dataset)) if index is None or partners_of is None else partners_of(index)
    return [among.start + int(i) for i in rng.integers(len(among), size=count)]


def mosaic_extras(dataset: Any, index: int | None = None) -> list[dict[str, Any]]:
    """The other raw samples of ``dataset`` for its pipeline's ``Mosaic`` of sample ``index``
    (``[]`` without one, or when its ``p`` is not drawn); then seeded from the same stream."""
    pipeline = dataset.pipeline
    mosaic = getattr(pipeline, "mosaic", None)
    if mosaic is None or pipeline.random_generator.random() >= mosaic.p:
        return []
    extras = [dataset.read(i) for i in draw(dataset, mosaic.extra, index)]
    mosaic.compose.set_random_state(pipeline.random_generator, pipeline.py_random)
    return extras


def declares(dataset: Any, target: str) -> bool:
    """Whether ``dataset`` (a mix: one of its parts) is a reader that declares ``target``
    among its ``targets`` and gives it (:func:`~visionkit.data.datasets.gives`): a sample
    of it without that target is one image of a partly labelled set."""
    from visionkit.data.datasets import gives

    parts = getattr(dataset, "parts", None)
    if isinstance(parts, Mapping):
        return any(declares(part, target) for part in parts.values())
    return target in getattr(type(dataset), "targets", ()) and gives(dataset, target)


def mix(
    step: Any, dataset: Any, sample: dict[str, Any], where: str, index: int | None = None
) -> dict[str, Any]:
    """``sample`` (``where``: which one, for messages; ``index``: its index), transformed by
    ``dataset``'s pipeline, mixed by ``step`` at its ``p`` with another sample (:func:`draw`)
    through the same pipeline; a partner carrying other label keys leaves it as it is.

    Raises:
        SampleError: ``sample`` cannot be mixed by ``step`` (CopyPaste on a dataset that
            gives no masks), or the mix failed; naming the step's key path and the sample.
    """
    name = type(step).__name__
    if (problem := step.check(sample)) is not None:
        if getattr(step, "needs", None) and declares(dataset.dataset, step.needs):
            return sample  # this image lacks what others of its dataset have: not mixed
        raise SampleError(f"{step.where} ({name}): {where} {problem}")
    rng = dataset.pipeline.random_generator
    if rng.random() >= step.p:
        return sample
    if getattr(step, "num_identities", 0) is None:  # an identity step's first use
        names = getattr(dataset.dataset, "label_names", {}).get("identity") or ()
        identity_mixing.bind_identities(dataset.pipeline.mixing, len(names))
    other, partner = None, None
    if getattr(step, "partners", 1):  # (RotateIdentities takes none)
        other = draw(dataset, 1, index)[0]
        partner = dataset.transform(other, dataset.read(other))
        if targets_of(partner) != targets_of(sample):
            return sample
    try:
        return step(sample, partner, rng)
    except Exception as err:
        with_whom = "" if other is None else f" mixed with sample {other}"
        raise SampleError(
            f"{step.where} ({name}): {where}{with_whom} failed: {type(err).__name__}: {err}"
        ) from err


def multi_image_problems(steps: Any, where: str, train: bool = True) -> list[str]:
    """Where the multi-image steps (:data:`MULTI_IMAGE`) of the pipeline ``steps`` (at key
    path ``where``) may not sit: anywhere in an evaluation pipeline (``train=False``),
    ``Mosaic`` other than first, ``MixUp`` / ``CopyPaste`` before a per-sample step. (Inside
    a composition they are refused when it is built.)

    >>> multi_image_problems([{"name": "HorizontalFlip"}, {"name": "Mosaic"}], "t")[0][:34]
    't[1] (Mosaic): must be the first s'
    """
    problems: list[str] = []
    steps = steps if isinstance(steps, list) else []
    names = [s.get("name") if isinstance(s, Mapping) else None for s in steps]
    names = [n if isinstance(n, str) else None for n in names]
    for i, name in enumerate(names):
        here = f"{where}[{i}]"
        kind = MULTI_IMAGE.get(name) if name else None
        if kind is None:
            continue
        if not train:
            problems.append(
                f"{here} ({name}): a multi-image step (it mixes other samples of the dataset "
                "in) is allowed only in data.transforms.train; leave it out of the evaluation "
                "pipeline"
            )
        elif kind.stage == "first" and i:
            problems.append(
                f"{here} ({name}): must be the first step of {where} (it assembles the raw "
                "images, which the following steps then crop, resize and flip), found at "
                f"position {i}"
            )
        elif kind.stage == "after" and (
            later := [j for j in range(i + 1, len(steps)) if names[j] not in MULTI_IMAGE]
        ):
            problems.append(
                f"{here} ({name}): must come after every per-sample step (it mixes the "
                "outputs of the whole per-sample pipeline on two samples), found before "
                f"{where}[{later[0]}] ({names[later[0]]})"
            )
    return problems


# The identity steps register themselves in MULTI_IMAGE (they use the helpers above).
from visionkit.data import identity_mixing  # noqa: E402
