"""``visionkit train --config X.yaml [KEY=VALUE ...]``: train from a YAML config and write a run
folder (see :func:`visionkit.engine.runner.train`)."""

from __future__ import annotations

import argparse

from visionkit.cli._shared import is_global_zero

OVERRIDES_HELP = (
    "dotted config overrides, e.g. trainer.max_epochs=3 model.backbone.name=resnet34 "
    "(values are parsed as YAML)"
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train from a YAML config; writes a run folder "
        "(config.yaml, checkpoints/{best,last}.ckpt, metrics.csv, metrics.json, plots/).",
        epilog="example: visionkit train --config configs/quickstart.yaml trainer.max_epochs=3",
    )
    p.add_argument("--config", required=True, help="path to the YAML config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    p.add_argument("--output-dir", help="run folder (default: <output_dir>/<name> from the config)")
    p.add_argument("--resume", metavar="CKPT", help="continue the run saved in this checkpoint")
    p.add_argument(
        "--exist-ok",
        action="store_true",
        default=None,
        help="write into the run folder even if it holds another run (its checkpoints and "
        "metrics are replaced); by default a new run goes to <folder>-2, -3, ...",
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved, validated config and exit"
    )
    return p


def run(args: argparse.Namespace) -> int:
    """What ``visionkit train`` runs; prints the run folder and the final metrics (rank 0)."""
    from visionkit.config import load_config, to_yaml
    from visionkit.engine.runner import metrics_json, train

    if args.print_config:
        print(to_yaml(load_config(args.config, args.overrides)), end="")
        return 0
    run_dir, metrics = train(
        args.config,
        args.overrides,
        output_dir=args.output_dir,
        resume=args.resume,
        exist_ok=args.exist_ok,
    )
    if is_global_zero():
        print(f"run folder: {run_dir}")
        print(metrics_json(metrics))
    return 0
