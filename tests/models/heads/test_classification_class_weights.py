"""Session 38: imbalanced classification had no class weights (the semantic heads had
``class_weights``); ``model.heads.cls.class_weights: [...]`` now weights the cross-entropy
as torch's ``CrossEntropyLoss(weight=...)`` does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from visionkit import create_model
from visionkit.errors import ConfigError
from visionkit.models.heads.classification import ClassificationHead


def test_the_weights_reach_the_loss_as_torchs_weighted_cross_entropy():
    torch.manual_seed(0)
    head = ClassificationHead(in_channels=[8], num_classes=3, class_weights=[1.0, 4.0, 0.5])
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 1, -1, 0])  # -1: an image without a class
    loss = head.loss({"logits": logits}, {"class": labels})["ce"]
    keep = labels >= 0
    expected = F.cross_entropy(logits[keep], labels[keep], weight=torch.tensor([1.0, 4.0, 0.5]))
    assert torch.allclose(loss, expected)
    unweighted = ClassificationHead(in_channels=[8], num_classes=3)
    assert not torch.allclose(loss, unweighted.loss({"logits": logits}, {"class": labels})["ce"])


def test_a_config_passes_them_and_a_wrong_count_is_refused():
    heads = {"cls": {"name": "linear", "num_classes": 2, "class_weights": [1.0, 3.0]}}
    model = create_model({"model": {"backbone": {"name": "simple_cnn"}, "heads": heads}})
    assert model.heads["cls"].class_weights.tolist() == [1.0, 3.0]
    with pytest.raises(ValueError, match="class_weights must be 3 values"):
        ClassificationHead(in_channels=[8], num_classes=3, class_weights=[1.0, 2.0])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_with_label_smoothing_the_loss_is_torchs(smoothing):
    """Before: with ``label_smoothing`` the weights multiplied the smoothed loss afterwards
    (1.4800 where torch gives 1.4288 for weights [1, 4, .5], smoothing 0.1)."""
    torch.manual_seed(1)
    weights = torch.tensor([1.0, 4.0, 0.5])
    head = ClassificationHead(
        in_channels=[8], num_classes=3, class_weights=weights.tolist(), label_smoothing=smoothing
    )
    logits = torch.randn(8, 3)
    labels = torch.tensor([0, 1, 2, 1, 0, 2, 2, -1])  # -1: an image without a class
    loss = head.loss({"logits": logits}, {"class": labels})["ce"]
    keep = labels >= 0
    torchs = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=smoothing)
    assert torch.allclose(loss, torchs(logits[keep], labels[keep]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_weights_that_are_no_weights_are_refused(bad):
    with pytest.raises(ValueError, match="finite and >= 0 with at least one > 0"):
        ClassificationHead(in_channels=[8], num_classes=3, class_weights=[1.0, bad, 1.0])
    heads = {"cls": {"name": "linear", "num_classes": 3, "class_weights": [1.0, bad, 1.0]}}
    config = {"model": {"backbone": {"name": "simple_cnn"}, "heads": heads}}
    with pytest.raises(ConfigError, match=r"model\.heads\.cls: classification head: class_w"):
        create_model(config)
