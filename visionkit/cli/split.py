"""``visionkit split SRC [--val F] [--test F] [--seed N] [--overwrite]``: split a VOC folder,
a YOLO folder, a mask folder, a LabelMe folder, a folder of class folders, a CSV or a COCO json at
random into train / val (/ test) files its reader takes (see :mod:`visionkit.data.split`)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Split a dataset as it was published into train / val (/ test) at random, writing the files
visionkit's readers already take. SRC's images and labels are only read; existing split files
are kept unless --overwrite is given. The same --seed gives the same split on any machine.

VOC folder (Annotations/ + JPEGImages/, annotations/ + images/, or --annotations/--images):
      writes SRC/ImageSets/Main/train.txt, val.txt (test.txt), one XML stem per line:
      data.train='{format: voc, root: SRC, split: train}', data.val: split: val.
YOLO folder (images/ + labels/, names in classes.txt or data.yaml): writes Ultralytics'
      SRC/autosplit_train.txt, autosplit_val.txt (autosplit_test.txt), one ./images/... path
      per line, and SRC/autosplit.yaml naming them and the classes:
      data.train='{format: yolo, root: SRC/autosplit.yaml, split: train}'.
Mask folder (images/ + masks/, or --images/--masks): writes SRC/splits/train.txt, val.txt
      (test.txt), one image path (relative to the images folder) per line:
      data.train='{format: mask_folder, root: SRC, split: train}'.
LabelMe folder (a LabelMe .json file per image, anywhere below SRC): writes
      SRC/splits/train.txt, val.txt (test.txt), one json file (relative to SRC) per line:
      data.train='{format: labelme, root: SRC, split: train, class_names: [...]}', the
      labels of every json file (printed) in class_names, so that every split numbers them
      alike.
Class folders (SRC/<class>/<image>, for classification): writes SRC/splits/train.txt,
      val.txt (test.txt), one <class>/<image> per line, each class split alike:
      data.train='{format: folder, root: SRC, split: train}'.
CSV of (image, label) rows (what format: csv reads; the label in --label-column, else the
      header's one label column, e.g. label or diagnosis, else the first other than the
      images', named in the summary): writes <stem>_train.csv,
      <stem>_val.csv (<stem>_test.csv; .tsv for a .tsv) beside it, each label split alike,
      with the source's header and delimiter: data.train='{format: csv, csv: SRC_train.csv}'
      (--images: the folder of its images, when not the CSV's).
COCO json: writes <stem>_train.json, <stem>_val.json (<stem>_test.json) beside it, each with
      its images, their annotations and every category: data.train.annotations=...
"""

EPILOG = """\
example: visionkit split data/raccoon --val 0.2
example: visionkit split data/raccoon --val 0.15 --test 0.15 --seed 1
example: visionkit split data/my_yolo --val 0.2
example: visionkit split data/my_masks --val 0.2
example: visionkit split data/streets --images photos --masks labels --val 0.2
example: visionkit split data/my_coco/annotations.json --val 0.2
example: visionkit split data/pets --val 0.2
example: visionkit split data/leaves/train.csv --images data/leaves/train_images --val 0.2
example: visionkit split data/skin/train.csv --image-column image_name --label-column diagnosis
example: visionkit split photos --val 0.2   # LabelMe json files beside the photos
"""


def run(args: argparse.Namespace) -> int:
    """What ``visionkit split`` runs; prints the files written and how to use them."""
    from visionkit.data.split import split_dataset

    report = split_dataset(
        args.src,
        val=args.val,
        test=args.test,
        seed=args.seed,
        overwrite=args.overwrite,
        annotations=args.annotations,
        images=args.images,
        masks=args.masks,
        image_column=args.image_column,
        label_column=args.label_column,
    )
    print(report.summary())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``split`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "split",
        help="split a VOC, YOLO, mask, LabelMe or class folder, a CSV or a COCO json into train / "
        "val (/ test) at random",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "src",
        metavar="SRC",
        help="the VOC, YOLO, mask or LabelMe folder, the folder of class folders "
        "(<class>/<image>), the .csv of (image, label) rows, or the COCO .json file",
    )
    p.add_argument(
        "--val",
        type=float,
        default=0.2,
        metavar="F",
        help="fraction of the images for val (default 0.2)",
    )
    p.add_argument(
        "--test",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of the images for test (default 0: no test split)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default 0)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace split files that exist (default: refuse, naming them)",
    )
    p.add_argument(
        "--annotations",
        metavar="DIR",
        help="VOC: the XML sub-folder, when not Annotations/ or annotations/",
    )
    p.add_argument(
        "--images",
        metavar="DIR",
        help="VOC or mask folder: the image sub-folder, when not JPEGImages/ or images/; CSV: "
        "the folder of its images, when not the CSV's",
    )
    p.add_argument(
        "--masks",
        metavar="DIR",
        help="mask folder: the label sub-folder, when not masks/ (naming it splits SRC as a "
        "mask folder)",
    )
    p.add_argument(
        "--image-column",
        metavar="COL",
        help="CSV: the column of the images, a header name or a 0-based index (default: the "
        "header's image column, such as image or filename, else the first)",
    )
    p.add_argument(
        "--label-column",
        metavar="COL",
        help="CSV: the column of the labels, which each split holds in the same proportions, "
        "a header name or a 0-based index (default: the header's label column, such as label "
        "or diagnosis, else the first column that is not the images'; the summary names it)",
    )
    return p
