"""``data.close_mixing``: the multi-image steps (``Mosaic``, ``MixUp``, ...) off for the last part
of the training schedule, as Ultralytics' ``close_mosaic``: the sampler marks each draw by the
step it is trained at, the loader workers read the mark."""

from __future__ import annotations

import logging
import pickle

import lightning as L
import numpy as np
import pytest

from tests.helpers import detection_config, make_coco
from visionkit.config import load_config
from visionkit.data.datasets import TransformedDataset
from visionkit.data.image_size import with_image_size
from visionkit.data.transforms import build_pipeline
from visionkit.engine.close_mixing import closing_step, has_mixing_steps
from visionkit.engine.runner import train
from visionkit.engine.sampling import EpochSampler, SampleKey
from visionkit.errors import ConfigError


def marks(sampler: EpochSampler, epoch: int) -> list[bool]:
    sampler.set_epoch(epoch)
    return [key.mixing for key in sampler]


def test_the_sampler_marks_the_draws_trained_from_the_closing_step_on():
    sampler = EpochSampler(range(10), seed=0, batch_size=2)  # 5 batches an epoch
    assert marks(sampler, 0) == [True] * 10  # nothing closed before close_mixing_at
    sampler.close_mixing_at(7, batches_per_epoch=5)
    assert marks(sampler, 0) == [True] * 10  # steps 0-4
    assert marks(sampler, 1) == [True] * 4 + [False] * 6  # steps 5, 6, then 7-9
    assert marks(sampler, 2) == [False] * 10


def test_the_marks_follow_the_ranks_batches_and_gradient_accumulation():
    ranks = [EpochSampler(range(12), 0, rank=r, world_size=2, batch_size=2) for r in (0, 1)]
    for sampler in ranks:  # 6 draws a rank, 3 batches an epoch
        sampler.close_mixing_at(2, batches_per_epoch=3)
        assert marks(sampler, 0) == [True] * 4 + [False] * 2
    one = EpochSampler(range(6), seed=0, batch_size=2)  # 3 batches, 2 a step: steps 0, 0, 1
    one.close_mixing_at(1, batches_per_epoch=3, accumulate=2)
    assert marks(one, 0) == [True] * 4 + [False] * 2
    assert marks(one, 1) == [False] * 6  # epoch 1 starts at step 2


def test_a_resumed_pass_marks_its_draws_by_their_place_in_the_epoch():
    sampler = EpochSampler(range(10), seed=0, batch_size=2)
    sampler.close_mixing_at(3, batches_per_epoch=5)
    sampler.set_epoch(0)
    sampler.resume_at(0, 4)  # batches 0 and 1 were trained before the interruption
    assert [key.mixing for key in sampler] == [True] * 2 + [False] * 4


def test_the_mark_reaches_a_loader_worker():
    key = pickle.loads(pickle.dumps(SampleKey(3, (0, 1, 2), mixing=False)))
    assert (int(key), key.seed_keys, key.mixing) == (3, (0, 1, 2), False)
    assert SampleKey(3, (0, 1, 2)).mixing  # mixed unless marked


def test_the_closing_step_is_the_last_fraction_of_the_schedule():
    assert closing_step(1400, 0.2) == 1120
    assert closing_step(10, 0.25) == 8
    assert closing_step(4, 0.5) == 2


class OneBox:
    """Image ``k``: one flat colour with one box of label ``k``; counts the reads."""

    def __init__(self, n: int = 6) -> None:
        self.n, self.reads = n, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> dict:
        self.reads += 1
        return {
            "image": np.full((40, 48, 3), 20 * k, np.uint8),
            "image_id": k + 1,
            "orig_size": (40, 48),
            "path": f"mem/{k}.png",
            "boxes": np.array([[4.0, 4.0, 40.0, 30.0]], np.float32),
            "labels": np.array([k], np.int64),
        }


def test_an_unmarked_sample_skips_mosaic_and_mixup_and_reads_no_other_image():
    steps = [{"name": "Mosaic", "p": 1.0}, {"name": "Resize"}, {"name": "MixUp", "p": 1.0}]
    pipeline = build_pipeline([with_image_size(s, 32) for s in steps], (0,) * 3, (1,) * 3, "t")
    data = OneBox()
    dataset = TransformedDataset(data, pipeline, reseed=True)
    mixed = dataset[SampleKey(2, (0, 0, 2))]
    assert len(mixed["labels"]) > 1 and data.reads > 1
    data.reads = 0
    plain = dataset[SampleKey(2, (0, 0, 2), mixing=False)]
    assert plain["labels"].tolist() == [2] and data.reads == 1
    assert tuple(plain["image"].shape) == (3, 32, 32)


