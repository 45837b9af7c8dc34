"""A classifier's ``label`` is the argmax, its ``top5`` best first with ties in index order."""

import torch

from visionkit.models.heads.classification import ClassificationHead, class_results


def test_label_is_the_first_index_of_tied_scores_as_argmax():
    head = ClassificationHead(in_channels=[4], num_classes=10)
    (result,) = head.postprocess({"logits": torch.zeros(1, 10)})  # all classes tied
    assert result["label"] == 0 == int(torch.zeros(10).argmax())
    assert [c["label"] for c in result["top5"]] == [0, 1, 2, 3, 4]

    probs = torch.tensor([[0.1, 0.0, 0.0, 0.4, 0.0, 0.0, 0.0, 0.4, 0.1, 0.0]])
    (result,) = class_results(probs, [f"c{i}" for i in range(10)])
    assert (result["label"], result["name"]) == (3, "c3")
    assert [c["label"] for c in result["top5"]] == [3, 7, 0, 8, 1]


def test_top5_has_fewer_entries_with_fewer_classes():
    (result,) = class_results(torch.tensor([[0.2, 0.8]]), None)
    assert [c["label"] for c in result["top5"]] == [1, 0]
    assert result["score"] == result["top5"][0]["score"]
