"""The backbone contract, and the small wrapper that library feature extractors share.

A backbone is any ``nn.Module`` that satisfies :class:`Backbone`; no base class is required.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from visionkit.errors import VisionkitError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneError(VisionkitError):
    """A backbone cannot be built as asked (bad ``out_indices``, no published weights, ...):
    a mistake in what the config or command line wrote, so the command exits 2, as for a
    :class:`~visionkit.errors.ConfigError`."""

    exit_code = 2


#: Builder arguments a config or a checkpoint may never pass: they make timm or torchvision
#: read a file or fetch weights themselves (timm < 1.0.26 unpickles ``checkpoint_path`` with
#: ``weights_only=False``). Weights come in only through ``pretrained`` (checked loaders).
REFUSED_KWARGS = ("checkpoint_path", "pretrained", "weights", "weights_backbone", "cache_dir")
_REFUSED_SUFFIXES = ("path", "file", "files", "url", "dir", "checkpoint", "weights")


class Arguments(NamedTuple):
    """What a backbone builder takes from ``model.backbone.kwargs`` (:func:`builder_arguments`):
    ``names`` (its known arguments, for messages; ``None``: any name), ``what`` (the
    architecture, e.g. ``"timm's ResNet (resnet18)"``) and ``takes(key, value)``, which asks
    the library itself whether it takes a name (``None``: ``names`` decide)."""

    names: list[str] | None
    what: str
    takes: Callable[[str, object], bool] | None = None

    def allow(self, key: str, value: object) -> bool:
        if self.takes is not None:
            return self.takes(key, value)
        return self.names is None or key in self.names


def refuse_unsafe_kwargs(kwargs: dict[str, object], arguments: Arguments | None = None) -> None:
    """Raise :class:`BackboneError` for every backbone builder argument that could load a file
    or that the architecture does not take. Refused, in this order (a file-like argument never
    reaches the library, not even to ask it): a key in :data:`REFUSED_KWARGS` or
    ``pretrained_cfg*``; a key ending in ``path``, ``file``, ``url``, ``dir``, ``checkpoint`` or
    ``weights`` (``drop_path_rate`` is fine), or a string value that looks like a path or URL;
    a key the architecture does not take (the allow-list, ``arguments``:
    :func:`builder_arguments`), with a close known name when there is one."""
    problems, unknown, loading = [], False, False
    names = arguments.names if arguments is not None else None
    for key, value in kwargs.items():
        lowered = key.lower()
        close = difflib.get_close_matches(key, names or [], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        file_like = lowered.endswith(_REFUSED_SUFFIXES) or (
            isinstance(value, str) and ("/" in value or "\\" in value or "://" in value)
        )
        if lowered in REFUSED_KWARGS or lowered.startswith("pretrained_cfg"):
            problem, loading = "refused (it could make the library load a file)", True
        elif file_like and close and key not in (names or []):  # drop_path: a typo
            problem, unknown = f"not an argument of {arguments.what}{hint}", True
        elif lowered.endswith(_REFUSED_SUFFIXES):
            problem, loading = "refused (it could make the library load a file)", True
        elif file_like:
            problem = f"{value!r} looks like a path or URL; refused (architecture arguments only)"
            loading = True
        elif arguments is not None and not arguments.allow(key, value):
            if key in (names or []):  # e.g. a torchvision ResNet's block: its builder's to set
                problem = f"set by the builder of {arguments.what} itself, not by a config"
            else:
                problem, unknown = f"not an argument of {arguments.what}{hint}", True
        else:
            continue
        problems.append(f"model.backbone.kwargs.{key}: {problem}")
    if not problems:
        return
    message = "; ".join(problems)
    if unknown and arguments is not None:
        message += f". The arguments of {arguments.what}: {', '.join(names or []) or 'none'}"
    if loading:
        message += (
            ". Load weights with model.backbone.pretrained (true, or a .safetensors / .pth "
            "file read with weights_only=True) or model.init_from."
        )
    raise BackboneError(message)


#: Parameters a config never sets through ``model.backbone.kwargs``: visionkit places the
#: weights (``device``, ``dtype``) and passes ``pretrained`` / ``out_indices`` / ``name`` itself.
_NOT_FROM_CONFIG = frozenset({"self", "device", "dtype", "pretrained", "out_indices", "name"})


def accepted_arguments(
    function: Callable[..., object], extra: Sequence[str] = ()
) -> list[str] | None:
    """The keyword arguments ``function`` (an architecture's ``__init__``, or a registered
    builder function) takes from a config, plus ``extra``; ``None`` when it takes
    ``**kwargs`` (any name)."""
    params = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in params.items() if p.kind in named and n not in _NOT_FROM_CONFIG] + list(
        extra
    )


def builder_arguments(builder: Callable[..., object], name: str) -> Arguments:
    """The :class:`Arguments` of a registered backbone builder: the builder's own
    (``builder.arguments()``: timm and torchvision models, whose builders take ``**kwargs``:
    their library is asked, :func:`library_takes`), else the builder function's parameters."""
    arguments = getattr(builder, "arguments", None)
    if arguments is not None:
        return arguments()
    return Arguments(accepted_arguments(builder), f"backbone {name!r}")


