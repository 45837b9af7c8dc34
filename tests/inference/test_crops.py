"""``--save-crop``'s files: a box's pixels clipped to the image, none for a box outside it,
and names that never collide (a video's frames beside an image named like one)."""

import numpy as np
import torch
from PIL import Image

from visionkit.inference.crops import save_crops
from visionkit.inference.outputs import label_stems


def boxes(*xyxy: list[float]) -> dict:
    n = len(xyxy)
    return {"det": {"boxes": torch.tensor(xyxy), "labels": torch.zeros(n, dtype=torch.long),
                    "names": ["car"] * n}}  # fmt: skip


def test_a_crop_is_clipped_to_the_image_and_a_box_outside_it_writes_none(tmp_path):
    image = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
    pred = boxes([-5.0, -6.0, 10.0, 10.0], [70.0, 5.0, 80.0, 10.0], [50.0, 30.0, 70.0, 50.0])
    written = save_crops(image, pred, tmp_path, "a")
    assert [p.name for p in written] == ["a_1.jpg", "a_3.jpg"]  # k: its place, 2 skipped
    assert Image.open(written[0]).size == (10, 10)  # x 0..10, y 0..10
    assert Image.open(written[1]).size == (10, 10)  # x 50..60, y 30..40


def test_a_videos_frame_crops_and_labels_never_take_an_images_name(tmp_path):
    """Frame 0 of clip.mp4 (numbered 1, as Ultralytics) and the image clip_1.png both wrote
    crops/car/clip_1_1.jpg (and labels/clip_1.txt)."""
    stems = label_stems(["clip.mp4", "clip_1.png", "a.jpg", "b.mp4", "b_x.png"])
    assert stems == {"clip.mp4": "clip.mp4", "clip_1.png": "clip_1", "a.jpg": "a",
                     "b.mp4": "b", "b_x.png": "b_x"}  # fmt: skip
    image = np.zeros((20, 20, 3), np.uint8)
    pred = boxes([0.0, 0.0, 10.0, 10.0])
    frame = save_crops(image, pred, tmp_path, stems["clip.mp4"], frame=0)
    still = save_crops(image, pred, tmp_path, stems["clip_1.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in frame + still] == [
        "car/clip.mp4_1_1.jpg",
        "car/clip_1_1.jpg",
    ]
