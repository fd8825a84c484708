"""Transient registry failures (500/429/503, resets, hangs, cut bodies) injected by a loopback proxy
(sandbox.faultproxy) in front of the real registry: the client retries with backoff and gets through,
and gives up with one clear sentence when the failure persists."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from indexflow.errors import RegistryError
from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef
from indexflow.registry.validation import DigestCache, validate_pullspecs
from sandbox.faultproxy import FaultProxy
from sandbox.images import build_image, tar_gz


@pytest.fixture(scope="module")
def proxy(local_registry) -> Iterator[FaultProxy]:  # noqa: ANN001
    with FaultProxy(local_registry.host) as p:
        yield p


@pytest.fixture
def client(proxy: FaultProxy) -> Iterator[RegistryClient]:
    proxy.clear()
    with RegistryClient(insecure=(proxy.host,), timeout=2.0, retries=4, backoff=0.01) as c:
        yield c
    proxy.clear()


@pytest.fixture
def image(client: RegistryClient, proxy: FaultProxy) -> ImageRef:
    ref = ImageRef.parse(f"{proxy.host}/r{uuid.uuid4().hex[:8]}/app:v1")
    build_image(client, ref, [tar_gz({"manifests/a.yaml": b"a" * 5000})], {"k": "v"})
    return ref


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_error_statuses_are_retried(client: RegistryClient, proxy: FaultProxy, image: ImageRef, status: int) -> None:
    fault = proxy.add_fault("status", path=r"/manifests/", method="GET", times=2, status=status)
    assert client.manifest(image).digest
    assert fault.injected == 2
    assert client.stats.by_method()["GET"] >= 3


def test_connection_reset_is_retried(client: RegistryClient, proxy: FaultProxy, image: ImageRef) -> None:
    fault = proxy.add_fault("drop", path=r"/manifests/", method="HEAD", times=2)
    assert client.find_digest(image)
    assert fault.injected == 2


def test_timeout_is_retried(proxy: FaultProxy, image: ImageRef) -> None:
    with RegistryClient(insecure=(proxy.host,), timeout=0.5, retries=2, backoff=0.01) as quick:
        quick.find_digest(image.with_tag("warm-up"))  # learn the scheme outside the fault
        fault = proxy.add_fault("hang", path=r"/manifests/", method="HEAD", times=1)
        assert quick.find_digest(image)
    assert fault.injected == 1


def test_cut_blob_download_is_retried(client: RegistryClient, proxy: FaultProxy, image: ImageRef, tmp_path) -> None:  # noqa: ANN001
    fault = proxy.add_fault("partial", path=r"/blobs/sha256:", method="GET", times=1)
    out = client.pull_bundle(image, tmp_path / "b")
    assert (out / "manifests" / "a.yaml").read_bytes() == b"a" * 5000
    assert fault.injected == 1


@pytest.mark.parametrize("path", [r"/manifests/", r"/blobs/sha256:"])
def test_a_body_cut_mid_stream_is_retried(client: RegistryClient, proxy: FaultProxy, image: ImageRef,
                                          path: str) -> None:
    """Manifests and config blobs are read as capped streams after the status line: a connection lost
    in the body is asked again, like one lost before the answer."""
    fault = proxy.add_fault("partial", path=path, method="GET", times=1)
    assert client.labels(image) == {"k": "v"}
    assert fault.injected == 1


def test_persistent_failure_gives_up_with_one_sentence(client: RegistryClient, proxy: FaultProxy,
                                                       image: ImageRef) -> None:
    proxy.add_fault("status", path=r"/manifests/", times=100, status=503)
    client.stats.reset()
    with pytest.raises(RegistryError, match=r"app:v1: HTTP 503$"):
        client.manifest(image)
    assert client.stats.by_method()["GET"] == 5  # 1 + 4 retries
    proxy.clear()
    proxy.add_fault("drop", path=r"/manifests/", times=100)
    with pytest.raises(RegistryError, match="unreachable"):
        client.find_digest(image)


def test_validation_rides_through_flaky_registry(client: RegistryClient, proxy: FaultProxy, image: ImageRef) -> None:
    pinned = [str(image.with_tag(None).with_digest(client.resolve(image)))]
    refs = [f"{proxy.host}/{image.repository}:v1"] * 3 + pinned
    for i in range(5):
        refs.append(str(image.with_tag(f"t{i}")))
        client.copy(image, image.with_tag(f"t{i}"))
    errors = proxy.add_fault("status", path=r"/manifests/t", nth=1, times=3, status=500)
    drops = proxy.add_fault("drop", path=r"/manifests/t", nth=4, times=2)
    assert validate_pullspecs(client, refs + [str(image.with_tag("gone"))], concurrency=4,
                              cache=DigestCache.memory()) == {str(image.with_tag("gone")): "not found"}
    assert (errors.injected, drops.injected) == (3, 2)  # the registry really was flaky


def test_upload_answered_then_cut_is_not_an_error(client: RegistryClient, proxy: FaultProxy, image: ImageRef) -> None:
    """The registry stored the blob but the client never heard: the retried PUT finds no session."""
    fault = proxy.add_fault("drop", path=r"/blobs/uploads/.+digest=", method="PUT", times=1, after_upstream=True)
    data = uuid.uuid4().bytes * 100
    digest = client.push_blob(image, data)
    assert fault.injected == 1 and client.blob(image, digest) == data
