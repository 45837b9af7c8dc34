"""Loading backbone weights: local checkpoint files and the offline pretrained caches.

Nothing here touches the network. ``pretrained=True`` only ever reads a file that timm's
Hugging Face cache or torch hub's cache already holds; when the file is absent,
:class:`WeightsNotCachedError` says where it looked and how to pass a local file instead.

Pickle-based files are read with ``torch.load(..., weights_only=True)`` only, so a checkpoint
cannot run code when it is loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from visionkit.errors import CheckpointError

logger = logging.getLogger("visionkit.models.backbones")

# Keys under which training frameworks nest the state dict, in order of preference.
_WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "module")
_SHOWN = 5  # names listed per category in a load report


class WeightsNotCachedError(CheckpointError):
    """``pretrained=True`` asked for weights that are not in the local cache (never downloaded)."""

    def __init__(self, name: str, looked_in: object) -> None:
        self.name = name
        super().__init__(
            looked_in,
            f"pretrained weights for backbone {name!r} are not in the local cache, and visionkit "
            "never downloads them (no network access is assumed). Download them on a machine "
            "with network access, or pass a local file instead: "
            "create_backbone(name, pretrained='/path/to/weights.safetensors') "
            "(or `pretrained: /path/to/weights.safetensors` in a config); .safetensors, .pth, "
            ".pt and .bin are accepted",
        )


@dataclass
class LoadReport:
    """What happened when a state dict was loaded into a backbone.

    All names are as the checkpoint spells them (e.g. ``layer1.0.conv1.weight``, without the
    ``body.`` prefix of a wrapped library model).

    Attributes:
        source: Where the weights came from (a file path, or a description).
        loaded: Names of parameters/buffers that received a value.
        missing: Names the backbone has but the checkpoint lacks (left at their init).
        unexpected: Names the checkpoint has but the backbone lacks (ignored), e.g. ``fc.*``
            of a classification checkpoint.
        mismatched: ``(name, checkpoint_shape, backbone_shape)`` for names present in both
            with different shapes (left at their init).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every backbone tensor received a checkpoint value of the right shape."""
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        """A few lines naming counts and the first few names in each category."""

        def few(names: list[str]) -> str:
            more = f", ... (+{len(names) - _SHOWN})" if len(names) > _SHOWN else ""
            return ", ".join(names[:_SHOWN]) + more

        lines = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.missing:
            lines.append(f"  missing ({len(self.missing)}): {few(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected ({len(self.unexpected)}): {few(self.unexpected)}")
        if self.mismatched:
            shown = [f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in self.mismatched]
            lines.append(f"  shape mismatch ({len(self.mismatched)}): {few(shown)}")
        return "\n".join(lines)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from a local ``.safetensors`` or ``.pth/.pt/.bin`` file.

    Pickle files are loaded with ``weights_only=True`` (never unsafe unpickling). A dict nested
    under ``state_dict_ema``/``model_ema``/``state_dict``/``model``/``module`` is unwrapped
    (EMA weights preferred, as timm does) and a ``module.`` prefix (DataParallel/DDP) is
    stripped.

    Raises:
        CheckpointError: The file is missing, unreadable, unsafe or holds no tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors, pickle and zip errors have no common base class
        raise CheckpointError(path, f"{type(e).__name__}: {e}".strip()) from e
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if not isinstance(obj, Mapping):
            break
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(path, f"expected a state dict, found {type(obj).__name__}")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(path, f"no tensors found (top-level keys: {list(obj)[:_SHOWN]})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def load_into(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    prefixes: tuple[str, ...] = ("",),
) -> LoadReport:
    """Load ``state_dict`` into ``module`` non-strictly and log what did not match.

    Args:
        module: The backbone.
        state_dict: Checkpoint tensors.
        source: Shown in the report and the log (usually the file path).
        prefixes: Candidate prefixes to put in front of checkpoint names (e.g. ``"model."``
            when the backbone wraps the library model); the one matching most names is used.

    Returns:
        The :class:`LoadReport`, also logged on the ``visionkit.models.backbones`` logger.

    Raises:
        CheckpointError: Not a single name of the checkpoint matches the backbone.
    """
    own = module.state_dict()
    prefix = max(prefixes, key=lambda p: sum(p + k in own for k in state_dict))
    renamed = {prefix + k: v for k, v in state_dict.items()}
    report = LoadReport(source=source)
    to_load = {}
    for key, value in renamed.items():
        if key not in own:
            report.unexpected.append(key[len(prefix) :])
        elif own[key].shape != value.shape:
            report.mismatched.append(
                (key[len(prefix) :], tuple(value.shape), tuple(own[key].shape))
            )
        else:
            to_load[key] = value
    report.missing = [k.removeprefix(prefix) for k in own if k not in renamed]
    if not to_load:
        raise CheckpointError(
            source,
            f"none of its {len(state_dict)} tensor names match the backbone "
            f"(checkpoint: {list(state_dict)[:3]}..., backbone: {list(own)[:3]}...)",
        )
    module.load_state_dict(to_load, strict=False)
    report.loaded = [k.removeprefix(prefix) for k in to_load]
    logger.log(logging.INFO if report.ok else logging.WARNING, "%s", report.summary())
    return report


def load_file_into(
    module: nn.Module, path: str | os.PathLike[str], prefixes: tuple[str, ...] = ("",)
) -> LoadReport:
    """:func:`read_state_dict` then :func:`load_into`; the report is attached as ``load_report``."""
    report = load_into(module, read_state_dict(path), str(path), prefixes)
    module.load_report = report
    return report


def hf_cached_file(repo_id: str, filenames: list[str]) -> Path | None:
    """The first of ``filenames`` of a Hugging Face repo present in the local HF cache.

    The cache folder is read from ``HF_HUB_CACHE`` / ``HF_HOME`` at call time, so tests can
    point it elsewhere. ``repo_id`` may carry a revision as ``repo@revision``.
    """
    from huggingface_hub import try_to_load_from_cache

    repo, _, revision = repo_id.partition("@")
    for filename in filenames:
        found = try_to_load_from_cache(
            repo, filename, cache_dir=hf_cache_dir(), revision=revision or None
        )
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, as the environment says now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def torch_hub_file(url: str) -> Path:
    """Where torch hub keeps (would keep) the download of ``url``: ``<hub dir>/checkpoints/<name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


@contextlib.contextmanager
def forced_weights_only() -> Iterator[None]:
    """Make every ``torch.load`` in the block use ``weights_only=True``.

    torchvision's builders load cached weights through ``torch.hub.load_state_dict_from_url``
    without ``weights_only``; ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` (read by ``torch.load`` at call
    time) makes those loads safe too. The previous value is restored afterwards.
    """
    old = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = old
