"""The keyword arguments of ``lightning.Trainer`` from the ``trainer`` section (Lightning
itself is imported only by :mod:`visionkit.engine`), ``precision: auto`` resolved for the
hardware at hand, TF32 matrix products on CUDA, and ``trainer.compile`` (:func:`compile_model`)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import torch

from visionkit.config import Config
from visionkit.config.schema import LIGHTNING_TRAINER_KEYS

logger = logging.getLogger(__name__)


def trainer_kwargs(cfg: Config, run_dir: str | Path, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of ``lightning.Trainer`` from the ``trainer`` section: every
    Lightning key (:data:`~visionkit.config.schema.LIGHTNING_TRAINER_KEYS`) that is set (not
    ``null``, which leaves Lightning's default), none of visionkit's own keys, with
    ``precision: auto`` resolved and ``default_root_dir`` the run folder; ``overrides`` win."""
    t = cfg.trainer
    args = {k: getattr(t, k) for k in LIGHTNING_TRAINER_KEYS if getattr(t, k) is not None}
    if t.check_val_every_n_epoch is None:  # validate by steps (val_check_interval) only
        args["check_val_every_n_epoch"] = None
    args.update(overrides)  # first: precision auto is resolved for the device the run uses
    if args.get("precision") is not None:
        args["precision"] = resolve_precision(
            args["precision"], args.get("accelerator", "auto"), args.get("devices", "auto")
        )
    return {"default_root_dir": str(run_dir), **args}


def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(
    precision: str, accelerator: str = "auto", devices: int | str | list[int] = "auto"
) -> str:
    """Turn ``"auto"`` into a Lightning precision string; any other value is returned as is.

    ``auto`` picks ``bf16-mixed`` on a CUDA GPU with native bf16 (Ampere and later),
    ``16-mixed`` on an older GPU that would only emulate bf16 (T4, V100), ``bf16-mixed`` on a CPU
    with AVX-512 BF16 or AMX, else ``32-true``. The GPU is the first of ``devices`` that
    Lightning will use for ``accelerator`` (``auto`` / ``gpu`` / ``cuda`` with CUDA present);
    the choice is logged with the device (:func:`run_device`).
    """
    if precision != "auto":
        return precision
    kind, index = run_device(accelerator, devices)
    if kind == "cuda":
        # T4 / V100 only emulate bf16 (slowly): fp16 mixed precision is their fast path.
        native = _native_bf16(index)
        chosen = "bf16-mixed" if native else "16-mixed"
        major, minor = torch.cuda.get_device_capability(index)
        why = (
            f"CUDA GPU {index}, {torch.cuda.get_device_name(index)}, compute capability "
            f"{major}.{minor}: {'native bf16' if native else 'no native bf16'}"
        )
    elif kind == "mps":
        chosen, why = "32-true", "Apple MPS GPU"
    else:
        chosen = "bf16-mixed" if cpu_supports_bf16() else "32-true"
        why = "CPU with AVX-512 BF16/AMX" if chosen != "32-true" else "CPU without native bf16"
        if kind == "none":
            why += f"; trainer.accelerator: {accelerator} but this machine has no GPU"
    _say_precision(chosen, why)
    return chosen


def run_device(accelerator: str, devices: int | str | list[int] = "auto") -> tuple[str, int]:
    """The kind of device a run of ``accelerator`` / ``devices`` uses, as Lightning picks it,
    and (CUDA) the index of its first GPU: ``("cuda", 1)``, ``("mps", 0)``, ``("cpu", 0)``,
    or ``("none", 0)`` for a GPU asked for where there is none (Lightning then refuses)."""
    accelerator = str(accelerator).lower()
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda", _first_gpu(devices)
    if accelerator in ("auto", "gpu", "mps") and torch.backends.mps.is_available():
        return "mps", 0
    return ("none" if accelerator in ("gpu", "cuda", "mps") else "cpu"), 0


def _first_gpu(devices: int | str | list[int]) -> int:
    """The first GPU index of Lightning's ``devices`` (``2`` and ``"auto"``: GPU 0;
    ``[1, 3]`` and ``"1,3"``: GPU 1)."""
    if isinstance(devices, (list, tuple)) and devices:
        return int(devices[0])
    if isinstance(devices, str) and "," in devices:
        first = devices.split(",")[0].strip()
        return int(first) if first.isdigit() else 0
    return 0


def _native_bf16(index: int) -> bool:
    """Whether CUDA GPU ``index`` has native bf16 (torch asks the current device: GPU 0
    unless set)."""
    if index == 0:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    with torch.cuda.device(index):
        return torch.cuda.is_bf16_supported(including_emulation=False)


@functools.cache
def _say_precision(chosen: str, why: str) -> None:
    """Log the choice of ``precision: auto`` once per process (eval resolved it twice)."""
    logger.info("precision: auto -> %s (%s)", chosen, why)


def use_tf32_matmuls() -> None:
    """Let float32 matrix products use the GPU's tensor cores (TF32:
    ``torch.set_float32_matmul_precision("high")``), as Lightning advises on such GPUs;
    PyTorch's cuDNN convolutions do already. Called when training on CUDA; a precision the
    user chose (anything but PyTorch's default ``"highest"``) is kept."""
    if torch.get_float32_matmul_precision() == "highest":
        torch.set_float32_matmul_precision("high")
        logger.info("float32 matrix products use TF32 on the GPU (matmul precision 'high')")


def compile_model(model: Any, options: bool | dict[str, Any]) -> None:
    """``trainer.compile``: ``torch.compile`` the backbone, neck and heads in place
    (``nn.Module.compile``: parameter names and checkpoints are unchanged)."""
    kwargs = options if isinstance(options, dict) else {}
    modules = [model.backbone, *([model.neck] if model.neck is not None else [])]
    modules += list(model.heads.values())
    for module in modules:
        module.compile(**kwargs)
    logger.info("trainer.compile: torch.compile(%s) on backbone, neck and heads", kwargs or "")
