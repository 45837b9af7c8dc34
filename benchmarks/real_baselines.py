"""The baselines of the real-data benchmark, each trained for a given wall time on the same
photos, precision and threads as visionkit's recipe, then scored the same way:

- torchvision FCOS with a ResNet-18 FPN (P3–P7, trainable BatchNorm: from scratch, frozen
  statistics would be the identity), its own resize to the recipe's longest side, horizontal
  flips, SGD with warm-up and a cosine decay over the time budget;
- Ultralytics YOLOv8n from its yaml (no weights), its own recipe and augmentation, when the
  ``ultralytics`` package is installed (it is never a dependency of visionkit);
- torchvision DeepLabV3-MobileNetV3-Large on random 256 px crops of scale-jittered photos.

Detections are scored by pycocotools against the COCO json of the validation split, label
maps by the mean IoU over the dataset's classes at the original resolution (void ignored).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from visionkit.data.batch import IGNORE_PIXEL

#: ImageNet statistics, as torchvision's models expect their inputs.
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def bf16(enabled: bool) -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def cosine_by_time(seconds: float, warmup_steps: int = 100) -> Callable[[int, float], float]:
    """LR factor from (step, elapsed seconds): linear warm-up, then cosine decay over the time
    budget (the number of steps a budget allows is not known in advance)."""

    def factor(step: int, elapsed: float) -> float:
        if step < warmup_steps:
            return 0.01 + 0.99 * step / warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / seconds)))

    return factor


def batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless shuffled batches of sample indices (the last, short batch dropped)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for i in range(0, n - batch_size + 1, batch_size):
            yield order[i : i + batch_size].tolist()


def train_for(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step_loss: Callable[[list[int]], torch.Tensor],
    n: int,
    batch_size: int,
    seconds: float,
    use_bf16: bool,
) -> int:
    """Train until ``seconds`` of wall time have passed; returns the number of steps."""
    factor = cosine_by_time(seconds)
    base = [g["lr"] for g in optimizer.param_groups]
    model.train()
    start, steps = time.perf_counter(), 0
    for indices in batches(n, batch_size, seed=0):
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
        for group, lr in zip(optimizer.param_groups, base, strict=True):
            group["lr"] = lr * factor(steps, elapsed)
        with bf16(use_bf16):
            loss = step_loss(indices)
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        steps += 1
    return steps


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HWC → float CHW in 0..1."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255


# --------------------------------------------------------------------------- detection


def torchvision_fcos_r18(num_classes: int, longest_side: int) -> nn.Module:
    from torchvision.models import resnet18
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    backbone = _resnet_fpn_extractor(
        resnet18(weights=None, norm_layer=nn.BatchNorm2d),
        trainable_layers=5,
        returned_layers=[2, 3, 4],
        extra_blocks=LastLevelP6P7(256, 256),
    )
    # min_size = max_size = the longest side: every photo is resized to that longest side.
    return FCOS(
        backbone,
        num_classes + 1,
        min_size=longest_side,
        max_size=longest_side,
        image_mean=list(MEAN),
        image_std=list(STD),
    )


def train_torchvision_fcos(
    train_set: Any,
    val_set: Any,
    gt_json: Path,
    seconds: float,
    longest_side: int,
    use_bf16: bool,
    eval_sides: Sequence[int] = (),
) -> dict[str, float]:
    """FCOS-R18 trained for ``seconds`` at ``longest_side``; COCO mAP of its detections on
    ``val_set``, the better of those at ``longest_side`` and at each of ``eval_sides`` (the
    recipe's evaluation size: the baseline is scored at it too), with ``eval_side`` and every
    side's mAP (``scores``)."""
    num_classes = len(train_set.label_names["instances"])
    model = torchvision_fcos_r18(num_classes, longest_side)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)

    def step_loss(indices: list[int]) -> torch.Tensor:
        images, targets = [], []
        for i in indices:
            sample = train_set[i]
            image, boxes = to_tensor(sample["image"]), torch.as_tensor(sample["boxes"])
            if rng.random() < 0.5:  # horizontal flip, torchvision's reference augmentation
                image = image.flip(-1)
                boxes = boxes[:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor(
                    [image.shape[-1], 0, image.shape[-1], 0]
                )
            images.append(image)
            labels = torch.as_tensor(sample["labels"], dtype=torch.int64) + 1
            targets.append({"boxes": boxes.float(), "labels": labels})
        losses = model(images, targets)
        return sum(losses.values())

    steps = train_for(model, optimizer, step_loss, len(train_set), 8, seconds, use_bf16)
    model.eval()
    scored = {}
    for side in dict.fromkeys([longest_side, *eval_sides]):
        model.transform.min_size, model.transform.max_size = (side,), side
        scored[side] = coco_map(gt_json, fcos_detections(model, val_set, use_bf16))
    side = max(scored, key=scored.get)
    return {
        "mAP": scored[side], "eval_side": side, "scores": scored, "steps": steps, "train_s": seconds
    }  # fmt: skip


def fcos_detections(model: nn.Module, val_set: Any, use_bf16: bool) -> list[dict[str, Any]]:
    """torchvision ``model``'s detections on ``val_set`` as COCO results."""
    results = []
    with torch.no_grad():
        for i in range(len(val_set)):
            sample = val_set[i]
            with bf16(use_bf16):
                (out,) = model([to_tensor(sample["image"])])
            for box, score, label in zip(out["boxes"], out["scores"], out["labels"], strict=True):
                x0, y0, x1, y1 = box.float().tolist()
                results.append(
                    {
                        "image_id": int(sample["image_id"]),
                        "category_id": int(val_set.category_ids[int(label) - 1]),
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "score": float(score),
                    }
                )
    return results


def coco_map(gt_json: Path, results: list[dict[str, Any]]) -> float:
    """pycocotools' bbox mAP@[.5:.95] (0 without detections)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        return 0.0
    with contextlib.redirect_stdout(None):
        gt = COCO(str(gt_json))
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return float(evaluator.stats[0])


def ultralytics_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ultralytics") is not None


def train_yolov8n(
    data_yaml: Path,
    val_images: list[tuple[int, Path]],
    category_ids: list[int],
    gt_json: Path,
    seconds: float,
    image_size: int,
    work: Path,
    eval_sizes: Sequence[int] = (),
) -> dict[str, float]:
    """YOLOv8n from scratch with Ultralytics' own recipe for ``seconds`` (its ``time``
    argument, which also fits its schedule to the budget); COCO mAP by pycocotools of its
    predictions (conf 0.001, as Ultralytics validates), the better of those at ``image_size``
    and at each of ``eval_sizes``, with ``eval_side`` and every size's mAP (``scores``)."""
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    model.train(
        data=str(data_yaml),
        epochs=1000,
        time=seconds / 3600,
        imgsz=image_size,
        batch=8,
        device="cpu",
        workers=2,
        pretrained=False,
        amp=False,
        plots=False,
        val=False,
        project=str(work),
        name="yolov8n",
        exist_ok=True,
        verbose=False,
        seed=0,
    )
    scored = {}
    for size in dict.fromkeys([image_size, *eval_sizes]):
        results = []
        for image_id, path in val_images:
            (pred,) = model.predict(
                str(path), imgsz=size, conf=0.001, iou=0.7, max_det=100, verbose=False
            )
            boxes = pred.boxes
            for (x0, y0, x1, y1), score, label in zip(
                boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
            ):
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": category_ids[int(label)],
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "score": score,
                    }
                )
        scored[size] = coco_map(gt_json, results)
    size = max(scored, key=scored.get)
    return {"mAP": scored[size], "eval_side": size, "scores": scored, "train_s": seconds}


