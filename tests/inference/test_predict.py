"""`visionkit predict`: inputs, drawn images, predictions.json."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import visionkit
from tests.helpers import predict_at_score_thresh
from visionkit.data.io import read_image
from visionkit.errors import ConfigError, DataError
from visionkit.inference.draw import draw_predictions
from visionkit.inference.predict import expand_inputs, predict_files

CONFIG = {
    "model": {
        "backbone": {"name": "simple_cnn"},
        "heads": {"cls": {"name": "linear", "num_classes": 4}},
    }
}


def test_predict_files_writes_drawn_images_and_json(shapes_root, tmp_path):
    model = visionkit.create_model(CONFIG, label_names={"class": ["a", "b", "c", "d"]})
    images = shapes_root / "val" / "images"
    out = predict_files(
        model, [images / "000001.png", str(images / "00000[23].png")], tmp_path, progress=False
    )
    assert out == tmp_path / "images.json"  # no box heads: no predictions.json
    assert not (tmp_path / "predictions.json").exists()
    records = json.loads(out.read_text())
    assert [r["file_name"].rsplit("/", 1)[-1] for r in records] == [
        "000001.png",
        "000002.png",
        "000003.png",
    ]
    assert [r["id"] for r in records] == [1, 2, 3]
    assert all((r["height"], r["width"]) == (64, 64) for r in records)
    assert all(r["cls"]["name"] in "abcd" and 0 <= r["cls"]["score"] <= 1 for r in records)
    assert sorted(p.name for p in tmp_path.glob("*_pred.png")) == [
        "000001.png_pred.png",
        "000002.png_pred.png",
        "000003.png_pred.png",
    ]


def test_expand_inputs_reads_folders_and_reports_missing_paths(shapes_root, tmp_path):
    assert len(expand_inputs([shapes_root / "val" / "images"])) == 24
    with pytest.raises(DataError, match="inputs not found") as info:
        expand_inputs([tmp_path / "nope.png", shapes_root / "val" / "images" / "000001.png"])
    assert str(tmp_path / "nope.png") in str(info.value)


def test_draw_predictions_draws_boxes_in_their_place():
    image = np.zeros((40, 60, 3), np.uint8)
    prediction = {
        "det": {
            "boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0]]),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([1]),
            "names": ["square"],
        }
    }
    drawn = draw_predictions(image, prediction)
    assert drawn.shape == image.shape
    assert drawn[15, 10].any() and drawn[25, 20].any()  # box edges coloured
    assert (
        not drawn[23, 26].any() and not drawn[35, 50].any()
    )  # inside (below the caption), outside
    image.flags.writeable = False  # as np.asarray(a PIL image): torch warned it was not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (draw_predictions(image, prediction) == drawn).all()


def test_captions_are_white_on_dark_colours_and_black_on_light_ones():
    from visionkit.inference.draw import text_colour

    assert text_colour((0, 0, 128)) == (255, 255, 255)  # navy
    assert text_colour((255, 225, 25)) == (0, 0, 0)  # yellow


def test_the_caption_of_a_box_past_the_top_edge_stays_on_the_image():
    """A box starting above the image had its caption drawn above the image too: cut off."""
    from visionkit.inference.draw import draw_captions

    boxes = torch.tensor([[5.0, -30.0, 40.0, 20.0]])
    canvas = draw_captions(torch.zeros(3, 64, 64, dtype=torch.uint8), boxes, ["x"],
                           [(255, 255, 255)], 11)  # fmt: skip
    assert canvas[:, 0, 5:8].all()  # the caption box's top row is the image's


def test_boxes_and_captions_drawn_on_a_large_photo_grow_with_it():
    """On a 2400 x 1800 photo the boxes were 2 pixels wide and the captions Pillow's
    11-pixel font: at a size that shows the whole photo on a screen, neither could be seen
    (Ultralytics' drawings grow with the image). Both follow the image's size now; a small
    image is drawn as before."""
    from visionkit.inference.draw import drawing_sizes

    assert drawing_sizes(480, 640) == (2, 11) and drawing_sizes(1800, 2400) == (6, 33)
    image = np.zeros((1800, 2400, 3), np.uint8)
    box = torch.tensor([[600.0, 900.0, 1400.0, 1500.0]])
    prediction = {
        "det": {"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1]),
                "names": ["square"]}
    }  # fmt: skip
    drawn = draw_predictions(image, prediction).any(2)
    left_edge = drawn[1200, 590:620]
    assert 5 <= left_edge.sum() <= 7  # 6 pixels wide
    above = drawn[:900, 600:1400]  # the caption sits on the box's top edge, above it
    rows = np.flatnonzero(above.any(1))
    assert len(rows) >= 30 and rows.max() == 899
    assert above.sum() >= 30 * 100  # a filled caption box at least 30 x 100 pixels
    small = draw_predictions(np.zeros((40, 60, 3), np.uint8), {"det": {**prediction["det"],
                             "boxes": torch.tensor([[10.0, 15.0, 30.0, 35.0]])}}).any(2)  # fmt: skip
    assert small[25, 8:13].sum() == 2  # 2 pixels wide


def test_captions_on_a_thumbnail_stay_small_and_one_too_wide_is_cut_to_fit():
    """On a 64-pixel image the captions were 11 pixels high (as on a 640-pixel photo) and
    covered almost half of it; a classifier's caption ran past the right edge. Captions are
    at most an eighth of the shorter side high, 8 pixels at least, and one wider than the
    image is cut to fit (:func:`fitted`)."""
    from visionkit.inference.draw import drawing_sizes

    assert drawing_sizes(64, 64) == (2, 8) and drawing_sizes(64, 400) == (2, 8)
    assert drawing_sizes(96, 96) == (2, 11) and drawing_sizes(32, 32) == (2, 8)  # the floor
    grey = np.full((64, 64, 3), 128, np.uint8)
    boxes = torch.tensor([[20.0, 20.0, 44.0, 44.0], [5.0, 40.0, 25.0, 60.0]])
    det = {"boxes": boxes, "scores": torch.tensor([0.53, 0.4]), "labels": torch.tensor([2, 1]),
           "names": ["triangle", "square"]}  # fmt: skip
    drawn = (draw_predictions(grey, {"det": det}) != 128).any(2)
    assert drawn.mean() < 0.3  # 0.44 with 11-pixel captions
    assert drawn[10:20, 20:60].any()  # the caption above the first box is drawn
    cls = {"label": 1, "name": "noisy_background", "scores": torch.tensor([0.1, 0.9])}
    framed = (draw_predictions(grey, {"cls": cls}) != 128).any(2)
    assert framed[0].all() and framed[:, 0].all()  # the frame is drawn
    assert framed[2:9, 2:60].all()  # its caption, wider than the image, cut to fit
    assert not framed[12:60, 4:60].any()


def test_a_caption_too_wide_loses_its_score_then_is_cut_and_left_out_last():
    """On CIFAR's 32-pixel and MNIST's 28-pixel images every caption was left out (one at the
    8-pixel floor is about 33 pixels wide): the score goes first, then the name is cut to fit,
    ending in "…"; left out only where not even a character and "…" fit."""
    from PIL import Image, ImageDraw

    from visionkit.inference.draw import caption_font, fitted

    pen, font = ImageDraw.Draw(Image.new("RGB", (8, 8))), caption_font(8)
    assert fitted(pen, font, "cat", "0.93", 60)[0] == "cat 0.93"
    assert fitted(pen, font, "cat", "0.93", 28)[0] == "cat"
    text = fitted(pen, font, "noisy_background", "0.90", 28)[0]
    assert text.startswith("noisy") and text.endswith("…") and len(text) < 16
    assert fitted(pen, font, "noisy_background", "0.90", 3) is None
    for side in (32, 28):
        grey = np.full((side, side, 3), 128, np.uint8)
        cls = {"label": 1, "name": "cat", "scores": torch.tensor([0.07, 0.93])}
        framed = (draw_predictions(grey, {"cls": cls}) != 128).any(2)
        assert framed[2:9, 2:14].all()  # "cat" on its colour inside the frame
        assert not framed[12 : side - 2, 2 : side - 2].any()
        det = {"boxes": torch.tensor([[4.0, 10.0, 20.0, side - 4.0]]), "labels": torch.tensor([0]),
               "scores": torch.tensor([0.87]), "names": ["person"]}  # fmt: skip
        boxed = (draw_predictions(grey, {"det": det}) != 128).any(2)
        assert boxed[3:9, 4:26].all()  # "person" above its box


def test_coco_results_are_loadable_by_pycocotools_with_masks_as_rle(tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from visionkit.inference.predict import coco_results

    masks = torch.zeros(2, 40, 60, dtype=torch.bool)
    masks[0, 5:25, 10:30] = True
    masks[1, 0:10, 40:60] = True
    prediction = {
        "inst": {
            "boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0], [40.0, 0.0, 60.0, 10.0]]),
            "scores": torch.tensor([0.9, 0.4]),
            "labels": torch.tensor([1, 0]),
            "names": ["square", "circle"],
            "masks": masks,
        }
    }
    entries = coco_results(7, prediction, category_ids=[3, 42])
    assert [e["category_id"] for e in entries] == [42, 3]
    assert entries[0]["bbox"] == [10.0, 5.0, 20.0, 20.0]
    assert entries[0]["head"] == "inst" and entries[0]["name"] == "square"
    decoded = mask_utils.decode(
        {**entries[0]["segmentation"], "counts": entries[0]["segmentation"]["counts"].encode()}
    )
    assert (decoded.astype(bool) == masks[0].numpy()).all()
    gt = {
        "images": [{"id": 7, "width": 60, "height": 40, "file_name": "x.png"}],
        "annotations": [],
        "categories": [{"id": 3, "name": "circle"}, {"id": 42, "name": "square"}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(entries))
    coco = COCO(str(tmp_path / "gt.json"))
    loaded = coco.loadRes(str(tmp_path / "dt.json"))
    assert len(loaded.getAnnIds()) == 2


def test_up_to_twenty_classes_get_distinct_colours():
    from visionkit.inference.draw import colour_of

    assert len({colour_of(label) for label in range(20)}) == 20  # CamVid 11, Cityscapes 19


def test_every_semantic_class_is_painted_but_background_and_ignored_pixels():
    """CamVid's class 0 is the sky: painted and in the legend like any class. Only a class
    named background (VOC's, the shapes') and ignored ground-truth pixels (-1) stay as they are."""
    image = np.zeros((40, 60, 3), np.uint8)
    semantic = torch.zeros(40, 60, dtype=torch.long)  # sky
    semantic[:, 20:40] = 1
    semantic[:, 40:] = -1  # void in the ground truth
    names = ["sky", "building"]
    drawn = draw_predictions(image, {"seg": {"mask": semantic, "names": names}})
    assert drawn[10, 10].any() and drawn[10, 30].any()  # sky and building painted
    assert not drawn[10, 50].any()  # ignored pixels left alone
    assert (drawn[10, 10] != drawn[10, 30]).any()  # in different colours
    assert drawn.shape[0] == 40 + 2 * 14 + 4  # a legend row each for sky and building
    sky = torch.zeros_like(semantic)
    video = draw_predictions(image, {"seg": {"mask": sky, "names": names}}, legend_all=True)
    assert video.shape[0] == 40 + 2 * 14 + 4  # legend_all: every class, sky included
    unnamed = draw_predictions(image, {"seg": {"mask": semantic.clamp(min=0)}})
    assert unnamed[10, 10].any() and unnamed.shape[0] == 40 + 2 * 14 + 4  # "0", "1"


def test_boxes_beside_a_label_map_take_other_colours_than_its_classes():
    """A detector's class 0 beside CamVid's sky (class 0): not both red."""
    from visionkit.inference.draw import colour_of

    image = np.zeros((40, 60, 3), np.uint8)
    box = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0]]), "labels": torch.tensor([0])}
    box |= {"scores": torch.tensor([0.9]), "names": ["raccoon"]}
    seg = {"mask": torch.full((40, 60), -1), "names": ["sky", "road"]}  # nothing painted
    alone = draw_predictions(image, {"det": box})
    beside = draw_predictions(image, {"seg": seg, "det": box})
    assert tuple(alone[15, 10]) == colour_of(0)  # the box's left edge
    assert tuple(beside[15, 10]) == colour_of(2)  # after the label map's two classes


def test_draw_predictions_fills_masks_and_adds_a_semantic_legend():
    image = np.zeros((40, 60, 3), np.uint8)
    semantic = torch.zeros(40, 60, dtype=torch.long)
    semantic[:, 30:] = 2
    prediction = {"seg": {"mask": semantic, "names": ["background", "circle", "square"]}}
    drawn = draw_predictions(image, prediction)
    assert drawn.shape[1] == 60 and drawn.shape[0] > 40  # legend strip below the image
    assert not drawn[20, 10].any()  # background left alone
    assert drawn[20, 45].any()  # class 2 filled
    assert drawn.shape[0] == 40 + 14 + 4  # one legend row: square (background has none)
    instance = {
        "inst": {
            "boxes": torch.tensor([[2.0, 2.0, 20.0, 20.0]]),
            "scores": torch.tensor([0.8]),
            "labels": torch.tensor([0]),
            "masks": torch.zeros(1, 40, 60, dtype=torch.bool).index_fill_(
                1, torch.arange(5, 15), True
            ),
        }
    }
    drawn = draw_predictions(image, instance)
    assert drawn.shape == image.shape
    assert drawn[10, 50].any()  # mask row 10 filled across the image
    assert not drawn[30, 50].any()


def write_video(path, frames: int = 7, size=(48, 64), fps: float = 10.0):
    """A small mp4 of a red square (RGB) moving right; returns the RGB frames written."""
    import cv2

    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    written = []
    for i in range(frames):
        rgb = np.full((h, w, 3), 40, np.uint8)
        rgb[10:30, 4 + 5 * i : 24 + 5 * i] = (230, 20, 20)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        written.append(rgb)
    writer.release()
    return written


def multi_head_model():
    torch.manual_seed(0)
    config = {
        "model": {
            "backbone": {"name": "simple_cnn", "out_indices": [2, 3, 4]},
            "neck": {"name": "fpn", "out_channels": 16, "min_level": 3, "max_level": 5},
            "heads": {
                "cls": {"name": "linear", "num_classes": 2},
                "det": {"name": "fcos", "num_classes": 2, "num_convs": 1},
                "seg": {"name": "semantic_fpn", "channels": 16, "num_classes": 3},
            },
        },
        "data": {"image_size": 64},
    }
    names = {"class": ["day", "night"], "instances": ["a", "b"], "semantic": ["bg", "a", "b"]}
    model = visionkit.create_model(config, label_names=names)
    model.heads["det"].score_thresh = 0.0  # untrained: keep some detections to write
    model.heads["det"].detections_per_img = 3
    return predict_at_score_thresh(model)


def test_read_video_gives_rgb_frames_and_skips_by_every(tmp_path):
    from visionkit.inference.predict import read_video, video_frames

    written = write_video(tmp_path / "clip.mp4")
    frames = list(read_video(tmp_path / "clip.mp4", every=3))
    assert [i for i, _ in frames] == [0, 3, 6]
    assert video_frames(tmp_path / "clip.mp4", every=3) == 3
    for index, frame in frames:
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
        red = frame[20, 14 + 5 * index]  # inside the square: red in RGB order
        assert red[0] > 180 and red[2] < 80
        assert np.abs(frame.astype(int) - written[index]).mean() < 8  # lossy codec
    with pytest.raises(DataError, match="cannot read video"):
        list(read_video(tmp_path / "missing.mp4"))


def test_predict_files_on_a_video_and_an_image_writes_frames_ids_and_a_drawn_video(
    shapes_root, tmp_path
):
    import shutil

    import cv2

    (tmp_path / "in").mkdir()
    write_video(tmp_path / "in" / "clip.mp4")
    image = shutil.copy(shapes_root / "val" / "images" / "000001.png", tmp_path)
    out = tmp_path / "out"
    target = predict_files(
        multi_head_model(), [image, tmp_path / "in"], out, batch_size=3, every=2, progress=False
    )
    records = json.loads((out / "images.json").read_text())
    assert [r["id"] for r in records] == [1, 2, 3, 4, 5]
    assert "frame" not in records[0] and records[0]["file_name"] == str(image)
    assert [r["frame"] for r in records[1:]] == [0, 2, 4, 6]
    assert all(r["file_name"].endswith("clip.mp4") for r in records[1:])
    assert all((r["height"], r["width"]) == (48, 64) for r in records[1:])
    assert records[2]["cls"]["name"] in ("day", "night")
    assert records[2]["seg"]["label_png"] == "in/clip.mp4_000002_seg.png"
    assert (out / "in" / "clip.mp4_000002_seg.png").is_file()
    assert (out / "000001.png_seg.png").is_file()

    results = json.loads(target.read_text())
    by_image = {}
    for entry in results:
        by_image.setdefault(entry["image_id"], []).append(entry)
    assert sorted(by_image) == [1, 2, 3, 4, 5]
    assert all("frame" not in e for e in by_image[1])
    assert {e["frame"] for e in by_image[3]} == {2}

    assert (out / "000001.png_pred.png").is_file()
    capture = cv2.VideoCapture(str(out / "in" / "clip.mp4_pred.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 4
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5.0)  # 10 fps, every 2nd frame
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape[1] == 64 and frame.shape[0] > 48  # the legend of both classes


def test_predict_files_with_flip_tta_writes_the_merged_predictions(shapes_root, tmp_path):
    from visionkit.inference.tta import predict_hflip

    model = multi_head_model()
    image_path = shapes_root / "val" / "images" / "000002.png"
    predict_files(model, [image_path], tmp_path, tta="flip", draw=False, progress=False)
    record = json.loads((tmp_path / "images.json").read_text())[0]
    (expected,) = predict_hflip(model, [read_image(image_path)])
    assert record["cls"]["score"] == pytest.approx(
        float(expected["cls"]["scores"][expected["cls"]["label"]]), abs=1e-5
    )
    entries = json.loads((tmp_path / "predictions.json").read_text())
    scores = torch.tensor([e["score"] for e in entries], dtype=torch.float32)
    assert torch.equal(scores, expected["det"]["scores"].cpu())  # the float32 scores, exactly
    with pytest.raises(ConfigError, match="unknown test-time augmentation 'rot90'"):
        predict_files(model, [image_path], tmp_path, tta="rot90", progress=False)
    with pytest.raises(ConfigError, match=r"every \(--every\): must be at least 1, got 0"):
        predict_files(model, [image_path], tmp_path, every=0, progress=False)


def test_instance_masks_are_filled_one_over_the_other_and_overlaps_are_not_black():
    """torchvision's draw_segmentation_masks counted every pixel's masks in int64 at once
    (11.6 GB of memory for `visionkit predict` of one 12-megapixel photo at --conf 0.05) and
    painted overlaps black."""
    from visionkit.inference.draw import colour_of, fill_masks

    canvas = torch.full((3, 20, 30), 100, dtype=torch.uint8)
    masks = torch.zeros(2, 20, 30, dtype=torch.bool)
    masks[0, 2:10, 2:20] = True
    masks[1, 5:15, 10:25] = True
    colours = [colour_of(0), colour_of(1)]
    out = fill_masks(canvas, masks, colours)

    def blend(under, colour):
        return [round(u * 0.55 + c * 0.45) for u, c in zip(under, colour, strict=True)]

    assert out[:, 3, 3].tolist() == blend([100] * 3, colours[0])
    assert out[:, 12, 20].tolist() == blend([100] * 3, colours[1])
    assert out[:, 7, 15].tolist() == blend(blend([100] * 3, colours[0]), colours[1])
    assert out[:, 18, 2].tolist() == [100, 100, 100]  # outside every mask
    assert torch.equal(canvas, torch.full((3, 20, 30), 100, dtype=torch.uint8))  # a copy
