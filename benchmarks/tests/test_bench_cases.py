"""Each comparison builds its two models and feeds them the same pixels and targets, each side
at its own size and precision when asked."""

from __future__ import annotations

import pytest
import torch

from benchmarks.classification import ClassificationCase
from benchmarks.harness import Settings
from benchmarks.multitask import MultitaskCase
from benchmarks.recipes import DEFAULT_RECIPES, case_for_recipe
from benchmarks.report import TABLES
from benchmarks.runner import count_params
from benchmarks.segmentation import IMAGENET_MEAN, IMAGENET_STD, SegmentationCase
from visionkit.config import load_config
from visionkit.errors import ConfigError


def test_retinanet_case_builds_torchvision_retinanet_at_the_same_size():
    from torchvision.models.detection import RetinaNet

    case = case_for_recipe("retinanet_r18", Settings(image_size=(96, 128)))
    baseline = case.build_baseline()
    assert isinstance(baseline, RetinaNet)
    assert baseline.head.classification_head.num_classes == 3  # no background channel
    assert baseline.transform.min_size == (96,) and baseline.transform.max_size == 128
    with pytest.raises(RuntimeError, match="build_ours"):
        case.make_batch("ours", 2)
    backbone = case.build_ours().backbone
    ours = case.make_batch("ours", 2)
    theirs = case.make_batch("baseline", 2)
    assert ours["images"].shape == (2, 3, 96, 128)
    assert len(theirs["images"]) == 2 and theirs["images"][0].shape == (3, 96, 128)
    # the same pixels and targets, normalised for ours only
    mean = torch.tensor(backbone.mean).view(3, 1, 1)
    std = torch.tensor(backbone.std).view(3, 1, 1)
    torch.testing.assert_close(ours["images"][1] * std + mean, theirs["images"][1])
    torch.testing.assert_close(ours["boxes"][1], theirs["targets"][1]["boxes"])
    assert (ours["boxes"][0][:, 2:] <= torch.tensor([128.0, 96.0])).all()


def test_segmentation_case_feeds_both_models_the_same_pixels_and_labels():
    from torchvision.models.segmentation import DeepLabV3

    case = case_for_recipe("semseg_fpn_r18", Settings(image_size=(64, 96), batch_size=2))
    assert isinstance(case, SegmentationCase) and case.section == "segmentation"
    baseline = case.build_baseline()
    assert isinstance(baseline, DeepLabV3) and baseline.aux_classifier is None
    assert baseline.classifier[-1].out_channels == 4
    with pytest.raises(RuntimeError, match="build_ours"):
        case.make_batch("ours", 2)
    ours_model = case.build_ours()
    ours, theirs = case.make_batch("ours", 2), case.make_batch("baseline", 2)
    assert ours["images"].shape == theirs["images"].shape == (2, 3, 64, 96)
    backbone = ours_model.backbone
    mean, std = torch.tensor(backbone.mean).view(3, 1, 1), torch.tensor(backbone.std).view(3, 1, 1)
    tv_mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    tv_std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(
        ours["images"][1] * std + mean, theirs["images"][1] * tv_std + tv_mean
    )
    assert ours["semantic"].shape == (2, 64, 96) and ours["semantic"].dtype == torch.int64
    assert torch.equal(ours["semantic"], theirs["target"])
    assert ours["has_semantic"].tolist() == [True, True]
    assert set(ours["semantic"].unique().tolist()) == {0, 1, 2, 3}

    for which, model, batch in (("ours", ours_model, ours), ("baseline", baseline, theirs)):
        model.train()
        loss = case.train_loss(which, model, batch)
        assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
        model.eval()
        with torch.inference_mode():
            maps = case.infer(which, model, batch)
        assert len(maps) == 2
        for label_map in maps:
            assert label_map.shape == (64, 96) and label_map.dtype == torch.int64
            assert int(label_map.min()) >= 0 and int(label_map.max()) < 4