_TAKES: dict[tuple[str, str], bool] = {}


def library_takes(
    build: Callable[..., object], key: str, value: object, cache: str | None = None
) -> bool:
    """Whether ``build(**{key: value})`` takes the name ``key``: built on the meta device (no
    memory, no weights), ``False`` when the library raises ``TypeError`` for an unexpected (or
    repeated) keyword; ``True`` otherwise (an error about the value is the real build's to
    report). The answer is kept per ``cache`` (the model) and name. Call it only for arguments
    that cannot load a file (:func:`refuse_unsafe_kwargs` does)."""
    if cache is not None and (cache, key) in _TAKES:
        return _TAKES[(cache, key)]
    takes = _library_takes(build, key, value)
    if cache is not None:
        _TAKES[(cache, key)] = takes
    return takes


def _library_takes(build: Callable[..., object], key: str, value: object) -> bool:
    try:
        with torch.device("meta"):
            build(**{key: value})
    except TypeError as err:
        text = str(err)
        if repr(key) in text and ("unexpected keyword" in text or "multiple values" in text):
            return False
    except Exception:  # about the value, or a model that cannot be built on the meta device
        pass
    return True


def architecture_class(build: Callable[[], nn.Module]) -> type:
    """The class of the model ``build()`` makes, built on the meta device (no memory, no
    weights; on the CPU for a model whose construction needs real tensors)."""
    try:
        with torch.device("meta"):
            return type(build())
    except Exception:  # e.g. an __init__ that reads a tensor's values
        return type(build())


@runtime_checkable
class Backbone(Protocol):
    """What every backbone provides.

    ``forward`` maps images ``[B, 3, H, W]`` (RGB scaled to 0..1, then normalised with
    ``mean``/``std``) to a list of NCHW feature maps ``[B, out_channels[i], ~H/strides[i],
    ~W/strides[i]]`` with strictly increasing strides. ``out_channels`` and ``strides`` are
    declared once and match exactly what ``forward`` returns, so necks and heads size
    themselves from them.

    Attributes:
        name: The registry name the backbone was built from.
        out_channels: Channels of each returned feature map.
        strides: Input-to-feature downsampling factor of each returned map (e.g. 4, 8, 16, 32).
        mean: Per-channel mean for inputs scaled to 0..1 (from the pretrained config).
        std: Per-channel std for inputs scaled to 0..1.
    """

    name: str
    out_channels: list[int]
    strides: list[int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, x: Tensor) -> list[Tensor]: ...

    def forward(self, x: Tensor) -> list[Tensor]: ...


