"""The fault proxy in front of a real docker-registry, driven by httpx: every mode, fast."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest

from sandbox.faultproxy import FaultProxy

BLOB = b"x" * 300_000  # big enough that a partial write really cuts the body
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def registry(local_registry) -> str:
    """The session's real docker-registry, holding one image for these tests."""
    _push_image(local_registry.url, "faultproxy/app", "v1")
    return local_registry.host


@pytest.fixture()
def proxy(registry):
    with FaultProxy(registry, admin=True) as p:
        yield p


def _with_digest(location: str, digest: str) -> str:
    """The upload URL keeps its `_state` query; the digest is appended to it."""
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def _push_image(base: str, repo: str, tag: str) -> None:
    """One blob (monolithic upload) and a manifest naming it, through whatever `base` is."""
    with httpx.Client(base_url=base, timeout=10) as http:
        up = http.post(f"/v2/{repo}/blobs/uploads/")
        up.raise_for_status()
        http.put(_with_digest(up.headers["Location"], DIGEST), content=BLOB).raise_for_status()
        cfg = b"{}"
        cfg_digest = "sha256:" + hashlib.sha256(cfg).hexdigest()
        up = http.post(f"/v2/{repo}/blobs/uploads/")
        http.put(_with_digest(up.headers["Location"], cfg_digest), content=cfg).raise_for_status()
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST_TYPE,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": 2},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": DIGEST,
                                "size": len(BLOB)}]}
        http.put(f"/v2/{repo}/manifests/{tag}", content=json.dumps(manifest),
                 headers={"Content-Type": MANIFEST_TYPE}).raise_for_status()


def test_transparent_by_default_keepalive_and_push(proxy):
    with httpx.Client(base_url=proxy.url, timeout=5) as http:
        for _ in range(3):  # one connection, several round trips
            assert http.get(f"/v2/faultproxy/app/blobs/{DIGEST}").content == BLOB
        assert http.head("/v2/faultproxy/app/manifests/v1", headers={"Accept": MANIFEST_TYPE}).status_code == 200
    _push_image(proxy.url, "faultproxy/pushed", "v2")  # uploads (POST/PUT with bodies) pass through too
    s = proxy.stats()
    assert s["requests"] == 4 + 5 and s["connections"] == 2 and s["injected"] == 0
    assert s["by_method"] == {"GET": 3, "HEAD": 1, "POST": 2, "PUT": 3}
    assert proxy.requests()[0] == ("GET", f"/v2/faultproxy/app/blobs/{DIGEST}")
    assert [m for m, _ in proxy.requests()[4:]] == ["POST", "PUT", "POST", "PUT", "PUT"]


SLACK = 10.0  # seconds a loaded 2-core box may add; each bound stays far below what the bug would cost


def _four_round_trips(proxy) -> float:
    with httpx.Client(base_url=proxy.url, timeout=5) as http:
        t = time.monotonic()
        for _ in range(4):
            http.get("/v2/")
        return time.monotonic() - t


def test_latency_per_round_trip_and_connection(proxy):
    proxy.set_latency(0.2)
    slow = _four_round_trips(proxy)
    assert 0.2 * 5 <= slow < 0.2 * 5 + SLACK  # 1 connection + 4 round trips
    proxy.set_latency(0)
    assert _four_round_trips(proxy) < slow  # 1 s of added latency gone: loopback round trips take ms


@pytest.mark.parametrize("status", [500, 503, 429])
def test_status_fault_hits_only_the_nth_match(proxy, registry, status):
    fault = proxy.add_fault("status", r"/manifests/", method="GET", nth=2, status=status)
    with httpx.Client(base_url=proxy.url, timeout=5) as http:
        codes = [http.get("/v2/faultproxy/app/manifests/v1", headers={"Accept": MANIFEST_TYPE}).status_code
                 for _ in range(3)]
        assert http.get("/v2/").status_code == 200  # other paths untouched
    assert codes == [200, status, 200]
    assert (fault.matched, fault.injected) == (3, 1)


def test_hang_times_the_client_out(proxy):
    proxy.add_fault("hang", r"/blobs/")
    t = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{proxy.url}/v2/faultproxy/app/blobs/{DIGEST}", timeout=0.3)
    assert time.monotonic() - t < 0.3 + SLACK  # a hang the client could not time out would last for ever
    assert httpx.get(f"{proxy.url}/v2/faultproxy/app/blobs/{DIGEST}", timeout=5).content == BLOB  # only once


