"""albumentations' compositions (``OneOf``, ``SomeOf``, ``Sequential``) in ``data.transforms``:
built from the config recursively, with nested parameters and sizes, errors naming the nested
key path, and the evaluation-geometry rule applied to a composition in a val pipeline."""

from __future__ import annotations

import albumentations as A
import pytest

from tests.helpers import detection_config, make_coco, run
from visionkit.config import load_config
from visionkit.data.image_size import pipeline_steps, with_image_size
from visionkit.data.transforms import apply_pipeline, build_pipeline, eval_geometry_problem
from visionkit.errors import ConfigError

MEAN = STD = (0.5, 0.5, 0.5)


def config(train=None, val=None, image_size=48, heads=None):
    """A config dict with these pipelines (FCOS, a spatial head, unless ``heads``)."""
    return {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": heads or {"det": {"name": "fcos"}},
        },
        "data": {"image_size": image_size, "transforms": {"train": train, "val": val}},
    }


def test_oneof_someof_sequential_are_built_from_the_config_with_nested_parameters():
    train = [
        {
            "name": "OneOf",
            "p": 0.8,
            "transforms": [
                {"name": "RandomBrightnessContrast", "brightness_limit": 0.3},
                {"name": "HueSaturationValue", "p": 0.25},
            ],
        },
        {"name": "SomeOf", "n": 2, "transforms": [{"name": "Blur"}, {"name": "ToGray"}]},
        {
            "name": "Sequential",
            "p": 1.0,
            "transforms": [
                {"name": "OneOf", "transforms": [{"name": "RandomCrop"}, {"name": "CenterCrop"}]},
                {"name": "HorizontalFlip", "p": 0.5},
            ],
        },
    ]
    cfg = load_config(config(train=train))
    pipeline = build_pipeline(pipeline_steps(cfg.data, train=True), MEAN, STD)
    oneof, someof, sequential = pipeline.transforms[:3]
    assert type(oneof) is A.OneOf and oneof.p == 0.8
    assert [type(t) for t in oneof.transforms] == [A.RandomBrightnessContrast, A.HueSaturationValue]
    assert tuple(oneof.transforms[0].brightness_limit) == pytest.approx((-0.3, 0.3))
    assert oneof.transforms[1].p == 0.25
    assert type(someof) is A.SomeOf and someof.n == 2
    assert [type(t) for t in someof.transforms] == [A.Blur, A.ToGray]
    assert type(sequential) is A.Sequential and sequential.p == 1.0
    inner = sequential.transforms[0]
    assert type(inner) is A.OneOf and [type(t) for t in inner.transforms] == [
        A.RandomCrop,
        A.CenterCrop,
    ]
    # sizing steps inside compositions follow data.image_size, like top-level ones
    assert {(t.height, t.width) for t in inner.transforms} == {(48, 48)}
    resized = load_config(config(train=train), ["data.image_size=[40,56]"])
    steps = pipeline_steps(resized.data, train=True)
    assert steps[2]["transforms"][0]["transforms"][0] == {
        "name": "RandomCrop",
        "height": 40,
        "width": 56,
    }


@pytest.mark.reliability
def test_nested_mistakes_are_reported_with_their_key_path():
    train = [
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "Resize"},
        {
            "name": "OneOf",
            "p": 0.8,
            "transforms": [{"name": "RandomBrightnessContrast"}, {"name": "Brightnes"}],
        },
        {"name": "OneOf", "p": 2, "prob": 1, "transforms": [{"name": "Blur", "blur_limitt": 3}]},
        {"name": "SomeOf", "n": 3, "transforms": [{"name": "Blur"}]},
        {"name": "Sequential", "transforms": "Blur"},
    ]
    with pytest.raises(ConfigError) as caught:
        load_config(config(train=train))
    problems = caught.value.problems
    assert (
        "data.transforms.train[2].transforms[1].name: unknown albumentations transform "
        "'Brightnes'; did you mean 'PlasmaBrightnessContrast', 'RandomBrightnessContrast'?"
    ) in problems
    assert "data.transforms.train[3].p (OneOf): expected a number from 0 to 1, got 2" in problems
    assert (
        "data.transforms.train[3].prob: unknown parameter of OneOf; valid: transforms, p"
        in problems
    )
    assert (
        "data.transforms.train[3].transforms[0].blur_limitt: unknown parameter of Blur; did you "
        "mean 'blur_limit'?"
    ) in problems
    assert (
        "data.transforms.train[4].n: 3 steps asked of 1 (give n <= the number of transforms, "
        "or replace: true)"
    ) in problems
    assert (
        "data.transforms.train[5].transforms: Sequential needs a non-empty list of steps "
        "([{name: ..., ...}, ...]), got 'Blur'"
    ) in problems
    assert len(problems) == 6, problems


