"""``pretrained: true`` downloads through timm's and torchvision's own download functions into
their standard caches, reads only the caches when offline, and says what to do when the file
is neither cached nor downloadable. No network: a fake Hugging Face hub and ``file://`` URLs
(:mod:`tests.models.backbones.hub_fakes`)."""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import time
from urllib.parse import urlparse

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from tests.models.backbones.hub_fakes import (
    fake_hf_hub,
    forbid_downloads,
    isolated_caches,
    serve_torchvision_file,
)
from visionkit.errors import CheckpointError
from visionkit.models import hub
from visionkit.models.backbones import WeightsNotCachedError, create_backbone, pretrained
from visionkit.models.backbones.pretrained import CacheNotWritableError

TIMM_NAME = "test_convnext"  # 272k parameters; its weights repo is timm/test_convnext.r160_in1k
TIMM_REPO = "timm/test_convnext.r160_in1k"
TV_NAME = "mobilenet_v3_small"  # a small torchvision classifier with weights
REAL_HOST_UNREACHABLE = pretrained.host_unreachable  # isolated_caches replaces it


@pytest.fixture
def caches(monkeypatch, tmp_path):
    """``(HF_HUB_CACHE, torch hub checkpoints)``: empty, online, no sockets."""
    return isolated_caches(monkeypatch, tmp_path / "cache")


@pytest.fixture(scope="module")
def timm_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return timm.create_model(TIMM_NAME).state_dict()


@pytest.fixture(scope="module")
def tv_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return torchvision.models.get_model(TV_NAME).state_dict()


