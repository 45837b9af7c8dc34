"""torchvision classification models as backbones: ``torchvision/<name>``.

torchvision has no ``features_only``, so the feature levels are found from the model graph:
the model is traced with torch.fx (torchvision's ``NodePathTracer``) and its shapes are
propagated at two input sizes (256 and 384) on the ``meta`` device, or with fake tensors
when a model cannot be built on ``meta``; no real computation runs. A node is a feature
level when

* its output is a 4-D map whose size scales with the input (which rules out adaptive pools
  and the classifier), at stride ``s = 128 / (H_384 - H_256)`` rounded to a power of two,
  with ``s >= 2``;
* it is a *cut* of the graph: nothing computed before it is used after it (so a level is
  never the middle of a residual block);
* of the cuts at stride ``s`` before the first node at a larger stride, it sits highest in
  the module tree relative to that downsampling node, the last such one winning. This picks
  the end of a stage (``layer1``, ``features.1``) rather than the expansion conv of the next
  block, which is also a cut when that block has no shortcut.

The nodes are then extracted with ``create_feature_extractor``. Results are cached per
model name and keyword arguments.

Left out (see :data:`EXCLUDED`): ``vit_*`` (one stride, fixed 224 input), ``swin_*``
(NHWC stages, window-padded sizes), ``maxvit_t`` (input must be a multiple of 224),
``inception_v3``, ``alexnet`` and ``squeezenet*`` (maps not at their strides).
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import math
import re
import threading
from collections.abc import Sequence
from typing import Any

import torch
import torchvision
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp
from torchvision.models.feature_extraction import NodePathTracer, create_feature_extractor

from visionkit.errors import CheckpointError
from visionkit.models.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Arguments,
    BackboneError,
    FeatureBackbone,
    accepted_arguments,
    architecture_class,
    library_takes,
    select_levels,
)
from visionkit.models.backbones.pretrained import (
    WeightsSource,
    fetch,
    forced_weights_only,
    read_cached,
)
from visionkit.models.weights import WEIGHTS_FILE_SUFFIXES
from visionkit.registry import BACKBONES, UnknownNameError

PREFIX = "torchvision/"

#: torchvision model name patterns that are not backbones, with the reason.
EXCLUDED: dict[str, str] = {
    "vit_*": "all features at one stride and a fixed 224x224 input; timm's hierarchical "
    "transformers are backbones (swin_tiny_patch4_window7_224, pvt_v2_b0)",
    "swin_*": "stages are NHWC and sized by window padding; timm's Swin is a backbone "
    "(swin_tiny_patch4_window7_224 is swin_t)",
    "maxvit_*": "input size must be a multiple of the 224-pixel window grid",
    "inception_v3": "unpadded convolutions: its maps are not at their strides",
    "alexnet": "unpadded convolutions and pooling: its maps are not at their strides (64 px "
    "gives 15, 7, 3 and 1, not 16, 8, 4 and 2)",
    "squeezenet*": "pooling with ceil_mode: its maps are not at their strides",
}

_PROBE_SIZES = (256, 384)
# Top-level modules that belong to the classifier, never to the features.
_HEAD_MODULES = frozenset(
    {"classifier", "fc", "head", "heads", "avgpool", "AuxLogits", "aux1", "aux2"}
)


def excluded_reason(model_name: str) -> str | None:
    """Why the torchvision model ``model_name`` is not a backbone, or ``None``."""
    return next((r for p, r in EXCLUDED.items() if fnmatch.fnmatchcase(model_name, p)), None)


@functools.lru_cache(maxsize=1)
def torchvision_backbone_names() -> tuple[str, ...]:
    """torchvision classification models usable as backbones, without the prefix."""
    names = torchvision.models.list_models(module=torchvision.models)
    return tuple(sorted(n for n in names if excluded_reason(n) is None))


def _list_names() -> list[str]:
    return [PREFIX + n for n in torchvision_backbone_names()]


def _resolve(name: str) -> Any:
    if not name.startswith(PREFIX) or name[len(PREFIX) :] not in torchvision_backbone_names():
        return None
    model_name = name[len(PREFIX) :]
    build = functools.partial(create_torchvision_backbone, model_name, name=name)
    build.arguments = functools.partial(torchvision_arguments, model_name)  # type: ignore[attr-defined]
    build.pretrained_arguments = functools.partial(  # type: ignore[attr-defined]
        pretrained_arguments, model_name, name
    )
    return build


def torchvision_arguments(model_name: str) -> Arguments:
    """What the torchvision model takes (:func:`~visionkit.models.backbones.base.
    builder_arguments`): named, its class's arguments; asked, ``torchvision.models.get_model``
    itself (which refuses, e.g., ``block`` for a ResNet: its builder passes that)."""
    architecture = torchvision_architecture(model_name)
    build = functools.partial(torchvision.models.get_model, model_name)
    return Arguments(
        accepted_arguments(architecture.__init__),
        f"torchvision's {architecture.__name__} ({model_name})",
        functools.partial(library_takes, build, cache=f"torchvision:{model_name}"),
    )


@functools.lru_cache(maxsize=32)
def torchvision_architecture(model_name: str) -> type:
    """The class of the torchvision model ``model_name`` (:func:`architecture_class`)."""
    return architecture_class(lambda: torchvision.models.get_model(model_name))


def create_torchvision_backbone(
    model_name: str,
    pretrained: bool = False,
    out_indices: Sequence[int] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> FeatureBackbone:
    """Build ``torchvision.models.get_model(model_name)`` as a multi-scale backbone.

    Args:
        model_name: torchvision model name (``resnet50``, ``mobilenet_v3_large``, ...).
        pretrained: Load the ``DEFAULT`` weights: from torch hub's cache, else downloaded
            into it (:func:`~visionkit.models.backbones.pretrained.fetch`); read with
            ``weights_only=True``.
        out_indices: Feature levels to return (default: every stride from 2 up).
        name: Registry name recorded on the backbone.
        **kwargs: Passed to the torchvision model builder.

    Returns:
        A :class:`FeatureBackbone` mapping ``[B, 3, H, W]`` to NCHW maps; mean/std are the
        ImageNet statistics all torchvision classification weights use.

    Raises:
        WeightsNotCachedError: ``pretrained=True``, the file is not cached, and it could not
            be downloaded (offline, or no network).
        CheckpointError: the cached file is corrupt, truncated or unsafe.
    """
    name = name or PREFIX + model_name
    weights = source = None
    if pretrained:
        weights = default_weights(model_name, name)
        source = weights_source(weights, name)
        path = fetch(source)  # torchvision's builder then reads the cache
    try:
        with forced_weights_only():
            model = torchvision.models.get_model(model_name, weights=weights, **kwargs)
    except Exception as e:  # a corrupt, truncated or unsafe cached file: many error types
        if source is None:
            raise
        read_cached(source, path)  # the loader's diagnosis of the file, with what to do
        raise CheckpointError(path, f"{type(e).__name__}: {e}") from e
    names = tuple(model.state_dict())  # the whole model's, classifier included
    key = (model_name, repr(sorted(kwargs.items())))
    if key not in _LEVELS:
        _LEVELS[key] = _feature_levels(model_name, kwargs, model)
    levels = _LEVELS[key]
    picked = [
        levels[i] for i in select_levels(len(levels), out_indices, name, [s for _, s, _ in levels])
    ]
    body = create_feature_extractor(
        model, return_nodes={node: node for node, _, _ in picked}, suppress_diff_warning=True
    )
    return FeatureBackbone(
        body,
        name=name,
        out_channels=[c for _, _, c in picked],
        strides=[s for _, s, _ in picked],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        library_names=functools.partial(tuple, names),
    )


class _Built(Exception):
    """Stops a torchvision builder at its model's constructor, carrying its arguments."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs


