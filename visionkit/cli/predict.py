"""``visionkit predict --checkpoint CKPT --input PATH ... [--output-dir DIR]``: predict on
images and videos; write the drawn images and the predictions (see
:func:`visionkit.inference.predict.predict_files`) into a new folder (:func:`output_folder`)."""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import logging
from collections import Counter
from pathlib import Path

from visionkit.choices import DEFAULT_PREDICT_BATCH_SIZE, ULTRALYTICS_PREDICT_ARGS
from visionkit.cli._shared import (
    add_device_arguments,
    add_tta_argument,
    add_weights_argument,
    key_value_lines,
    ultralytics_argument_lines,
)

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``predict`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "predict",
        help="predict on images; write drawn images, images.json and (box heads) predictions.json",
        description="Predict on image files, folders (recursively), glob patterns, videos "
        "(.mp4, .avi, .mov, .mkv, ...: frame by frame, with OpenCV) and webcams (--input 0), "
        "streamed a batch at a time. Writes, in a new folder (<run>/predict of the "
        "checkpoint's run, or --output-dir; one that holds files is never written into: "
        "DIR-2, DIR-3, ... is taken, as Ultralytics does, unless --exist-ok), "
        "<name>_pred.png (<name>_pred.mp4 for a video) with the predictions drawn (boxes, "
        "masks, a legend of semantic "
        "classes), predictions.json (with a detection, instance or keypoint head: boxes and "
        "instance masks as a COCO results list: xywh, "
        "the training file's category ids, RLE segmentation), images.json (one entry per "
        "image id, i.e. image or video frame: file, frame, size, class name and score of "
        "classifiers, class names and pixel shares of semantic heads), <name>_<head>.png "
        "(the label map of each semantic head) and, with --save-txt, labels/<stem>.txt. "
        "<name> is the input's path relative to the "
        "common folder of the inputs, suffix kept (--input photos/ with photos/a/001.jpg "
        "writes a/001.jpg_pred.png), so two inputs never share an output. Nothing inside "
        "the output folder is read as input, nor, from folders and globs, the label masks "
        "beside their photos (a_mask.png beside a.jpg, as Roboflow exports segmentation). "
        "--conf, --iou, --max-det and --classes apply to the detection heads (drawn images "
        "and files alike); classification and semantic heads are not filtered.",
        epilog="example: visionkit predict --checkpoint runs/quickstart/checkpoints/best.ckpt "
        "--input photos/ 'more/*.png' --conf 0.4 --classes circle --save-txt --device cuda "
        "--half   # writes runs/quickstart/predict, then predict-2, ...",
    )
    p.command_hint = ultralytics_hint
    p.add_argument(
        "--checkpoint",
        required=True,
        help="path to a .ckpt written by train, or to an ONNX export of one (export --format "
        "onnx, without --nms), run by onnxruntime on the CPU",
    )
    p.add_argument(
        "--input",
        required=True,
        nargs="+",
        action=ValuesAction,
        metavar="PATH",
        help="image or video files, folders, glob patterns (quote globs), .txt files listing "
        "those one a line (relative to the current folder, else to the list's), or a webcam "
        "index (0: cv2.VideoCapture(0))",
    )
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        help="folder for the drawn images and json (default <run>/predict, the checkpoint's "
        "run folder); a folder holding files is never written into: DIR-2, DIR-3, ... is taken "
        "instead. Neither DIR nor its DIR-2, DIR-3, ... is read as input, even inside an "
        "input folder",
    )
    p.add_argument(
        "--exist-ok",
        action="store_true",
        help="write into --output-dir even when it holds files (outputs of the same name are "
        "replaced), as Ultralytics' exist_ok",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_PREDICT_BATCH_SIZE,
        help=f"images per forward pass (default {DEFAULT_PREDICT_BATCH_SIZE})",
    )
    p.add_argument(
        "--gallery",
        metavar="DIR",
        default=None,
        help="a folder of known identities (DIR/<name>/<image>): with an embedding head, "
        "images.json gives each image's 5 best matches (name, cosine similarity)",
    )
    p.add_argument(
        "--conf",
        type=float,
        help="minimum score of a detection (default: the score of the head's best F1 on the "
        "validation set, kept in the checkpoint by training, else 0.25 as Ultralytics; it "
        "replaces the head's score_thresh, 0.05 by default, which eval uses for mAP); the "
        "drawn images, predictions.json and the label files hold the same detections",
    )
    p.add_argument(
        "--iou",
        type=float,
        help="IoU threshold of the class-wise NMS (default: the head's nms_thresh: 0.6 for "
        "fcos, 0.5 for retinanet)",
    )
    p.add_argument(
        "--max-det",
        type=int,
        metavar="N",
        help="at most N detections per image (default: the head's detections_per_img, 100)",
    )
    p.add_argument(
        "--classes",
        nargs="+",
        action=ValuesAction,
        metavar="CLASS",
        help="keep only the detections of these classes: 0-based class indices or class "
        "names (--classes 0 2, --classes circle, --classes 0,2)",
    )
    p.add_argument(
        "--imgsz",
        nargs="+",
        action=ValuesAction,
        metavar="SIZE",
        help="inference size: 640 or 480,640 (height,width); the evaluation pipeline's "
        "sizing steps (Resize, LongestMaxSize, PadIfNeeded, ...) use it instead of the "
        "model's evaluation size (data.val_image_size, else data.image_size); boxes are "
        "still given in the original image's pixels",
    )
    add_device_arguments(p)
    add_weights_argument(p)
    p.add_argument(
        "--save-txt",
        action="store_true",
        help="also write labels/<stem>.txt per image with detections (a/001.jpg: "
        "labels/a/001.txt; a video frame: labels/<stem>_<n>.txt, n counted from 1 as "
        "Ultralytics does, its frame in images.json + 1): YOLO lines "
        "'class cx cy w h' normalised to the image, as Ultralytics writes them (an instance "
        "head's mask outlines, 'class x1 y1 x2 y2 ...'; a keypoint head's with 'x y v' per "
        "keypoint, 'x y' when trained on a kpt_shape [K, 2] set); for a classifier its five most probable "
        "classes, 'score name' lines",
    )
    p.add_argument(
        "--save-conf", action="store_true", help="with --save-txt: add the score to each line"
    )
    p.add_argument(
        "--save-crop",
        action="store_true",
        help="also write each detection's box cut out of its image, crops/<class>/<stem>_<k>.jpg "
        "(k: the detection's line in labels/<stem>.txt, from 1), as Ultralytics' save_crop",
    )
    p.add_argument(
        "--save-json",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write images.json and, with a head that predicts boxes, predictions.json (COCO "
        "results) (default: on; --no-save-json skips both)",
    )
    p.add_argument(
        "--no-draw", action="store_true", help="do not write the drawn images and videos"
    )
    p.add_argument(
        "--every",
        type=int,
        default=1,
        metavar="N",
        help="videos and webcams: predict on every N-th frame only (frames 0, N, 2N, ...; "
        "default 1)",
    )
    p.add_argument(
        "--max-frames",
        type=int,
        metavar="N",
        help="videos and webcams: stop after N predicted frames of each (a webcam otherwise "
        "runs until Ctrl-C, which stops cleanly and writes what was predicted)",
    )
    add_tta_argument(p)
    return p


class ValuesAction(argparse.Action):
    """The values of ``--input``, ``--classes`` and ``--imgsz``; an Ultralytics ``KEY=VALUE``
    argument after them (``--input photos conf=0.5``), which the option would take for one of
    its values, is refused as an argument the parser does not know (:func:`ultralytics_hint`
    then gives the command with options): a value whose key is an option here or an
    Ultralytics predict argument and that names no file (:func:`names_no_file`)."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        known = {action.dest for action in parser._actions} | set(ULTRALYTICS_PREDICT_ARGS)
        keyed = [v for v in values if v.partition("=")[0] in known and names_no_file(v)]
        if keyed:
            parser.error(f"unrecognized arguments: {' '.join(keyed)}")
        setattr(namespace, self.dest, values)


def names_no_file(value: str) -> bool:
    """Whether ``value`` (``KEY=VALUE``) is no file or folder and, as a glob pattern, matches
    none: ``model=v2/*.png`` in a folder ``model=v2`` holding PNGs is an input."""
    return (
        "=" in value
        and not Path(value).exists()  # a name glob does not match: a folder 'model=[v2]'
        and not glob.glob(value, recursive=True)
    )


#: Ultralytics' predict keys that take their value in an option of another name here.
RENAMED = {
    "source": "--input",
    "model": "--checkpoint",
    "weights": "--checkpoint",
    "vid_stride": "--every",
    "batch": "--batch-size",
}


def ultralytics_hint(message: str, given: list[str], parser: argparse.ArgumentParser) -> str:
    """What argparse's error on ``yolo predict``'s arguments adds: for ``--vid-stride``,
    ``--show``, ``--line-width``, ... the option to use or why there is none
    (:data:`~visionkit.choices.ULTRALYTICS_PREDICT_ARGS`); for ``KEY=VALUE`` arguments
    (``source=photos conf=0.5``, ``imgsz=[640,480]``: ``--imgsz 640,480``) the command with
    options in their place; ``""`` otherwise."""
    not_offered = {k: v for k, v in ULTRALYTICS_PREDICT_ARGS.items() if k not in RENAMED}
    command = key_value_lines(given, parser, not_offered, RENAMED, {"--imgsz": ","})
    told = {k: v for k, v in ULTRALYTICS_PREDICT_ARGS.items() if k in RENAMED or not command}
    lines = ultralytics_argument_lines(message, told)  # the command's lines tell the rest
    return "".join(f"\n{line}" for line in lines + command)


def output_folder(
    checkpoint: str, output_dir: str | None, exist_ok: bool
) -> tuple[Path, list[Path], Path]:
    """Where a ``visionkit predict`` writes, the earlier output folders that input folders
    never read, and the folder asked for: ``output_dir`` (default ``<run>/predict``,
    :func:`~visionkit.checkpoint.run_folder_of`), or when it holds files the first of
    ``DIR-2``, ``DIR-3``, ... that does not (:func:`~visionkit.checkpoint.unused_folder`),
    unless ``exist_ok``."""
    from visionkit.checkpoint import holds_files, numbered_folders, run_folder_of, unused_folder

    asked = Path(output_dir) if output_dir else run_folder_of(checkpoint) / "predict"
    chosen = asked if exist_ok else unused_folder(asked, holds_files)
    return chosen, [f for f in numbered_folders(asked) if f != chosen], asked


def run(args: argparse.Namespace) -> int:
    """What ``visionkit predict`` runs; prints the path of predictions.json (images.json
    without box heads, the output folder with --no-save-json)."""
    from visionkit.inference.predict import predict_files

    folder, earlier, asked = output_folder(args.checkpoint, args.output_dir, args.exist_ok)
    before = file_states(folder)
    path = predict_files(
        args.checkpoint,
        args.input,
        folder,
        batch_size=args.batch_size,
        draw=not args.no_draw,
        every=args.every,
        tta=args.tta,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        classes=args.classes,
        imgsz=args.imgsz,
        device=args.device,
        half=args.half,
        bf16=args.bf16,
        save_json=args.save_json,
        save_txt=args.save_txt,
        save_conf=args.save_conf,
        save_crop=args.save_crop,
        max_frames=args.max_frames,
        weights=args.weights,
        gallery=args.gallery,
        exclude=earlier,
    )
    if folder != asked:  # said once it is done, as the path printed below (not before errors)
        logger.warning(
            "%s holds the files of an earlier run; wrote to %s instead (--exist-ok writes into %s)",
            asked,
            folder,
            asked,
        )
    for line in class_lines(folder) if args.save_json else ():
        print(line)
    print(f"wrote {path}")
    written = files_written(folder, before)
    if written:
        print(f"{folder}: {written}")
    return 0


#: Up to this many images, ``predict`` prints what each one holds (the tallies only beyond).
CLASS_LINES_MAX = 20


def class_lines(folder: Path) -> list[str]:
    """What ``predict`` found, for the terminal, from ``images.json`` (and
    ``predictions.json``): per image (up to :data:`CLASS_LINES_MAX` images) the class and
    score of each image-level head, the detections of each box head counted by class (``det
    2 raccoon, 1 dog``; none: ``det none``) and the three largest classes of each label map
    (``seg road 41%, sky 22%, car 9%``); then each image-level and box head's tally, most
    frequent first (``cls: street 12, raccoon 3``; ``det: raccoon 14 in 9 of 12 images``)."""
    if not (folder / "images.json").is_file():
        return []
    records = json.loads((folder / "images.json").read_text(encoding="utf-8"))
    first = records[0] if records else {}
    heads = [k for k, v in first.items() if isinstance(v, dict) and "score" in v]
    maps = [k for k, v in first.items() if isinstance(v, dict) and "pixels" in v]
    boxes: dict[str, dict[int, Counter]] = {}
    entries = []
    if (folder / "predictions.json").is_file():
        entries = json.loads((folder / "predictions.json").read_text(encoding="utf-8"))
    for entry in entries:
        label = str(entry.get("name") or entry["category_id"])
        boxes.setdefault(entry["head"], {}).setdefault(entry["image_id"], Counter())[label] += 1
    box_heads = sorted(boxes)

    def name(found: dict) -> str:
        return str(found["name"] if found.get("name") is not None else found["label"])

    def counted(found: Counter) -> str:
        return ", ".join(f"{c} {n}" for n, c in found.most_common()) or "none"

    lines = []
    if (heads or box_heads or maps) and len(records) <= CLASS_LINES_MAX:
        for record in records:
            found = [
                f"{h} {name(record[h])} {record[h]['score']:.2f}" for h in heads if h in record
            ]
            found += [f"{h} {counted(boxes[h].get(record['id'], Counter()))}" for h in box_heads]
            for h in (h for h in maps if h in record):
                top = list(record[h]["pixels"].items())[:3]
                found.append(f"{h} " + ", ".join(f"{n} {share:.0%}" for n, share in top))
            frame = f" frame {record['frame']}" if "frame" in record else ""
            lines.append(f"{record['file_name']}{frame}: {'; '.join(found)}")
    for head in heads:
        tally = Counter(name(r[head]) for r in records if head in r)
        lines.append(f"{head}: " + ", ".join(f"{n} {c}" for n, c in tally.most_common()))
    for head in box_heads:
        total = sum(boxes[head].values(), Counter())
        seen = {n: sum(1 for c in boxes[head].values() if c[n]) for n in total}
        shown = ", ".join(
            f"{n} {c} in {seen[n]} of {len(records)} images" for n, c in total.most_common()
        )
        lines.append(f"{head}: {shown}")
    if (folder / "predictions.json").is_file() and not entries:
        lines.append("no detections (at --conf)")
    return lines


#: What ``predict`` writes, by pattern of the path inside the output folder (``*`` crosses
#: sub-folders: ``labels/*.txt`` counts ``labels/a/001.txt`` too), and how it is said.
OUTPUT_KINDS = (
    ("*_pred.png", "drawn image"),
    ("*_pred.mp4", "drawn video"),
    ("labels/*.txt", "YOLO label file"),
    ("crops/*.jpg", "crop"),
    ("*.npy", "embedding file"),
)


def file_states(folder: Path) -> dict[Path, tuple[int, int]]:
    """``path → (mtime_ns, size)`` of every file under ``folder`` (none when it is new)."""
    states = {}
    for path in folder.rglob("*") if folder.is_dir() else ():
        if path.is_file():
            stat = path.stat()
            states[path] = (stat.st_mtime_ns, stat.st_size)
    return states


def files_written(folder: Path, before: dict[Path, tuple[int, int]]) -> str:
    """What this run wrote into ``folder``: the files that are new or changed since the
    ``before`` of :func:`file_states`, counted by kind: ``"3 drawn images (*_pred.png), 3
    label maps (*_<head>.png), images.json, predictions.json"``; ``""`` when nothing."""
    fresh = {p for p, state in file_states(folder).items() if before.get(p) != state}
    said, counted = [], set()
    for pattern, kind in OUTPUT_KINDS:
        found = {p for p in fresh if fnmatch.fnmatchcase(p.relative_to(folder).as_posix(), pattern)}
        found -= counted
        counted |= found
        if found:
            said.append(f"{len(found)} {kind}{'s' if len(found) > 1 else ''} ({pattern})")
    maps = {p for p in fresh - counted if p.suffix == ".png"}
    if maps:
        said.append(f"{len(maps)} label map{'s' if len(maps) > 1 else ''} (*_<head>.png)")
    said += sorted(p.name for p in fresh - counted - maps if p.suffix == ".json")
    return ", ".join(said)