def assert_timm_loaded(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Every tensor of the timm feature extractor equals the served one (``features_only``
    names top-level modules ``stem_0`` for ``stem.0``)."""
    body = backbone.body.state_dict()
    for key, value in body.items():
        torch.testing.assert_close(value, state[key.replace("_", ".", 1)], msg=key)
    assert len(body) > 10


def test_timm_downloads_through_its_hub_into_the_hf_cache(
    caches, monkeypatch, tmp_path, timm_state
):
    hf_cache, _ = caches
    served = tmp_path / "served.safetensors"
    save_file(timm_state, str(served))
    calls = fake_hf_hub(monkeypatch, {f"{TIMM_REPO}/model.safetensors": served})
    backbone = create_backbone(TIMM_NAME, pretrained=True)
    assert calls == [(TIMM_REPO, "model.safetensors")]
    assert_timm_loaded(backbone, timm_state)
    assert list(hf_cache.glob("models--timm--test_convnext.r160_in1k/snapshots/*/*")) != []

    # Offline afterwards: the cached file is read, nothing is downloaded.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forbid_downloads(monkeypatch)
    assert_timm_loaded(create_backbone(f"timm/{TIMM_NAME}", pretrained=True), timm_state)


def test_timm_takes_the_bin_file_when_the_repo_has_no_safetensors(
    caches, monkeypatch, tmp_path, timm_state
):
    served = tmp_path / "pytorch_model.bin"
    torch.save(timm_state, served)
    calls = fake_hf_hub(monkeypatch, {f"{TIMM_REPO}/pytorch_model.bin": served})
    backbone = create_backbone(TIMM_NAME, pretrained=True)
    assert calls == [(TIMM_REPO, "model.safetensors"), (TIMM_REPO, "pytorch_model.bin")]
    assert_timm_loaded(backbone, timm_state)


def test_torchvision_downloads_the_weights_url_into_torch_hub(
    caches, monkeypatch, tmp_path, tv_state
):
    _, hub = caches
    served = serve_torchvision_file(monkeypatch, TV_NAME, tv_state, tmp_path / "served")
    backbone = create_backbone(f"torchvision/{TV_NAME}", pretrained=True)
    assert (hub / served.name).read_bytes() == served.read_bytes()
    body = backbone.body.state_dict()
    assert len(body) > 10
    for key, value in body.items():
        torch.testing.assert_close(value, tv_state[key], msg=key)

    # Offline afterwards: torch hub's cached file is used.
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    forbid_downloads(monkeypatch)
    again = create_backbone(f"torchvision/{TV_NAME}", pretrained=True)
    first = next(iter(body))
    torch.testing.assert_close(again.body.state_dict()[first], body[first])


@pytest.mark.reliability
def test_the_hf_cache_is_found_where_huggingface_hub_puts_it(
    caches, monkeypatch, tmp_path, timm_state
):
    """``HUGGINGFACE_HUB_CACHE`` (the older name, still honoured by huggingface_hub) and
    ``$VARS`` in ``HF_HOME``: timm's files there are used offline (were "not in the local
    cache (~/.cache/huggingface/hub/...)")."""
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "legacy"))
    assert pretrained.hf_cache_dir() == tmp_path / "legacy"
    served = tmp_path / "served.safetensors"
    save_file(timm_state, str(served))
    fake_hf_hub(monkeypatch, {f"{TIMM_REPO}/model.safetensors": served})
    create_backbone(TIMM_NAME, pretrained=True)
    assert list((tmp_path / "legacy").glob("models--timm--*/snapshots/*/model.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    forbid_downloads(monkeypatch)
    assert_timm_loaded(create_backbone(TIMM_NAME, pretrained=True), timm_state)

    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE")
    monkeypatch.setenv("VK_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("HF_HOME", "$VK_SCRATCH/hf")  # as huggingface_hub, $VARS expanded
    assert pretrained.hf_cache_dir() == tmp_path / "scratch" / "hf" / "hub"


@pytest.mark.reliability
def test_a_truncated_cached_file_says_what_to_delete_and_how_to_pull_again(
    caches, monkeypatch, tmp_path, timm_state, tv_state
):
    """A copy of the cache that stopped half-way, read offline by ``pretrained: true``."""
    hf_cache, hub = caches
    served = tmp_path / "served.safetensors"
    save_file(timm_state, str(served))
    fake_hf_hub(monkeypatch, {f"{TIMM_REPO}/model.safetensors": served})
    tv_served = serve_torchvision_file(monkeypatch, TV_NAME, tv_state, tmp_path / "served")
    create_backbone(TIMM_NAME, pretrained=True)
    create_backbone(f"torchvision/{TV_NAME}", pretrained=True)
    monkeypatch.setenv("VISIONKIT_OFFLINE", "1")
    repo = hf_cache / "models--timm--test_convnext.r160_in1k"
    for blob in (*repo.glob("blobs/*"), hub / tv_served.name):
        blob.write_bytes(blob.read_bytes()[:4000])

    with pytest.raises(CheckpointError) as info:
        create_backbone(TIMM_NAME, pretrained=True)
    message = str(info.value)  # the link alone would be linked to the same blob again
    assert "not a readable safetensors file" in message
    assert f"delete the folder {repo} and run `visionkit weights pull {TIMM_NAME}` again" in message

    with pytest.raises(CheckpointError) as info:  # was "OSError: [Errno 22] Invalid argument"
        create_backbone(f"torchvision/{TV_NAME}", pretrained=True)
    message = str(info.value)
    assert message.startswith(
        f"cannot load checkpoint {hub / tv_served.name}: truncated or corrupt"
    )
    assert (
        f"delete the file and run `visionkit weights pull torchvision/{TV_NAME}` again" in message
    )


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("name", "variable"), [(TIMM_NAME, "HF_HUB_CACHE"), (f"torchvision/{TV_NAME}", "TORCH_HOME")]
)
def test_a_cache_folder_that_cannot_be_written_is_named_not_the_network(
    caches, monkeypatch, tmp_path, name, variable
):
    blocker = tmp_path / "read-only"  # a file where the folder would be: as root, chmod is no bar
    blocker.write_text("")
    monkeypatch.setenv(variable, str(blocker / "cache"))
    forbid_downloads(monkeypatch)
    with pytest.raises(CacheNotWritableError) as info:  # "the download failed", "no network?"
        create_backbone(name, pretrained=True)
    message = str(info.value)
    folder = blocker / "cache" / ("hub/checkpoints" if variable == "TORCH_HOME" else "")
    assert f"the cache folder {str(folder).rstrip('/')} cannot be written (NotADirectoryError" in (
        message
    )
    assert f"Point {variable} at a folder you can write (export {variable}=" in message
    assert "network" not in message and "VISIONKIT_OFFLINE" not in message


@pytest.mark.reliability
def test_a_disk_that_fills_during_the_download_is_not_called_a_network_failure(
    caches, monkeypatch, tmp_path, tv_state
):
    _, hub = caches
    serve_torchvision_file(monkeypatch, TV_NAME, tv_state, tmp_path / "served")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.hub, "download_url_to_file", full)
    with pytest.raises(CacheNotWritableError, match=f"the cache folder {hub} cannot be written"):
        create_backbone(f"torchvision/{TV_NAME}", pretrained=True)


@pytest.mark.reliability
@pytest.mark.parametrize("switch", ["HF_HUB_OFFLINE", "VISIONKIT_OFFLINE"])
@pytest.mark.parametrize("name", [TIMM_NAME, f"torchvision/{TV_NAME}"])
def test_offline_with_an_empty_cache_names_the_command_and_the_cache_path(
    caches, monkeypatch, switch, name
):
    hf_cache, hub = caches
    monkeypatch.setenv(switch, "1")
    forbid_downloads(monkeypatch)
    with pytest.raises(WeightsNotCachedError) as info:
        create_backbone(name, pretrained=True)
    message = str(info.value)
    expected = (
        hf_cache / "models--timm--test_convnext.r160_in1k"
        if name == TIMM_NAME
        else hub / torchvision.models.get_model_weights(TV_NAME).DEFAULT.url.rsplit("/", 1)[1]
    )
    assert f"are not in the local cache ({expected})" in message
    assert f"{switch}=1 is set (offline)" in message
    assert f"`visionkit weights pull {name}`" in message
    assert "`pretrained: /path/to/weights.safetensors`" in message
    assert "To train from random weights instead: model.backbone.pretrained=false" in message
    assert "set VISIONKIT_OFFLINE=1" not in message  # already offline: no advice to be


@pytest.mark.reliability
def test_no_network_is_a_failed_download_with_the_same_advice(caches, monkeypatch, tmp_path):
    from huggingface_hub.errors import LocalEntryNotFoundError
    from timm.models import _hub

    def unreachable(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot reach the Hub; check your connection")

    monkeypatch.setattr(_hub, "hf_hub_download", unreachable)
    with pytest.raises(WeightsNotCachedError) as info:
        create_backbone(TIMM_NAME, pretrained=True)
    assert "the download failed (LocalEntryNotFoundError: cannot reach the Hub" in str(info.value)
    assert f"`visionkit weights pull {TIMM_NAME}`" in str(info.value)
    assert "set VISIONKIT_OFFLINE=1 (or HF_HUB_OFFLINE=1)" in str(info.value)

    weights = torchvision.models.get_model_weights(TV_NAME).DEFAULT
    missing = tmp_path / "nowhere" / weights.url.rsplit("/", 1)[1]
    monkeypatch.setattr(weights.value, "url", missing.as_uri())
    with pytest.raises(WeightsNotCachedError, match=r"the download failed \(URLError: ") as info:
        create_backbone(f"torchvision/{TV_NAME}", pretrained=True)
    assert f"`visionkit weights pull torchvision/{TV_NAME}`" in str(info.value)


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def without_proxies(monkeypatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.mark.reliability
def test_a_hub_whose_name_does_not_resolve_fails_at_once_without_retries(caches, monkeypatch):
    """No network (the hub's name does not resolve): the error comes before huggingface_hub's
    half a minute of retries, which is never called, and says what to set."""
    monkeypatch.setattr(pretrained, "host_unreachable", REAL_HOST_UNREACHABLE)
    without_proxies(monkeypatch)
    forbid_downloads(monkeypatch)
    asked: list[str] = []

    def no_dns(host, *args, **kwargs):
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(WeightsNotCachedError) as info:
        create_backbone(TIMM_NAME, pretrained=True)
    host = urlparse(pretrained.hf_endpoint()).hostname
    assert asked == [host]
    message = str(info.value)
    assert f"the download failed (cannot resolve {host} (Name or service not known)" in message
    assert f"`visionkit weights pull {TIMM_NAME}`" in message
    assert "set VISIONKIT_OFFLINE=1 (or HF_HUB_OFFLINE=1)" in message


@pytest.mark.reliability
def test_a_name_server_that_never_answers_is_given_up_after_the_timeout(caches, monkeypatch):
    """The system's resolver takes no timeout (a missing DNS server holds it for minutes):
    the lookup is abandoned after CONNECT_TIMEOUT_S and the error says so."""
    monkeypatch.setattr(pretrained, "host_unreachable", REAL_HOST_UNREACHABLE)
    monkeypatch.setattr(pretrained, "CONNECT_TIMEOUT_S", 0.3)
    without_proxies(monkeypatch)
    forbid_downloads(monkeypatch)
    released = threading.Event()

    def hanging_dns(*args, **kwargs):
        released.wait(30)  # a resolver that does not answer
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_dns)
    start = time.monotonic()
    try:
        with pytest.raises(WeightsNotCachedError) as info:
            create_backbone(TIMM_NAME, pretrained=True)
    finally:
        released.set()
    assert time.monotonic() - start < 10
    host = urlparse(pretrained.hf_endpoint()).hostname
    assert f"cannot resolve {host} (no answer from the name server within 0.3 s)" in str(info.value)


def test_an_unreachable_first_address_falls_back_to_the_next(monkeypatch):
    """An IPv6 address first on a machine without IPv6 routes: the IPv4 one is tried too."""
    without_proxies(monkeypatch)
    v6 = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::1", 443, 0, 0))
    v4 = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 443))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: [v6, v4])
    tried = []

    def connect(self, address):
        tried.append(address[0])
        if address[0].startswith("2001"):
            raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket.socket, "connect", connect)
    assert REAL_HOST_UNREACHABLE("https://huggingface.co") is None
    assert tried == ["2001:db8::1", "192.0.2.1"]