class BoxesPerImage(L.Callback):
    """The boxes of each training batch's images, per optimiser step."""

    def __init__(self) -> None:
        self.seen: dict[int, list[int]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen[trainer.global_step] = [len(b) for b in batch["boxes"]]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_mixes_until_the_closing_step_and_says_so(tmp_path, caplog, workers):
    """MixUp at p 1 on images of one box each: two boxes an image while mixing, one after;
    with 2 loader workers reading ahead of the steps too."""
    train_root = make_coco(tmp_path / "train", num_images=8)
    mixup = [{"name": "Resize"}, {"name": "MixUp", "p": 1.0}]
    data = {"num_workers": workers, "close_mixing": 0.375, "transforms": {"train": mixup}}
    config = detection_config(tmp_path / "c.yaml", train_root, data=data)
    record = BoxesPerImage()
    overrides = ["trainer.limit_train_batches=null", "trainer.max_epochs=2"]  # 2 x 4 steps
    with caplog.at_level(logging.INFO, logger="visionkit.engine.close_mixing"):
        train(config, overrides, output_dir=tmp_path / "run", callbacks=[record])
    assert record.seen == {s: [2, 2] for s in range(5)} | {s: [1, 1] for s in range(5, 8)}
    said = [r.getMessage() for r in caplog.records if "close_mixing" in r.getMessage()]
    assert said == [
        "data.close_mixing 0.375: step 5 of 8, the multi-image steps of data.transforms.train "
        "are off from here to the end"
    ]


def test_a_loader_reloaded_at_each_epoch_is_closed_from_its_first_batch(tmp_path):
    """trainer.reload_dataloaders_every_n_epochs: each epoch's new sampler gets the point
    before its workers read ahead."""
    train_root = make_coco(tmp_path / "train", num_images=8)
    mixup = [{"name": "Resize"}, {"name": "MixUp", "p": 1.0}]
    data = {"num_workers": 2, "close_mixing": 0.5, "transforms": {"train": mixup}}
    config = detection_config(tmp_path / "c.yaml", train_root, data=data)
    record = BoxesPerImage()
    overrides = [
        "trainer.limit_train_batches=null",
        "trainer.max_epochs=3",
        "trainer.reload_dataloaders_every_n_epochs=1",
    ]
    train(config, overrides, output_dir=tmp_path / "run", callbacks=[record])
    assert record.seen == {s: [2, 2] for s in range(6)} | {s: [1, 1] for s in range(6, 12)}


def test_a_run_resumed_after_the_closing_step_does_not_mix(tmp_path):
    """Resumed from its step-6 checkpoint, a run trains its last two steps unmixed, as the
    uninterrupted run did (the loader workers read ahead from the first resumed step on)."""
    train_root = make_coco(tmp_path / "train", num_images=8)
    mixup = [{"name": "Resize"}, {"name": "MixUp", "p": 1.0}]
    data = {"num_workers": 2, "close_mixing": 0.375, "transforms": {"train": mixup}}
    config = detection_config(tmp_path / "c.yaml", train_root, data=data)
    overrides = [
        "trainer.limit_train_batches=null",
        "trainer.max_epochs=2",
        "trainer.checkpoint_every_n_steps=6",
    ]
    first, _ = train(config, overrides, output_dir=tmp_path / "first")
    record = BoxesPerImage()
    step_ckpt = first / "checkpoints" / "step.ckpt"
    train(config, overrides, output_dir=tmp_path / "again", resume=step_ckpt, callbacks=[record])
    assert record.seen == {6: [1, 1], 7: [1, 1]}


def test_close_mixing_without_a_multi_image_step_says_it_does_nothing(caplog):
    """A recipe's close_mixing with its transforms.train overridden (no MixUp left) trains on;
    the log says the setting does nothing."""
    with caplog.at_level(logging.WARNING, logger="visionkit.engine.close_mixing"):
        assert has_mixing_steps([{"name": "Resize"}, {"name": "MixUp", "p": 0.5}])
        assert not caplog.records
        assert not has_mixing_steps([{"name": "Resize"}, {"name": "HorizontalFlip"}])
        assert not has_mixing_steps(None)  # the default pipeline
    assert [r.getMessage() for r in caplog.records][0] == (
        "data.close_mixing: data.transforms.train has no multi-image step (Mosaic, MixUp, "
        "CopyPaste, SwapHalves, RotateIdentities) to turn off for the end of training, so it "
        "does nothing"
    )


def test_the_point_never_moves_later_once_a_draw_was_marked_unmixed():
    """A time budget's projection may grow after the mixing stopped: it stays stopped."""
    sampler = EpochSampler(range(10), seed=0, batch_size=2)  # 5 batches an epoch
    assert sampler.close_mixing_at(9, batches_per_epoch=5) == 9
    assert sampler.close_mixing_at(7, batches_per_epoch=5) == 7  # earlier: before any mark
    assert sampler.close_mixing_at(8, batches_per_epoch=5) == 8  # later: nothing marked yet
    assert marks(sampler, 1) == [True] * 6 + [False] * 4  # steps 5-7, then 8 and 9
    assert sampler.close_mixing_at(12, batches_per_epoch=5) == 8
    assert marks(sampler, 1) == [True] * 6 + [False] * 4
    assert sampler.close_mixing_at(6, batches_per_epoch=5) == 6  # earlier still moves


@pytest.mark.parametrize("value", ["1", "-0.1", "1.5"])
def test_close_mixing_is_a_fraction_below_one(tiny_config, value):
    with pytest.raises(ConfigError, match=r"data\.close_mixing: .*(less than 1|greater than or)"):
        load_config(tiny_config, [f"data.close_mixing={value}"])


def test_ultralytics_close_mosaic_points_at_close_mixing(tiny_config):
    with pytest.raises(ConfigError, match=r"close_mosaic.*data\.close_mixing"):
        load_config(tiny_config, ["close_mosaic=10"])
