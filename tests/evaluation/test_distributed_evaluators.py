"""Every evaluator under two real processes (gloo): with the split that a padding
``DistributedSampler`` makes (the last rank repeats the first image), the metrics equal those of
one process that saw each image once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from visionkit.evaluation import ClassificationEvaluator, CocoEvaluator, SemanticEvaluator

NUM_IMAGES = 7  # odd: with 2 processes, DistributedSampler pads rank 1 with image 0


class Labels:
    """Seeded 8x8 semantic label maps by image id (with some ignored pixels)."""

    def load_semantic(self, image_id):
        rng = np.random.default_rng(image_id)
        label = rng.integers(0, 3, (8, 8))
        label[0, :2] = 255
        return label


def semantic_prediction(image_id):
    rng = np.random.default_rng(1000 + image_id)
    return {"mask": torch.as_tensor(rng.integers(0, 3, (8, 8)))}


def class_prediction(image_id):
    rng = np.random.default_rng(2000 + image_id)
    return {"scores": torch.as_tensor(rng.random(7), dtype=torch.float32)}


def class_label(image_id):
    return -1 if image_id == 3 else image_id % 7  # image 3 carries no class


def box_prediction(image_id, gt):
    """The image's ground-truth boxes shifted by a seeded amount, plus one false positive."""
    rng = np.random.default_rng(3000 + image_id)
    boxes, labels = [], []
    for ann in gt:
        x, y, w, h = ann["bbox"]
        dx, dy = rng.uniform(-3, 3, 2)
        boxes.append([x + dx, y + dy, x + w + dx, y + h + dy])
        labels.append(ann["category_id"] - 1)
    boxes.append([1.0, 1.0, 9.0, 9.0])
    labels.append(0)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "scores": torch.as_tensor(rng.uniform(0.1, 1, len(boxes)), dtype=torch.float32),
        "labels": torch.tensor(labels),
    }


def evaluate_share(indices, annotations):
    """Run the three evaluators on the images at ``indices`` (image id = index + 1), in
    batches of 2; returns their merged metrics."""
    gt = json.loads(Path(annotations).read_text())
    by_image = {image["id"]: [] for image in gt["images"]}
    for ann in gt["annotations"]:
        by_image[ann["image_id"]].append(ann)
    evaluators = [
        SemanticEvaluator("seg", 3, None, Labels()),
        ClassificationEvaluator("cls", 7),
        CocoEvaluator("det", annotations, [1, 2, 3]),
    ]
    ids = [i + 1 for i in indices]
    for start in range(0, len(ids), 2):
        chunk = ids[start : start + 2]
        batch = {
            "image_ids": torch.tensor(chunk),
            "class": torch.tensor([class_label(i) for i in chunk]),
        }
        evaluators[0].process(batch, [semantic_prediction(i) for i in chunk])
        evaluators[1].process(batch, [class_prediction(i) for i in chunk])
        evaluators[2].process(batch, [box_prediction(i, by_image[i]) for i in chunk])
    metrics = {}
    for evaluator in evaluators:
        metrics.update(evaluator.evaluate())
    metrics["seg_confusion"] = evaluators[0].global_confusion.tolist()
    metrics["cls_confusion"] = evaluators[1].confusion.tolist()
    return metrics


def _worker(rank, world_size, init_file, annotations, out_dir):
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        sampler = DistributedSampler(
            range(NUM_IMAGES), num_replicas=world_size, rank=rank, shuffle=False
        )
        metrics = evaluate_share(list(sampler), annotations)
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(metrics, f)
    finally:
        dist.destroy_process_group()


def test_two_processes_with_padded_shares_equal_one_process(shapes_root, tmp_path):
    annotations = str(shapes_root / "val" / "annotations.json")
    shares = [list(DistributedSampler(range(NUM_IMAGES), 2, r, shuffle=False)) for r in (0, 1)]
    assert shares[1][-1] == 0 and shares[0][0] == 0  # the padding this test is about

    single = evaluate_share(range(NUM_IMAGES), annotations)
    args = (2, str(tmp_path / "init"), annotations, str(tmp_path))
    mp.start_processes(_worker, args=args, nprocs=2, join=True, start_method="fork")
    for rank in (0, 1):
        gathered = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert gathered.keys() == single.keys()
        for key in ("seg_confusion", "cls_confusion"):
            assert gathered[key] == single[key], key
        for key, value in single.items():
            if key.endswith("_confusion"):
                continue
            if math.isnan(value):
                assert math.isnan(gathered[key]), key
            else:
                assert gathered[key] == value, (rank, key, gathered[key], value)
    # the numbers are not trivially equal: counting the repeated image twice changes them
    twice = evaluate_share([*range(NUM_IMAGES), 0], annotations)
    assert twice["seg_confusion"] != single["seg_confusion"]
    assert twice["cls/top1"] != single["cls/top1"]
    assert twice["cls_confusion"] != single["cls_confusion"]