def test_semantic_recipe_given_by_path_and_defaults(tmp_path):
    recipe = tmp_path / "my_deeplab.yaml"
    recipe.write_text(
        "model:\n"
        "  backbone: {name: resnet18, out_indices: [1, 2, 3, 4]}\n"
        "  heads:\n"
        "    sem: {name: deeplabv3plus, channels: 32, num_classes: 3}\n"
        "data: {image_size: 96}\n"
        "optimizer: {name: sgd, lr: 0.01, momentum: 0.9}\n",
        encoding="utf-8",
    )
    case = case_for_recipe(str(recipe), Settings(image_size=(64, 64), batch_size=2))
    assert isinstance(case, SegmentationCase)
    assert case.name == "my_deeplab" and case.num_classes == 3
    assert case.labels["ours"] == "visionkit: resnet18, deeplabv3plus 32 ch"
    model = case.build_ours()
    assert isinstance(case.make_optimizer(model), torch.optim.SGD)  # the recipe's optimiser
    batch = case.make_batch("ours", 2)
    assert case.train_loss("ours", model.train(), batch).dim() == 0
    with torch.inference_mode():
        assert [m.shape for m in case.infer("ours", model.eval(), batch)] == [(64, 64)] * 2
    # without a size the recipe's data.image_size is used
    assert case_for_recipe(str(recipe), Settings()).image_size == (96, 96)

    # num_classes from classes.txt at train time cannot be benchmarked; batch 1 cannot train
    # torchvision's ASPP (BatchNorm of a pooled 1x1 map)
    with pytest.raises(ConfigError, match="num_classes"):
        case_for_recipe("configs/mask_folder/deeplabv3plus_r50.yaml", Settings())
    with pytest.raises(ConfigError, match="batch >= 2"):
        case_for_recipe("semseg_fpn_r18", Settings(batch_size=1))
    # a semantic head beside other heads is a multi-task case, not a segmentation case
    assert isinstance(case_for_recipe("multitask_r18", Settings()), MultitaskCase)

    assert "semseg_fpn_r18" in DEFAULT_RECIPES
    sections = {case_for_recipe(r, Settings()).section for r in DEFAULT_RECIPES}
    assert sections == {"classification", "detection", "segmentation"}
    assert sections <= set(TABLES)


def test_multitask_baseline_is_one_single_head_model_per_head_of_the_recipe():
    case = case_for_recipe("multitask_r18", Settings(image_size=(64, 64)))
    assert case.section == "multitask" and case.image_size == (64, 64)
    assert case.tasks == {"cls": "classification", "det": "detection", "seg": "semantic"}
    ours, baseline = case.build_ours(), case.build_baseline()
    assert list(ours.heads) == ["cls", "det", "seg"] and ours.neck is not None
    assert list(baseline) == ["cls", "det", "seg"]
    for head, single in baseline.items():
        assert list(single.heads) == [head]
        # the linear classifier reads the backbone: no neck; the others keep the recipe's FPN
        assert (single.neck is None) == (head == "cls")
        assert count_params(single.backbone) == count_params(ours.backbone)
    assert count_params(baseline["det"].neck) == count_params(ours.neck)
    # every model gets the same batch, with labels for every head
    batch = case.make_batch("baseline", 2)
    assert batch["images"].shape == (2, 3, 64, 64)
    assert batch["class"].shape == (2,) and len(batch["boxes"]) == 2
    assert batch["semantic"].shape == (2, 64, 64)
    torch.testing.assert_close(case.make_batch("ours", 2)["images"], batch["images"])
    with pytest.raises(ConfigError, match="two or more heads"):
        MultitaskCase("x", Settings(), case.single_task_config("det"), "x.yaml")


def test_classification_case_against_timm_feeds_both_models_the_same_batch():
    import timm

    case = case_for_recipe("classify_r18", Settings(image_size=(32, 32)))
    assert isinstance(case, ClassificationCase) and case.section == "classification"
    assert case.batch_size == 32 and case.num_classes == 4
    baseline = case.build_baseline()
    assert isinstance(baseline, timm.models.ResNet) and baseline.fc.out_features == 4
    ours_model = case.build_ours()
    ours, theirs = case.make_batch("ours", 3), case.make_batch("baseline", 3)
    torch.testing.assert_close(ours["images"], theirs["images"])
    assert torch.equal(ours["class"], theirs["class"]) and ours["class"].shape == (3,)
    # the same architecture: our features_only backbone + linear head has timm's parameters
    assert count_params(ours_model) == count_params(baseline)
    for which, model, batch in (("ours", ours_model, ours), ("baseline", baseline, theirs)):
        loss = case.train_loss(which, model.train(), batch)
        assert loss.dim() == 0 and torch.isfinite(loss)
        with torch.inference_mode():
            predictions = case.infer(which, model.eval(), batch)
        assert [p["scores"].shape for p in predictions] == [(4,)] * 3
        assert all(0 <= p["label"] < 4 for p in predictions)

    recipe_dict = case.config.to_dict()
    recipe_dict["model"]["backbone"]["name"] = "torchvision/resnet18"
    with pytest.raises(ConfigError, match="not a timm model"):
        ClassificationCase("x", Settings(), load_config(recipe_dict), "x.yaml")


