"""The one weight loader: read a weights file safely, copy the tensors that match, report.

It serves both ``backbone.pretrained: <file>`` (:func:`~visionkit.models.backbones.create_backbone`)
and ``model.init_from`` (:mod:`visionkit.models.transfer`). Every tensor of the file whose name
and shape match the module is copied in; the module's tensors the file lacks keep their
initialisation (a new head); those of another shape (a classifier for another number of
classes) are not loaded, so they stay as initialised; the file's names the module lacks (a
dropped head, a classifier's ``fc.*``) are ignored. :class:`LoadReport` says which were which.

Files are read safely: ``.safetensors`` with ``safetensors.torch.load_file``, anything else
with ``torch.load(weights_only=True)`` (:func:`visionkit.checkpoint.load_checkpoint`), so a
pickled payload is refused, never run.

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4))  # a file with 5 classes, not 4:
>>> file = {"0.weight": torch.zeros(3, 2), "0.bias": torch.zeros(3), "1.bias": torch.zeros(5)}
>>> report = load_weights(model, file)
>>> report.loaded, report.mismatched, report.missing, report.shapes["1.bias"]
(['0.weight', '0.bias'], ['1.bias'], ['1.weight'], ((5,), (4,)))
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from visionkit.checkpoint import load_checkpoint
from visionkit.errors import CheckpointError
from visionkit.models.averaged_weights import pick_state

# Keys under which training frameworks nest the state dict, in order of preference (EMA
# weights first, as timm does).
WRAPPER_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model", "module")
LIGHTNING_PREFIX = "model."  # VisionSystem keeps the VisionModel as ``self.model``
DDP_PREFIX = "module."
#: How weights files end (``weights list`` shows them; a name ending so is a file, not
#: torchvision's ``ResNet50_Weights.IMAGENET1K_V1``); ``.tar`` covers ``.pth.tar``.
WEIGHTS_FILE_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".npz", ".tar")


@dataclass
class LoadReport:
    """What :func:`load_weights` did; names are the module's state-dict names (less the
    ``prefix`` the file's names were matched with, e.g. the ``body.`` of a wrapped backbone).

    Attributes:
        source: the file (or ``"<state dict>"``).
        loaded: names that received the file's tensor.
        missing: names the file lacks; left as initialised (e.g. a new head).
        mismatched: names present in both with different shapes; left as initialised.
        unexpected: names of the file the module lacks; ignored (e.g. a dropped head).
        shapes: ``name → (shape in the file, shape in the module)`` for ``mismatched``.
        with_layer: names whose shape matches but whose layer has a ``mismatched`` tensor (a
            bias beside a weight of another shape); left as initialised with their layer.
        context: what loaded the weights (``"init_from"``, ``"pretrained"``), for the summary.
        prefix: the prefix the file's names were matched with (``"body."``): a name ``n`` of
            the report is the module's ``prefix + n``.
        unused: the names of ``unexpected`` that are tensors of the library model's layers the
            backbone does not use (a classifier, the late blocks ``features_only`` drops), as
            the caller found them; the summary names them so, apart from the others.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    with_layer: list[str] = field(default_factory=list)
    context: str = "load"
    prefix: str = ""
    unused: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every tensor of the module received a value of the right shape."""
        return not self.missing and not self.mismatched and not self.with_layer

    def summary(self) -> str:
        """One line: counts, and the names in each category, whole modules written
        ``prefix.*``; e.g. ``init_from best.ckpt: loaded 171 of 173 tensors (backbone.*,
        neck.*, heads.det.*); initialised 2 not in the file (heads.cls.*)``."""
        module_names = self.loaded + self.missing + self.mismatched + self.with_layer
        file_names = self.loaded + self.mismatched + self.with_layer + self.unexpected
        parts = [
            f"{self.context} {self.source}: loaded {len(self.loaded)} of {len(module_names)} "
            f"tensors ({', '.join(compress(self.loaded, module_names)) or 'none'})"
        ]
        if self.mismatched:
            shown = [
                f"{name} {list(self.shapes[name][0])} in the file, {list(self.shapes[name][1])} "
                "here"
                for name in self.mismatched
            ]
            parts.append(
                f"re-initialised {len(self.mismatched)} of another shape ({'; '.join(shown)})"
            )
        if self.with_layer:
            parts.append(
                f"re-initialised {len(self.with_layer)} with their layer "
                f"({', '.join(self.with_layer)})"
            )
        if self.missing:
            parts.append(
                f"initialised {len(self.missing)} not in the file "
                f"({', '.join(compress(self.missing, module_names))})"
            )
        unused = set(self.unused)
        lacked = [name for name in self.unexpected if name not in unused]
        if lacked:
            parts.append(
                f"ignored {len(lacked)} of the file the model lacks "
                f"({', '.join(compress(lacked, file_names))})"
            )
        if unused:
            parts.append(
                f"ignored {len(unused)} of layers the backbone does not use "
                f"({', '.join(compress(self.unused, file_names))})"
            )
        return "; ".join(parts)


def compress(names: Iterable[str], universe: Iterable[str]) -> list[str]:
    """``names`` with every module whose names in ``universe`` are all in ``names`` written as
    ``prefix.*`` (the shortest such prefix); e.g. ``['backbone.*', 'heads.cls.fc.bias']``."""
    chosen = list(dict.fromkeys(names))
    universe_count: Counter[str] = Counter()
    chosen_count: Counter[str] = Counter()
    for counter, items in ((universe_count, set(universe) | set(chosen)), (chosen_count, chosen)):
        for name in items:
            parts = name.split(".")
            for i in range(1, len(parts)):
                counter[".".join(parts[:i])] += 1
    out: list[str] = []
    for name in chosen:
        parts = name.split(".")
        shown = name
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if chosen_count[prefix] == universe_count[prefix]:
                shown = f"{prefix}.*"
                break
        if shown not in out:
            out.append(shown)
    return out


def read_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a weights file, by state-dict name.

    Accepts a ``.safetensors`` file; a visionkit / Lightning checkpoint (tensors under
    ``state_dict``, the ``model.`` prefix of :class:`~visionkit.engine.system.VisionSystem`
    removed); a plain state dict saved with ``torch.save``; a training checkpoint that nests it
    under ``state_dict_ema`` / ``model_ema`` / ``state_dict`` / ``model`` / ``module`` (EMA
    weights preferred, as timm does). A ``module.`` prefix (DataParallel / DDP) is removed.

    Raises:
        CheckpointError: missing, truncated, unsafe (pickled objects), or holding no tensors.
    """
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(path, "file does not exist")
        try:
            obj: Mapping[str, object] = load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own SafetensorError, and OSError
            raise CheckpointError(path, f"not a readable safetensors file ({err})") from None
    else:
        obj = load_checkpoint(path, map_location="cpu")
        if isinstance(obj.get("state_dict"), Mapping):  # a run's: which weights, if EMA's
            pick_state(obj, path, offer="those are used (model.init_from takes the EMA ones)")
    return _tensors_of(obj, path)