_CAPTURE = threading.Lock()


@functools.lru_cache(maxsize=64)
def _weights_implied(model_name: str) -> tuple[tuple[str, Any], ...]:
    """The keyword arguments torchvision's builder of ``model_name`` gives the model's class
    when weights are passed and not otherwise (``num_classes``, which only sizes the
    classifier, left out): googlenet's ``transform_input=True``, ``aux_logits=True``,
    ``init_weights=False``. Read by stopping the builder at the class's constructor, so no
    model is built and no file read."""
    architecture = torchvision_architecture(model_name)
    own = architecture.__dict__.get("__init__")  # None: inherited

    def stop(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        raise _Built(kwargs)

    given: list[dict[str, Any]] = []
    with _CAPTURE:
        architecture.__init__ = stop  # type: ignore[method-assign]
        try:
            for weights in (None, default_weights(model_name)):
                try:
                    torchvision.models.get_model(model_name, weights=weights)
                except _Built as built:
                    given.append(built.kwargs)
        finally:
            if own is None:
                del architecture.__init__
            else:
                architecture.__init__ = own  # type: ignore[method-assign]
    if len(given) != 2:  # the builder built another class first: nothing read
        return ()
    plain, weighted = given
    return tuple(
        (key, value)
        for key, value in weighted.items()
        if key != "num_classes" and (key not in plain or not _same(plain[key], value))
    )


def _same(a: Any, b: Any) -> bool:
    """``a == b``, a ``functools.partial`` (a builder's ``norm_layer``, made anew on each
    call) compared by what it calls."""
    if isinstance(a, functools.partial) and isinstance(b, functools.partial):
        return (a.func, a.args, a.keywords) == (b.func, b.args, b.keywords)
    return a == b


def pretrained_arguments(model_name: str, name: str | None = None) -> dict[str, Any]:
    """The architecture arguments torchvision's builder implies when it is given the model's
    ``DEFAULT`` weights (:func:`_weights_implied`): what builds, without reading the weights,
    the model ``pretrained=True`` builds (a resumed run, ``init_from``, ``visionkit.load``).

    Raises:
        BackboneError: torchvision publishes no weights for the model.
    """
    default_weights(model_name, name)
    return dict(_weights_implied(model_name))


def default_weights(model_name: str, name: str | None = None) -> Any:
    """The ``DEFAULT`` member of the torchvision weights enum of ``model_name`` (any
    torchvision model: classification, ``fcos_resnet50_fpn``, ``deeplabv3_resnet50``, ...).

    Raises:
        BackboneError: torchvision publishes no weights for the model (or has no such model).
    """
    try:
        return torchvision.models.get_model_weights(model_name).DEFAULT
    except (ValueError, AttributeError, KeyError) as e:
        raise BackboneError(
            f"torchvision publishes no weights for {name or model_name!r}; use pretrained=False"
        ) from e


#: torchvision's own spelling of a weights file: ``ResNet50_Weights.IMAGENET1K_V2``.
ENUM_SPELLING = re.compile(r"^(?:torchvision\.models\.)?(\w+Weights)\.(\w+)$")


@functools.cache
def _weights_enums() -> dict[str, str]:
    """torchvision's weights enums by lower-cased name (``resnet50_weights``) → ``(enum name,
    model)``."""
    enums = {}
    for model in torchvision.models.list_models():
        enum = torchvision.models.get_model_weights(model).__name__
        enums[enum.lower()] = (enum, model)
    return enums


def weights_member(text: str) -> tuple[str, Any] | None:
    """``(model, member)`` for torchvision's spelling of a weights file
    (``ResNet50_Weights.IMAGENET1K_V2`` → ``("resnet50", ResNet50_Weights.IMAGENET1K_V2)``);
    ``None`` for any other text: a file name (``ImageNetWeights.pth``, a suffix of
    :data:`~visionkit.models.weights.WEIGHTS_FILE_SUFFIXES`) or an enum torchvision lacks.

    Raises:
        UnknownNameError: torchvision's enum written in other case (``resnet50_weights``), or a
            member its enum lacks (the members listed).
    """
    text = text.strip()
    match = ENUM_SPELLING.match(text)
    if match is None or text.lower().endswith(WEIGHTS_FILE_SUFFIXES):
        return None
    found = _weights_enums().get(match[1].lower())
    if found is None:
        return None
    enum_name, model = found
    if enum_name != match[1]:
        raise UnknownNameError(
            f"{text!r}: torchvision's weights enum is spelt {enum_name} ({enum_name}.{match[2]})"
        )
    enum = torchvision.models.get_model_weights(model)
    if match[2] not in enum.__members__:
        raise UnknownNameError(
            f"{text!r}: {match[1]} has no member {match[2]!r}; its members: "
            f"{', '.join(enum.__members__)} (DEFAULT is {enum.DEFAULT.name})"
        )
    return model, enum[match[2]]


def weights_source(weights: Any, name: str) -> WeightsSource:
    """The torch hub file of a torchvision weights enum member, its hash checked on download
    as torchvision's own ``weights.get_state_dict(check_hash=True)`` does."""
    return WeightsSource(name, url=weights.url, check_hash=True)


def _tracer() -> NodePathTracer:
    # The same leaf modules / autowrapped modules create_feature_extractor uses by default.
    ops = [
        m
        for _, m in inspect.getmembers(torchvision.ops, inspect.isclass)
        if issubclass(m, nn.Module)
    ]
    return NodePathTracer(autowrap_modules=(math, torchvision.ops), leaf_modules=ops)


# (model name, repr of kwargs) -> [(node, stride, channels)]; a probe costs 0.2-2 s.
_LEVELS: dict[tuple[str, str], list[tuple[str, int, int]]] = {}


def _feature_levels(
    model_name: str, kwargs: dict[str, Any], model: nn.Module
) -> list[tuple[str, int, int]]:
    """``[(node_name, stride, channels)]``, one per stride, strides increasing."""
    try:  # a meta copy costs no memory or time; some builders need real values (regnet)
        with torch.device("meta"):
            probe_model = torchvision.models.get_model(model_name, weights=None, **kwargs)
        fake = False
    except (NotImplementedError, RuntimeError):
        probe_model, fake = model, True
    was_training = probe_model.training
    tracer = _tracer()
    graph = tracer.trace(probe_model.eval())
    gm = torch.fx.GraphModule(probe_model, graph)
    shapes: list[dict[torch.fx.Node, torch.Size]] = []
    for size in _PROBE_SIZES:
        if fake:
            from torch._subclasses.fake_tensor import FakeTensorMode

            prop = ShapeProp(gm, fake_mode=FakeTensorMode(allow_non_fake_inputs=True))
            prop.propagate(torch.zeros(1, 3, size, size))
        else:
            ShapeProp(gm).propagate(torch.zeros(1, 3, size, size, device="meta"))
        shapes.append({n: n.meta["tensor_meta"].shape for n in graph.nodes if _is_tensor(n)})
    probe_model.train(was_training)
    return _pick_levels(list(graph.nodes), tracer.node_to_qualname, shapes, model_name)


def _is_tensor(node: torch.fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def _pick_levels(
    nodes: list[torch.fx.Node],
    qualname: dict[torch.fx.Node, str],
    shapes: list[dict[torch.fx.Node, torch.Size]],
    model_name: str,
) -> list[tuple[str, int, int]]:
    index = {n: i for i, n in enumerate(nodes)}
    stride: dict[int, int] = {}  # node index -> stride, for scaling 4-D feature maps
    for i, n in enumerate(nodes):
        if n not in qualname or qualname[n].split(".")[0] in _HEAD_MODULES:
            continue
        small, large = (s.get(n) for s in shapes)
        if small is None or large is None or len(small) != 4 or large[2] <= small[2]:
            continue
        s = (_PROBE_SIZES[1] - _PROBE_SIZES[0]) / (large[2] - small[2])
        p = 2 ** round(math.log2(s))
        if p >= 2 and abs(s - p) / p < 0.25:
            stride[i] = p
    cuts, live_until = set(), -1
    for i, n in enumerate(nodes):  # i is a cut if no earlier value is used after it
        if live_until <= i:
            cuts.add(i)
        if n.op not in ("placeholder", "get_attr"):
            live_until = max([live_until, *(index[u] for u in n.users)])
    levels = []
    for s in sorted(set(stride.values())):
        bigger = [i for i, t in stride.items() if t > s]
        end = min(bigger) if bigger else len(nodes)
        cands = [i for i, t in stride.items() if t == s and i in cuts and i < end]
        if not cands:
            continue
        if bigger:
            down = qualname[nodes[end]].split(".")
            best = min(
                cands, key=lambda i: (_common_depth(qualname[nodes[i]].split("."), down), -i)
            )
        else:
            best = cands[-1]
        levels.append((qualname[nodes[best]], s, int(shapes[0][nodes[best]][1])))
    if not levels:
        raise BackboneError(f"found no feature levels in torchvision model {model_name!r}")
    return levels


def _common_depth(a: list[str], b: list[str]) -> int:
    depth = 0
    for x, y in zip(a[:-1], b[:-1], strict=False):
        if x != y:
            break
        depth += 1
    return depth


BACKBONES.add_provider(_list_names, _resolve)
