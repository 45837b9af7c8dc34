"""The first resize of a pipeline, done as a Sample is read: a 12-megapixel phone photo is kept
(``data.cache: ram``) and handed to the pipeline at the size its first step makes of it, not as
36 MB of pixels resized again at every draw.

A pipeline whose first step is a resize to a fixed size (``Resize``, or ``LongestMaxSize`` /
``SmallestMaxSize`` with one ``max_size``, applied always) gives the same result when that
step runs twice: the second time the image already has its size, and albumentations hands an
image of the size asked for back as it is. So :class:`~visionkit.data.datasets.
TransformedDataset` runs it once more where the Sample is read, before the cache; the
pipeline is left whole (what every other caller of it sees is unchanged) and its own first
step finds nothing to do. A pipeline that starts with a ``Mosaic`` (whose cells are the photos
as read) or anything else keeps the photos as read, and so does a photo the step would
enlarge (a 32 px image kept at 224 px would take 49 times the memory) or leave with a side of
one pixel (the keypoints' flip test needs two).

The Sample keeps its ``orig_size`` (the predictions are still mapped back to the photo as
published) and its other keys; boxes, instance masks, the label map and keypoints are
resized with the image by albumentations, as in the pipeline. Only boxes of no area are
dropped here, as the pipeline drops them; the pipeline's own filter (an area under one pixel)
runs on what comes out, so a box within float rounding of that limit may fall on the other
side of it.
"""

from __future__ import annotations

import copy
from typing import Any

import albumentations as A
import numpy as np

from visionkit.data.batch import Sample, check_image
from visionkit.data.keypoint_transforms import (
    keypoint_inputs,
    keypoint_outputs,
    keypoint_params,
    pixel_index_scaling,
)

#: The resizing steps to a size fixed by their arguments: applied twice, they resize once.
FIXED_RESIZES = (A.Resize, A.LongestMaxSize, A.SmallestMaxSize)


def resize_on_read(step: Any) -> A.Compose | None:
    """A pipeline's first ``step`` as a composition of its own to run on Samples as they are
    read, or ``None`` when running it twice would change the result (a random step, a crop,
    a resize to one of several sizes).

    >>> resize_on_read(A.LongestMaxSize(max_size=64)) is not None
    True
    >>> resize_on_read(A.LongestMaxSize(max_size=[64, 96])) is None  # a size picked at random
    True
    >>> resize_on_read(A.RandomResizedCrop(size=(64, 64))) is None
    True
    """
    if type(step) not in FIXED_RESIZES or step.p < 1:
        return None
    sizes = getattr(step, "max_size", None)
    if isinstance(sizes, (list, tuple)) and len(sizes) != 1:
        return None
    return A.Compose(
        [copy.deepcopy(step)],
        bbox_params=A.BboxParams(
            format="pascal_voc", label_fields=["labels", "instance_ids"], clip=True
        ),
        keypoint_params=keypoint_params(),
    )


def resize_sample(resize: A.Compose, sample: Sample) -> Sample:
    """``sample`` (a reader's: numpy arrays, absolute pixels) through ``resize``, a Sample
    again: the image, ``boxes``, ``masks``, ``semantic`` and ``keypoints`` at the new size,
    every other key as it was (``orig_size`` included).

    >>> sample = {"image": np.zeros((400, 300, 3), np.uint8), "image_id": 1,
    ...           "orig_size": (400, 300), "boxes": np.array([[0.0, 0.0, 150.0, 200.0]]),
    ...           "labels": np.array([0])}
    >>> out = resize_sample(resize_on_read(A.LongestMaxSize(max_size=100)), sample)
    >>> out["image"].shape, out["boxes"].tolist(), out["orig_size"]
    ((100, 75, 3), [[0.0, 0.0, 37.5, 50.0]], (400, 300))
    """
    image = sample["image"]
    check_image(image)
    if not shrinks(resize.transforms[0], image.shape[:2]):
        return sample
    boxes = np.asarray(sample.get("boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4)
    inputs: dict[str, Any] = {
        "image": image,
        "bboxes": boxes,
        "labels": np.asarray(sample.get("labels", np.zeros(0)), np.int64),
        "instance_ids": np.arange(len(boxes)),
    }
    masks = sample.get("masks")
    if masks is not None and len(masks) != len(boxes):
        raise ValueError(f"{len(masks)} instance masks for {len(boxes)} boxes")
    if masks is not None and len(masks):
        inputs["masks"] = np.asarray(masks, np.uint8)
    if sample.get("semantic") is not None:
        inputs["mask"] = np.asarray(sample["semantic"], np.uint8)
    points = keypoint_inputs(sample, len(boxes))
    if points is not None:
        inputs["keypoints"] = points
    with pixel_index_scaling():  # keypoints scaled as the pipeline scales them
        out = resize(**inputs)
    result = dict(sample)
    result["image"] = np.ascontiguousarray(out["image"])
    size = result["image"].shape[:2]
    kept = np.asarray(out["instance_ids"], np.int64).reshape(-1)
    if "boxes" in sample:
        result["boxes"] = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        result["labels"] = np.asarray(out["labels"], np.int64).reshape(-1)
    if masks is not None:
        resized = np.asarray(out["masks"], np.uint8) if "masks" in inputs else masks
        result["masks"] = resized[kept] if len(kept) else np.zeros((0, *size), np.uint8)
    if "mask" in inputs:
        result["semantic"] = np.ascontiguousarray(out["mask"])
    if points is not None:
        result["keypoints"] = keypoint_outputs(sample, out["keypoints"], kept, None).numpy()
    if sample.get("identities") is not None:
        result["identities"] = np.asarray(sample["identities"], np.int64)[kept]
    return result


def shrinks(step: Any, shape: tuple[int, int]) -> bool:
    """Whether ``step`` (a resize of :data:`FIXED_RESIZES`) makes an ``(H, W)`` image smaller,
    by its pixel count, leaving both sides at least two pixels long (the size from the step's
    own scale, each side rounded as albumentations rounds it).

    >>> shrinks(A.LongestMaxSize(max_size=192), (3024, 4032)), shrinks(A.Resize(64, 64), (32, 32))
    (True, False)
    >>> shrinks(A.LongestMaxSize(max_size=192), (20, 4000))  # to 192 x 1
    False
    """
    h, w = int(shape[0]), int(shape[1])
    if isinstance(step, A.Resize):
        out_h, out_w = int(step.height), int(step.width)
    else:
        scale = step.get_params_dependent_on_data({"shape": (h, w)}, {})["scale"]
        out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
    return min(h, w, out_h, out_w) >= 2 and out_h * out_w < h * w
