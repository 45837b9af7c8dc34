"""Predictions drawn on their image: masks filled in class colours, boxes with class names
and scores, the image class in a frame, a legend for semantic classes.

Used by ``visionkit predict`` (:func:`visionkit.inference.predict.predict_files`) and by the
validation pictures of a run (:mod:`visionkit.engine.pictures`), which draws ground truth the
same way (captions without scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from visionkit.data.classes import BACKGROUND
from visionkit.inference.draw_keypoints import draw_skeletons

#: Drawn lines are this share of the image's mean side wide, 2 pixels at least (Ultralytics'
#: rule: 2 px on a 640 x 480 photo, 4 on a 1920 x 1080 frame, 11 on a 12-megapixel photo).
LINE_SHARE = 0.003
#: Caption height in pixels per pixel of line width (11 px at 2 px, as Pillow's own font).
FONT_PER_LINE = 5.5
#: Captions are at most this share of the image's shorter side high (8 px on a 64-pixel
#: thumbnail, where 11 px captions hid half of it) ...
CAPTION_SHARE = 0.125
#: ... and never smaller than this many pixels (still readable).
CAPTION_FLOOR = 8


def drawing_sizes(height: int, width: int) -> tuple[int, int]:
    """``(line width, caption size)`` in pixels for an image of ``height`` x ``width``: both
    grow with the image, so that boxes and captions stay readable on a phone's photo as on a
    thumbnail (Ultralytics scales its drawings the same way); the caption size is capped at
    :data:`CAPTION_SHARE` of the shorter side, :data:`CAPTION_FLOOR` at least, so that captions
    stay small on a thumbnail."""
    line = max(round((height + width) / 2 * LINE_SHARE), 2)
    cap = round(min(height, width) * CAPTION_SHARE)
    return line, max(min(round(line * FONT_PER_LINE), cap), CAPTION_FLOOR)


def caption_font(size: int) -> Any:
    """Pillow's own font at ``size`` pixels (its fixed 11-pixel bitmap before Pillow 10.1 or
    without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # pragma: no cover - old or FreeType-less Pillow
        return ImageFont.load_default()


def text_colour(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """White on a dark colour, black on a light one."""
    r, g, b = colour
    return (255, 255, 255) if 0.299 * r + 0.587 * g + 0.114 * b < 140 else (0, 0, 0)


def draw_captions(
    canvas: Tensor,
    boxes: Tensor,
    captions: Sequence[str],
    colours: Sequence[tuple[int, int, int]],
    size: int,
    inside: bool = False,
    scores: Sequence[str] | None = None,
) -> Tensor:
    """``canvas`` (``uint8 [3, H, W]``) with each caption (and its entry of ``scores``, the
    score as written, after a space) on a box of its colour at the top-left corner of its box
    (xyxy): above the box where there is room (inside with ``inside``, or at the image's top),
    moved left and down or up to stay on the image. A caption wider than the image loses its
    score, then is cut to fit, ending in "…" (:func:`fitted`); one where not even a character
    and "…" fit is left out (its box is drawn all the same). ``draw_bounding_boxes`` draws
    captions in one font size only, Pillow's 11 pixels, which a large photo shrinks to nothing."""
    picture = Image.fromarray(canvas.permute(1, 2, 0).numpy())
    pen = ImageDraw.Draw(picture)
    font = caption_font(size)
    pad = max(size // 8, 1)
    scores = scores if scores is not None else [""] * len(captions)
    for box, name, score, colour in zip(boxes.tolist(), captions, scores, colours, strict=True):
        found = fitted(pen, font, name, score, picture.width - 2 * pad)
        if found is None:  # not even one character: the box alone
            continue
        text, (left, top, right, bottom) = found
        w, h = right - left + 2 * pad, bottom - top + 2 * pad
        if h > picture.height:
            continue
        x = max(min(box[0], picture.width - w), 0)
        y = box[1] if inside or box[1] < h else box[1] - h
        y = max(min(y, picture.height - h), 0)  # a box reaching past the top or bottom edge
        pen.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
        pen.text((x + pad - left, y + pad - top), text, fill=text_colour(colour), font=font)
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).contiguous()


def fitted(
    pen: ImageDraw.ImageDraw, font: Any, name: str, score: str, width: int
) -> tuple[str, tuple[int, int, int, int]] | None:
    """The longest caption of ``name`` (and ``score``) at most ``width`` pixels wide in
    ``font``, with its ``textbbox``: ``"name score"``, else ``name``, else ``name`` cut and
    ending in "…" ("..." in Pillow's bitmap font, which has no such character); ``None``
    when not even one character and "…" fit."""
    dots = "…" if isinstance(font, ImageFont.FreeTypeFont) else "..."
    cut = [name[:k].rstrip() + dots for k in range(len(name) - 1, 0, -1)]
    for text in [f"{name} {score}" if score else name, name, *cut]:
        bbox = pen.textbbox((0, 0), text, font=font)
        if bbox[2] - bbox[0] <= width:
            return text, bbox
    return None


#: Sasha Trubetskoy's 20 distinct colours: CamVid's 11 and Cityscapes' 19 classes each get
#: their own (with 10, CamVid's sky and bicyclist were one colour).
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
]  # fmt: skip


