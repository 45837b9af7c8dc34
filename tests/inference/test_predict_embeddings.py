"""``visionkit predict`` with an embedding head: ``.npy`` embeddings and gallery matches."""

from __future__ import annotations

import json

import numpy as np

import visionkit
from visionkit.data.io import read_image
from visionkit.data.synthetic_identities import make_identities
from visionkit.inference.predict import predict_files


def test_predict_writes_embeddings_and_the_gallerys_best_matches(tmp_path):
    make_identities(tmp_path / "known", num_images=6, size=32, identities=3)
    model = visionkit.create_model(
        {
            "model": {
                "backbone": {"name": "simple_cnn"},
                "heads": {"emb": {"name": "embedding", "num_classes": 3, "embedding_dim": 8}},
            },
            "data": {"image_size": 32},
        }
    ).eval()
    query = tmp_path / "known" / "style_0001" / "000002.png"
    predict_files(
        model, [query], tmp_path / "out", progress=False, gallery=tmp_path / "known", draw=False
    )
    vector = np.load(tmp_path / "out" / "000002.png_emb.npy")
    assert vector.shape == (8,) and vector.dtype == np.float32
    assert np.allclose(vector, model.embed([read_image(query)])[0], atol=1e-5)
    (record,) = json.loads((tmp_path / "out" / "images.json").read_text())
    matches = record["emb"]["matches"]
    assert record["emb"]["embedding"] == "000002.png_emb.npy" and len(matches) == 5
    assert matches[0]["name"] == "style_0001" and abs(matches[0]["similarity"] - 1.0) < 1e-4
    assert matches[0]["path"] == str(query)  # the gallery image it matched: itself
