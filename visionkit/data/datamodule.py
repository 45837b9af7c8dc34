"""Datasets from the config, the transform pipelines, and the ``LightningDataModule``."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset

from visionkit.config import DataConfig
from visionkit.data.transforms import apply_pipeline, build_pipeline, collate, default_transforms
from visionkit.errors import ConfigError, DataError, VisionkitError
from visionkit.registry import DATASETS

logger = logging.getLogger(__name__)


def build_dataset(
    spec: Mapping[str, Any],
    label_names: Mapping[str, Sequence[str]] | None = None,
    where: str = "data",
    needs: Sequence[str] = (),
):
    """Build one dataset from its validated config (``{format: coco, images: ..., ...}``).

    Every format names its folder in its first parameter (``images`` for COCO, ``root`` for
    the folder layouts). When the spec has ``synthetic:`` and that folder holds no data yet,
    the shapes dataset is generated there first. ``label_names`` (from the training set) fix
    the class order of a validation set whose config does not set one. ``needs`` names the
    targets the model's heads learn from (``"masks"``, ``"semantic"``); a reader parameter of
    that name left ``None`` ("when needed") is switched on.
    """
    args = {k: v for k, v in spec.items() if k not in ("format", "synthetic")}
    builder = DATASETS.get(spec["format"])
    params = inspect.signature(builder).parameters
    location = next(iter(params))
    if args.get(location) is None:
        raise ConfigError(
            f"{where}.{location}: not set; give the dataset folder, e.g. {where}.{location}=PATH"
        )
    synthetic = spec.get("synthetic")
    if synthetic and _needs_generation(Path(args[location]), synthetic):
        from visionkit.data.synthetic import make_shapes

        logger.info("generating the shapes dataset in %s", args[location])
        make_shapes(args[location], **synthetic, progress=True)
    for target in needs:
        if target in params and args.get(target) is None:
            args[target] = True
    if label_names and "class" in label_names and args.get("class_names") is None:
        wants_classes = "class_field" not in params or args.get("class_field") is not None
        if "class_names" in params and wants_classes:
            args["class_names"] = list(label_names["class"])
    return builder(**args)


def _needs_generation(root: Path, params: Mapping[str, Any]) -> bool:
    """True when ``root`` holds no dataset yet, or a shapes dataset made with other parameters
    (a dataset that is not a generated one is never replaced)."""
    path = root / "annotations.json"
    if not path.is_file():
        return not any(root.glob("*.json"))
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f).get("info", {})
    except (OSError, ValueError, AttributeError):
        return False
    from visionkit.data.synthetic import GENERATOR

    if info.get("generator") != GENERATOR:
        return False
    return any(info.get(key) != value for key, value in params.items())


def build_datasets(cfg: DataConfig, needs: Sequence[str] = ()) -> dict[str, Any]:
    """The configured splits (``train``, ``val``), the validation set sharing the training
    set's class order; ``needs`` as in :func:`build_dataset`."""
    datasets: dict[str, Any] = {}
    if cfg.train is not None:
        datasets["train"] = build_dataset(cfg.train, where="data.train", needs=needs)
    if cfg.val is not None:
        names = getattr(datasets.get("train"), "label_names", None)
        datasets["val"] = build_dataset(cfg.val, names, where="data.val", needs=needs)
    return datasets


def label_names_of(datasets: Mapping[str, Any]) -> dict[str, list[str]]:
    """The label names of the training set (else the validation set)."""
    ds = datasets.get("train") or datasets.get("val")
    return {k: list(v) for k, v in getattr(ds, "label_names", {}).items()}


class TransformedDataset(Dataset):
    """A dataset's Samples run through an albumentations pipeline.

    A failure while reading or transforming sample ``i`` is re-raised as a
    :class:`DataError` naming the index, the image id and the file.
    """

    def __init__(self, dataset: Any, pipeline: Any) -> None:
        self.dataset = dataset
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            sample = self.dataset[index]
        except VisionkitError:
            raise
        except Exception as err:
            raise DataError(f"sample {index}: reading failed: {type(err).__name__}: {err}") from err
        try:
            return apply_pipeline(self.pipeline, sample)
        except Exception as err:
            raise DataError(
                f"sample {index} (image id {sample.get('image_id')}, {sample.get('path')}): "
                f"transform failed: {type(err).__name__}: {err}"
            ) from err


class VisionDataModule(L.LightningDataModule):
    """Owns the datasets and pipelines of one config.

    Args:
        cfg: the ``data`` section.
        datasets: already built splits (see :func:`build_datasets`).
        mean, std: normalisation of the backbone (its pretrained config).
    """

    def __init__(
        self,
        cfg: DataConfig,
        datasets: Mapping[str, Any],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.datasets = dict(datasets)
        train_steps = cfg.transforms.train or default_transforms(cfg.image_size, train=True)
        val_steps = cfg.transforms.val or default_transforms(cfg.image_size, train=False)
        self.pipelines = {
            "train": build_pipeline(train_steps, mean, std, "data.transforms.train"),
            "val": build_pipeline(val_steps, mean, std, "data.transforms.val"),
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise DataError(f"no data.{split} dataset is configured")
        batch_size = (
            self.cfg.batch_size
            if split == "train"
            else (self.cfg.val_batch_size or self.cfg.batch_size)
        )
        workers = self.cfg.num_workers
        return DataLoader(
            TransformedDataset(self.datasets[split], self.pipelines[split]),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=workers,
            collate_fn=partial(collate),
            pin_memory=self.cfg.pin_memory,
            persistent_workers=workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