@pytest.mark.reliability
def test_a_nested_typo_stops_visionkit_train_with_its_key_path(tmp_path, capsys):
    data = make_coco(tmp_path / "data")
    steps = [
        {"name": "Resize"},
        {"name": "SomeOf", "n": 1, "transforms": [{"name": "Blur"}, {"name": "Brightnes"}]},
    ]
    cfg = detection_config(tmp_path / "c.yaml", data, data={"transforms": {"train": steps}})
    code, _, err = run(["train", "--config", cfg], capsys)
    assert code == 2
    assert "data.transforms.train[1].transforms[1].name: unknown albumentations transform" in err
    assert "'RandomBrightnessContrast'" in err


def test_a_val_composition_of_pixel_only_steps_is_accepted_one_of_geometric_steps_refused():
    pixel_only = [
        {"name": "Resize"},
        {"name": "OneOf", "transforms": [{"name": "Blur"}, {"name": "ToGray"}]},
        {"name": "Sequential", "p": 1, "transforms": [{"name": "Resize", "height": 32}]},
    ]
    pixel_only[2]["transforms"][0]["width"] = 32
    assert load_config(config(val=pixel_only)).data.transforms.val[1]["name"] == "OneOf"
    geometric = [
        {"name": "Resize"},
        {"name": "OneOf", "p": 1, "transforms": [{"name": "HorizontalFlip"}, {"name": "Blur"}]},
        {"name": "Sequential", "p": 0.5, "transforms": [{"name": "Resize"}]},
        {"name": "Sequential", "p": 1, "transforms": [{"name": "CenterCrop"}]},
    ]
    with pytest.raises(ConfigError) as caught:
        load_config(config(val=geometric))
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith(
        "data.transforms.val[1] (OneOf): OneOf picks among steps with geometric ones "
        "(HorizontalFlip) at random, but boxes and masks of spatial heads (det: fcos) are mapped "
        "back"
    )
    assert problems[1].startswith(
        "data.transforms.val[2] (Sequential): p: 0.5 applies it at random"
    )
    assert problems[2].startswith(
        "data.transforms.val[3] (Sequential): its step CenterCrop: not a resize or a bottom/right "
        "padding"
    )
    # a classifier may evaluate on any composition
    classifier = {"cls": {"name": "linear", "num_classes": 2}}
    assert load_config(config(val=geometric, heads=classifier)).data.transforms.val


def test_eval_geometry_of_compositions():
    assert eval_geometry_problem(A.SomeOf([A.Blur(), A.OneOf([A.ToGray(), A.Blur()])], n=2)) is None
    assert eval_geometry_problem(A.Sequential([A.Resize(32, 32), A.Blur()], p=1)) is None
    assert "at random" in eval_geometry_problem(A.SomeOf([A.Resize(32, 32), A.Blur()], n=1))


