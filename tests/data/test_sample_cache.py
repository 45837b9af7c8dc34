"""``data.cache: ram``: each loader process decodes an image once; training draws exactly the
batches it would draw without the cache; the budget holds; a bad value is refused."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest
import torch

from visionkit.build import build_datasets, build_pipelines, targets_needed
from visionkit.config import load_config
from visionkit.data import sample_cache
from visionkit.data.datasets import TransformedDataset
from visionkit.data.sample_cache import SampleCache
from visionkit.engine.datamodule import VisionDataModule
from visionkit.errors import ConfigError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class CountingReader:
    """A reader of 6 images that counts how often each is decoded."""

    def __init__(self) -> None:
        self.reads = [0] * 6

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> dict:
        self.reads[index] += 1
        image = np.full((8, 8, 3), 40 * index, np.uint8)
        return {"image": image, "image_id": index, "orig_size": (8, 8), "path": f"{index}.png"}


def test_each_image_is_read_once_and_handed_out_as_a_copy():
    reader = CountingReader()
    data = TransformedDataset(reader, pipeline=None, cache=SampleCache())
    first = [data.read(i) for i in range(6)]
    first[0]["image"][:] = 255  # a transform that writes into its input
    again = [data.read(i) for i in range(6)]
    assert reader.reads == [1] * 6
    assert int(again[0]["image"].max()) == 0
    assert [s["image_id"] for s in again] == list(range(6))
    uncached = TransformedDataset(reader, pipeline=None)
    uncached.read(0)
    assert reader.reads[0] == 2


def test_past_its_budget_a_process_decodes_again_and_says_so_once(caplog):
    reader = CountingReader()
    cache = SampleCache(budget=2 * 8 * 8 * 3)  # two images
    data = TransformedDataset(reader, pipeline=None, cache=cache)
    with caplog.at_level(logging.INFO, logger="visionkit.data.sample_cache"):
        for _ in range(2):
            for i in range(4):
                data.read(i)
    assert reader.reads[:4] == [1, 1, 2, 2]
    assert cache.refused == 4
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "holds 2 images" in notes[0] and "decoded each time" in notes[0]


def test_a_worker_started_by_pickling_starts_with_an_empty_cache():
    cache = SampleCache()
    cache.get(0, CountingReader().__getitem__)
    copy = pickle.loads(pickle.dumps(cache))
    assert len(cache.samples) == 1 and copy.samples == {} and copy.held == 0


@pytest.mark.parametrize("workers", [0, 2])
def test_cached_training_batches_are_the_uncached_ones(tiny_config, workers):
    cfg = load_config(tiny_config)
    datasets = build_datasets(cfg.data, needs=targets_needed(cfg))

    def two_epochs(cache):
        module = VisionDataModule(
            datasets, build_pipelines(cfg.data, MEAN, STD), 8, num_workers=workers,
            cache=cache, seed=3,
        )  # fmt: skip
        loader = module.train_dataloader()
        batches = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            batches += [b["images"] for b, _ in zip(loader, range(3), strict=False)]
        return batches

    for cached, plain in zip(two_epochs(True), two_epochs(False), strict=True):
        assert torch.equal(cached, plain)
    module = VisionDataModule(datasets, build_pipelines(cfg.data, MEAN, STD), 8, cache=True)
    loader = module.train_dataloader()
    next(iter(loader))
    assert len(loader.dataset.cache.samples) == 8  # the batch's images, read through it


def test_a_machines_ranks_and_validation_sets_share_the_memory(tiny_config, monkeypatch):
    cfg = load_config(tiny_config)
    datasets = build_datasets(cfg.data, needs=targets_needed(cfg))
    pipelines = build_pipelines(cfg.data, MEAN, STD)
    module = VisionDataModule(datasets, pipelines, 8, cache=True)
    assert module.train_dataloader().dataset.cache.share == 0.25
    two_sets = {**datasets, "val": {"a": datasets["val"], "b": datasets["val"]}}
    loaders = VisionDataModule(two_sets, pipelines, 8, cache=True).val_dataloader()
    assert [loader.dataset.cache.share for loader in loaders] == [0.125, 0.125]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four DDP ranks on this machine
    assert module.train_dataloader().dataset.cache.share == 0.0625


def test_a_containers_limit_caps_the_memory_available(tmp_path, monkeypatch):
    (tmp_path / "memory.max").write_text("1000000\n")
    (tmp_path / "memory.current").write_text("400000\n")
    assert sample_cache.cgroup_room(tmp_path) == 600000
    monkeypatch.setattr(sample_cache, "cgroup_room", lambda: 600000)
    assert sample_cache.available_memory() == 600000  # the host's MemAvailable is far more
    cache = SampleCache(share=0.5)
    cache.get(0, CountingReader().__getitem__)
    assert cache.budget == 300000


@pytest.mark.parametrize(
    ("value", "cached"), [("ram", True), ("RAM", True), ("true", True), ("false", False)]
)
def test_the_setting_takes_ram_or_a_switch(tiny_config, value, cached):
    assert bool(load_config(tiny_config, [f"data.cache={value}"]).data.cache) is cached


def test_another_cache_kind_is_refused_with_the_choices(tiny_config):
    with pytest.raises(ConfigError) as err:
        load_config(tiny_config, ["data.cache=disk"])
    message = str(err.value)
    assert "data.cache" in message and "ram" in message


def test_ultralytics_cache_argument_is_pointed_at_data_cache(tiny_config):
    with pytest.raises(ConfigError) as err:
        load_config(tiny_config, ["cache=ram"])
    assert "data.cache" in str(err.value)