def test_drop_closes_mid_request_and_upstream_never_sees_it(proxy, registry):
    proxy.add_fault("drop", r"/manifests/", method="PUT")
    # the proxy closes with the request body unread in its socket: the kernel then answers with a
    # reset instead of a plain close when the body arrived first, so the client sees either; both
    # are a dropped connection (a 2xx, or any answer at all, would be the bug)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        _push_image(proxy.url, "faultproxy/dropped", "v1")
    tags = httpx.get(f"http://{registry}/v2/faultproxy/dropped/tags/list", timeout=5)
    assert tags.status_code == 404 or not tags.json().get("tags")


def test_drop_after_upstream_acts_but_client_never_learns(proxy, registry):
    proxy.add_fault("drop", r"/manifests/", method="PUT", after_upstream=True)
    with pytest.raises(httpx.RemoteProtocolError):
        _push_image(proxy.url, "faultproxy/half-done", "v1")
    assert httpx.get(f"http://{registry}/v2/faultproxy/half-done/tags/list", timeout=5).json()["tags"] == ["v1"]


def test_partial_write_truncates_the_body(proxy):
    proxy.add_fault("partial", r"/blobs/sha256:")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{proxy.url}/v2/faultproxy/app/blobs/{DIGEST}", timeout=5)
    with httpx.Client(timeout=5) as http, http.stream("GET", f"{proxy.url}/v2/faultproxy/app/blobs/{DIGEST}") as r:
        assert r.read() == BLOB  # the next one is whole again


def test_partial_write_of_a_bodiless_response_cuts_the_head(proxy):
    proxy.add_fault("partial", r"/manifests/", method="HEAD")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.head(f"{proxy.url}/v2/faultproxy/app/manifests/v1", headers={"Accept": MANIFEST_TYPE}, timeout=5)


def test_admin_port_controls_a_running_proxy(proxy):
    admin = proxy.admin_url
    r = httpx.post(f"{admin}/faults", json={"action": "status", "path": "^/v2/$", "status": 500, "times": 2}, timeout=5)
    assert r.status_code == 200 and r.json()["faults"][0]["times"] == 2
    assert httpx.post(f"{admin}/latency", json={"seconds": 0.02}, timeout=5).json()["latency"] == 0.02
    assert [httpx.get(f"{proxy.url}/v2/", timeout=5).status_code for _ in range(3)] == [500, 500, 200]
    assert httpx.get(f"{admin}/state", timeout=5).json()["injected"] == 2
    assert httpx.post(f"{admin}/faults", json={"action": "explode"}, timeout=5).status_code == 400
    cleared = httpx.delete(f"{admin}/faults", timeout=5).json()
    assert cleared["faults"] == [] and cleared["latency"] == 0


def test_tls_hello_is_refused_at_once(proxy):
    """A client probing TLS gets a closed connection, not a hang (the proxy speaks plain HTTP)."""
    t = time.monotonic()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://{proxy.host}/v2/", verify=False, timeout=60)
    assert time.monotonic() - t < SLACK  # a hang would last the client's whole 60 s


def test_bounded_hang_ends_in_a_dropped_connection(proxy):
    proxy.add_fault("hang", r"^/v2/$", hang_seconds=0.3)
    t = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{proxy.url}/v2/", timeout=60)
    assert 0.3 <= time.monotonic() - t < 0.3 + SLACK  # an unbounded hang would last the client's 60 s


def test_call_runs_before_the_nth_match_is_forwarded(proxy, registry):
    """The callback's change to the server is what the matched request sees; the admin view stays JSON."""
    seen: list[int] = []
    path = "/v2/faultproxy/moving/manifests/v1"
    fault = proxy.add_fault("call", path, method="HEAD", nth=2, call=lambda: _push_image(f"http://{registry}",
                                                                                           "faultproxy/moving", "v1"))
    with httpx.Client(base_url=proxy.url, timeout=5) as http:
        for _ in range(3):
            seen.append(http.head(path, headers={"Accept": MANIFEST_TYPE}).status_code)
        state = http.get(f"{proxy.admin_url}/state").json()
    assert seen == [404, 200, 200] and (fault.matched, fault.injected) == (3, 1)
    assert state["faults"][0]["action"] == "call" and "call" not in state["faults"][0]