def colour_of(label: int) -> tuple[int, int, int]:
    """The drawing colour of a class label (the same in every picture)."""
    return PALETTE[int(label) % len(PALETTE)]


def class_colour(label: int, published: Sequence[Sequence[int]] = ()) -> tuple[int, int, int]:
    """The drawing colour of a semantic class: ``published[label]`` (the training data's
    palette), else :func:`colour_of`'s."""
    if label < len(published):
        r, g, b = published[label]
        return int(r), int(g), int(b)
    return colour_of(label)


def fill_masks(
    canvas: Tensor, masks: Tensor, colours: Sequence[tuple[int, int, int]], alpha: float = 0.45
) -> Tensor:
    """``canvas`` (``uint8 [3, H, W]``) with each of ``masks`` (bool ``[N, H, W]``) filled in
    its colour at ``alpha``, one mask over the other: the fill of torchvision's
    ``draw_segmentation_masks``, which first counts every pixel's masks at once in int64
    (9.6 GB for the 100 masks of a 12-megapixel photo at ``--conf 0.05``) and blacks out
    where masks overlap. Here only each mask's pixels are read and written."""
    out = canvas.clone()
    for mask, colour in zip(masks, colours, strict=True):
        if not mask.any():
            continue
        rgb = torch.tensor(colour, dtype=torch.float32)[:, None]
        blended = out[:, mask].float() * (1 - alpha) + rgb * alpha
        out[:, mask] = blended.round().clamp(0, 255).to(out.dtype)
    return out


