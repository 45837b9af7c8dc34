"""Synthetic identities (:mod:`visionkit.data.identity_mixing`): ``SwapHalves`` (half of an
identity image joined with the other half of another) and ``RotateIdentities`` (quarter turns),
each result an identity of its own; the embedding head sized for them; a sample without an
image-level identity refused by name; a tiny training run with both."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.helpers import run
from visionkit.build.model import create_model
from visionkit.data.datasets import TransformedDataset
from visionkit.data.identity_mixing import RotateIdentities, SwapHalves, identity_count
from visionkit.data.transforms import build_pipeline
from visionkit.errors import ConfigError, SampleError

MEAN, STD = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


class Identities:
    """Image ``k`` is one flat grey level ``40 * k``, of identity ``k % 3``."""

    label_names = {"identity": ["a", "b", "c"]}

    def __len__(self) -> int:
        return 6

    def __getitem__(self, k: int) -> dict:
        image = np.full((16, 16, 3), 40 * k, np.uint8)
        return {"image": image, "image_id": k + 1, "orig_size": (16, 16), "identity": k % 3}


def test_swap_halves_joins_two_halves_and_names_the_composite_identity():
    a = {"image": torch.zeros(3, 8, 6), "identity": 2, "image_size": (8, 6)}
    b = {"image": torch.ones(3, 4, 4), "identity": 1, "image_size": (4, 4)}  # resized to 8 x 6
    step = SwapHalves(p=1.0)
    step.num_identities = 3
    seen = {}
    for seed in range(8):
        out = step(a, b, np.random.default_rng(seed))
        image = out["image"][0]
        if (image[:4] == 0).all() and (image[4:] == 1).all():
            seen["top/bottom"] = out["identity"]
        elif (image[:, :3] == 0).all() and (image[:, 3:] == 1).all():
            seen["left/right"] = out["identity"]
        else:
            raise AssertionError(f"not two halves: {image}")
    # N + (d * N + a) * N + b with N = 3, a = 2, b = 1
    assert seen == {"top/bottom": 3 + 2 * 3 + 1, "left/right": 3 + (3 + 2) * 3 + 1}
    assert a["image"].eq(0).all() and a["identity"] == 2  # the input is not changed


def test_rotate_identities_turns_the_image_and_counts_each_turn_as_an_identity():
    image = torch.arange(6.0).reshape(1, 2, 3)
    sample = {"image": image, "identity": 2, "image_size": (2, 3)}
    step = RotateIdentities()
    step.num_identities = 5
    seen = {}
    for seed in range(12):
        out = step(sample, None, np.random.default_rng(seed))
        k, identity = divmod(out["identity"], 5)
        assert identity == 2
        assert torch.equal(out["image"], torch.rot90(image, k, dims=(-2, -1)))
        assert out["image_size"] == ((3, 2) if k % 2 else (2, 3))
        seen[k] = out["identity"]
    assert seen == {0: 2, 1: 7, 2: 12, 3: 17}


def test_identity_count_sizes_the_head_for_the_composites():
    assert identity_count(7, [{"name": "Resize"}]) == 7
    assert identity_count(7, [{"name": "Resize"}, {"name": "SwapHalves", "p": 1.0}]) == 105
    assert identity_count(7, [{"name": "SwapHalves"}, {"name": "RotateIdentities"}]) == 420
    config = {
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"emb": {"name": "embedding", "embedding_dim": 8}},
        },
        "data": {
            "transforms": {
                "train": [{"name": "Resize", "height": 16, "width": 16}, {"name": "SwapHalves"}]
            }
        },
    }
    model = create_model(config, label_names={"identity": ["a", "b", "c"]})
    assert model.heads["emb"].weight.shape == (3 + 18, 8)
    config["model"]["heads"]["emb"]["num_classes"] = 3
    with pytest.raises(ConfigError) as caught:
        create_model(config, label_names={"identity": ["a", "b", "c"]})
    assert (
        "num_classes: 3, but the data has 3 classes (a, b, c), 21 with its synthetic identities"
        in str(caught.value)
    )


def test_swap_halves_in_a_dataset_draws_a_partner_and_counts_the_identities():
    steps = [{"name": "Resize", "height": 16, "width": 16}, {"name": "SwapHalves", "p": 1.0}]
    dataset = TransformedDataset(Identities(), build_pipeline(steps, MEAN, STD, "t"), reseed=True)
    identities = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = dataset[4]  # grey 160 on top / left, identity 1
        identities.add(out["identity"])
        image = out["image"][0] * 255
        halves = (image[:8], image[8:]) if out["identity"] < 3 + 9 else (image[:, :8], image[:, 8:])
        assert torch.allclose(halves[0], torch.tensor(160.0))
        partner = round(float(halves[1].mean()) / 40)
        assert out["identity"] in (3 + 3 + partner % 3, 3 + 12 + partner % 3)
    assert len(identities) > 2 and min(identities) >= 3 + 3  # composites of identity 1 only


def test_rotate_identities_after_swap_halves_counts_the_composites():
    steps = [{"name": "Resize", "height": 16, "width": 16}, {"name": "SwapHalves", "p": 0.5}]
    steps.append({"name": "RotateIdentities"})
    dataset = TransformedDataset(Identities(), build_pipeline(steps, MEAN, STD, "t"), reseed=True)
    identities = set()
    for seed in range(40):
        torch.manual_seed(seed)
        identities.add(dataset[seed % 6]["identity"])
    swap, rotate = dataset.pipeline.mixing
    assert (swap.num_identities, rotate.num_identities) == (3, 21)
    assert max(identities) < 84 and len({i // 21 for i in identities}) == 4  # every turn
    assert any(i % 21 < 3 for i in identities) and any(i % 21 >= 3 for i in identities)


@pytest.mark.reliability
def test_swap_halves_without_identities_names_the_step_and_the_sample():
    class Boxes(Identities):
        def __getitem__(self, k):
            sample = super().__getitem__(k)
            del sample["identity"]
            return {**sample, "boxes": np.array([[1.0, 1.0, 9.0, 9.0]]), "labels": np.array([0])}

    steps = [{"name": "Resize", "height": 16, "width": 16}, {"name": "SwapHalves"}]
    dataset = TransformedDataset(Boxes(), build_pipeline(steps, MEAN, STD, "t"), reseed=True)
    with pytest.raises(SampleError) as caught:
        dataset[2]
    assert str(caught.value).startswith(
        "t[1] (SwapHalves): sample 2 (image id 3, None) has no image-level identity: SwapHalves "
        "makes new identities out of those of an ImageFolder of identities (format: identities)"
    )


def test_a_tiny_embedding_run_with_swap_halves_and_turns(tmp_path, capsys):
    for split, names in (("train", "abc"), ("val", "de")):
        for i, name in enumerate(names):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for j in range(4):
                pixels = np.random.default_rng(10 * i + j).integers(0, 255, (24, 24, 3))
                pixels[:, :, i % 3] = 250  # each identity its own colour
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{j}.png")
    resize = {"name": "Resize", "height": 24, "width": 24}
    config = {
        "name": "swap",
        "output_dir": str(tmp_path / "runs"),
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"emb": {"name": "embedding", "embedding_dim": 8}},
        },
        "data": {
            "train": {"format": "identities", "root": str(tmp_path / "train")},
            "val": {"format": "identities", "root": str(tmp_path / "val")},
            "image_size": 24,
            "batch_size": 6,
            "num_workers": 0,
            "transforms": {
                "train": [resize, {"name": "SwapHalves", "p": 1.0}, {"name": "RotateIdentities"}],
                "val": [resize],
            },
        },
        "trainer": {"max_steps": 4, "accelerator": "cpu", "enable_progress_bar": False},
    }
    path = tmp_path / "swap.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, err = run(["train", "--config", path], capsys)
    assert code == 0, err[-2000:]
    import visionkit

    model = visionkit.load(tmp_path / "runs" / "swap" / "checkpoints" / "last.ckpt")
    assert model.heads["emb"].weight.shape[0] == 4 * (3 + 18)
    (embedding,) = model.embed([np.zeros((24, 24, 3), np.uint8)])
    assert embedding.shape == (8,) and np.isclose(np.linalg.norm(embedding), 1.0, atol=1e-4)


@pytest.mark.reliability
def test_identity_steps_without_an_embedding_head_are_a_config_error():
    from visionkit.config import load_config

    steps = [{"name": "Resize", "height": 16, "width": 16}, {"name": "RotateIdentities"}]
    config = {
        "model": {
            "backbone": {"name": "simple_cnn"},
            "heads": {"cls": {"name": "linear", "num_classes": 3}},
        },
        "data": {"transforms": {"train": steps}},
    }
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert (
        "data.transforms.train[1] (RotateIdentities): makes new identities for a head that "
        "learns image-level identities (name: embedding, with format: identities data), but the "
        "model has none (heads: cls: linear); leave RotateIdentities out"
    ) in str(caught.value)
    config["model"]["heads"] = {"emb": {"name": "embedding", "num_classes": 12}}
    assert load_config(config).model.heads["emb"]["num_classes"] == 12
