"""``visionkit convert --from voc|yolo|labelme --to coco SRC DST``: write a COCO json for a VOC,
YOLO or LabelMe folder (see :mod:`visionkit.data.convert.to_coco`)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Convert a Pascal VOC, YOLO or LabelMe dataset folder to one COCO json file. SRC is only read; DST is a
new .json file (an existing file inside SRC is never replaced). file_name entries are relative
to SRC (to its dataset folder for a data.yaml), and the command prints the dataset entry that
reads the json, e.g. data.train='{format: coco, images: SRC, annotations: DST}'.

VOC:  SRC/Annotations/*.xml + SRC/JPEGImages/ (or annotations/ + images/), optional
      SRC/ImageSets/Main/<split>.txt.
      Boxes: 1-based inclusive [xmin, ymin, xmax, ymax] -> bbox [xmin-1, ymin-1, w, h].
      difficult objects are kept with iscrowd 1 (ignored by COCO evaluation and training).
YOLO: SRC/images/ and SRC/labels/ (same relative paths, .txt labels), class names in
      SRC/classes.txt or SRC/data.yaml; or SRC is an Ultralytics data.yaml and --split
      names its entry (file_name entries are then relative to its dataset folder, path:,
      and the command prints the dataset entry to read the json with);
      lines "class cx cy w h" (box) or
      "class x1 y1 x2 y2 x3 y3 ..." (polygon), normalised to [0, 1]; class k -> category id k+1.
      Images without a label file are kept as negatives.
LabelMe: one LabelMe .json file per image, anywhere below SRC (imagePath relative to it);
      optional SRC/splits/<split>.txt (one json file per line, as visionkit split writes).
      polygon, rectangle, circle and mask shapes are objects (shapes of one label and
      group_id are one instance); point, line and linestrip shapes are left out, counted.
      __ignore__ shapes are ignore regions: written as a crowd (iscrowd 1) of every class.
      Classes: the sorted labels (or --classes).
"""

EPILOG = """\
example: visionkit convert --from voc --to coco --split train data/VOC2007 data/voc_train.json
example: visionkit convert --from yolo --to coco --split val data/my_yolo data/my_yolo_val.json
example: visionkit convert --from yolo --classes names.txt data/my_yolo out/all.json
example: visionkit convert --from yolo --split val datasets/coco8.yaml out/coco8_val.json
example: visionkit convert --from labelme photos photos_all.json
"""


def run(args: argparse.Namespace) -> int:
    """What ``visionkit convert`` runs; prints the conversion report."""
    from visionkit.data.convert.to_coco import convert

    report = convert(
        args.src,
        args.dst,
        args.source_format,
        args.target_format,
        split=args.split,
        classes=args.classes,
        overwrite=args.overwrite,
    )
    print(report.summary())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``convert`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "convert",
        help="convert a Pascal VOC, YOLO or LabelMe folder to a COCO json file",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--from",
        dest="source_format",
        required=True,
        choices=["voc", "yolo", "labelme"],
        help="layout of SRC: voc (Annotations/ + JPEGImages/, or annotations/ + images/), "
        "yolo (images/ + labels/, or a data.yaml) or labelme (a LabelMe json file per image)",
    )
    p.add_argument(
        "--to",
        dest="target_format",
        default="coco",
        choices=["coco"],
        help="output format (default coco)",
    )
    p.add_argument(
        "src", metavar="SRC", help="the dataset folder, or an Ultralytics data.yaml (only read)"
    )
    p.add_argument("dst", metavar="DST", help="the COCO .json file to write, e.g. SRC/train.json")
    p.add_argument(
        "--split",
        metavar="NAME",
        help="VOC: the ids in ImageSets/Main/NAME.txt; YOLO: images/NAME and labels/NAME, "
        "or a data.yaml's entry NAME (train, val, test; required there); LabelMe: the json "
        "files in splits/NAME.txt (default: every XML file / every image / every json file)",
    )
    p.add_argument(
        "--classes",
        metavar="FILE",
        help="class names, one per line (or a YAML file with names:), in category order "
        "(default VOC: sorted names found in the XML; YOLO: SRC/classes.txt or SRC/data.yaml; "
        "LabelMe: sorted labels of the objects)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DST if it exists (never a file inside SRC)",
    )
    return p