def draw_predictions(
    image: np.ndarray, prediction: dict[str, Any], legend_all: bool = False
) -> np.ndarray:
    """The image (``H×W×3 uint8``) with every head's predictions drawn on it: semantic masks
    and instance masks filled in class colours, boxes with class names and scores, the image
    class in a frame (captions without scores where ``scores`` is ``None``, as for ground
    truth), and a legend strip below the image for semantic classes (those present;
    with ``legend_all`` every named class, so that all the frames of a video get the same
    size). Every semantic class is painted (CamVid's class 0 is the sky) but one named
    ``"background"`` (label 0 of a semantic family made from instances, VOC's), and pixels
    labelled ``-1`` (ignored ones of the ground truth), each in the colour its result's
    ``colours`` gives (the training data's palette), else in :func:`colour_of`'s. Beside a
    named label map, boxes take the colours after its classes."""
    # a copy: torch warned of a read-only array (np.asarray of a PIL image)
    canvas = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    line, size = drawing_sizes(*canvas.shape[-2:])
    legend: dict[str, tuple[int, int, int]] = {}
    # boxes take the colours after a named label map's classes (a detector's class 0 and
    # CamVid's sky would both be red): the same per model in every picture
    offset = max((len(r.get("names") or ()) for r in prediction.values() if "mask" in r), default=0)
    for result in prediction.values():
        if "mask" in result:  # semantic: label map [H, W]; -1 = not drawn (ignored pixels)
            mask = result["mask"].cpu()
            top = int(mask.max()) if mask.numel() else -1
            names = result.get("names") or [str(c) for c in range(top + 1)]
            painted = [c for c in range(len(names)) if names[c] != BACKGROUND]
            present = [int(c) for c in mask.unique().tolist() if int(c) in painted]
            published = result.get("colours") or ()  # the dataset's palette, class by class
            if present:
                masks = torch.stack([mask == c for c in present])
                colours = [class_colour(c, published) for c in present]
                canvas = fill_masks(canvas, masks, colours)
            shown = painted if legend_all and result.get("names") else present
            legend.update({names[c]: class_colour(c, published) for c in shown})
    for result in prediction.values():
        if "boxes" in result and len(result["boxes"]):
            names = result.get("names") or [str(int(label)) for label in result["labels"]]
            colours = [colour_of(int(label) + offset) for label in result["labels"]]
            if result.get("masks") is not None and len(result["masks"]):
                canvas = fill_masks(canvas, result["masks"].cpu().bool(), colours)
            scores = result.get("scores")  # None: ground truth
            said = None if scores is None else [f"{float(s):.2f}" for s in scores]
            boxes = result["boxes"].float().cpu()
            canvas = draw_bounding_boxes(canvas, boxes, colors=colours, width=line)
            if result.get("keypoints") is not None:  # fcos_keypoints: skeletons
                canvas = draw_skeletons(canvas, result, colour_of, line)
            canvas = draw_captions(canvas, boxes, list(names), colours, size, scores=said)
        elif "label" in result:
            h, w = canvas.shape[-2:]
            name = result.get("name") or str(result["label"])
            scores = result.get("scores")
            said = None if scores is None else [f"{float(scores[result['label']]):.2f}"]
            frame = torch.tensor([[0, 0, w - 1, h - 1]], dtype=torch.float)
            colour = colour_of(result["label"])
            canvas = draw_bounding_boxes(canvas, frame, colors=[colour], width=line)
            canvas = draw_captions(
                canvas, frame + line, [name], [colour], size, inside=True, scores=said
            )
    drawn = canvas.permute(1, 2, 0).numpy()
    # the legend, a strip below the image, hides none of it: its size follows the lines alone
    legend_size = round(line * FONT_PER_LINE)
    return _with_legend(drawn, legend, legend_size) if legend else drawn


def enlarged(
    image: np.ndarray, prediction: dict[str, Any], scale: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """``image`` (``H×W×3``) and ``prediction`` (:func:`draw_predictions`'s) enlarged by a
    whole ``scale``, pixels repeated (nearest): boxes scaled, keypoints about pixel centres,
    masks and label maps repeated; drawn afterwards, a small image's captions are readable
    (drawn first and enlarged, an 8-pixel caption on a 32-pixel image was a blur)."""
    if scale == 1:
        return image, prediction
    big = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)

    def grow(key: str, value: Any) -> Any:
        if key == "boxes" and value is not None:
            return value.float() * scale
        if key == "keypoints" and value is not None and len(value):
            value = value.float().clone()
            value[..., :2] = (value[..., :2] + 0.5) * scale - 0.5
            return value
        if key in ("mask", "masks") and value is not None:
            return value.repeat_interleave(scale, -2).repeat_interleave(scale, -1)
        return value

    return big, {
        head: {key: grow(key, value) for key, value in result.items()}
        for head, result in prediction.items()
    }


def _with_legend(
    image: np.ndarray, legend: dict[str, tuple[int, int, int]], size: int
) -> np.ndarray:
    """``image`` with a strip below it: a coloured square and the name of each class, in
    captions of ``size`` pixels."""
    row, font = size + 3, caption_font(size)
    strip = Image.new("RGB", (image.shape[1], row * len(legend) + 4), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    for i, (name, colour) in enumerate(legend.items()):
        y = 2 + i * row
        draw.rectangle([4, y + 1, 4 + size - 1, y + size], fill=colour)
        draw.text((size + 9, y), name, fill=(255, 255, 255), font=font)
    return np.concatenate([image, np.asarray(strip)], axis=0)
