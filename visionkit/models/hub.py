"""Pretrained files by name: what ``visionkit weights pull`` fetches and ``weights list`` shows.

A name is one of

* a timm model, as the backbone registry spells it, with or without a pretrained tag:
  ``resnet18``, ``resnet18.a1_in1k``, ``timm/resnet18`` (the Hugging Face file timm itself
  would download, into the Hugging Face hub cache);
* ``torchvision/<model>`` or ``torchvision:<model>``: the ``DEFAULT`` member of that
  torchvision model's weights enum, for classification backbones (``torchvision/resnet50``)
  as for the detection and segmentation models ``init_from`` can start from
  (``torchvision:fcos_resnet50_fpn``, ``torchvision:retinanet_resnet50_fpn``,
  ``torchvision:retinanet_resnet50_fpn_v2``, ``torchvision:deeplabv3_resnet50``,
  ``torchvision:fcn_resnet50``), into torch hub's cache;
* torchvision's spelling of one file, ``ResNet50_Weights.IMAGENET1K_V1`` (that member).

timm's ``hf-hub:timm/<name>`` is refused with the name to write instead.

Downloads go through :func:`visionkit.models.backbones.pretrained.fetch` (the libraries' own
download functions and caches; nothing with ``HF_HUB_OFFLINE=1`` / ``VISIONKIT_OFFLINE=1``),
and a pulled file is read once with the one weight loader (safetensors, or
``torch.load(weights_only=True)``) so a broken or unsafe file is reported at once.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path

from visionkit.models.backbones import timm_backbones, torchvision_backbones
from visionkit.models.backbones.pretrained import (
    WeightsNotCachedError,
    WeightsSource,
    cached_file,
    fetch,
    hf_cache_dir,
    read_cached,
    torch_hub_dir,
)
from visionkit.models.weights import WEIGHTS_FILE_SUFFIXES
from visionkit.registry import UnknownNameError

TORCHVISION_PREFIXES = ("torchvision:", "torchvision/")


@dataclass(frozen=True)
class CachedWeights:
    """One weights file in a cache: the name that fetches it, the file, its size, the cache."""

    name: str
    file: Path
    size: int
    cache: Path


@dataclass(frozen=True)
class Pulled:
    """What :func:`pull` did for one name: the file, its size and tensor count, and whether
    it was downloaded now (``False``: it was already cached)."""

    name: str
    file: Path
    size: int
    tensors: int
    downloaded: bool


def weights_source(name: str) -> WeightsSource:
    """Where the library publishes the file of ``name`` (see the module docstring).

    Raises:
        UnknownNameError: neither a timm model nor a torchvision model (close names listed), or
            a file's name (``MyWeights.pth``).
        BackboneError: the model exists but its library publishes no weights for it.
    """
    if name.lower().endswith(WEIGHTS_FILE_SUFFIXES):
        raise UnknownNameError(
            f"{name!r} is a file's name: `visionkit weights pull` fetches a library's published "
            "weights by the model's name (resnet18.a1_in1k, torchvision/resnet50); a file of "
            f"your own is given as it is, `pretrained: /path/to/{Path(name).name}` in a config"
        )
    member = torchvision_backbones.weights_member(name)  # ResNet50_Weights.IMAGENET1K_V1
    if member is not None:
        return torchvision_backbones.weights_source(member[1], name)
    spelling = timm_backbones.hf_hub_spelling(name)  # hf-hub:timm/resnet18.a1_in1k
    if spelling is not None:
        raise spelling
    for prefix in TORCHVISION_PREFIXES:
        if name.startswith(prefix):
            model = name[len(prefix) :]
            if model not in _torchvision_models():
                raise _unknown(name, [prefix + m for m in _torchvision_models()])
            weights = torchvision_backbones.default_weights(model, name)
            return torchvision_backbones.weights_source(weights, name)
    import timm

    model_name = name.removeprefix(timm_backbones.PREFIX)
    if model_name.split(".", 1)[0] not in timm.list_models():
        raise _unknown(name, timm.list_models(pretrained=True))
    timm_backbones.check_tag(model_name, name)
    return timm_backbones.weights_source(model_name, name)


def weights_file(name: str) -> Path:
    """The file of ``name`` from its library's cache, downloaded there first when missing.

    Raises:
        WeightsNotCachedError: not cached, and offline or the download failed; the message
            names ``visionkit weights pull <name>`` and the expected cache path.
    """
    return fetch(weights_source(name))


def pull(name: str) -> Pulled:
    """Fetch the file of ``name`` into its library's cache (:func:`weights_file`) and read it
    once with the one weight loader.

    Raises:
        WeightsNotCachedError: the download failed or visionkit is offline.
        CheckpointError: the file is not a readable, safe weights file (the message says to
            delete it and pull again).
    """
    source = weights_source(name)
    already = cached_file(source)
    try:
        path = already if already is not None else fetch(source)
    except WeightsNotCachedError as err:  # the advice to pull them would be this command
        raise WeightsNotCachedError(
            err.name, err.path, err.reason, err.download_failed, pulling=True
        ) from None
    tensors = read_cached(source, path)
    return Pulled(name, path, path.stat().st_size, len(tensors), already is None)


def list_cached() -> list[CachedWeights]:
    """The weights files in the Hugging Face hub cache and in torch hub's cache, each with the
    name that pulls it (the repo id for Hugging Face files; for torch hub files the
    torchvision / timm name whose URL has that file name, ``?`` when none does)."""
    return [*_hf_cached(), *_torch_hub_cached()]


def _hf_cached() -> list[CachedWeights]:
    from huggingface_hub import scan_cache_dir

    cache = hf_cache_dir()
    if not cache.is_dir():
        return []
    found: dict[Path, CachedWeights] = {}
    for repo in sorted(scan_cache_dir(cache).repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            for file in revision.files:
                if file.file_name.endswith(WEIGHTS_FILE_SUFFIXES) and file.file_path not in found:
                    found[file.file_path] = CachedWeights(
                        repo.repo_id, file.file_path, file.size_on_disk, cache
                    )
    return list(found.values())


def _torch_hub_cached() -> list[CachedWeights]:
    cache = torch_hub_dir()
    if not cache.is_dir():
        return []
    files = sorted(
        p
        for p in cache.iterdir()
        if p.is_file() and not p.name.startswith(".") and not p.name.endswith(".partial")
    )
    names = _names_by_url_file() if files else {}
    return [CachedWeights(names.get(p.name, "?"), p, p.stat().st_size, cache) for p in files]


def _names_by_url_file() -> dict[str, str]:
    """File name of a published URL → the name that pulls it: torchvision's weights enums
    (a member other than ``DEFAULT`` shown as ``torchvision/resnet50 (IMAGENET1K_V1)``) and
    timm's URL-hosted weights."""
    import timm
    import torchvision

    names: dict[str, str] = {}
    for tag in timm.list_pretrained():
        cfg = timm.models.get_pretrained_cfg(tag)
        if cfg is not None and cfg.url:
            names.setdefault(cfg.url.rsplit("/", 1)[-1], tag)
    classifiers = set(torchvision.models.list_models(module=torchvision.models))
    for model in _torchvision_models():
        prefix = "torchvision/" if model in classifiers else "torchvision:"
        enum = torchvision.models.get_model_weights(model)
        for member in enum:
            label = prefix + model
            if member is not enum.DEFAULT:
                label += f" ({member.name})"
            names[member.url.rsplit("/", 1)[-1]] = label
    return names


@functools.lru_cache(maxsize=1)
def _torchvision_models() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models())


def _unknown(name: str, candidates: list[str] | tuple[str, ...]) -> UnknownNameError:
    close = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return UnknownNameError(
        f"no pretrained weights named {name!r}: expected a timm model (resnet18.a1_in1k, "
        "timm/resnet18), torchvision/<model> or torchvision:<model> "
        f"(torchvision:fcos_resnet50_fpn); see `visionkit list backbones`{hint}"
    )
