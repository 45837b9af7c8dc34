"""``visionkit train --config X.yaml [KEY=VALUE ...]``: train from a YAML config and write a run
folder (see :func:`visionkit.engine.runner.train`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from visionkit.cli._shared import is_global_zero
from visionkit.errors import ConfigError

OVERRIDES_HELP = (
    "dotted config overrides, e.g. trainer.max_epochs=3 model.backbone.name=resnet34 "
    "(values are parsed as YAML)"
)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train`` to the subparsers of the ``visionkit`` command."""
    p = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train from a YAML config; writes a run folder (config.yaml,\n"
        "checkpoints/{best,last}.ckpt, metrics.csv, metrics.json, plots/).",
        epilog="example: visionkit train --config configs/quickstart.yaml trainer.max_epochs=3\n"
        "example: visionkit train --resume runs/quickstart/checkpoints/last.ckpt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        help="path to the YAML config (with --resume it may be left out: the run continues "
        "with the config saved in the checkpoint, in the checkpoint's run folder)",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    p.add_argument(
        "--output-dir",
        help="run folder (default: the --resume checkpoint's run folder, else "
        "<output_dir>/<name> from the config)",
    )
    p.add_argument(
        "--resume",
        metavar="CKPT",
        help="continue the run saved in this checkpoint, e.g. runs/x/checkpoints/last.ckpt, "
        "in its run folder runs/x unless --output-dir is given (its own config when --config "
        "is not given; KEY=VALUE overrides of data.* and "
        "trainer.* still apply, e.g. trainer.max_steps=4000 to train longer; the model, "
        "optimizer and scheduler stay the checkpoint's)",
    )
    p.add_argument(
        "--exist-ok",
        action="store_true",
        default=None,
        help="write into the run folder even if it holds another run (its checkpoints and "
        "metrics.json are removed when training starts, its other files replaced); by "
        "default a new run goes to <folder>-2, -3, ...",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (defaults filled in) and exit: a check of the config "
        "(keys, types, heads, backbone name, transforms) that reads no data and builds no "
        "model; 'visionkit check-data --config' checks the data, trainer.fast_dev_run=true "
        "runs one batch",
    )
    p.required_unless = {"config": "resume"}
    return p


def run(args: argparse.Namespace) -> int:
    """What ``visionkit train`` runs; prints the run folder and the final metrics (rank 0)."""
    from visionkit.config import load_config, to_yaml
    from visionkit.engine.run_folder import metrics_json
    from visionkit.engine.runner import train

    config, output_dir = args.config, args.output_dir
    if config is None:  # --resume alone: the run's own config, in the run's own folder
        if args.resume is None or args.resume == "auto":
            raise ConfigError(
                "--config: required (without it, --resume names the checkpoint whose saved "
                "config the run continues with; 'auto' needs the config to find the run folder)",
                options=True,
            )
        config, output_dir = saved_run(args.resume, output_dir)
    if args.print_config:
        print(to_yaml(load_config(config, args.overrides)), end="")
        return 0
    run_dir, metrics = train(
        config,
        args.overrides,
        output_dir=output_dir,
        resume=args.resume,
        exist_ok=args.exist_ok,
    )
    if is_global_zero():
        print(f"run folder: {run_dir}")
        print(metrics_json(metrics))
    return 0


def saved_run(checkpoint: str, output_dir: str | None) -> tuple[dict, str]:
    """The resolved config a checkpoint of ``visionkit train`` carries and the run folder to
    continue in: ``output_dir``, else the checkpoint's own (``runs/x`` for
    ``runs/x/checkpoints/last.ckpt``); a checkpoint outside a run's ``checkpoints/`` folder
    needs ``--output-dir`` (its folder may be any folder, e.g. Downloads)."""
    from visionkit.checkpoint import load_checkpoint
    from visionkit.errors import CheckpointError

    meta = load_checkpoint(checkpoint).get("visionkit") or {}
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(
            checkpoint,
            "it holds no visionkit config (not written by visionkit train): give --config",
        )
    if output_dir is None and Path(checkpoint).parent.name != "checkpoints":
        raise ConfigError(
            f"--resume {checkpoint}: not in a run folder's checkpoints/; give the folder to "
            "continue the run in with --output-dir",
            options=True,
        )
    return meta["config"], output_dir or str(Path(checkpoint).parent.parent)
