"""Training throughput of one process against DDP on the same CPU cores.

``python tools/bench_ddp.py``: the model of a recipe (default ``configs/shapes/fcos_r18.yaml``
at its image size) takes optimiser steps on one fixed batch of shapes images (real boxes,
masks and label maps, no data loading in the timed loop), first in 1 process with
``--threads`` torch threads, then in ``--processes`` DDP processes (gloo, as Lightning's
``ddp`` strategy on CPU) with ``threads / processes`` threads each and the batch split between
them, so both use the same cores on the same total batch. A step is forward, loss, backward
(DDP all-reduces the gradients during it) and the optimiser step, in the precision the recipe
resolves to. Each setting runs ``--warmup`` untimed steps, then ``--reps`` timed repetitions
of ``--steps`` steps (between barriers); a figure is the median repetition. The settings
alternate for ``--rounds`` rounds, so drift in the machine's load hits both. Prints a table
and writes every repetition to ``--output-json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from visionkit.build import build_dataset, targets_needed
from visionkit.build.model import create_model
from visionkit.build.trainer import resolve_precision
from visionkit.config import load_config
from visionkit.data.batch import collate
from visionkit.data.datasets import TransformedDataset
from visionkit.data.image_size import pipeline_steps
from visionkit.data.synthetic import make_shapes
from visionkit.data.transforms import build_pipeline

DEFAULT_RECIPE = "configs/shapes/fcos_r18.yaml"


def build(recipe: str, overrides: Sequence[str], data_dir: Path, total_batch: int):
    """The recipe's model, optimiser settings, precision and one collated batch of
    ``total_batch`` shapes images at the recipe's image size."""
    cfg = load_config(recipe, overrides)
    size = cfg.data.image_size
    side = size if isinstance(size, int) else max(size)
    if not (data_dir / "annotations.json").is_file():
        make_shapes(data_dir, num_images=total_batch, size=side, seed=0)
    dataset = build_dataset({"format": "coco", "images": str(data_dir)}, needs=targets_needed(cfg))
    model = create_model(cfg, label_names=dataset.label_names)
    steps = pipeline_steps(cfg.data, train=False)
    pipeline = build_pipeline(steps, model.backbone.mean, model.backbone.std)
    samples = TransformedDataset(dataset, pipeline)
    batch = collate([samples[i] for i in range(total_batch)])
    precision = resolve_precision(cfg.trainer.precision, "cpu")
    return cfg, model, batch, precision


def shard(batch: dict[str, Any], rank: int, world: int) -> dict[str, Any]:
    """Rank ``rank``'s contiguous share of a collated batch (tensors and per-image lists)."""
    n = len(batch["images"])
    per = n // world
    lo, hi = rank * per, (rank + 1) * per
    return {k: (v[lo:hi] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()}


def _worker(rank: int, world: int, args: dict[str, Any], out: str) -> None:
    torch.set_num_threads(args["threads"] // world)
    dist.init_process_group(
        "gloo", init_method=f"file://{args['init_file']}", rank=rank, world_size=world
    )
    try:
        torch.manual_seed(0)
        cfg, model, batch, precision = build(
            args["recipe"], args["overrides"], Path(args["data_dir"]), args["batch"]
        )
        batch = shard(batch, rank, world)
        model.train()
        net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optimizer.lr)
        bf16 = precision.startswith("bf16")

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                outputs = net(batch["images"])
                loss = model.loss(outputs, batch)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for _ in range(args["warmup"]):
            step()
        times = []
        for _ in range(args["reps"]):
            dist.barrier()
            start = time.perf_counter()
            for _ in range(args["steps"]):
                step()
            dist.barrier()
            times.append(time.perf_counter() - start)
        if rank == 0:
            Path(out).write_text(json.dumps({"times": times, "precision": precision}))
    finally:
        dist.destroy_process_group()


def run_setting(world: int, args: dict[str, Any], work: Path) -> dict[str, Any]:
    """One setting in fresh processes; returns its repetition times (seconds)."""
    out = work / f"result_{world}_{time.monotonic_ns()}.json"
    init = work / f"init_{world}_{time.monotonic_ns()}"
    mp.start_processes(
        _worker,
        args=(world, {**args, "init_file": str(init)}, str(out)),
        nprocs=world,
        join=True,
        start_method="spawn",
    )
    return json.loads(out.read_text())


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        # PASSIVE: idle OpenMP threads sleep instead of spinning; spinning threads of a
        # multi-threaded process collapse its speed when other programs share the cores
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/bench_ddp.py",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help=f"default {DEFAULT_RECIPE}")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--batch", type=int, default=16, help="total batch (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in all (default 2)")
    parser.add_argument("--processes", type=int, default=2, help="DDP processes (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="steps per repetition (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (default 2)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per round (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="alternations (default 2)")
    parser.add_argument("--output-json", help="write machine info and every repetition here")
    args = parser.parse_args(argv)
    if args.batch % args.processes or args.threads % args.processes:
        parser.error("--batch and --threads must be divisible by --processes")

    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    info = machine()
    settings = {1: f"1 process × {args.threads} threads, batch {args.batch}"}
    settings[args.processes] = (
        f"{args.processes} DDP processes (gloo) × {args.threads // args.processes} thread, "
        f"batch {args.processes} × {args.batch // args.processes}"
    )
    times: dict[int, list[float]] = {w: [] for w in settings}
    precision = ""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shared = {
            "recipe": args.recipe,
            "overrides": list(args.overrides),
            "data_dir": str(work / "data"),
            "batch": args.batch,
            "threads": args.threads,
            "steps": args.steps,
            "warmup": args.warmup,
            "reps": args.reps,
        }
        build(args.recipe, args.overrides, work / "data", args.batch)  # data made once
        for round_index in range(args.rounds):
            for world in settings:
                result = run_setting(world, shared, work)
                precision = result["precision"]
                times[world] += result["times"]
                rate = args.batch * args.steps / statistics.median(result["times"])
                print(
                    f"round {round_index + 1}: {settings[world]}: {rate:.2f} images/s", flush=True
                )
    info["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rates = {w: args.batch * args.steps / statistics.median(t) for w, t in times.items()}
    ratio = rates[args.processes] / rates[1]
    report = {
        "started": started,
        "machine": info,
        "recipe": args.recipe,
        "overrides": list(args.overrides),
        "precision": precision,
        "batch": args.batch,
        "threads": args.threads,
        "processes": args.processes,
        "steps": args.steps,
        "warmup": args.warmup,
        "reps": args.reps,
        "rounds": args.rounds,
        "settings": {str(w): settings[w] for w in settings},
        "rep_seconds": {str(w): t for w, t in times.items()},
        "images_per_s": {str(w): r for w, r in rates.items()},
        "ratio": ratio,
    }
    print(f"\n| setting | images/s (median of {len(times[1])} repetitions) |")
    print("| --- | ---: |")
    for world in settings:
        print(f"| {settings[world]} | {rates[world]:.2f} |")
    print(f"| **{args.processes} processes / 1 process** | **{ratio:.2f}×** |")
    print(
        f"\n{started}, {info['cpu']}, {info['usable_cores']} usable cores, torch {info['torch']}, "
        f"{precision}, OMP_WAIT_POLICY={info['OMP_WAIT_POLICY'] or 'unset'}; 1-min load average "
        f"{info['load_average']:.1f} at the start, {info['load_average_end']:.1f} at the end"
    )
    if args.output_json:
        Path(args.output_json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
