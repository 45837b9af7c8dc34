"""The ``fcos_keypoints`` head: output shapes, the loss (it falls when fitted, ignores images
without keypoints), and postprocess in original-image coordinates."""

from __future__ import annotations

import pytest
import torch

from visionkit.models.heads.keypoints import COCO_SIGMAS, UNIFORM_SIGMA, FCOSKeypointsHead


def _head(**kwargs):
    torch.manual_seed(0)
    args = {"num_classes": 2, "num_keypoints": 3, "num_convs": 1, "kpt_convs": 1}
    return FCOSKeypointsHead(in_channels=[16, 16], strides=[8, 16], **{**args, **kwargs})


def _features(batch=2):
    torch.manual_seed(1)
    return [torch.rand(batch, 16, 8, 8), torch.rand(batch, 16, 4, 4)]


BOX = torch.tensor([[8.0, 8.0, 40.0, 48.0]])
POINTS = torch.tensor([[[24.0, 28.0, 2], [8.0, 28.0, 1], [40.0, 8.0, 0]]])


def test_shapes_and_sigmas():
    head = _head()
    out = head(_features())
    assert out["keypoint_offsets"].shape == (2, 80, 3, 2)
    assert out["keypoint_logits"].shape == (2, 80, 3)
    assert head.kpt_oks_sigmas == [UNIFORM_SIGMA] * 3
    assert _head(num_keypoints=17).kpt_oks_sigmas == list(COCO_SIGMAS)
    with pytest.raises(ValueError, match="kpt_oks_sigmas needs 3 positive values"):
        _head(kpt_oks_sigmas=[0.1, 0.1])
    with pytest.raises(ValueError, match="skeleton pairs"):
        _head(skeleton=[[0, 1]])


def test_num_keypoints_left_out_is_as_many_as_the_names_else_cocos_17():
    assert _head(num_keypoints=None, keypoint_names=["a", "b"]).num_keypoints == 2
    assert _head(num_keypoints=None).num_keypoints == len(COCO_SIGMAS) == 17


def test_loss_falls_and_ignores_images_without_keypoints():
    head = _head()
    features = _features(1)
    batch = {"boxes": [BOX], "labels": [torch.tensor([1])], "keypoints": [POINTS]}
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = head.loss(head(features), batch)
        if first is None:
            first = {k: float(v.detach()) for k, v in loss.items()}
        optimiser.zero_grad()
        sum(loss.values()).backward()
        optimiser.step()
    last = {k: float(v.detach()) for k, v in head.loss(head(features), batch).items()}
    assert last["kpt"] < 0.5 * first["kpt"] and last["kpt_vis"] < first["kpt_vis"]

    unlabelled = {**batch, "has_keypoints": torch.tensor([False])}
    loss = head.loss(head(features), unlabelled)
    assert float(loss["kpt"].detach()) == 0.0 and float(loss["kpt_vis"].detach()) == 0.0
    loss["kpt"].backward()  # still connected
    no_keys = head.loss(head(features), {"boxes": [BOX], "labels": [torch.tensor([1])]})
    assert float(no_keys["kpt"].detach()) == 0.0 and no_keys["box"] > 0


def test_loss_refuses_another_number_of_keypoints():
    head = _head()
    batch = {"boxes": [BOX], "labels": [torch.tensor([1])], "keypoints": [torch.zeros(1, 5, 3)]}
    with pytest.raises(ValueError, match="num_keypoints=3"):
        head.loss(head(_features(1)), batch)


def test_postprocess_decodes_point_plus_offset_in_original_pixels():
    head = _head(score_thresh=0.0).eval()
    out = head(_features())
    (pred, index), _ = head.detect(out, [(64, 64)] * 2)
    preds = head.postprocess(out, [(64, 64)] * 2, orig_sizes=[(128, 96)] * 2)
    keypoints = preds[0]["keypoints"]
    assert keypoints.shape == (len(pred["boxes"]), 3, 3) and len(keypoints) > 0
    expected = out["points"][index][:, None] + out["keypoint_offsets"][0, index]
    # pixel indices scaled about pixel centres: pixel 0 of 64 is pixels 0..1.5 of 96, centre 0.25
    expected = (expected + 0.5) * torch.tensor([96 / 64, 128 / 64]) - 0.5
    assert torch.allclose(keypoints[..., :2], expected, atol=1e-5)
    assert ((keypoints[..., 2] >= 0) & (keypoints[..., 2] <= 1)).all()
    assert preds[0]["keypoint_names"] == ("0", "1", "2")
