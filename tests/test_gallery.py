"""visionkit.Gallery and VisionModel.embed."""

from __future__ import annotations

import numpy as np
import pytest

import visionkit
from visionkit.data.synthetic_identities import make_identities
from visionkit.errors import DataError


def embedder(num_classes: int, dim: int) -> visionkit.VisionModel:
    """An untrained simple_cnn with one embedding head, for 32 px images."""
    return visionkit.create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn"},
                "heads": {
                    "emb": {"name": "embedding", "num_classes": num_classes, "embedding_dim": dim}
                },
            },
            "data": {"image_size": 32},
        }
    ).eval()


def test_search_returns_the_nearest_names_and_cosines():
    gallery = visionkit.Gallery(
        None, np.array([[1.0, 0.0], [0.0, 2.0], [0.6, 0.8]]), ["a", "b", "c"], index="numpy"
    )
    names, sims = gallery.search(np.array([[0.0, 1.0], [1.0, 0.1]], np.float32), k=2)
    assert names == [["b", "c"], ["a", "c"]]
    assert np.allclose(sims[0], [1.0, 0.8]) and sims.dtype == np.float32
    assert np.isclose(sims[1][0], 1 / np.hypot(1, 0.1))


def test_add_enrols_new_identities_that_search_then_finds():
    gallery = visionkit.Gallery(None, np.array([[1.0, 0.0]]), ["a"], paths=["a.jpg"], index="numpy")
    gallery.add(np.array([[0.0, 3.0]], np.float32), ["b"], paths=["b.jpg"])
    names, sims = gallery.search(np.array([[0.1, 1.0]], np.float32), k=2)
    assert names == [["b", "a"]] and len(gallery) == 2 and gallery.paths == ["a.jpg", "b.jpg"]
    rows, _ = gallery.nearest(np.array([[0.1, 1.0]], np.float32), k=1)
    assert gallery.paths[rows[0, 0]] == "b.jpg"
    with pytest.raises(ValueError, match="1 images but 2 names"):
        gallery.add(np.array([[1.0, 1.0]], np.float32), ["c", "d"])
    with pytest.raises(ValueError, match="images need a model"):
        gallery.add([np.zeros((8, 8, 3), np.uint8)], ["c"])


def test_from_folder_embeds_every_image_and_finds_it_again(tmp_path):
    make_identities(tmp_path, num_images=6, size=32, identities=3)
    model = embedder(num_classes=3, dim=16)
    gallery = visionkit.Gallery.from_folder(model, tmp_path, index="numpy")
    assert len(gallery) == 6 and gallery.embeddings.shape == (6, 16)
    z = model.embed([np.zeros((20, 30, 3), np.uint8), np.full((40, 40, 3), 200, np.uint8)])
    assert z.shape == (2, 16) and z.dtype == np.float32
    assert np.allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    names, sims = gallery.search(gallery.embeddings[[4]], k=1)  # an image finds itself
    assert names == [[gallery.names[4]]] and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(DataError, match="not a folder"):
        visionkit.Gallery.from_folder(model, tmp_path / "missing")


def test_embed_needs_an_embedding_head():
    model = visionkit.create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn"},
                "heads": {"c": {"name": "linear", "num_classes": 2}},
            }
        }
    )
    with pytest.raises(
        ValueError, match=r"no embedding head \(its heads: c \(ClassificationHead\)\)"
    ):
        model.embed([np.zeros((8, 8, 3), np.uint8)])


def test_from_folder_leaves_hidden_and_macos_folders_out(tmp_path):
    make_identities(tmp_path, num_images=4, size=32, identities=2)
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    picture = next((tmp_path / names[0]).iterdir()).read_bytes()
    for hidden in (".thumbnails", "__MACOSX"):  # a viewer's cache, macOS's zip leftovers
        (tmp_path / hidden).mkdir()
        (tmp_path / hidden / "copy.png").write_bytes(picture)
    model = embedder(num_classes=2, dim=8)
    gallery = visionkit.Gallery.from_folder(model, tmp_path, index="numpy")
    assert sorted(set(gallery.names)) == names and len(gallery) == 4


def test_search_takes_one_embedding_or_tensors_as_predictions_give_them():
    """A ``<image>_<head>.npy`` of visionkit predict holds one vector [D], and a prediction's
    ``embedding`` is a tensor: both are searched as embeddings, not read as images."""
    import torch

    gallery = visionkit.Gallery(None, np.array([[1.0, 0.0], [0.0, 1.0]]), ["a", "b"])
    assert gallery.search(np.array([0.1, 1.0], np.float32), k=1)[0] == [["b"]]
    assert gallery.search(torch.tensor([[1.0, 0.2], [0.0, 2.0]]), k=1)[0] == [["a"], ["b"]]
    gallery.add(torch.tensor([1.0, 1.0]), ["c"])
    assert gallery.search(np.array([[0.7, 0.7]]), k=1)[0] == [["c"]]


def test_embeddings_of_another_width_are_named_not_a_matmul_error():
    gallery = visionkit.Gallery(None, np.eye(4, dtype=np.float32), list("abcd"), index="numpy")
    with pytest.raises(ValueError, match="embeddings of 3 values, but the gallery's have 4"):
        gallery.search(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"Gallery.add: embeddings of 5 values"):
        gallery.add(np.ones((1, 5), np.float32), ["e"])
