"""Data pipeline throughput: the recipe's own training ``DataLoader``, alone.

The loader is the one ``visionkit train`` builds (:class:`~visionkit.engine.datamodule.VisionDataModule`:
the dataset reader and its PNG decoder, the recipe's albumentations pipeline with the
backbone's normalisation, :func:`~visionkit.data.batch.collate`, the configured
``num_workers``), over a shapes dataset generated for the measurement at the size the model
is benchmarked at (the recipe's generator settings, fewer images). The timed loop only takes
batches from the loader, so the figure is decode + augment + collate with nothing else
competing for the cores; compared with the model's training images/s of the same run it says
how much headroom the loader has (in training the two share the cores).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.harness import median
from visionkit.build import build_datasets, build_pipelines, dropped_keys, targets_needed
from visionkit.build.data import shapes_arguments
from visionkit.build.model import create_model
from visionkit.config import Config, is_dataset_mix, load_config
from visionkit.data.datasets import label_names_of
from visionkit.data.synthetic import make_shapes
from visionkit.errors import ConfigError


def pipeline_config(
    config: Config,
    images_dir: str | Path,
    image_size: tuple[int, int],
    batch_size: int,
    num_workers: int | None,
) -> Config:
    """The recipe with its training set read from ``images_dir`` (no generation), no
    validation set, and the benchmark's image size, batch and workers."""
    data = config.to_dict()
    train = data["data"].get("train")
    if not isinstance(train, Mapping) or is_dataset_mix(train) or not train.get("synthetic"):
        raise ConfigError(
            f"{config.name}: the data pipeline benchmark needs a recipe whose data.train is one "
            "generated shapes dataset (data.train.synthetic)"
        )
    train = dict(train)
    train["images"] = str(images_dir)
    train.pop("synthetic")
    data["data"].update(
        train=train,
        val=None,
        image_size=list(image_size),
        batch_size=batch_size,
    )
    if num_workers is not None:
        data["data"]["num_workers"] = num_workers
    return load_config(data)


def generated_dataset(
    config: Config, side: int, num_images: int, root: Path, cache: dict[tuple, Path]
) -> Path:
    """The recipe's shapes dataset (its generator settings) at ``side`` px with
    ``num_images`` images, generated under ``root`` once per distinct setting."""
    params = shapes_arguments(config.data.train["synthetic"])
    params.update(size=side, num_images=num_images)
    key = tuple(sorted(params.items()))
    if key not in cache:
        path = root / f"shapes_{len(cache)}"
        make_shapes(path, **params)
        cache[key] = path
    return cache[key]


def measure_pipeline(
    config: Config,
    image_size: tuple[int, int],
    batch_size: int,
    num_workers: int | None,
    batches: int,
    warmup: int,
    reps: int,
    root: Path,
    cache: dict[tuple, Path] | None = None,
    name: str = "",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Images/s of the recipe's training loader: ``warmup`` untimed repetitions (the first
    starts the workers), then ``reps`` timed ones, each taking ``batches`` batches; the
    figure is the median over repetitions. The generated dataset holds exactly the images
    that all repetitions take, so they fall within one epoch.

    Returns:
        ``{"images_per_s", "rep_images_per_s": [...], "first_batch_s", "batch_size",
        "num_workers", "image_size", "dataset_images", "transforms"}``.
    """
    # Imported here, not at the top: the data module is Lightning's, and importing Lightning
    # only when the pipeline is measured keeps it out of the process (and its memory) while
    # the models are measured.
    from visionkit.engine.datamodule import VisionDataModule

    side = max(image_size)
    num_images = (warmup + reps) * batches * batch_size
    images_dir = generated_dataset(config, side, num_images, root, {} if cache is None else cache)
    cfg = pipeline_config(config, images_dir, (side, side), batch_size, num_workers)
    datasets = build_datasets(cfg.data, needs=targets_needed(cfg))
    backbone = create_model(cfg, label_names=label_names_of(datasets)).backbone
    module = VisionDataModule(
        datasets,
        build_pipelines(cfg.data, backbone.mean, backbone.std),
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
        pin_memory=cfg.data.pin_memory,
        drop=dropped_keys(cfg),
    )
    loader = module.train_dataloader()
    batches_seen = iter(loader)

    def take(count: int) -> int:
        """Images in the next ``count`` batches."""
        return sum(len(next(batches_seen)["images"]) for _ in range(count))

    start = time.perf_counter()
    take(1)  # the workers start: the first warm-up repetition
    first_batch_s = time.perf_counter() - start
    take(batches - 1 + (warmup - 1) * batches)
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        images = take(batches)
        rates.append(images / (time.perf_counter() - start))
    batches_seen = loader = None  # the workers stop
    gc.collect()
    steps = [step.get("name") for step in cfg.data.transforms.train or []]
    result = {
        "images_per_s": median(rates),
        "rep_images_per_s": rates,
        "first_batch_s": first_batch_s,
        "batch_size": batch_size,
        "num_workers": cfg.data.num_workers,
        "image_size": [side, side],
        "dataset_images": num_images,
        "transforms": steps,
    }
    log(
        f"[pipeline/{name}] {cfg.data.num_workers} workers, batch {batch_size}, "
        f"{side} px: {result['images_per_s']:.1f} images/s (median of {reps})"
    )
    return result
