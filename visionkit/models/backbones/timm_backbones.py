"""Every timm model that works as a multi-scale backbone, via ``features_only=True``.

Each usable model is available under its plain timm name (``resnet18``) and as
``timm/resnet18``; a pretrained tag may be appended (``resnet18.a1_in1k``) and selects that
tag's weights and mean/std. The family is served through ``BACKBONES.add_provider``, so
nothing is registered one name at a time.

Which models are usable was measured, not guessed: every name in ``timm.list_models()`` was
built with ``features_only=True`` (pretrained=False) and run on 64x64, 128x96 and 256x256
inputs (timm 1.0.31). Every model builds; the ones below are left out because they break
the backbone contract, and :data:`EXCLUDED` keeps them as name patterns with the reason:

* features all at one stride (MLP families, and the ViTs whose timm class cannot take other
  input sizes): the contract needs strictly increasing strides; the other plain ViTs are
  backbones through a simple feature pyramid (:mod:`~visionkit.models.backbones.plain_vit`);
* a fixed input size (absolute position tables, attention biases sized to one grid, window
  sizes that must divide the feature map, or an internal resize): detection and segmentation
  feed other sizes.

Models whose timm feature extractor returns NHWC maps (MambaOut, Swin) are kept and permuted
to NCHW by :class:`~visionkit.models.backbones.base.FeatureBackbone`. Swin's window grid is
fixed by default; :data:`DYNAMIC_IMG_SIZE` families are built with timm's
``dynamic_img_size=True``, which pads the windows, so they take any input size.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import timm
import torch
from timm.models import get_pretrained_cfg

from visionkit.models.backbones.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Arguments,
    BackboneError,
    FeatureBackbone,
    OutIndicesError,
    accepted_arguments,
    architecture_class,
    levels_note,
    library_takes,
    out_indices_problem,
    to_rgb_stats,
)
from visionkit.models.backbones.plain_vit import create_plain_vit_backbone, is_plain_vit
from visionkit.models.backbones.pretrained import WeightsSource, fetch, read_cached
from visionkit.registry import BACKBONES, UnknownNameError, close_names

PREFIX = "timm/"

#: Name patterns (fnmatch) of timm models that are not backbones, by reason.
EXCLUDED: dict[str, tuple[str, ...]] = {
    "all features at one stride, and its timm class takes no dynamic_img_size, which the "
    "simple feature pyramid visionkit gives plain ViTs needs (a transformer or MLP of another "
    "kind); strides must increase. Plain ViTs are backbones "
    "through a simple feature pyramid (vit_small_patch16_224, deit3_small_patch16_224), as "
    "are hierarchical transformers: swin_tiny_patch4_window7_224, pvt_v2_b0, twins_svt_small": (
        "aimv2*", "beit*", "cait*", "convit*", "convmixer*", "deepseek*", "deit*", "eva*",
        "flexivit*", "gemma*", "gmixer*", "gmlp*", "mixer*", "naflexvit*", "qwen*", "resmlp*",
        "samvit*", "sequencer*", "test_vit*", "tnt*", "vit*", "volo*", "xcit*",
    ),
    "fixed input size (position/attention tables, window divisibility or internal resize). "
    "Transformers that take any size: swin_*, pvt_v2_*, twins_*, davit_*": (
        "bat_*", "botnet*", "coat*", "crossvit*", "eca_botnext*", "eca_halonext*",
        "efficientformer*", "gcvit*", "halo*", "hiera_*", "lambda_resnet26rpt*",
        "lamhalobotnet*", "levit*", "maxvit*", "maxxvit*", "nest*", "pit_*", "sebotnet*",
        "sehalonet*", "test_coatnet", "test_maxvit", "visformer*",
    ),
    "unpadded convolutions: its maps are not at their strides (224 px gives 109, 52, 25, 12 "
    "and 5, not 112 ... 7) and inputs under about 75 px fail": (
        "inception_resnet_v2", "inception_v3", "inception_v4",
    ),
}  # fmt: skip


#: Name patterns (fnmatch) of timm models whose input size is fixed unless they are built with
#: timm's ``dynamic_img_size=True`` (windows padded to fit); they are built with it unless
#: ``model.backbone.kwargs`` sets it. Measured as :data:`EXCLUDED` was: every ``swin*`` gives
#: maps of ``ceil(size / stride)`` from 64x64 to 256x320, and at its pretrained size the same
#: maps, from the same weights, as without the switch.
DYNAMIC_IMG_SIZE = ("swin*",)


def excluded_reason(model_name: str) -> str | None:
    """Why the timm architecture ``model_name`` (no tag) is not a backbone, or ``None``
    (plain ViTs are backbones through a simple feature pyramid: :mod:`.plain_vit`)."""
    if is_plain_vit(model_name):
        return None
    for reason, patterns in EXCLUDED.items():
        if any(fnmatch.fnmatchcase(model_name, p) for p in patterns):
            return reason
    return None


@functools.lru_cache(maxsize=1)
def timm_backbone_names() -> tuple[str, ...]:
    """Plain names of the timm models usable as backbones (sorted)."""
    return tuple(n for n in timm.list_models() if excluded_reason(n) is None)


@functools.lru_cache(maxsize=1)
def _name_set() -> frozenset[str]:
    return frozenset(timm_backbone_names())


def _list_names() -> list[str]:
    names = timm_backbone_names()
    return [*names, *(PREFIX + n for n in names)]


def _resolve(name: str) -> Any:
    model_name = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    architecture = model_name.split(".", 1)[0]
    if architecture not in _name_set():
        return None
    check_tag(model_name, name)
    create = create_plain_vit_backbone if is_plain_vit(architecture) else create_timm_backbone
    build = functools.partial(create, model_name, name=name)
    build.arguments = functools.partial(timm_arguments, model_name)  # type: ignore[attr-defined]
    build.pretrained_arguments = functools.partial(  # type: ignore[attr-defined]
        pretrained_arguments, model_name, name
    )
    return build


def pretrained_arguments(model_name: str, name: str | None = None) -> dict[str, Any]:
    """The architecture arguments timm's pretrained weights of ``model_name`` imply: none (its
    tag names the weights, the architecture is the same), once timm is known to publish them.

    Raises:
        BackboneError: timm publishes no weights for the model.
    """
    weights_source(model_name, name)
    return {}


def timm_arguments(model_name: str) -> Arguments:
    """What the timm model takes (:func:`~visionkit.models.backbones.base.builder_arguments`):
    named, the arguments of its class and of its ``features_only`` class (which differ for
    some models) and ``timm.create_model``'s layer switches; asked, ``timm.create_model(...,
    features_only=True)`` itself, so the arguments its builder functions consume (``bn_eps``)
    pass too."""
    classes = dict.fromkeys((timm_architecture(model_name), timm_architecture(model_name, True)))
    names = [n for c in classes for n in accepted_arguments(c.__init__) or ()]
    names = list(dict.fromkeys([*names, *TIMM_CREATE_KWARGS]))
    what = f"timm's {next(iter(classes)).__name__} ({model_name})"
    build = functools.partial(timm.create_model, model_name, features_only=True)
    return Arguments(
        names, what, functools.partial(library_takes, build, cache=f"timm:{model_name}")
    )


#: ``timm.create_model`` arguments that are not the architecture's (layer config switches).
TIMM_CREATE_KWARGS = ("scriptable", "exportable", "no_jit")


@functools.lru_cache(maxsize=32)
def timm_architecture(model_name: str, features_only: bool = False) -> type:
    """The class of the timm model ``model_name`` (:func:`architecture_class`)."""
    return architecture_class(lambda: timm.create_model(model_name, features_only=features_only))


def create_timm_backbone(
    model_name: str,
    pretrained: bool = False,
    out_indices: Sequence[int] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> FeatureBackbone:
    """Build ``timm.create_model(model_name, features_only=True)`` as a backbone.

    Args:
        model_name: timm name, optionally with a pretrained tag (``resnet18.a1_in1k``).
        pretrained: Load timm's pretrained weights: from the local cache, else downloaded
            into it (:func:`~visionkit.models.backbones.pretrained.fetch`).
        out_indices: Feature levels to return (default: all levels timm exposes).
        name: Registry name recorded on the backbone (default: ``model_name``).
        **kwargs: Passed to ``timm.create_model`` (e.g. ``drop_path_rate``, ``output_stride``;
            ``dynamic_img_size=True`` by default for :data:`DYNAMIC_IMG_SIZE` models).

    Returns:
        A :class:`FeatureBackbone` whose ``forward`` maps ``[B, 3, H, W]`` to NCHW maps.

    Raises:
        WeightsNotCachedError: ``pretrained=True``, the weights are not cached, and they
            could not be downloaded (offline, or no network).
        BackboneError: The model has no published weights, or timm rejects the arguments.
    """
    name = name or model_name
    architecture = model_name.split(".", 1)[0]
    if any(fnmatch.fnmatchcase(architecture, p) for p in DYNAMIC_IMG_SIZE):
        kwargs.setdefault("dynamic_img_size", True)
    if pretrained:
        overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
        source = weights_source(model_name, name)
        state_dict = read_cached(source, fetch(source))
        overlay.update(state_dict=state_dict, source="timm")
        kwargs["pretrained_cfg_overlay"] = overlay
    if out_indices is not None:
        kwargs["out_indices"] = tuple(int(i) for i in out_indices)
    body = _features(model_name, name, bool(pretrained), kwargs)
    if out_indices is not None:  # distinct, in level order, as the other backbones
        levels = len(body.feature_info.info)
        picked = [i % levels for i in kwargs["out_indices"]]  # (-1, 4): level 4 twice
        if len(set(picked)) != len(picked) or not picked:
            all_strides = [info["reduction"] for info in body.feature_info.info]
            raise OutIndicesError(out_indices_problem(out_indices, all_strides, model_name))
        if picked != sorted(picked):
            kwargs["out_indices"] = tuple(sorted(picked))
            body = _features(model_name, name, bool(pretrained), kwargs)
    cfg = getattr(body, "pretrained_cfg", None) or {}
    fmt = getattr(body, "output_fmt", "NCHW")
    strides = body.feature_info.reduction()
    if any(a >= b for a, b in pairwise(strides)):  # e.g. output_stride repeating a stride
        raise BackboneError(
            f"timm backbone {name!r} gives strides {strides}, not increasing"
            + _levels_note(model_name, kwargs)
        )
    whole = {k: v for k, v in kwargs.items() if k not in _FEATURES_ONLY_KWARGS}
    return FeatureBackbone(
        body,
        name=name,
        out_channels=body.feature_info.channels(),
        strides=strides,
        mean=to_rgb_stats(cfg.get("mean"), IMAGENET_MEAN),
        std=to_rgb_stats(cfg.get("std"), IMAGENET_STD),
        channels_last=getattr(fmt, "value", fmt) == "NHWC",
        library_names=functools.partial(_library_names, model_name, whole),
    )


#: ``timm.create_model`` arguments of the feature extractor, not of the whole model (and the
#: pretrained state dict, which is not kept).
_FEATURES_ONLY_KWARGS = ("out_indices", "feature_cls", "feature_cfg", "pretrained_cfg_overlay")


def _library_names(model_name: str, kwargs: dict[str, Any]) -> list[str]:
    """The state-dict names of timm's whole model ``model_name`` built with ``kwargs``
    (classifier included), built on the meta device; empty when it cannot be built so."""
    try:
        with torch.device("meta"):
            return list(timm.create_model(model_name, **kwargs).state_dict())
    except Exception:  # a model that needs real tensors to be built: names unknown
        return []


def _features(model_name: str, name: str, pretrained: bool, kwargs: dict[str, Any]) -> Any:
    """``timm.create_model(model_name, features_only=True, **kwargs)``; timm's refusals of
    ``out_indices`` as a :class:`BackboneError` naming the levels there are."""
    try:
        return timm.create_model(model_name, pretrained=pretrained, features_only=True, **kwargs)
    except (AssertionError, IndexError) as e:  # timm checks out_indices with assert / indexing
        strides = _all_strides(model_name, kwargs) if "out_indices" in kwargs else None
        problem = strides and out_indices_problem(kwargs["out_indices"], strides, model_name)
        if problem:
            raise OutIndicesError(problem) from None
        raise BackboneError(f"cannot build timm backbone {name!r} with {kwargs}: {e}") from e


def _all_strides(model_name: str, kwargs: dict[str, Any]) -> list[int] | None:
    """The strides of every feature level of ``model_name`` built with ``kwargs`` (less its
    ``out_indices``); ``None`` when the model cannot be built without them either."""
    others = {k: v for k, v in kwargs.items() if k not in ("out_indices", "pretrained_cfg_overlay")}
    try:
        with torch.device("meta"):
            info = timm.create_model(model_name, features_only=True, **others).feature_info
    except Exception:  # the arguments themselves are wrong: the error says so already
        return None
    # every level timm counts out_indices over, not only the default ones (dla hides level 0)
    return [level["reduction"] for level in info.info]


def _levels_note(model_name: str, kwargs: dict[str, Any]) -> str:
    """What ``out_indices`` can pick for ``model_name`` built with ``kwargs``, for a message
    (:func:`~visionkit.models.backbones.base.levels_note`); empty when the model cannot be
    built without them either."""
    strides = _all_strides(model_name, kwargs)
    return f" ({levels_note(model_name, strides)})" if strides else ""


def check_tag(model_name: str, name: str | None = None) -> None:
    """Refuse a pretrained tag timm does not know for the architecture (``resnet18.bogus``),
    listing the tags it has, before timm's own ``RuntimeError`` deep in a build.

    Raises:
        UnknownNameError: the tag is unknown (the message lists the architecture's tags).
    """
    architecture, dot, tag = model_name.partition(".")
    if not dot:
        return
    try:
        get_pretrained_cfg(model_name)
        return
    except RuntimeError:  # timm: "Invalid pretrained tag (...) for ..."
        pass
    tags = timm.list_pretrained(f"{architecture}.*")
    prefix = (name or model_name)[: -len(model_name)]
    close = close_names(model_name, tags, n=3)
    shown = [*close, *(t for t in tags if t not in close)][:8]
    known = (
        f"its tags: {', '.join(prefix + t for t in shown)}"
        + (f" (and {len(tags) - len(shown)} more)" if len(tags) > len(shown) else "")
        if tags
        else "timm publishes no weights for it"
    )
    raise UnknownNameError(
        f"{name or model_name!r}: timm has no pretrained tag {tag!r} for "
        f"{architecture} ({known}; `{prefix}{architecture}` alone takes timm's default)"
    )


HF_HUB_PREFIX = "hf-hub:"  # timm.create_model's spelling of a Hugging Face repo


def hf_hub_spelling(name: str) -> UnknownNameError | None:
    """The error for timm's ``hf-hub:timm/<name>`` (a Hugging Face repo id), naming the timm
    name visionkit takes for it (whose weights are that repo's); ``None`` for other names."""
    if not name.startswith(HF_HUB_PREFIX):
        return None
    repo = name[len(HF_HUB_PREFIX) :]
    if repo.startswith(PREFIX):
        return UnknownNameError(
            f"{name!r}: visionkit names timm's models by their timm name, whose weights are "
            f"that repo's: write {repo.removeprefix(PREFIX)!r} (or {repo!r}), without "
            f"{HF_HUB_PREFIX!r}"
        )
    return UnknownNameError(
        f"{name!r}: only timm's own repos (hf-hub:timm/...) are timm names visionkit knows; a "
        "file of another repo is given as a local file: pretrained: /path/to/model.safetensors"
    )


def weights_source(model_name: str, name: str | None = None) -> WeightsSource:
    """Where timm publishes the pretrained weights of ``model_name`` (tag allowed), as timm
    itself resolves them: the Hugging Face repo when the config names one, else the URL. The
    tag is the caller's to check first (:func:`check_tag`: the registry's lookup of the name,
    ``visionkit weights pull``).

    Raises:
        BackboneError: timm knows the model but publishes no weights for it.
    """
    name = name or model_name
    cfg = get_pretrained_cfg(model_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise BackboneError(
            f"timm publishes no pretrained weights for {name!r}; use pretrained=False"
        )
    if cfg.file:
        return WeightsSource(name, file=cfg.file)
    if cfg.hf_hub_id:  # a URL file already in torch hub's cache is used too
        return WeightsSource(
            name, hf_repo=cfg.hf_hub_id, hf_filenames=_hf_filenames(cfg), url=cfg.url or None
        )
    return WeightsSource(name, url=cfg.url)  # timm checks no hash by default


def _hf_filenames(cfg: Any) -> tuple[str, ...]:
    """The files timm tries in a weights repo, in its order: a safetensors file first (as
    timm's ``_get_safe_alternatives``), then the pickle-based one."""
    filename = cfg.hf_hub_filename or "pytorch_model.bin"
    if filename.endswith(".safetensors"):
        return (filename,)
    safe = {
        "pytorch_model.bin": "model.safetensors",
        "open_clip_pytorch_model.bin": "open_clip_model.safetensors",
    }.get(filename)
    if safe is None and filename.endswith(".bin"):
        safe = filename[: -len(".bin")] + ".safetensors"
    return (safe, filename) if safe else (filename,)


BACKBONES.add_provider(_list_names, _resolve)