def test_pad_if_needed_pads_to_the_image_size_not_to_1024():
    """``{name: PadIfNeeded}`` after ``LongestMaxSize`` letterboxes to ``data.image_size`` (as
    the resize follows it); albumentations' own default padded every image to 1024 x 1024."""
    import numpy as np

    steps = [{"name": "LongestMaxSize"}, {"name": "PadIfNeeded"}]
    val = [steps[0], {"name": "PadIfNeeded", "position": "top_left"}]
    cfg = load_config(config(train=steps, val=val, image_size=96))
    for train in (True, False):
        pipeline = build_pipeline(pipeline_steps(cfg.data, train=train), MEAN, STD)
        sample = {"image": np.zeros((50, 80, 3), np.uint8), "image_id": 1, "orig_size": (50, 80)}
        assert tuple(apply_pipeline(pipeline, sample)["image"].shape) == (3, 96, 96)
    divisor = {"name": "PadIfNeeded", "min_height": None, "min_width": None}
    divisor.update(pad_height_divisor=32, pad_width_divisor=32)  # albumentations' own way
    cfg = load_config(config(train=[steps[0], divisor], image_size=96))
    assert pipeline_steps(cfg.data, train=True)[1] == divisor  # sized by its divisor alone
    # --imgsz re-sizes a padding to the image size, and keeps one to a multiple as it is
    from visionkit.inference.options import resize_steps

    resized = resize_steps([steps[0], divisor], (128, 160))
    assert resized[1] == divisor and resized[0]["max_size"] == 160
    assert resize_steps(val, (128, 160))[1]["min_height"] == 128
    half = with_image_size({"name": "PadIfNeeded", "pad_width_divisor": 32}, 96)
    assert (half["min_height"], half["min_width"]) == (96, None)  # each side on its own
    build_pipeline([half], MEAN, STD)  # what albumentations accepts


@pytest.mark.reliability
@pytest.mark.parametrize(
    "step",
    [
        {"name": "PadIfNeeded", "min_height": 64, "min_width": 64, "position": "top_left"},
        {"name": "RandomCrop", "height": 64, "width": 64, "pad_if_needed": True},
        {"name": "Affine", "rotate": [30, 30], "p": 1.0},
    ],
    ids=["PadIfNeeded", "RandomCrop", "Affine"],
)
def test_padding_and_borders_of_label_maps_carry_no_label(step):
    """Label 0 is a real class in a mask folder (CamVid's sky): the pixels a step pads or
    rotates in are ignored (255), not labelled 0 (albumentations' default fill), and belong to
    no instance mask."""
    import numpy as np

    sample = {
        "image": np.zeros((40, 40, 3), np.uint8),
        "image_id": 1,
        "orig_size": (40, 40),
        "semantic": np.full((40, 40), 3, np.uint8),  # class 3 everywhere
        "boxes": np.array([[0.0, 0.0, 40.0, 40.0]]),
        "labels": np.array([0]),
        "masks": np.ones((1, 40, 40), np.uint8),
    }
    out = apply_pipeline(build_pipeline([step], MEAN, STD), sample)
    values = set(out["semantic"].unique().tolist())
    assert values == {3, 255}, values  # the image's class, and the filled pixels ignored
    filled = out["semantic"] == 255
    assert not out["masks"][:, filled].any() and out["masks"].max() == 1
    explicit = build_pipeline([{**step, "fill_mask": 0}], MEAN, STD)  # a fill the user sets
    assert 0 in apply_pipeline(explicit, sample)["semantic"].unique().tolist()


SCALE = {"name": "RandomScale", "scale_limit": [-0.25, 0.5], "p": 1.0}  # the semseg recipe's


@pytest.mark.parametrize(
    ("image_size", "between", "crop", "warned"),
    [
        (128, [SCALE], {"height": 256, "width": 256}, True),  # the recipe at a smaller size
        (320, [SCALE], {"height": 256, "width": 256}, False),  # the recipe as shipped
        (128, [SCALE], {}, False),  # the crop follows data.image_size
        (128, [], {"height": 160, "width": 160}, False),  # a little larger: mostly photo
        (128, [{"name": "Resize", "height": 512, "width": 512}], {"height": 256}, False),
    ],
)
def test_a_training_crop_mostly_of_padding_is_warned_about(
    image_size, between, crop, warned, caplog
):
    from visionkit.build import build_pipelines

    crop = {"width": 256, **crop} if "height" in crop else crop
    train = [
        {"name": "LongestMaxSize"},
        *between,
        {"name": "RandomCrop", "pad_if_needed": True, **crop},
    ]
    cfg = load_config(config(train=train, image_size=image_size))
    with caplog.at_level("WARNING", logger="visionkit"):
        build_pipelines(cfg.data, MEAN, STD)
    expected = (
        "data.transforms.train[2] (RandomCrop): crops 256x256 from photos whose longest side is "
        "144 on average (data.transforms.train[0], LongestMaxSize, and any RandomScale after "
        "it): most of each training input is padding"
    )
    assert (expected in caplog.text) is warned
    assert ("RandomCrop" in caplog.text) is warned