# --------------------------------------------------------------------------- segmentation


def train_torchvision_deeplab(
    train_set: Any, val_set: Any, seconds: float, crop: int, longest_side: int, use_bf16: bool
) -> dict[str, float]:
    """DeepLabV3-MobileNetV3-Large from scratch for ``seconds`` on random ``crop`` px crops
    of photos resized to ``longest_side`` and scale-jittered (0.75x–1.5x), flipped; mIoU at
    the original resolution."""
    import albumentations as A
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    num_classes = len(train_set.label_names["semantic"])
    model = deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    augment = A.Compose(
        [
            A.LongestMaxSize(max_size=longest_side),
            A.RandomScale(scale_limit=(-0.25, 0.5), p=1.0),
            A.RandomCrop(crop, crop, pad_if_needed=True, fill_mask=IGNORE_PIXEL),
            A.HorizontalFlip(p=0.5),
            A.Normalize(mean=MEAN, std=STD),
        ],
        seed=0,
    )
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_PIXEL)

    def step_loss(indices: list[int]) -> torch.Tensor:
        pairs = [
            augment(image=s["image"], mask=s["semantic"])
            for s in map(train_set.__getitem__, indices)
        ]
        images = torch.stack([torch.from_numpy(p["image"]).permute(2, 0, 1) for p in pairs])
        masks = torch.stack([torch.from_numpy(p["mask"]).long() for p in pairs])
        return criterion(model(images)["out"].float(), masks)

    steps = train_for(model, optimizer, step_loss, len(train_set), 8, seconds, use_bf16)
    model.eval()
    normalize = A.Normalize(mean=MEAN, std=STD)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    with torch.no_grad():
        for i in range(len(val_set)):
            sample = val_set[i]
            image = torch.from_numpy(normalize(image=sample["image"])["image"]).permute(2, 0, 1)
            with bf16(use_bf16):
                logits = model(image[None])["out"]
            confusion += confusion_of(
                logits[0].float().argmax(0).numpy(), sample["semantic"], num_classes
            )
    return {"mIoU": mean_iou(confusion), "steps": steps, "train_s": seconds}


def confusion_of(pred: np.ndarray, target: np.ndarray, num_classes: int) -> np.ndarray:
    keep = target != IGNORE_PIXEL
    index = target[keep].astype(np.int64) * num_classes + pred[keep]
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean over the classes present in the ground truth or the predictions."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    valid = union > 0
    return float((tp[valid] / union[valid]).mean()) if valid.any() else 0.0


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path