def _tensors_of(obj: Mapping[str, object], path: Path) -> dict[str, Tensor]:
    top = obj
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if any(isinstance(v, Tensor) for v in obj.values()):
            break
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj = obj[key]  # type: ignore[assignment]
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if obj is top.get("state_dict"):  # a Lightning checkpoint
        tensors = {k.removeprefix(LIGHTNING_PREFIX): v for k, v in tensors.items()}
    if tensors and all(k.startswith(DDP_PREFIX) for k in tensors):
        tensors = {k.removeprefix(DDP_PREFIX): v for k, v in tensors.items()}
    if not tensors:
        raise CheckpointError(
            path, f"no tensors found (top-level keys: {', '.join(map(str, list(top)[:8]))})"
        )
    return tensors


#: Where the backbone's tensors sit in a model (``backbone.<name>``), and a backbone's own
#: tensor names: ``backbone.<name>`` (built-in), ``backbone.body.<name>`` (a library model
#: wrapped by ``FeatureBackbone``).
BACKBONE_PREFIX = "backbone."
BACKBONE_PREFIXES = (BACKBONE_PREFIX, BACKBONE_PREFIX + "body.")


def backbone_hint(weights: Iterable[str], own: Iterable[str], label: object) -> str:
    """``"; it holds a backbone's tensors ...: give it as model.backbone.pretrained=..."``
    when the names of ``weights`` are a backbone's own (``conv1.weight``: a classification
    model's state dict given where a whole model's was expected), else ``""``."""
    names, own = list(weights), set(own)
    if not any(p + k in own for p in BACKBONE_PREFIXES for k in names):
        return ""
    return (
        f"; it holds a classification model's or backbone's tensors ({', '.join(names[:2])}, "
        f"...): give it as model.backbone.pretrained={label} (and no model.init_from), which "
        "loads them into the backbone"
    )


