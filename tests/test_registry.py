"""The registries: which names they hold, and the registry API (classes, variants, builder
functions, the class behind a name, the signature a config is checked against)."""

from __future__ import annotations

import inspect

import pytest

import visionkit  # noqa: F401
from visionkit.config import builder_schema
from visionkit.models.heads import ClassificationHead, FCOSHead, FCOSMaskHead
from visionkit.registry import (
    BACKBONES,
    DATASETS,
    HEADS,
    NECKS,
    Registry,
    UnknownNameError,
    Variant,
    class_signature,
)


def test_the_registries_hold_exactly_the_built_in_names():
    assert HEADS.names() == [
        "deeplabv3plus",
        "embedding",
        "fcos",
        "fcos_embedding",
        "fcos_keypoints",
        "fcos_mask",
        "linear",
        "mlp",
        "retinanet",
        "semantic_fpn",
    ]
    assert NECKS.names() == ["fpn"]
    assert DATASETS.names() == ["coco", "folder", "identities", "mask_folder", "voc", "yolo"]
    for served in ("resnet18", "timm/resnet18", "torchvision/resnet50"):
        assert served in BACKBONES
    assert sorted(BACKBONES._builders) == ["simple_cnn"]  # the rest come from providers
    assert "torchvision/no_such_net" not in BACKBONES


def test_heads_necks_and_datasets_are_registered_as_their_classes():
    for registry in (HEADS, NECKS, DATASETS):
        for name in registry.names():
            registered = registry.get(name)
            cls = registry.component_class(name)
            assert isinstance(cls, type)
            assert registered is cls or (isinstance(registered, Variant) and registered.cls is cls)
    assert HEADS.get("fcos") is FCOSHead and HEADS.component_class("mlp") is ClassificationHead


def test_a_variant_is_its_class_with_other_defaults():
    mlp = HEADS.get("mlp")
    params = HEADS.signature("mlp").parameters
    assert params["hidden_dims"].default == (512,) and params["dropout"].default == 0.2
    assert HEADS.signature("linear").parameters["hidden_dims"].default == ()
    head = HEADS.build("mlp", in_channels=[8, 16], num_classes=3)
    assert type(head) is ClassificationHead
    hidden = [m for m in head.classifier if m.__class__.__name__ == "Linear"]
    assert [layer.out_features for layer in hidden] == [512, 3]
    assert mlp(in_channels=[8], num_classes=2, hidden_dims=()).classifier[-1].in_features == 8


def test_a_subclass_passing_kwargs_on_has_its_base_arguments_in_its_schema():
    own = set(inspect.signature(FCOSMaskHead).parameters)
    assert "fcos_args" in own and "nms_thresh" not in own
    params = class_signature(FCOSMaskHead).parameters
    assert "fcos_args" not in params
    assert params["nms_thresh"].default == 0.6 and params["focal_gamma"].default == 2.0
    assert params["nms_thresh"].kind is inspect.Parameter.KEYWORD_ONLY
    fields = builder_schema(HEADS, "fcos_mask").model_fields
    assert {"num_prototypes", "num_convs", "focal_alpha"} <= set(fields)


class Box:
    """A toy component (at module level: annotations naming it must resolve)."""

    def __init__(self, width: int = 4) -> None:
        self.width = width


def test_registration_forms_and_the_class_behind_each():
    toys = Registry("toy")
    assert toys.register("box")(Box) is Box

    @toys.register
    def plain(width: int = 2) -> Box:
        return Box(width)

    @toys.register("declared", cls=Box)
    def declared(**kwargs):
        return Box(**kwargs)

    @toys.register(name="untyped")
    def untyped(width=1):
        return Box(width)

    toys.variant("big_box", Box, "A wide box.", width=16)
    assert toys.names() == ["big_box", "box", "declared", "plain", "untyped"]
    assert toys.build("box").width == 4 and toys.build("big_box").width == 16
    assert toys.build("big_box", width=3).width == 3
    assert inspect.getdoc(toys.get("big_box")) == "A wide box."
    for name in ("box", "big_box", "declared", "plain"):
        assert toys.component_class(name) is Box, name
    with pytest.raises(TypeError, match="declares no class"):
        toys.component_class("untyped")
    assert toys.signature("plain").parameters["width"].annotation is int
    with pytest.raises(TypeError, match="no argument"):
        Variant(Box, "", depth=3)


def test_duplicates_and_unknown_names_raise():
    toys = Registry("toy")
    toys.register("thing")(dict)
    with pytest.raises(ValueError, match="already registered"):
        toys.register("thing")(list)
    with pytest.raises(ValueError, match=r"'mlp' is already registered \(by visionkit\."):
        HEADS.variant("mlp", ClassificationHead, "mine", hidden_dims=(7,))  # a built-in: never
    with pytest.raises(UnknownNameError, match="did you mean 'thing'"):
        toys.get("thnig")
    with pytest.raises(UnknownNameError, match="unknown head 'fcoss'; did you mean 'fcos'"):
        HEADS.component_class("fcoss")
    # nothing close: where to see the names (a registry of visionkit's own)
    count = len(HEADS.names())
    with pytest.raises(UnknownNameError) as info:
        HEADS.get("yolov8")
    assert str(info.value) == (
        f"unknown head 'yolov8'; `visionkit list heads` shows the {count} known names (a head "
        "of your own is registered when its module is imported: import it first)"
    )
    with pytest.raises(UnknownNameError) as info:
        toys.get("zzzzz")
    assert str(info.value) == "unknown toy 'zzzzz'"  # not listed by the command
