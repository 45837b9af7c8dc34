"""``visionkit make-shapes OUT``: write the deterministic synthetic shapes dataset in COCO
format (see :func:`visionkit.data.synthetic.make_shapes`)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``make-shapes`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "make-shapes",
        help="write the synthetic shapes dataset (COCO format)",
        description="Write a deterministic synthetic dataset: OUT/images/*.png and "
        "OUT/annotations.json (boxes, masks, and an image-level 'background' class).",
        epilog="example: visionkit make-shapes data/my_shapes --num-images 500 --size 128",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--num-images", type=int, default=200, help="number of images (default 200)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed; same seed, same files (default 0)"
    )
    p.add_argument("--min-shapes", type=int, default=1, help="fewest shapes per image (default 1)")
    p.add_argument("--max-shapes", type=int, default=4, help="most shapes per image (default 4)")
    p.add_argument(
        "--keypoints",
        action="store_true",
        help="give every shape COCO keypoints: centre, left, top, right, bottom",
    )
    p.add_argument(
        "--identities",
        type=int,
        default=None,
        metavar="N",
        help="write an ImageFolder of N identities instead (OUT/style_NNNN/*.png: one shape "
        "style each, for the embedding head; --num-images in all)",
    )
    p.add_argument(
        "--first-identity",
        type=int,
        default=0,
        help="with --identities: number of the first style; give a validation set styles "
        "never seen in training by starting after the training set's (default 0)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    """What ``visionkit make-shapes`` runs; exit 2 on invalid sizes or counts."""
    from visionkit.data.synthetic import make_shapes
    from visionkit.data.synthetic_identities import make_identities

    try:
        if args.identities is not None:
            path = make_identities(
                args.out,
                num_images=args.num_images,
                size=args.size,
                seed=args.seed,
                identities=args.identities,
                first_identity=args.first_identity,
                progress=True,
            )
            print(f"wrote {path}")
            return 0
        path = make_shapes(
            args.out,
            num_images=args.num_images,
            size=args.size,
            seed=args.seed,
            min_shapes=args.min_shapes,
            max_shapes=args.max_shapes,
            progress=True,
            keypoints=args.keypoints,
        )
    except ValueError as err:
        print(f"error: make-shapes: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