class OutIndicesError(BackboneError):
    """``out_indices`` that pick a level the backbone does not have, a level twice, or none;
    ``problem`` says so without the key, which :func:`visionkit.create_model` puts before it
    (``model.backbone.out_indices: ...``, a configuration error with its file and line)."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"out_indices {problem}")


def levels_note(name: str, strides: Sequence[int]) -> str:
    """What ``out_indices`` can pick of backbone ``name`` with feature levels at ``strides``:
    the range (from the start, or from the last) and the levels of strides 8, 16, 32."""
    n = len(strides)
    usual = [strides.index(s) for s in (8, 16, 32) if s in strides]
    pick = (
        usual
        if len(usual) == 3
        else [i for i, s in enumerate(strides) if s not in strides[:i]][-3:]
    )
    return (
        f"{name!r} has {n} feature levels, 0..{n - 1} (or -{n}..-1, counted from the last), at "
        f"strides {list(strides)}; pick levels of increasing "
        f"stride: e.g. {pick} for strides {', '.join(str(strides[i]) for i in pick)}"
    )


def out_indices_problem(out_indices: Sequence[int], strides: Sequence[int], name: str) -> str:
    """Why ``out_indices`` cannot be picked of backbone ``name`` (levels at ``strides``) and
    what it can pick, or ``""`` when it can."""
    n, given = len(strides), [int(i) for i in out_indices]
    outside = [i for i in given if not -n <= i < n]
    picked = [i % n for i in given if -n <= i < n]
    twice = sorted({i for i in picked if picked.count(i) > 1})
    if outside:
        what = f"{given} picks level {', '.join(map(str, outside))}, which {name!r} does not have"
    elif twice:
        what = f"{given} picks level {', '.join(map(str, twice))} twice (negative indices count from the last)"
    elif not given:
        what = "[] picks no level (null: all of them)"
    else:
        return ""
    return f"{what}; {levels_note(name, strides)}"


def select_levels(
    num_levels: int, out_indices: Sequence[int] | None, name: str, strides: Sequence[int] = ()
) -> list[int]:
    """Normalise ``out_indices`` (negative allowed, ``None`` = all) to sorted level indices;
    ``strides``: the levels' strides (default: 2, 4, 8, ...), for the message.

    Raises:
        OutIndicesError: An index is out of range or repeated, or none is given.
    """
    if out_indices is None:
        return list(range(num_levels))
    strides = list(strides) or [2 ** (i + 1) for i in range(num_levels)]
    problem = out_indices_problem(out_indices, strides, name)
    if problem:
        raise OutIndicesError(problem)
    return sorted(int(i) % num_levels for i in out_indices)


class FeatureBackbone(nn.Module):
    """Wraps a library feature extractor (timm ``features_only``, torchvision FX) as a backbone.

    Args:
        body: Module mapping ``[B, 3, H, W]`` to a list (or dict, in level order) of maps.
        name: Registry name.
        out_channels: Channels per returned map.
        strides: Stride per returned map.
        mean: Normalisation mean for 0..1 inputs.
        std: Normalisation std for 0..1 inputs.
        channels_last: ``body`` returns NHWC maps ``[B, H, W, C]``; they are permuted to NCHW.
        library_names: gives the state-dict names of the library's whole model (its
            classifier, and the late blocks ``features_only`` leaves out, included): a file's
            tensors of layers the backbone does not use are reported as such.
    """

    def __init__(
        self,
        body: nn.Module,
        name: str,
        out_channels: Sequence[int],
        strides: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        channels_last: bool = False,
        library_names: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.name = name
        self.out_channels = [int(c) for c in out_channels]
        self.strides = [int(s) for s in strides]
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.channels_last = channels_last
        self.library_names = library_names

    def file_names(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """``tensors`` of the library's whole model (a classification file) under the names
        ``body`` gives them, where they differ: timm's ``features_only`` wrappers flatten the
        first level of a top-level ``nn.Sequential`` (``stem.0.weight`` → ``stem_0.weight``:
        ConvNeXt, Swin, DenseNet, RegNet... ), or keep the model as ``model`` / ``body``
        (``FeatureGetterNet``, ``FeatureHookNet``). Names that match as they are, or that
        match nothing, are kept, so the loader reports them."""
        own = set(self.body.state_dict())
        out = {}
        for name, value in tensors.items():
            parts = name.split(".")
            candidates = [name, "model." + name, "body." + name]
            if len(parts) > 2:  # timm's _module_list: "a.b.rest" -> "a_b.rest"
                candidates.insert(1, "_".join(parts[:2]) + "." + ".".join(parts[2:]))
            out[next((c for c in candidates if c in own), name)] = value  # names in ``body``
        return out

    def forward(self, x: Tensor) -> list[Tensor]:
        """Map images ``[B, 3, H, W]`` to feature maps ``[B, C_i, H / s_i, W / s_i]``."""
        feats = self.body(x)
        if isinstance(feats, dict):
            feats = list(feats.values())
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2) for f in feats]  # [B, H, W, C] -> [B, C, H, W]
        return list(feats)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, out_channels={self.out_channels}, strides={self.strides}"


def to_rgb_stats(
    values: Sequence[float] | None, default: tuple[float, float, float]
) -> tuple[float, float, float]:
    """Three floats from a pretrained config entry (grayscale ``(m,)`` is repeated)."""
    if not values:
        return default
    vals = [float(v) for v in values]
    if len(vals) == 1:
        vals = vals * 3
    return (vals[0], vals[1], vals[2])


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "BackboneError",
    "FeatureBackbone",
    "count_parameters",
    "select_levels",
    "to_rgb_stats",
]
