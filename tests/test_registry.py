"""The registries: which names they hold, and the registry API (classes, variants, builder
functions, the class behind a name, the signature a config is checked against)."""

from __future__ import annotations

import inspect
import subprocess
import sys

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
    assert DATASETS.names() == [
        *("coco", "csv", "folder", "identities", "labelme", "mask_folder", "voc", "yolo")
    ]
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


def test_a_built_in_name_is_refused_before_any_lookup_and_the_registry_keeps_working():
    """In a fresh process ``@HEADS.register("linear")`` was accepted (the built-ins were not
    imported yet), then every lookup of the registry raised "already registered"."""
    code = (
        "import torch.nn as nn\n"
        "from visionkit.registry import HEADS\n"
        "try:\n"
        "    HEADS.register('linear')(type('MyLinear', (nn.Module,), {}))\n"
        "except ValueError as err:\n"
        "    print('refused:', err)\n"
        "print(len(HEADS.names()) > 5, HEADS.component_class('linear').__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "refused: head 'linear' is already registered (by visionkit.models.heads." in out
    assert out.splitlines()[-1] == "True ClassificationHead"


@pytest.mark.parametrize("name", ["resnet18", "torchvision/resnet18"])
def test_a_backbone_of_ones_own_cannot_take_a_name_timm_or_torchvision_serves(name):
    """It shadowed the library's model: a checkpoint of it loaded where the user's module was
    not imported built timm's ResNet and failed on hundreds of missing keys."""

    def mine():
        raise AssertionError("never built")

    with pytest.raises(ValueError) as info:
        BACKBONES.register(name)(mine)
    assert f"backbone {name!r} is a name served by a library (timm or torchvision)" in str(
        info.value
    )
    assert "my_" in str(info.value)
    assert BACKBONES.get(name) is not mine


def test_an_unknown_name_close_to_others_still_says_to_import_ones_own_module():
    with pytest.raises(UnknownNameError) as info:
        BACKBONES.get("tiny_cnn_of_mine")
    assert "(a backbone of your own is registered when its module is imported)" in str(info.value)


@pytest.fixture
def own_components():
    """Register components of one's own for a test, and take them out again."""
    added: list[tuple[Registry, str]] = []

    def register(registry: Registry, name: str, obj):
        registry.register(name)(obj)
        added.append((registry, name))
        return obj

    yield register
    for registry, name in added:
        registry._builders.pop(name, None)


def test_a_head_of_ones_own_missing_part_of_the_contract_is_told_at_config_time(own_components):
    """A head without ``loss`` failed with an AttributeError after the data had loaded; a
    misspelt task with a KeyError that did not name the head."""
    import torch.nn as nn

    from visionkit.config import load_config
    from visionkit.errors import ConfigError

    class Forgetful(nn.Module):
        task = "classfication"
        reads = "backbone"

        def __init__(self, in_channels, num_classes: int = 2):
            super().__init__()

        def forward(self, features):
            return {}

    own_components(HEADS, "test_forgetful", Forgetful)
    config = {"model": {"backbone": {"name": "simple_cnn"}, "heads": {"mine": {}}}}
    config["model"]["heads"]["mine"]["name"] = "test_forgetful"
    with pytest.raises(ConfigError) as info:
        load_config(config)
    where = f"model.heads.mine: {__name__}.{Forgetful.__qualname__}"
    contract = " (the head contract: docs/extending.md#adding-a-head)"
    task, methods = info.value.problems  # the table: the built-in tasks and any registered
    assert task.startswith(f"{where}: task 'classfication' is not a task of the table ")
    assert "(classification, detection, instance, keypoints, " in task and task.endswith(contract)
    assert methods == (
        f"{where}: no method loss(outputs, targets), postprocess(outputs, image_sizes){contract}"
    )


def test_a_reader_of_ones_own_with_image_classes_is_not_given_class_names(own_components, tmp_path):
    """build_dataset passed the training set's ``class_names`` to every reader whose targets
    include ``class``: TypeError for a reader that does not take it (docs/extending.md's)."""
    import numpy as np

    from visionkit.build.data import build_dataset

    class Tiny:
        location = "root"
        targets = ("class",)
        target_flags: dict = {}

        def __init__(self, root: str, image_check: str = "header"):
            self.label_names = {"class": ["a", "b"]}

        def __len__(self):
            return 1

        def __getitem__(self, index):
            image = np.zeros((8, 8, 3), np.uint8)
            return {"image": image, "image_id": 0, "orig_size": (8, 8), "class": 1}

    own_components(DATASETS, "test_tiny_classes", Tiny)
    spec = {"format": "test_tiny_classes", "root": str(tmp_path)}
    dataset = build_dataset(spec, split="val", label_names={"class": ["a", "b"]})
    assert dataset[0]["class"] == 1


def test_a_function_made_by_exec_registers(own_components):
    """``exec(code, {})`` gives a function whose ``__module__`` is None: register raised
    AttributeError on it."""
    namespace: dict = {}
    exec("def made_here(width: int = 2):\n    return width\n", namespace)
    maker = namespace["made_here"]
    assert maker.__module__ is None
    own_components(NECKS, "test_made_by_exec", maker)
    assert NECKS.build("test_made_by_exec", width=3) == 3