@pytest.mark.reliability
def test_a_hub_that_refuses_the_connection_fails_at_once(caches, monkeypatch):
    monkeypatch.setattr(pretrained, "host_unreachable", REAL_HOST_UNREACHABLE)
    without_proxies(monkeypatch)
    forbid_downloads(monkeypatch)
    address = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 443))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: [address])

    def refused(self, address):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket.socket, "connect", refused)
    with pytest.raises(
        WeightsNotCachedError, match=r"cannot connect to [\w.-]+:443 \(Connection refused\)"
    ):
        create_backbone(TIMM_NAME, pretrained=True)


def test_behind_a_proxy_the_download_itself_is_tried(monkeypatch):
    """A proxy decides what is reachable: no direct connection is tried."""
    without_proxies(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")

    def no_socket(*args, **kwargs):
        raise AssertionError("a direct connection was tried")

    monkeypatch.setattr(socket, "getaddrinfo", no_socket)
    monkeypatch.setattr(socket.socket, "connect", no_socket)
    assert REAL_HOST_UNREACHABLE("https://huggingface.co") is None
    assert REAL_HOST_UNREACHABLE("file:///tmp/x") is None


@pytest.mark.reliability
def test_a_download_with_the_wrong_hash_is_refused_and_not_cached(
    caches, monkeypatch, tmp_path, tv_state
):
    _, hub = caches
    served = serve_torchvision_file(
        monkeypatch, TV_NAME, tv_state, tmp_path / "served", hash_prefix="deadbeef"
    )
    with pytest.raises(WeightsNotCachedError, match="invalid hash value"):
        create_backbone(f"torchvision/{TV_NAME}", pretrained=True)
    assert not (hub / served.name).exists()


def test_the_pull_message_gives_no_advice_that_would_stop_pull():
    """`visionkit weights pull` is the download: its failure neither tells you to run it nor to
    switch downloads off."""
    failed = WeightsNotCachedError(
        TIMM_NAME, "/cache/x", "the download failed (URLError: no route)", True, pulling=True
    )
    assert "`visionkit weights pull` needs network access" in str(failed)
    assert "set VISIONKIT_OFFLINE=1" not in str(failed)
    assert f"`visionkit weights pull {TIMM_NAME}`" not in str(failed)


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("name", "advice"),
    [
        ("torchvision:resnet50", "`pretrained: /path/to/resnet50-11ad3fa6.pth` in a config"),
        ("ResNet50_Weights.IMAGENET1K_V1", "`pretrained: /path/to/resnet50-0676ba61.pth`"),
        (
            "torchvision:fcos_resnet50_fpn",
            "init_from: torchvision:fcos_resnet50_fpn=/path/to/fcos_resnet50_fpn_coco-99b0c9b7.pth",
        ),
    ],
)
def test_an_unwritable_cache_advises_the_key_that_takes_the_file(
    caches, monkeypatch, tmp_path, name, advice
):
    """`weights pull torchvision:resnet50` was told `init_from: torchvision:resnet50=...`,
    which init_from refuses (it takes torchvision's detectors only)."""
    blocker = tmp_path / "read-only"
    blocker.write_text("")
    monkeypatch.setenv("TORCH_HOME", str(blocker / "cache"))
    forbid_downloads(monkeypatch)
    with pytest.raises(CacheNotWritableError) as info:
        hub.pull(name)
    assert advice in str(info.value)
    if "fcos" not in name:
        assert "init_from" not in str(info.value)


@pytest.mark.reliability
def test_a_tls_error_mid_download_is_a_failed_download_not_an_unwritable_cache(
    caches, monkeypatch, tmp_path, tv_state
):
    """``ssl.SSLError``'s errno 1 is ``EPERM``'s number: it was "the cache folder cannot be
    written"."""
    serve_torchvision_file(monkeypatch, TV_NAME, tv_state, tmp_path / "served")

    def tls(*args, **kwargs):
        raise ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed")

    monkeypatch.setattr(torch.hub, "download_url_to_file", tls)
    with pytest.raises(WeightsNotCachedError, match=r"the download failed \(SSLError: "):
        create_backbone(f"torchvision/{TV_NAME}", pretrained=True)

    def denied(*args, **kwargs):  # a file of the cache: a local failure still
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x.partial"))

    monkeypatch.setattr(torch.hub, "download_url_to_file", denied)
    with pytest.raises(CacheNotWritableError, match="cannot be written"):
        create_backbone(f"torchvision/{TV_NAME}", pretrained=True)
