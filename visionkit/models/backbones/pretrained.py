"""Backbone weights: a local file given as ``pretrained``, and the libraries' pretrained files.

``pretrained=True`` fetches the library's file the way the library itself does, into the
library's standard cache: timm's Hugging Face files with ``huggingface_hub`` (timm's own
:func:`timm.models._hub.download_from_hf`, cache ``HF_HUB_CACHE``, default
``~/.cache/huggingface/hub``), timm's and torchvision's URL files with torch hub
(:func:`torch.hub.download_url_to_file`, cache ``$TORCH_HOME/hub/checkpoints``, default
``~/.cache/torch/hub/checkpoints``). A file already in the cache is used without any network
access. With ``HF_HUB_OFFLINE=1`` or ``VISIONKIT_OFFLINE=1`` in the environment nothing is
downloaded and only the caches are read. When the file is neither cached nor downloadable,
:class:`WeightsNotCachedError` names the command that fetches it (``visionkit weights pull``),
the cache path where it is expected, and the alternative of a local file.

Files are loaded by the one weight loader, :mod:`visionkit.models.weights`: safetensors, or
``torch.load(..., weights_only=True)``, so a checkpoint cannot run code when it is loaded
(torchvision's own loads too: :func:`forced_weights_only`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from visionkit.errors import CheckpointError, VisionkitError
from visionkit.models.backbones.hf_snapshots import cache_gap, only_snapshot_file
from visionkit.models.weights import LoadReport, load_weights, read_weights

logger = logging.getLogger("visionkit.models.backbones")

#: Environment switches that keep visionkit from downloading (either one, set to 1/true/yes/on).
OFFLINE_VARIABLES = ("VISIONKIT_OFFLINE", "HF_HUB_OFFLINE")
_TRUE = frozenset({"1", "TRUE", "YES", "ON"})  # the values huggingface_hub reads as true


class WeightsNotCachedError(CheckpointError):
    """``pretrained=True`` asked for weights that are not in the local cache and could not be
    downloaded (offline, or the download failed). ``path`` is where they were expected;
    ``download_failed`` adds the advice to switch off downloads on machines without a network."""

    def __init__(
        self,
        name: str,
        looked_in: object,
        why: str | None = None,
        download_failed: bool = False,
        pulling: bool = False,
    ) -> None:
        self.name = name
        self.path = str(looked_in)
        self.reason = why or "not downloaded"
        self.download_failed = download_failed
        message = (
            f"pretrained weights for {name!r} are not in the local cache ({self.path}) and "
            f"were not downloaded: {self.reason}. "
        )
        if pulling:  # `visionkit weights pull` itself: it is the download
            message += (
                "`visionkit weights pull` needs network access (the Hugging Face hub for timm, "
                "download.pytorch.org for torchvision); without it, pull them on a machine that "
                "has it and copy the file to the same place here"
            )
        else:
            message += (
                f"Fetch them on a machine with network access with `visionkit weights pull "
                f"{name}` (then copy the cache folder to the same place on this machine), or "
                "pass a local file instead: `pretrained: /path/to/weights.safetensors` in a "
                "config, or create_backbone(name, pretrained='/path/to/weights.safetensors') in "
                "Python; .safetensors, .pth, .pt and .bin are accepted. To train from random "
                "weights instead: model.backbone.pretrained=false"
            )
        if download_failed and not pulling:  # huggingface_hub may retry for half a minute
            message += (
                ". On a machine without network access, set VISIONKIT_OFFLINE=1 (or "
                "HF_HUB_OFFLINE=1): visionkit then reads only the caches and stops at once "
                "instead of trying to download"
            )
        elif pulling and why and "offline" in why:
            message += "; unset the offline switch to download"
        VisionkitError.__init__(self, message)


class CacheNotWritableError(CheckpointError):
    """Weights that are not cached could not be downloaded because the cache folder cannot
    be written (read-only, another user's, not a folder, the disk full): the message names the
    folder and the environment variable that puts the cache elsewhere, not the network."""

    def __init__(self, source: WeightsSource, folder: Path, why: str) -> None:
        self.name, self.path, self.reason = source.name, str(folder), why
        point = (
            "HF_HUB_CACHE at a folder you can write (export HF_HUB_CACHE=/path/to/hf-cache)"
            if source.hf_repo
            else "TORCH_HOME at a folder you can write (export TORCH_HOME=/path/to/torch; the "
            "files go to $TORCH_HOME/hub/checkpoints)"
        )
        local = local_file_advice(source)
        VisionkitError.__init__(
            self,
            f"cannot download the pretrained weights for {source.name!r}: the cache folder "
            f"{folder} cannot be written ({why}). Point {point}, or give a local file "
            f"instead: {local}",
        )


def local_file_advice(source: WeightsSource) -> str:
    """How a config gives the file of ``source`` copied by hand: ``init_from:
    torchvision:<model>=/path/to/<file>`` for the torchvision models ``init_from`` starts from
    (:data:`~visionkit.models.torchvision_detectors.ARCHITECTURES`), ``pretrained:
    /path/to/<file>`` for any other (a backbone's weights)."""
    from visionkit.models.torchvision_detectors import ARCHITECTURES, PREFIX

    if source.hf_repo and source.hf_filenames:  # what the download tries first
        file = source.hf_filenames[0]
    else:
        file = Path(source.url).name if source.url else "weights.pth"
    model = source.name.removeprefix(PREFIX)
    if source.name.startswith(PREFIX) and model in ARCHITECTURES:
        return f"init_from: {source.name}=/path/to/{file}"
    return f"`pretrained: /path/to/{file}` in a config"


@dataclass(frozen=True)
class WeightsSource:
    """Where a library publishes one pretrained file, and how the library caches it.

    Attributes:
        name: the name ``visionkit weights pull`` takes for it (``resnet18.a1_in1k``,
            ``torchvision/resnet50``, ``torchvision:fcos_resnet50_fpn``).
        hf_repo: Hugging Face repo id (``timm/resnet18.a1_in1k``, optionally ``@revision``).
        hf_filenames: the repo's files to try, in order (the safetensors one first).
        url: a URL cached by torch hub (``<hub dir>/checkpoints/<basename>``).
        check_hash: check the hash prefix in the URL's file name (``-<sha256 prefix>.``), as
            torchvision does.
        file: a local file the library's config names (timm's ``pretrained_cfg.file``).
    """

    name: str
    hf_repo: str | None = None
    hf_filenames: tuple[str, ...] = ()
    url: str | None = None
    check_hash: bool = False
    file: str | None = None

    def expected_at(self) -> str:
        """Where the cached file is expected, for messages."""
        if self.file:
            return self.file
        if self.hf_repo:
            repo = self.hf_repo.partition("@")[0]
            return str(hf_cache_dir() / f"models--{repo.replace('/', '--')}")
        return str(torch_hub_file(self.url or ""))


def offline_reason() -> str | None:
    """``"VISIONKIT_OFFLINE=1"`` (or ``HF_HUB_OFFLINE``) when that switch forbids downloads
    now, else ``None``. Read at call time, so a test or a script can set it."""
    for variable in OFFLINE_VARIABLES:
        value = os.environ.get(variable, "")
        if value.strip().upper() in _TRUE:
            return f"{variable}={value} is set (offline)"
    return None


def cached_file(source: WeightsSource) -> Path | None:
    """The file of ``source`` if it is already on disk (no network access), else ``None``."""
    if source.file:
        return Path(source.file).expanduser()
    if source.hf_repo:
        found = hf_cached_file(source.hf_repo, list(source.hf_filenames))
        if found is not None:
            return found
    if source.url:
        path = torch_hub_file(source.url)
        if path.is_file():
            return path
    return None


def fetch(source: WeightsSource) -> Path:
    """The file of ``source``: from the cache, else downloaded into the library's cache.

    Raises:
        WeightsNotCachedError: not cached, and offline (:func:`offline_reason`) or the
            download failed (no network, HTTP error, wrong hash); the message says which.
        CacheNotWritableError: not cached, and the cache folder cannot be written.
    """
    found = cached_file(source)
    if found is not None:
        return found
    why, failed = offline_reason(), False
    folder = hf_cache_dir() if source.hf_repo else torch_hub_dir()
    unwritable = None if why or source.file else folder_unwritable(folder)
    if unwritable:
        raise CacheNotWritableError(source, folder, unwritable)
    if why is None and source.hf_repo:
        unreachable = host_unreachable(hf_endpoint())
        if unreachable:
            raise WeightsNotCachedError(
                source.name, source.expected_at(), f"the download failed ({unreachable})", True
            )
    if why is None:
        try:
            if source.hf_repo:
                return _download_hf(source.hf_repo, source.hf_filenames)
            if source.url:
                return _download_url(source.url, source.check_hash)
        # urllib, httpx and huggingface_hub raise unrelated error types for network
        # failures, and torch hub a RuntimeError for a wrong hash: all mean "not downloaded".
        except Exception as err:
            if _local_failure(err):  # the disk filled during the download, say
                raise CacheNotWritableError(source, folder, f"{type(err).__name__}: {err}") from err
            why, failed = f"the download failed ({type(err).__name__}: {err})", True
        else:
            why = "no file to download"
    if source.hf_repo and "@" not in source.hf_repo:  # a copied cache folder, incomplete
        gap = cache_gap(hf_cache_dir(), source.hf_repo, source.hf_filenames)
        why += f"; {gap}" if gap else ""
    raise WeightsNotCachedError(source.name, source.expected_at(), why, failed)


def folder_unwritable(folder: Path) -> str | None:
    """Why no file can be made in ``folder`` (created when missing), else ``None``."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


#: Errors of the local disk, not of the network, that a download can meet: the disk's own,
#: and those of a file operation (``err.filename`` set) on the cache.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_FILE_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOTDIR})


def _local_failure(err: Exception) -> bool:
    """Whether a download failed on the local disk: an ``OSError`` of :data:`_DISK_ERRNOS`, or
    of :data:`_FILE_ERRNOS` naming a file. A TLS error (``ssl.SSLError``, whose errno 1 is
    ``EPERM``'s number) and the network's errors are not."""
    if not isinstance(err, OSError) or isinstance(
        err, (urllib.error.URLError, ConnectionError, socket.gaierror, ssl.SSLError)
    ):
        return False
    return err.errno in _DISK_ERRNOS or (err.errno in _FILE_ERRNOS and err.filename is not None)


def read_cached(source: WeightsSource, path: Path) -> dict[str, Tensor]:
    """The tensors of ``source``'s cached file ``path`` (the one weight loader).

    Raises:
        CheckpointError: the file is not a readable, safe weights file (a partial download, a
            truncated copy, a proxy's HTML page): :func:`unreadable_cache`'s advice.
    """
    try:
        return read_weights(path)
    except CheckpointError as err:
        raise unreadable_cache(source, path, err.reason) from None


def unreadable_cache(source: WeightsSource, path: Path, reason: str) -> CheckpointError:
    """The error for a cached file of ``source`` that does not load: what to delete so that the
    next pull downloads it again, and the command. A Hugging Face file is a link to a blob of
    its repo's folder, and huggingface_hub links an existing blob again rather than download
    it: the repo's folder is what goes."""
    if source.file:  # a file timm's config names: not in a cache visionkit pulls into
        return CheckpointError(path, reason)
    if source.hf_repo and path.is_relative_to(hf_cache_dir()):
        repo = source.hf_repo.partition("@")[0]
        delete = f"delete the folder {hf_cache_dir() / ('models--' + repo.replace('/', '--'))}"
    else:
        delete = "delete the file"
    return CheckpointError(
        path,
        f"{reason}; a partial download or a truncated copy? {delete} and run `visionkit "
        f"weights pull {source.name}` again (or copy it again from a machine where it loads)",
    )


#: Seconds to wait for a connection to the hub (huggingface_hub's own ``HF_HUB_ETAG_TIMEOUT``).
CONNECT_TIMEOUT_S = 10.0


def host_unreachable(url: str) -> str | None:
    """Why the host of ``url`` cannot be reached (its name does not resolve, or no answer
    within :data:`CONNECT_TIMEOUT_S`, the name lookup included), else ``None``; also ``None``
    behind a proxy, which the download itself goes through. A machine without network is told
    so at once, where huggingface_hub would retry for half a minute first."""
    parsed = urlparse(url)
    proxies = {k: v for k, v in urllib.request.getproxies().items() if k != "no"}
    if parsed.scheme not in ("http", "https") or proxies:  # no_proxy alone is no proxy
        return None
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    start = time.monotonic()
    addresses = _resolve(host, port, CONNECT_TIMEOUT_S)
    if isinstance(addresses, str):
        return f"cannot resolve {host} ({addresses}): no network access?"
    failure: OSError = TimeoutError("timed out")
    for family, kind, proto, _, address in addresses:  # each in turn, as create_connection
        left = CONNECT_TIMEOUT_S - (time.monotonic() - start)
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(address)
            return None
        except OSError as err:
            failure = err
    return f"cannot connect to {host}:{port} ({failure.strerror or failure}): no network access?"


def _resolve(host: str, port: int, timeout: float) -> list[tuple] | str:
    """``socket.getaddrinfo(host, port)`` (TCP) within ``timeout`` seconds, or why not: the
    system's resolver takes no timeout (a missing DNS server can hold it for minutes), so it
    runs in a daemon thread that is left behind when it does not answer in time."""
    found: list = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as err:  # UnicodeError: a malformed name ("a..b")
            found.append(err)

    thread = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not found:
        return f"no answer from the name server within {timeout:g} s"
    if isinstance(found[0], Exception):
        return str(getattr(found[0], "strerror", None) or found[0])
    return found[0] or "no address"


def hf_endpoint() -> str:
    """The Hugging Face hub's address (``HF_ENDPOINT``, default ``https://huggingface.co``)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def _download_hf(repo_id: str, filenames: tuple[str, ...]) -> Path:
    """timm's own Hugging Face download (:func:`timm.models._hub.download_from_hf`) of the
    first of ``filenames`` the repo holds, into :func:`hf_cache_dir`."""
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    from timm.models import _hub

    missing: Exception | None = None
    for filename in filenames:
        try:
            path = _hub.download_from_hf(repo_id, filename, cache_dir=hf_cache_dir())
        except LocalEntryNotFoundError:  # no connection: also an EntryNotFoundError
            raise
        except EntryNotFoundError as err:  # the repo has no such file: try the next name
            missing = err
            continue
        logger.info("downloaded %s/%s to %s", repo_id, filename, path)
        return Path(path)
    raise FileNotFoundError(f"{repo_id} has none of {', '.join(filenames)} ({missing})")


def _download_url(url: str, check_hash: bool) -> Path:
    """torch hub's download of ``url`` to :func:`torch_hub_file` (a temporary file renamed
    when complete; the SHA-256 prefix in the file name checked when ``check_hash``)."""
    path = torch_hub_file(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(path.name) if check_hash else None
    torch.hub.download_url_to_file(
        url, str(path), match.group(1) if match else None, progress=sys.stderr.isatty()
    )
    logger.info("downloaded %s to %s", url, path)
    return path


#: Tensors a weights file may hold that a backbone has no place for without a warning (an
#: ImageNet classifier's weight and bias, a final conv and norm: 8 for timm's EfficientNets).
EXPECTED_EXTRA_TENSORS = 16


def load_pretrained_file(
    backbone: nn.Module, path: str | os.PathLike[str], prefixes: tuple[str, ...] = ("",)
) -> LoadReport:
    """``create_backbone(name, pretrained=path)``: the matching tensors of a local weights file
    through the one weight loader (:func:`visionkit.models.weights.load_weights`).

    The report is attached as ``backbone.load_report`` and its summary logged on the
    ``visionkit.models.backbones`` logger: INFO when every tensor of the backbone was loaded
    (but those of layers visionkit adds to the library model, ``backbone.new_layers``: a plain
    ViT's pyramid), WARNING otherwise. Names of the file that the backbone lacks are expected, and only
    reported, when they are the library model's layers the backbone does not use (its
    classifier, the late blocks ``features_only`` drops: ``backbone.library_names``, the
    report's ``unused``) or a few (:data:`EXPECTED_EXTRA_TENSORS`: a final norm); others, more
    than that (a deeper model's weights: ``resnet34`` into ``resnet18``), are a WARNING too.
    """
    tensors = read_weights(path)
    if hasattr(backbone, "file_names"):  # a library model's file, named as its wrapper names it
        tensors = backbone.file_names(tensors)
    report = load_weights(backbone, tensors, prefixes, context="pretrained", label=str(path))
    library_names = getattr(backbone, "library_names", None)
    if report.unexpected and callable(library_names):
        whole = set(library_names())
        report.unused = [name for name in report.unexpected if name in whole]
    lacked = len(report.unexpected) - len(report.unused)
    new = getattr(backbone, "new_layers", ())  # layers of visionkit's own (a ViT's pyramid)
    complete = report.ok or (
        not report.mismatched
        and not report.with_layer
        and all(name.startswith(new) for name in report.missing)
    )
    quiet = complete and (lacked == 0 or len(report.unexpected) <= EXPECTED_EXTRA_TENSORS)
    logger.log(logging.INFO if quiet else logging.WARNING, "%s", report.summary())
    backbone.load_report = report
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
    return None if revision else only_snapshot_file(hf_cache_dir(), repo, filenames)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, as the environment says now (huggingface_hub's
    ``constants`` read it once, at import): ``HF_HUB_CACHE``, else the older
    ``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub`` (``HF_HOME`` defaulting to
    ``$XDG_CACHE_HOME/huggingface``, ``~/.cache/huggingface``); ``~`` and ``$VARS`` expanded,
    as huggingface_hub's rule does. One difference: a variable set to the empty string counts
    as unset here, where huggingface_hub would take it as the current folder."""

    def expand(path: str) -> str:
        return os.path.expandvars(os.path.expanduser(path))

    env = os.environ
    home = expand(
        env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    )
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(expand(cache))


def torch_hub_dir() -> Path:
    """torch hub's folder of downloaded weights, ``<hub dir>/checkpoints`` (``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torch_hub_file(url: str) -> Path:
    """Where torch hub keeps (would keep) the download of ``url``: ``<hub dir>/checkpoints/<name>``."""
    return torch_hub_dir() / os.path.basename(urlparse(url).path)


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