def test_each_side_gets_batches_of_its_own_size_and_torchvision_its_min_max_size():
    from torchvision.models.detection import FCOS

    settings = Settings(image_size=(32, 48), baseline_image_size=(64, 128))
    case = case_for_recipe("fcos_r18", settings)
    assert case.size_of("ours") == case.image_size == (32, 48)
    assert case.size_of("baseline") == (64, 128) and case.sides_differ()
    baseline = case.build_baseline()
    assert isinstance(baseline, FCOS)
    assert baseline.transform.min_size == (64,) and baseline.transform.max_size == 128
    case.build_ours()
    ours, theirs = case.make_batch("ours", 2), case.make_batch("baseline", 2)
    assert ours["images"].shape == (2, 3, 32, 48)
    assert [tuple(im.shape) for im in theirs["images"]] == [(3, 64, 128)] * 2
    # the same relative boxes and labels, each scaled to its side's image
    for i in range(2):
        relative = ours["boxes"][i] / torch.tensor([48.0, 32.0, 48.0, 32.0])
        torch.testing.assert_close(
            theirs["targets"][i]["boxes"] / torch.tensor([128.0, 64.0, 128.0, 64.0]), relative
        )
        assert torch.equal(ours["labels"][i], theirs["targets"][i]["labels"])
        assert (relative[:, :2] >= 0).all() and (relative[:, 2:] <= 1).all()
    assert not torch.equal(ours["boxes"][0], theirs["targets"][0]["boxes"])  # scaled, not copied

    # without a baseline size both sides have ours, and get the same pixels and boxes
    same = case_for_recipe("fcos_r18", Settings(image_size=(32, 48)))
    assert same.size_of("baseline") == (32, 48) and not same.sides_differ()
    assert same.build_baseline().transform.min_size == (32,)
    images, boxes, _ = same.synthetic(2, "ours")
    their_images, their_boxes, _ = same.synthetic(2, "baseline")
    assert torch.equal(images, their_images) and torch.equal(boxes[1], their_boxes[1])
    # the recipe's own size for ours (fcos_r18: 160) when only the baseline's is given
    recipe_size = case_for_recipe("fcos_r18", Settings(baseline_image_size=(256, 256)))
    assert recipe_size.size_of("ours") == (160, 160)
    assert recipe_size.size_of("baseline") == (256, 256)


def test_segmentation_classification_and_multitask_batches_have_each_sides_size():
    settings = Settings(image_size=(32, 32), baseline_image_size=(64, 64), batch_size=2)
    seg = case_for_recipe("semseg_fpn_r18", settings)
    seg.build_ours()
    assert seg.make_batch("ours", 2)["images"].shape == (2, 3, 32, 32)
    theirs = seg.make_batch("baseline", 2)
    assert theirs["images"].shape == (2, 3, 64, 64) and theirs["target"].shape == (2, 64, 64)

    cls = case_for_recipe("classify_r18", settings)
    cls.build_ours()
    ours, theirs = cls.make_batch("ours", 3), cls.make_batch("baseline", 3)
    assert ours["images"].shape == (3, 3, 32, 32) and theirs["images"].shape == (3, 3, 64, 64)
    assert torch.equal(ours["class"], theirs["class"])

    multi = case_for_recipe("multitask_r18", settings)
    multi.build_ours()
    ours, theirs = multi.make_batch("ours", 2), multi.make_batch("baseline", 2)
    assert ours["images"].shape == (2, 3, 32, 32) and theirs["images"].shape == (2, 3, 64, 64)
    assert ours["semantic"].shape == (2, 32, 32) and theirs["semantic"].shape == (2, 64, 64)
    assert torch.equal(ours["class"], theirs["class"])
    torch.testing.assert_close(2 * ours["boxes"][1], theirs["boxes"][1])


def test_precision_of_and_autocast_follow_each_side():
    layer, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    mixed = case_for_recipe("classify_r18", Settings(precision="bf16", baseline_precision="fp32"))
    assert mixed.precision_of("ours") == "bf16" and mixed.precision_of("baseline") == "fp32"
    assert mixed.sides_differ()
    with mixed.autocast("ours"):
        assert layer(x).dtype == torch.bfloat16
    with mixed.autocast("baseline"):
        assert layer(x).dtype == torch.float32
    other_way = case_for_recipe(
        "classify_r18", Settings(precision="fp32", baseline_precision="bf16")
    )
    with other_way.autocast("ours"):
        assert layer(x).dtype == torch.float32
    with other_way.autocast("baseline"):
        assert layer(x).dtype == torch.bfloat16
    # None: the baseline at ours; the same precision given explicitly is no difference
    for baseline_precision in (None, "bf16"):
        settings = Settings(precision="bf16", baseline_precision=baseline_precision)
        same = case_for_recipe("classify_r18", settings)
        assert same.precision_of("baseline") == "bf16" and not same.sides_differ()
        with same.autocast("baseline"):
            assert layer(x).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="which"):
        mixed.precision_of("theirs")
    with pytest.raises(ValueError, match="baseline_precision"):
        Settings(baseline_precision="fp16")
    with pytest.raises(ValueError, match="baseline_image_size"):
        Settings(baseline_image_size=(64,))
