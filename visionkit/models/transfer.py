"""Fine-tuning and transfer: load the matching tensors of a checkpoint into a new model.

:func:`load_matching` is what ``model.init_from`` runs (``visionkit.create_model``): every
tensor of the file whose name and shape match the model is copied in; the model's tensors the
file lacks keep their fresh initialisation (a new head); those whose shape differs (a classifier
for another number of classes) are not loaded, so they stay freshly initialised; the file's
names the model lacks (a dropped head) are ignored. Files are read safely: ``.safetensors``
with ``safetensors.torch.load_file``, anything else with ``torch.load(weights_only=True)``
(:func:`visionkit.checkpoint.load_checkpoint`), so a pickled payload is refused, never run.

>>> import visionkit
>>> cfg = {"model": {"backbone": {"name": "simple_cnn"},
...                  "heads": {"cls": {"name": "linear", "num_classes": 3}}}}
>>> trained = visionkit.create_model(cfg).state_dict()  # or a checkpoint path
>>> cfg["model"]["heads"]["cls"]["num_classes"] = 5
>>> report = load_matching(visionkit.create_model(cfg), trained)
>>> report.mismatched
['heads.cls.classifier.3.weight', 'heads.cls.classifier.3.bias']
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from visionkit.checkpoint import load_checkpoint
from visionkit.errors import CheckpointError

logger = logging.getLogger(__name__)

LIGHTNING_PREFIX = "model."  # VisionSystem keeps the VisionModel as ``self.model``


@dataclass
class TransferReport:
    """What :func:`load_matching` did; names are the model's state-dict names.

    Attributes:
        source: the file (or a description of the state dict).
        loaded: names that received the file's tensor.
        missing: names the file lacks; left as initialised (e.g. a new head).
        mismatched: names present in both with different shapes; left as initialised.
        unexpected: names of the file the model lacks; ignored (e.g. a dropped head).
        shapes: ``name → (shape in the file, shape in the model)`` for ``mismatched``.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    def summary(self, model_names: Iterable[str] = (), file_names: Iterable[str] = ()) -> str:
        """One line: counts, and the names in each category, whole modules written ``prefix.*``
        (given all of the model's and the file's names to tell which modules are whole)."""
        model_names = list(model_names) or self.loaded + self.missing + self.mismatched
        file_names = list(file_names) or self.loaded + self.mismatched + self.unexpected
        total = len(self.loaded) + len(self.missing) + len(self.mismatched)
        parts = [
            f"init_from {self.source}: loaded {len(self.loaded)} of {total} tensors "
            f"({', '.join(compress(self.loaded, model_names)) or 'none'})"
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
        if self.missing:
            parts.append(
                f"initialised {len(self.missing)} not in the file "
                f"({', '.join(compress(self.missing, model_names))})"
            )
        if self.unexpected:
            parts.append(
                f"ignored {len(self.unexpected)} of the file the model lacks "
                f"({', '.join(compress(self.unexpected, file_names))})"
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
    """The model tensors of a checkpoint file, by model state-dict name.

    Accepts a visionkit / Lightning checkpoint (``state_dict`` with the ``model.`` prefix of
    :class:`~visionkit.engine.system.VisionSystem`, which is removed), a plain state dict saved
    with ``torch.save`` (a ``module.`` prefix of DDP is removed), or a ``.safetensors`` file.

    Raises:
        CheckpointError: missing, truncated, unsafe (pickled objects), or holding no tensors.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(path, "file does not exist")
        from safetensors.torch import load_file

        try:
            obj: Mapping[str, object] = load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own SafetensorError, and OSError
            raise CheckpointError(path, f"not a readable safetensors file ({err})") from None
    else:
        obj = load_checkpoint(path, map_location="cpu")
    state = obj.get("state_dict")
    if isinstance(state, Mapping):  # a Lightning checkpoint
        tensors = {
            k.removeprefix(LIGHTNING_PREFIX): v for k, v in state.items() if isinstance(v, Tensor)
        }
    else:
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
        if tensors and all(k.startswith("module.") for k in tensors):
            tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    if not tensors:
        raise CheckpointError(
            path, f"no tensors found (top-level keys: {', '.join(map(str, list(obj)[:8]))})"
        )
    return tensors


def load_matching(
    model: nn.Module, source: str | os.PathLike | Mapping[str, Tensor]
) -> TransferReport:
    """Copy into ``model`` every tensor of ``source`` whose name and shape match.

    Args:
        model: usually a freshly built model (``visionkit.create_model``), so what is not
            loaded keeps its fresh initialisation.
        source: a checkpoint file (see :func:`read_weights`) or a state dict.

    Returns:
        The :class:`TransferReport`; its one-line summary is logged at INFO level.

    Raises:
        CheckpointError: the file cannot be read safely, or not one of its tensors matches.
    """
    if isinstance(source, Mapping):
        label, weights = "<state dict>", dict(source)
    else:
        label, weights = str(source), read_weights(source)
    own = model.state_dict()
    report = TransferReport(source=label)
    to_load = {}
    for name, value in weights.items():
        if name not in own:
            report.unexpected.append(name)
        elif own[name].shape != value.shape:
            report.mismatched.append(name)
            report.shapes[name] = (tuple(value.shape), tuple(own[name].shape))
        else:
            to_load[name] = value
            report.loaded.append(name)
    report.missing = [name for name in own if name not in weights]
    if not to_load:
        raise CheckpointError(
            label,
            f"none of its {len(weights)} tensors matches the model in name and shape "
            f"(file: {', '.join(list(weights)[:3])}, ...; model: {', '.join(list(own)[:3])}, ...)",
        )
    with torch.no_grad():
        model.load_state_dict(to_load, strict=False)
    logger.info("%s", report.summary(own, weights))
    return report