def load_weights(
    module: nn.Module,
    source: str | os.PathLike | Mapping[str, Tensor],
    prefixes: tuple[str, ...] = ("",),
    context: str = "load",
    label: str | None = None,
) -> LoadReport:
    """Copy into ``module`` every tensor of ``source`` whose name and shape match.

    Args:
        module: usually freshly built, so what is not loaded keeps its fresh initialisation.
        source: a weights file (see :func:`read_weights`) or a state dict.
        prefixes: candidate prefixes to put in front of the file's names (e.g. ``"body."``
            when a backbone wraps the library model); the one matching most names is used.
        context: what loads the weights, named in the report's summary.
        label: the source's name in the report and in errors (default: the file, or
            ``"<state dict>"``).

    Returns:
        The :class:`LoadReport` (the caller logs its :meth:`~LoadReport.summary`).

    Raises:
        CheckpointError: the file cannot be read safely, or not one of its tensors matches.
    """
    if isinstance(source, Mapping):
        label, weights = label or "<state dict>", dict(source)
    else:
        label, weights = label or str(source), read_weights(source)
    own = module.state_dict()
    prefix = max(prefixes, key=lambda p: sum(p + k in own for k in weights))
    report = LoadReport(source=label, context=context, prefix=prefix)
    to_load = {}
    for name, value in weights.items():
        key = prefix + name
        if key not in own:
            report.unexpected.append(name)
        elif own[key].shape != value.shape:
            report.mismatched.append(name)
            report.shapes[name] = (tuple(value.shape), tuple(own[key].shape))
        else:
            to_load[key] = value
            report.loaded.append(name)
    torn = {(prefix + name).rpartition(".")[0] for name in report.mismatched}
    for key in [k for k in to_load if k.rpartition(".")[0] in torn]:  # not half a layer
        del to_load[key]
        report.loaded.remove(key.removeprefix(prefix))
        report.with_layer.append(key.removeprefix(prefix))
    renamed = {prefix + name for name in weights}
    report.missing = [key.removeprefix(prefix) for key in own if key not in renamed]
    if not to_load:
        whole = context != "init_from" and any(k.startswith(BACKBONE_PREFIX) for k in weights)
        raise CheckpointError(
            label,
            f"none of its {len(weights)} tensors matches the model in name and shape "
            f"(file: {', '.join(list(weights)[:3])}, ...; model: {', '.join(list(own)[:3])}, ...)"
            + (
                "; it holds a whole model (backbone.*): give it as model.init_from, which "
                "loads the tensors of every part that match"
                if whole
                else backbone_hint(weights, own, label)
                if context == "init_from"
                else ""
            ),
        )
    with torch.no_grad():
        module.load_state_dict(to_load, strict=False)
    return report
