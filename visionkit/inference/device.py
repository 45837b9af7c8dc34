"""Where inference runs and in which precision: ``--device`` and ``--half`` / ``--bf16`` of
``visionkit predict`` and ``visionkit eval`` (the options:
:func:`visionkit.cli._shared.add_device_arguments`).

``--device`` takes ``auto`` (the first CUDA GPU when there is one, else the CPU; as
Ultralytics picks), ``cpu``, ``cuda``, ``cuda:N``, ``N`` (CUDA GPU N) or ``mps``. A device
that is not there is a :class:`~visionkit.errors.ConfigError` naming what is. ``--half``
(float16) and ``--bf16`` (bfloat16) run the model under ``torch.autocast``, so the weights
stay float32 and the heads decode in float32; each is refused where the device lacks it
(float16 on the CPU; bfloat16 on a GPU that only emulates it, or on MPS).

>>> resolve_device("cpu")
device(type='cpu')
>>> autocast_dtype(torch.device("cpu"), bf16=True)
torch.bfloat16
>>> lightning_device(torch.device("cpu"))
{'accelerator': 'cpu', 'devices': 1, 'num_nodes': 1, 'strategy': 'auto'}
"""

from __future__ import annotations

import torch

from visionkit.errors import ConfigError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` that ``spec`` names (see the module docstring).

    Raises:
        ConfigError: an unknown name, or a device that this machine does not have.
    """
    if isinstance(spec, torch.device):
        return spec
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if text.isdigit():
        text = f"cuda:{text}"
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not (torch.backends.mps.is_available()):
            raise ConfigError(
                "device (--device) mps: Apple's MPS backend is not available on this machine "
                f"({_available()})"
            )
        return torch.device("mps")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        index = int(text[5:]) if ":" in text else 0
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            raise ConfigError(
                f"device (--device) {spec}: no CUDA GPU {index} on this machine ({_available()})"
            )
        return torch.device("cuda", index)
    raise ConfigError(
        f"device (--device) {spec!r}: unknown device; expected auto, cpu, cuda, cuda:N, N or "
        "mps (one device: predict and eval run on one)"
    )


def _available() -> str:
    """What this machine has, for error messages."""
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"it has {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}"
    if torch.backends.mps.is_available():
        return "it has no CUDA GPU; mps and cpu are available"
    build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
    return f"torch {torch.__version__} ({build}) sees no GPU; use --device cpu"


def autocast_dtype(
    device: torch.device, half: bool = False, bf16: bool = False
) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of ``--half`` (float16) or ``--bf16`` (bfloat16) on
    ``device``; ``None`` for float32.

    Raises:
        ConfigError: both asked for, or the device lacks the type.
    """
    if half and bf16:
        raise ConfigError("half and bf16 (--half, --bf16): choose one (float16 or bfloat16)")
    if half:
        if device.type == "cpu":
            raise ConfigError(
                "half (--half): float16 inference needs a CUDA GPU or MPS; the device is the "
                "CPU, where PyTorch runs float16 slowly or not at all (use --bf16 on the CPU, "
                "or --device cuda)"
            )
        return torch.float16
    if bf16:
        if device.type == "mps":
            raise ConfigError("bf16 (--bf16): not supported on MPS here; use --half")
        if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
            name = torch.cuda.get_device_name(device)
            raise ConfigError(
                f"bf16 (--bf16): {name} ({device}) has no native bfloat16 (it needs an Ampere "
                "or newer GPU); use --half"
            )
        return torch.bfloat16
    return None


def lightning_device(device: torch.device) -> dict[str, object]:
    """``lightning.Trainer`` arguments for one ``device`` (for commands that run through
    Lightning, such as ``visionkit eval --device``): its ``accelerator`` / ``devices``, one node
    and no distributed strategy (a checkpoint's config keeps the strategy it trained with)."""
    one = {"num_nodes": 1, "strategy": "auto"}
    if device.type == "cuda":
        return {"accelerator": "gpu", "devices": [device.index or 0], **one}
    if device.type == "mps":
        return {"accelerator": "mps", "devices": 1, **one}
    return {"accelerator": "cpu", "devices": 1, **one}


def lightning_precision(dtype: torch.dtype | None) -> str | None:
    """The ``lightning.Trainer`` precision of an :func:`autocast_dtype` (``None``: leave the
    configured one)."""
    return {torch.float16: "16-mixed", torch.bfloat16: "bf16-mixed"}.get(dtype)
