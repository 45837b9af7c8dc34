"""Identities on COCO boxes (detection plus embedding): the reader's checks, the synthetic
shapes' styles, a crop that drops a box drops its identity, and collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import make_coco
from visionkit.data.batch import collate
from visionkit.data.readers.coco import CocoDataset
from visionkit.data.synthetic import make_shapes
from visionkit.data.transforms import apply_pipeline, build_pipeline
from visionkit.errors import AnnotationError, DataError

NORM = ((0.5,) * 3, (0.5,) * 3)


def _with_identities(data):
    """Image 1: two boxes, identities "bob" and 7; images 2-4: identity 7, none, 7."""
    anns = data["annotations"]
    second = {**anns[0], "id": 99, "bbox": [2, 2, 6, 6], "area": 36}
    anns.insert(1, second)
    anns[0]["identity"], second["identity"] = "bob", 7
    anns[2]["identity"], anns[4]["identity"] = 7, 7


def test_reader_gives_identity_indices_per_box(tmp_path):
    root = make_coco(tmp_path / "d", edit=_with_identities)
    ds = CocoDataset(root, identities=True)
    assert ds.label_names["identity"] == ["7", "bob"]  # ints first, then names
    assert ds.unmatched_families == ("identity",)  # validation shows other identities
    assert ds[0]["identities"].tolist() == [1, 0]
    assert [ds[i]["identities"].tolist() for i in (1, 2, 3)] == [[0], [-1], [0]]
    assert "identities" not in CocoDataset(root)[0]  # only when asked for
    assert "identity" not in CocoDataset(root).label_names


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda anns: anns[2].update(identity=1.5), "identity 1.5: expected an int or a non-empty"),
        (lambda anns: anns[2].update(identity=True), "identity True: expected an int"),
        (lambda anns: anns[2].update(identity=""), "identity '': expected an int"),
        (lambda anns: anns[1].update(identity="bob"), "identity 'bob' is also on annotation id"),
    ],
)
def test_reader_refuses_bad_identities_naming_the_annotation(tmp_path, change, message):
    def edit(data):
        _with_identities(data)
        change(data["annotations"])

    root = make_coco(tmp_path / "d", edit=edit)
    with pytest.raises(AnnotationError) as err:
        CocoDataset(root, identities=True)
    assert message in str(err.value)
    where = "annotation id 99 (image id 1)" if "also on" in message else "annotation id 102"
    assert where in str(err.value)


def test_reader_refuses_a_file_without_identities(tmp_path):
    root = make_coco(tmp_path / "d")
    with pytest.raises(AnnotationError, match="no annotation has an 'identity' field"):
        CocoDataset(root, identities=True)


def test_a_crop_drops_the_identity_of_the_box_it_drops_and_collate_pads(tmp_path):
    root = make_coco(tmp_path / "d", edit=_with_identities)
    ds = CocoDataset(root, identities=True)
    sample = ds[0]  # boxes [8, 8, 16, 16] ("bob") and [2, 2, 8, 8] (7)
    crop = build_pipeline([{"name": "Crop", "x_min": 8, "y_min": 8, "x_max": 32, "y_max": 32}],
                          *NORM)  # fmt: skip
    out = apply_pipeline(crop, sample)
    assert len(out["boxes"]) == 1 and out["identities"].tolist() == [1]
    flip = build_pipeline([{"name": "HorizontalFlip", "p": 1.0}], *NORM)
    kept = apply_pipeline(flip, sample)
    assert kept["identities"].tolist() == [1, 0] and kept["identities"].dtype == torch.int64
    plain = apply_pipeline(flip, CocoDataset(root)[1])  # a sample without identities
    batch = collate([out, kept, plain])
    assert [t.tolist() for t in batch["identities"]] == [[1], [1, 0], [-1]]


def test_collate_refuses_identities_that_do_not_match_the_boxes(tmp_path):
    root = make_coco(tmp_path / "d", edit=_with_identities)
    flip = build_pipeline([{"name": "HorizontalFlip", "p": 1.0}], *NORM)
    sample = apply_pipeline(flip, CocoDataset(root, identities=True)[0])
    sample["identities"] = sample["identities"][:1]
    with pytest.raises(DataError, match="1 identities for 2 boxes"):
        collate([sample])


def test_synthetic_styles_give_each_shape_of_an_image_its_own_identity(tmp_path):
    make_shapes(tmp_path / "s", num_images=6, size=64, seed=0, max_shapes=4, styles=5,
                first_style=10)  # fmt: skip
    ds = CocoDataset(tmp_path / "s", identities=True)
    names = ds.label_names["identity"]
    assert set(names) <= {str(n) for n in range(10, 15)} and len(names) >= 3
    for target in ds.targets:
        ids = target["identities"]
        assert (ids >= 0).all() and len(set(ids.tolist())) == len(ids)
    # the same boxes as the dataset without styles (painting draws from its own stream)
    make_shapes(tmp_path / "p", num_images=6, size=64, seed=0, max_shapes=4)
    plain = CocoDataset(tmp_path / "p")
    for a, b in zip(ds.targets, plain.targets, strict=True):
        assert np.array_equal(a["boxes"], b["boxes"])
    with pytest.raises(ValueError, match="styles must be >= 2 and >= max_shapes"):
        make_shapes(tmp_path / "x", num_images=2, size=64, max_shapes=4, min_shapes=4, styles=3)


def test_empty_identity_folders_and_a_set_without_pairs_are_warnings(tmp_path):
    """A validation set of one image per identity scored nothing (auc null, accuracy 0.5) and
    an empty folder became an identity, both without a word."""
    from PIL import Image

    from visionkit.data.readers.identities import IdentityFolderDataset

    for name in ("ann", "bob", "cid"):
        (tmp_path / name).mkdir()
    for name in ("ann", "bob"):
        Image.new("RGB", (16, 16)).save(tmp_path / name / "1.jpg")
    report = IdentityFolderDataset(str(tmp_path)).report
    assert [(p.kind, str(p)) for p in report.warnings] == [
        ("identity without images", "cid/: a folder with no image in it"),
        (
            "no same-identity pair",
            f"{tmp_path}: each of the 2 identities has one image: verification and retrieval "
            "need two images of an identity (evaluated, every metric is empty)",
        ),
    ]
    Image.new("RGB", (16, 16)).save(tmp_path / "bob" / "2.jpg")
    Image.new("RGB", (16, 16)).save(tmp_path / "cid" / "1.jpg")
    assert not IdentityFolderDataset(str(tmp_path)).report.warnings
