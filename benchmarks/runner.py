"""Measuring one case: both models trained and run for inference, timed in alternating
rounds, their FLOPs counted and their peak memory read."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks.cases import BenchmarkCase
from benchmarks.flops import achieved, count_flops, train_step_flops
from benchmarks.harness import PeakRSS, median, paired_ratio, time_alternating


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def run_case(
    case: BenchmarkCase,
    log: Callable[[str], None] = print,
    rss: PeakRSS | None = None,
    peak_flops_per_s: float | Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Measure one case; return its results (see :func:`benchmarks.suite.run_benchmark`
    for the layout). FLOPs are counted once per model and batch after the warm-up, outside
    the timed repetitions; with ``peak_flops_per_s`` each achieved FLOP/s is also given as a
    fraction of the matrix-multiply peak: one FLOP/s for both models, or a mapping of
    precision (``"fp32"``, ``"bf16"``) to FLOP/s, from which each model takes the peak at its
    own precision (:meth:`~BenchmarkCase.precision_of`)."""
    s = case.settings
    rss = rss or PeakRSS()
    torch.manual_seed(s.seed)
    models = {"ours": case.build_ours(), "baseline": case.build_baseline()}
    entries: dict[str, dict[str, Any]] = {}
    peaks: dict[str, float | None] = {}
    for which, model in models.items():
        size = case.size_of(which)
        entries[which] = {
            "model": case.labels[which],
            "params": count_params(model),
            "precision": case.precision_of(which),
            "image_size": None if size is None else list(size),
        }
        peaks[which] = (
            peak_flops_per_s.get(case.precision_of(which))
            if isinstance(peak_flops_per_s, Mapping)
            else peak_flops_per_s
        )
    tag = f"[{case.section}/{case.name}]"

    # Training: forward + loss under autocast, backward and the optimiser step outside it.
    steps, flops = {}, {}
    for which, model in models.items():
        model.train()
        memory_format = case.train_memory_format(which)
        model.to(memory_format=memory_format)
        optimizer = case.make_optimizer(model)
        batch = with_memory_format(case.make_batch(which, case.batch_size), memory_format)

        def forward_loss(which=which, model=model, batch=batch) -> Tensor:
            with case.autocast(which):
                return case.train_loss(which, model, batch)

        def step(model=model, optimizer=optimizer, forward_loss=forward_loss) -> None:
            optimizer.zero_grad(set_to_none=True)
            forward_loss().backward()
            optimizer.step()

        rss.reset()
        entries[which]["rss_start_train_mib"] = rss.current()
        for _ in range(s.warmup):
            step()
        entries[which]["peak_rss_train_mib"] = rss.read()
        flops[which] = {"train_flops": train_step_flops(forward_loss), "infer_flops": {}}
        optimizer.zero_grad(set_to_none=True)
        steps[which] = step
    times = time_alternating(steps, s.reps)
    for which, seconds in times.items():
        rate = case.batch_size / median(seconds)
        entries[which].update(train_step_s=seconds, train_images_per_s=rate)
        log(
            f"{tag} {which:8s} train   batch {case.batch_size}: {median(seconds):.3f} s/step "
            f"-> {rate:.2f} images/s"
        )
    del steps, times
    for model in models.values():
        model.zero_grad(set_to_none=True)
    gc.collect()

    # Inference: eval mode, inference_mode, autocast, post-processing included.
    for which, model in models.items():
        model.eval()
        model.to(memory_format=torch.contiguous_format)
        entries[which].update(infer_ms_per_image={}, infer_s={}, peak_rss_infer_mib=0.0)
    for b in s.infer_batch_sizes:
        calls = {}
        for which, model in models.items():
            batch = case.make_batch(which, b)

            def call(which=which, model=model, batch=batch) -> Any:
                with torch.inference_mode(), case.autocast(which):
                    return case.infer(which, model, batch)

            rss.reset()
            entry = entries[which]
            entry.setdefault("rss_start_infer_mib", rss.current())
            for _ in range(s.warmup):
                predictions = call()
            entry["peak_rss_infer_mib"] = max(entry["peak_rss_infer_mib"], rss.read())
            if b == max(s.infer_batch_sizes):
                entry["outputs_per_image"] = case.outputs_per_image(which, predictions)
            flops[which]["infer_flops"][str(b)] = count_flops(call)
            calls[which] = call
        for which, seconds in time_alternating(calls, s.reps).items():
            ms = 1000.0 * median(seconds) / b
            entries[which]["infer_s"][str(b)] = seconds
            entries[which]["infer_ms_per_image"][str(b)] = ms
            log(f"{tag} {which:8s} infer   batch {b}: {ms:.1f} ms/image")
    del models, calls
    gc.collect()

    for which, entry in entries.items():
        f = flops[which]
        train = achieved(f["train_flops"], median(entry["train_step_s"]), peaks[which])
        f.update(
            train_gflops_per_s=train["gflops_per_s"],
            train_peak_fraction=train.get("peak_fraction"),
            infer_gflops_per_s={},
            infer_peak_fraction={},
        )
        for b, count in f["infer_flops"].items():
            done = achieved(count, median(entry["infer_s"][b]), peaks[which])
            f["infer_gflops_per_s"][b] = done["gflops_per_s"]
            f["infer_peak_fraction"][b] = done.get("peak_fraction")
        entry["flops"] = f
        log(
            f"{tag} {which:8s} flops   train {f['train_flops'] / 1e9:.2f} GFLOP/step, "
            f"{f['train_gflops_per_s']:.1f} GFLOP/s"
            + (
                f" ({100 * f['train_peak_fraction']:.0f} % of the {entry['precision']} peak)"
                if f["train_peak_fraction"] is not None
                else ""
            )
        )

    ours, base = entries["ours"], entries["baseline"]
    # Ratios from the rounds (one ours, one baseline repetition back to back): robust to load
    # that changes during the run. The ratios of the medians are kept beside them.
    ratios = {"train_images_per_s": paired_ratio(base["train_step_s"], ours["train_step_s"])}
    of_medians = {"train_images_per_s": ours["train_images_per_s"] / base["train_images_per_s"]}
    for b in s.infer_batch_sizes:
        key, name = str(b), f"infer_ms_per_image_b{b}"
        ratios[name] = paired_ratio(ours["infer_s"][key], base["infer_s"][key])
        of_medians[name] = ours["infer_ms_per_image"][key] / base["infer_ms_per_image"][key]
    log(
        f"{tag} ours/baseline: train images/s {ratios['train_images_per_s']:.2f}x, "
        + ", ".join(
            f"ms/image b{b} {ratios[f'infer_ms_per_image_b{b}']:.2f}x" for b in s.infer_batch_sizes
        )
    )
    return {
        "case": case.name,
        **case.describe(),
        "batch_size": case.batch_size,
        "ours": ours,
        "baseline": base,
        "ratios": ratios,
        "ratios_of_medians": of_medians,
    }


def with_memory_format(batch: Any, memory_format: torch.memory_format) -> Any:
    """``batch`` with its ``images`` tensor (a dict's, 4-D) in ``memory_format``."""
    images = batch.get("images") if isinstance(batch, dict) else None
    if isinstance(images, Tensor) and images.dim() == 4:
        return {**batch, "images": images.contiguous(memory_format=memory_format)}
    return batch
