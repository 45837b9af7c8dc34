"""Synthetic identities, the ``identities`` reader and its LFW-style pairs file."""

from __future__ import annotations

import numpy as np
import pytest

from visionkit.build.data import build_datasets
from visionkit.config import load_config
from visionkit.data.readers.identities import IdentityFolderDataset
from visionkit.data.synthetic_identities import make_identities, render
from visionkit.errors import DataError


def test_styles_depend_on_their_number_and_images_on_the_seed(tmp_path):
    a = render(7, np.random.default_rng([0, 1, 3]), 32)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render(7, np.random.default_rng([0, 1, 3]), 32))
    make_identities(tmp_path / "ids", num_images=6, size=32, identities=3, first_identity=5)
    assert sorted(p.name for p in (tmp_path / "ids").iterdir() if p.is_dir()) == [
        "style_0005",
        "style_0006",
        "style_0007",
    ]
    ds = IdentityFolderDataset(str(tmp_path / "ids"))
    assert ds.label_names == {"identity": ["style_0005", "style_0006", "style_0007"]}
    assert ds.identities() == [0, 0, 1, 1, 2, 2] and ds[0]["identity"] == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="refusing to write synthetic identities"):
        make_identities(tmp_path / "other", num_images=4, size=32, identities=2)


def test_pairs_file_rows_become_image_id_pairs_and_bad_rows_are_listed(tmp_path):
    make_identities(tmp_path, num_images=6, size=32, identities=2)
    (tmp_path / "pairs.txt").write_text("1\t2\nstyle_0000 1 2\nstyle_0000 1 style_0001 3\n")
    ds = IdentityFolderDataset(str(tmp_path), pairs=str(tmp_path / "pairs.txt"))
    assert ds.pairs == [(1, 2), (1, 6)]  # n-th image of the folder, in sorted order
    (tmp_path / "bad.txt").write_text("style_0000 1 9\nnobody 1 2\nstyle_0000\n")
    with pytest.raises(DataError, match="3 rows cannot be read") as err:
        IdentityFolderDataset(str(tmp_path), pairs=str(tmp_path / "bad.txt"))
    text = str(err.value)
    assert "bad.txt:1: 'style_0000' has 3 images, no image 9" in text
    assert "bad.txt:2: no identity folder 'nobody'" in text


def test_a_validation_set_of_new_identities_is_built_beside_the_training_set(tmp_path):
    cfg = load_config(
        {
            "model": {"heads": {"emb": {"name": "embedding", "loss": "triplet"}}},
            "data": {
                "train": {
                    "format": "identities",
                    "root": str(tmp_path / "train"),
                    "synthetic": {"identities": 4, "num_images": 8, "size": 32},
                },
                "val": {
                    "format": "identities",
                    "root": str(tmp_path / "val"),
                    "synthetic": {
                        "identities": 2,
                        "first_identity": 4,
                        "num_images": 4,
                        "size": 32,
                    },
                },
                "sampler": {"p": 2, "k": 2},
            },
        }
    )
    datasets = build_datasets(cfg.data)
    assert datasets["val"].label_names["identity"] == ["style_0004", "style_0005"]
    assert len(datasets["train"].label_names["identity"]) == 4


def test_a_sampler_with_another_batch_size_is_a_config_error():
    from visionkit.errors import ConfigError

    with pytest.raises(ConfigError, match="p x k = 8 images, but data.batch_size is 16"):
        load_config(
            {
                "model": {"heads": {"emb": {"name": "embedding", "loss": "triplet"}}},
                "data": {"sampler": {"p": 4, "k": 2}, "batch_size": 16},
            }
        )


def test_validating_on_the_training_identities_says_to_hold_identities_out(tmp_path):
    """visionkit split splits each folder's images (and the identities reader reads no split
    lists): the fix for a verification set is other identities."""
    from visionkit.data.datasets import shared_images_note

    make_identities(tmp_path / "ids", num_images=4, size=16, identities=2)
    entry = {"format": "identities", "root": str(tmp_path / "ids")}
    model = {"heads": {"emb": {"name": "embedding"}}}
    config = load_config({"model": model, "data": {"train": entry, "val": entry}})
    said = shared_images_note(config.data)
    assert said.endswith(
        "give a folder of other identities, never seen in training (move some "
        "identity folders out of the training folder)"
    )
    assert "visionkit split" not in said
