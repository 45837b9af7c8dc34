"""``visionkit predict --checkpoint CKPT --input PATH ... --output-dir DIR``: predict on images
and videos; write the drawn images and the predictions (see
:func:`visionkit.inference.predict.predict_files`)."""

from __future__ import annotations

import argparse

from visionkit.inference.predict import predict_files


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``predict`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "predict",
        help="predict on images; write drawn images and predictions.json",
        description="Predict on image files, folders (recursively), glob patterns and videos "
        "(.mp4, .avi, .mov, .mkv, ...: frame by frame, with OpenCV). Writes "
        "<name>_pred.png (<name>_pred.mp4 for a video) with the predictions drawn (boxes, "
        "masks, a legend of semantic "
        "classes), predictions.json (boxes and instance masks as a COCO results list: xywh, "
        "the training file's category ids, RLE segmentation), images.json (one entry per "
        "image id, i.e. image or video frame: file, frame, size, class name and score of "
        "classifiers) and <name>_<head>.png "
        "(the label map of each semantic head). <name> is the input's path relative to the "
        "common folder of the inputs, suffix kept (--input photos/ with photos/a/001.jpg "
        "writes a/001.jpg_pred.png), so two inputs never share an output. Nothing inside "
        "the output folder is read as input.",
        epilog="example: visionkit predict --checkpoint runs/quickstart/checkpoints/best.ckpt "
        "--input photos/ 'more/*.png' --output-dir preds/",
    )
    p.add_argument("--checkpoint", required=True, help="path to a .ckpt written by train")
    p.add_argument(
        "--input",
        required=True,
        nargs="+",
        metavar="PATH",
        help="image or video files, folders or glob patterns (quote globs)",
    )
    p.add_argument(
        "--output-dir",
        required=True,
        help="folder for the drawn images and json (never read as input, even when inside "
        "an input folder)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument(
        "--no-draw", action="store_true", help="write the json files and label maps only"
    )
    p.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="N",
        help="videos: predict on every N-th frame only (frames 0, N, 2N, ...; default 1)",
    )
    p.add_argument(
        "--tta",
        choices=["flip"],
        help="test-time augmentation: 'flip' also runs the mirrored image and merges both "
        "(averaged class probabilities and label maps; boxes merged by NMS)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """What ``visionkit predict`` runs; prints the path of predictions.json."""
    path = predict_files(
        args.checkpoint,
        args.input,
        args.output_dir,
        batch_size=args.batch_size,
        draw=not args.no_draw,
        every=args.every,
        tta=args.tta,
    )
    print(f"wrote {path}")
    return 0
