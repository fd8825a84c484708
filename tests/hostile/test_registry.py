"""Hostile registries, token servers and storage hosts (issue 10, Deliver 4), each case in a child
process under a memory and time ceiling (tests/hostile/harness.py).

Every case proves, besides its own claim: the run ends in one sentence (no traceback, no hang, no
memory blow-up), no secret appears in any output, and, where credentials are involved, the hosts
that must not see them (recorded by tests/hostile/hostile_registry.py) received none.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.harness import CaseDirs, Outcome, assert_no_secret, one_sentence, run_cli, run_python, succeeded
from tests.hostile.hostile_registry import (OCI_MANIFEST, HostileServer, Reply, bomb_layer, digest_of, endless,
                                            image_manifest, many_files_layer, serve_blob, serve_image,
                                            serve_manifest)

USER, PASSWORD = "alice", "pw-" + secrets.token_hex(12)
TOKEN = "tok-" + secrets.token_hex(12)
SECRETS = [PASSWORD, TOKEN]
MiB = 1 << 20


@pytest.fixture
def registry() -> Iterator[HostileServer]:
    with HostileServer("127.0.0.1") as server:
        yield server


@pytest.fixture
def other() -> Iterator[HostileServer]:
    """Another host (127.0.0.2): blob storage, a foreign token realm, another registry."""
    with HostileServer("127.0.0.2") as server:
        yield server


@pytest.fixture
def third() -> Iterator[HostileServer]:
    """A third origin on the registry's own address (another port): plain http is allowed there."""
    with HostileServer("127.0.0.1") as server:
        yield server


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    return bomb_layer(300 * MiB)  # ~1.3 MB compressed; the default cap is 256 MiB


@pytest.fixture(scope="module")
def many_files() -> bytes:
    return many_files_layer(100_000)  # the default cap is 10,000 entries per image


def client_code(registry: HostileServer, body: str, creds_for: tuple[HostileServer, ...] = (),
                insecure: tuple[HostileServer, ...] = ()) -> str:
    """A snippet: a RegistryClient with `alice`'s credentials for `creds_for`, then `body`."""
    hosts = [registry.host, *(s.host for s in insecure)]
    entries = ", ".join(f"{s.host!r}: Credentials({USER!r}, {PASSWORD!r})" for s in creds_for)
    return (f"from indexflow.registry.auth import Credentials, DockerAuth\n"
            f"from indexflow.registry.client import RegistryClient\n"
            f"from indexflow.registry.refs import ImageRef\n"
            f"from pathlib import Path\n"
            f"client = RegistryClient(auth=DockerAuth({{{entries}}}), insecure={hosts!r}, timeout=3, retries=1,"
            f" backoff=0.01)\n{body}\n")


def judged(outcome: Outcome, *fragments: str) -> str:
    """One sentence with `fragments`, and no secret anywhere in the output."""
    sentence = one_sentence(outcome, *fragments)
    assert_no_secret(outcome, SECRETS)
    return sentence


def bearer_registry(registry: HostileServer, realm: str, repo: str = "ns/app") -> str:
    """`repo:v1` behind a bearer challenge naming `realm`; answered only with TOKEN."""
    config = json.dumps({"architecture": "amd64", "config": {"Labels": {}}}).encode()
    raw = json.dumps(image_manifest(digest_of(config), len(config), [])).encode()
    challenge = Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'}, b"{}")
    ok = Reply(200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest_of(raw)}, raw)
    registry.route(f"/v2/{repo}/manifests/v1",
                   lambda req: ok if req.headers.get("authorization") == f"Bearer {TOKEN}" else challenge)
    return f"{registry.host}/{repo}:v1"


def token_server(server: HostileServer) -> str:
    server.route("/token", Reply(200, {"Content-Type": "application/json"}, json.dumps({"token": TOKEN}).encode()))
    return f"{server.url}/token"


# -- where credentials go --------------------------------------------------------------------------
def test_plain_http_realm_on_another_host_gets_no_credentials(registry: HostileServer, other: HostileServer,
                                                              case_dirs: CaseDirs) -> None:
    ref = bearer_registry(registry, token_server(other))
    outcome = run_python(client_code(registry, f"client.manifest({ref!r})", creds_for=(registry,)), env=case_dirs.env)
    judged(outcome, registry.host, "neither https nor on the registry's host")
    assert other.received == []


def test_plain_http_realm_on_the_registry_host_is_used(registry: HostileServer, third: HostileServer,
                                                       case_dirs: CaseDirs) -> None:
    ref = bearer_registry(registry, token_server(third))
    outcome = run_python(client_code(registry, f"print(client.manifest({ref!r}).digest)", creds_for=(registry,)),
                         env=case_dirs.env)
    assert succeeded(outcome).startswith("sha256:")
    assert_no_secret(outcome, SECRETS)
    assert third.paths()[0].startswith("/token") and len(third.authorizations()) == 1


def test_anonymous_token_from_a_foreign_plain_realm_carries_nothing(registry: HostileServer, other: HostileServer,
                                                                    case_dirs: CaseDirs) -> None:
    ref = bearer_registry(registry, token_server(other))
    outcome = run_python(client_code(registry, f"print(client.manifest({ref!r}).digest)"), env=case_dirs.env)
    succeeded(outcome)
    assert other.authorizations() == []


def _redirected_blob(registry: HostileServer, storage: HostileServer, storage_reply: Reply,
                     basic_first: bool = True) -> tuple[str, str]:
    """A blob the registry serves by redirecting to `storage` (after a basic challenge, or at once);
    returns (ref, digest)."""
    data = b"layer bytes"
    digest = digest_of(data)
    basic = Reply(401, {"WWW-Authenticate": 'Basic realm="reg"'})
    moved = Reply(307, {"Location": f"{storage.url}/store/{digest}"})
    registry.route(f"/v2/ns/app/blobs/{digest}",
                   lambda req: moved if "authorization" in req.headers or not basic_first else basic)
    storage.route(f"/store/{digest}", storage_reply)
    return f"{registry.host}/ns/app", digest


def test_redirect_target_never_sees_the_registry_credentials(registry: HostileServer, other: HostileServer,
                                                             case_dirs: CaseDirs) -> None:
    ref, digest = _redirected_blob(registry, other, Reply(200, {}, b"layer bytes"))
    code = client_code(registry, f"print(client.blob(ImageRef.parse({ref!r}), {digest!r}).decode())",
                       creds_for=(registry,))
    outcome = run_python(code, env=case_dirs.env)
    assert succeeded(outcome) == "layer bytes\n"
    assert registry.authorizations() and other.authorizations() == []


def test_a_401_after_a_redirect_is_not_answered_with_the_registry_credentials(
        registry: HostileServer, other: HostileServer, third: HostileServer, case_dirs: CaseDirs) -> None:
    realm = token_server(third)  # on the registry's own address: only the redirect rule can stop it
    challenge = Reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}"'})
    ref, digest = _redirected_blob(registry, other, challenge, basic_first=False)
    code = client_code(registry, f"client.blob(ImageRef.parse({ref!r}), {digest!r})", creds_for=(registry,))
    judged(run_python(code, env=case_dirs.env), digest, "unauthorized")
    assert third.received == [] and other.authorizations() == []


def test_a_basic_challenge_from_a_redirect_target_is_not_answered(registry: HostileServer, other: HostileServer,
                                                                  case_dirs: CaseDirs) -> None:
    ref, digest = _redirected_blob(registry, other, Reply(401, {"WWW-Authenticate": 'Basic realm="storage"'}))
    code = client_code(registry, f"client.blob(ImageRef.parse({ref!r}), {digest!r})", creds_for=(registry,))
    judged(run_python(code, env=case_dirs.env), "unauthorized")
    assert other.authorizations() == []


def test_another_registry_never_gets_these_credentials(registry: HostileServer, other: HostileServer,
                                                       case_dirs: CaseDirs) -> None:
    other.route("/v2/ns/app/manifests/v1", Reply(401, {"WWW-Authenticate": 'Basic realm="other"'}))
    code = client_code(registry, f"client.manifest({other.host + '/ns/app:v1'!r})", creds_for=(registry,),
                       insecure=(other,))
    judged(run_python(code, env=case_dirs.env), "unauthorized")
    assert other.authorizations() == []


def test_an_endless_token_answer_is_refused(registry: HostileServer, third: HostileServer,
                                           case_dirs: CaseDirs) -> None:
    third.route("/token", Reply(200, {"Content-Type": "application/json"}, endless(b'{"token": "' + b"t" * 65536)))
    ref = bearer_registry(registry, f"{third.url}/token")
    code = client_code(registry, f"client.manifest({ref!r})", creds_for=(registry,))
    judged(run_python(code, env=case_dirs.env, memory=512 * MiB), "token", "larger than")


def test_an_endless_redirect_body_is_refused(registry: HostileServer, other: HostileServer,
                                            case_dirs: CaseDirs) -> None:
    digest = digest_of(b"layer bytes")
    registry.route(f"/v2/ns/app/blobs/{digest}", Reply(307, {"Location": f"{other.url}/store"}, endless()))
    other.route("/store", Reply(200, {}, b"layer bytes"))
    code = client_code(registry, f"client.blob(ImageRef.parse({registry.host + '/ns/app'!r}), {digest!r})")
    judged(run_python(code, env=case_dirs.env, memory=512 * MiB), "redirect", "larger than")


# -- time ------------------------------------------------------------------------------------------
DEADLINE_ENV = {"INDEXFLOW_REGISTRY_DEADLINE": "4"}


def test_a_trickled_manifest_body_fails_at_the_deadline(registry: HostileServer, case_dirs: CaseDirs) -> None:
    body = b'{"schemaVersion": 2, ' + b" " * 2000 + b"}"
    registry.route("/v2/ns/app/manifests/v1", Reply(200, {"Content-Type": OCI_MANIFEST}, body, pause=0.5))
    code = client_code(registry, f"client.manifest({registry.host + '/ns/app:v1'!r})")
    outcome = run_python(code, env={**case_dirs.env, **DEADLINE_ENV}, timeout=60)
    judged(outcome, "did not answer within the 4-second deadline")


def test_trickled_headers_fail_at_the_deadline(registry: HostileServer, case_dirs: CaseDirs) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 2000 + b"\r\n\r\n{}"
    registry.route("/v2/ns/app/manifests/v1", Reply(raw=raw, pause=0.5))
    code = client_code(registry, f"client.manifest({registry.host + '/ns/app:v1'!r})")
    judged(run_python(code, env={**case_dirs.env, **DEADLINE_ENV}, timeout=60), "deadline")


def test_a_trickled_layer_download_fails_at_the_deadline(registry: HostileServer, case_dirs: CaseDirs) -> None:
    data = b"z" * 4000
    digest = digest_of(data)
    registry.route(f"/v2/ns/app/blobs/{digest}", Reply(200, {}, (data[i:i + 1] for i in range(len(data))), pause=0.5))
    code = client_code(registry, f"client.download_blob(ImageRef.parse({registry.host + '/ns/app'!r}), {digest!r}, "
                                 f"Path({str(case_dirs.out / 'blob')!r}))")
    judged(run_python(code, env={**case_dirs.env, **DEADLINE_ENV}, timeout=60), digest, "deadline")


# -- size ------------------------------------------------------------------------------------------
def test_an_endless_manifest_is_refused_at_4_mib(registry: HostileServer, case_dirs: CaseDirs) -> None:
    registry.route("/v2/ns/app/manifests/v1", Reply(200, {"Content-Type": OCI_MANIFEST}, endless()))
    code = client_code(registry, f"client.manifest({registry.host + '/ns/app:v1'!r})")
    judged(run_python(code, env=case_dirs.env, memory=512 * MiB), "manifest is larger than the 4194304-byte limit")


def test_a_manifest_announcing_10_gib_is_refused_before_reading(registry: HostileServer, case_dirs: CaseDirs) -> None:
    registry.route("/v2/ns/app/manifests/v1", Reply(200, {"Content-Length": str(10 << 30)}, endless()))
    code = client_code(registry, f"client.manifest({registry.host + '/ns/app:v1'!r})")
    judged(run_python(code, env=case_dirs.env, memory=512 * MiB), "larger than the 4194304-byte limit")


def test_an_endless_config_blob_is_refused_while_streaming(registry: HostileServer, case_dirs: CaseDirs) -> None:
    digest = "sha256:" + "ab" * 32
    raw = json.dumps(image_manifest(digest, 100, [])).encode()
    serve_manifest(registry, "ns/app", "v1", raw)
    registry.route(f"/v2/ns/app/blobs/{digest}", Reply(200, {}, endless()))
    code = client_code(registry, f"client.labels({registry.host + '/ns/app:v1'!r})")
    judged(run_python(code, env=case_dirs.env, memory=512 * MiB), digest, "blob is larger than the 16777216-byte limit")


def test_a_config_blob_nested_beyond_the_parser_is_one_sentence(registry: HostileServer, case_dirs: CaseDirs) -> None:
    """200,000 nested lists fit the 16 MiB config cap; Python's JSON parser runs out of stack on them."""
    deep = b"[" * 200_000 + b"]" * 200_000
    config = serve_blob(registry, "ns/app", deep)
    serve_manifest(registry, "ns/app", "v1", json.dumps(image_manifest(config, len(deep), [])).encode())
    code = client_code(registry, f"client.labels({registry.host + '/ns/app:v1'!r})")
    judged(run_python(code, env=case_dirs.env, memory=512 * MiB), "/ns/app", "the config blob is not JSON")


@pytest.mark.parametrize("config, fragment", [
    (b"[]", "not an image config"),
    (b'{"config": ["Labels"]}', "not an image config"),
    (b'{"config": {"Labels": ["com.redhat.openshift.versions=v4.17"]}}', "not an image config"),
    (b'{"architecture": ["amd64"], "config": {}}', "not an image config"),
    (b'{"config": {"Labels": {"com.redhat.openshift.versions": 4.17}}}',
     "label 'com.redhat.openshift.versions' is not a string"),
], ids=["list", "config-list", "labels-list", "architecture-list", "label-number"])
def test_a_config_blob_of_the_wrong_shape_is_one_sentence(config: bytes, fragment: str, registry: HostileServer,
                                                          case_dirs: CaseDirs) -> None:
    """Labels are split and compared (the OCP range), arches hashed: a config whose JSON has another
    shape was an AttributeError, ValueError or TypeError traceback, or a number where a label is read."""
    digest = serve_blob(registry, "ns/app", config)
    serve_manifest(registry, "ns/app", "v1", json.dumps(image_manifest(digest, len(config), [])).encode())
    code = client_code(registry, f"print(client.labels({registry.host + '/ns/app:v1'!r}))\n"
                                 f"print(client.arches({registry.host + '/ns/app:v1'!r}))")
    judged(run_python(code, env=case_dirs.env), "/ns/app", fragment)


def test_a_null_label_reads_as_empty_like_go(registry: HostileServer, case_dirs: CaseDirs) -> None:
    config = b'{"architecture": "arm64", "config": {"Labels": {"a": null, "b": "x"}}}'
    digest = serve_blob(registry, "ns/app", config)
    serve_manifest(registry, "ns/app", "v1", json.dumps(image_manifest(digest, len(config), [])).encode())
    code = client_code(registry, f"print(client.labels({registry.host + '/ns/app:v1'!r}), "
                                 f"client.arches({registry.host + '/ns/app:v1'!r}))")
    outcome = run_python(code, env=case_dirs.env)
    assert succeeded(outcome).strip() == "{'a': '', 'b': 'x'} ['arm64']"


def test_an_index_whose_platform_is_not_strings_is_one_sentence(registry: HostileServer,
                                                                case_dirs: CaseDirs) -> None:
    child = "sha256:" + "ef" * 32
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": 10,
                            "platform": {"os": "linux", "architecture": ["amd64", "arm64"]}}]}
    serve_manifest(registry, "ns/app", "v1", json.dumps(index).encode())
    code = client_code(registry, f"print(client.arches({registry.host + '/ns/app:v1'!r}))")
    judged(run_python(code, env=case_dirs.env), "/ns/app", "malformed platform")


def test_a_layer_longer_than_its_descriptor_is_refused(registry: HostileServer, case_dirs: CaseDirs) -> None:
    digest = "sha256:" + "cd" * 32
    config = serve_blob(registry, "ns/app", b"{}")
    serve_manifest(registry, "ns/app", "v1", json.dumps(image_manifest(config, 2, [(digest, 1000)])).encode())
    registry.route(f"/v2/ns/app/blobs/{digest}", Reply(200, {}, endless()))
    code = client_code(registry, f"client.pull_bundle({registry.host + '/ns/app:v1'!r}, Path({str(case_dirs.out)!r}))")
    watch = case_dirs.watch()
    judged(run_python(code, env=case_dirs.env, memory=512 * MiB), digest, "larger than the 1000-byte limit")
    watch.assert_clean()


def test_a_gzip_bomb_is_refused_by_the_on_disk_unpack(registry: HostileServer, gzip_bomb: bytes,
                                                      case_dirs: CaseDirs) -> None:
    serve_image(registry, "ns/bomb", "v1", [gzip_bomb])
    code = client_code(registry, f"client.pull_bundle({registry.host + '/ns/bomb:v1'!r}, "
                                 f"Path({str(case_dirs.out / 'b')!r}))")
    judged(run_python(code, env=case_dirs.env), "unpacked content exceeds the 268435456-byte limit")
    assert not (case_dirs.out / "b").exists()


def test_a_gzip_bomb_is_refused_by_the_in_memory_reader(registry: HostileServer, gzip_bomb: bytes,
                                                        case_dirs: CaseDirs) -> None:
    serve_image(registry, "ns/bomb", "v1", [gzip_bomb])
    db = case_dirs.out / "index.db"
    outcome = run_cli("db", "add", str(db), "--use-http", "--bundle", f"{registry.host}/ns/bomb:v1", env=case_dirs.env)
    judged(outcome, "ns/bomb:v1", "exceeds the 268435456-byte limit")


def test_100000_empty_files_are_refused_by_the_on_disk_unpack(registry: HostileServer, many_files: bytes,
                                                              case_dirs: CaseDirs) -> None:
    serve_image(registry, "ns/many", "v1", [many_files])
    code = client_code(registry, f"client.pull_bundle({registry.host + '/ns/many:v1'!r}, "
                                 f"Path({str(case_dirs.out / 'b')!r}))")
    judged(run_python(code, env=case_dirs.env), "more than 10000 files")
    assert not (case_dirs.out / "b").exists()


def test_100000_empty_files_are_refused_by_the_in_memory_reader(registry: HostileServer, many_files: bytes,
                                                                case_dirs: CaseDirs) -> None:
    serve_image(registry, "ns/many", "v1", [many_files])
    outcome = run_cli("db", "add", str(case_dirs.out / "index.db"), "--use-http", "--bundle",
                      f"{registry.host}/ns/many:v1", env=case_dirs.env)
    judged(outcome, "ns/many:v1", "more than 10000 files")


def test_bundle_reads_in_memory_are_bounded_by_bytes(registry: HostileServer, case_dirs: CaseDirs) -> None:
    """Eight 2 MiB layers read by eight threads under a 3 MiB allowance: never two at once."""
    for i in range(8):
        layer = bytes([i]) * (2 * MiB)  # distinct digests: the client's blob memo must not answer
        serve_image(registry, f"ns/b{i}", "v1", [layer])
    registry.watch = "/blobs/"
    for path, route in list(registry.routes.items()):
        if "/blobs/" in path and isinstance(route, Reply) and len(route.body) > MiB:  # type: ignore[arg-type]
            body = route.body
            route.body = [body[j:j + 256 * 1024] for j in range(0, len(body), 256 * 1024)]  # type: ignore[index]
            route.pause = 0.05
    refs = [f"{registry.host}/ns/b{i}:v1" for i in range(8)]
    body = ("from concurrent.futures import ThreadPoolExecutor\nfrom indexflow.catalog.image import image_files\n"
            "from indexflow.errors import CatalogError\n"
            "def read(ref):\n    try:\n        image_files(client, ref)\n    except CatalogError:\n        pass\n"
            f"with ThreadPoolExecutor(8) as pool:\n    list(pool.map(read, {refs!r}))\nprint('done')")
    outcome = run_python(client_code(registry, body), env={**case_dirs.env, "INDEXFLOW_BUNDLE_LOAD_BYTES": str(3 * MiB)})
    assert succeeded(outcome) == "done\n"
    assert registry.max_in_flight == 1
    assert sum("/blobs/" in p for p in registry.paths()) == 8


# -- pagination --------------------------------------------------------------------------------------
def _tags(registry: HostileServer, links: dict[str, str]) -> None:
    for query, link in links.items():
        registry.route(f"/v2/ns/app/tags/list?{query}",
                       Reply(200, {"Content-Type": "application/json", "Link": link}, b'{"tags": ["a"]}'))


def test_a_tag_list_linking_to_itself_ends(registry: HostileServer, case_dirs: CaseDirs) -> None:
    _tags(registry, {"n=1000": '</v2/ns/app/tags/list?n=1000>; rel="next"'})
    code = client_code(registry, f"client.tags({registry.host + '/ns/app'!r})")
    judged(run_python(code, env=case_dirs.env, timeout=60), "pagination does not end")


def test_a_tag_list_cycle_ends(registry: HostileServer, case_dirs: CaseDirs) -> None:
    _tags(registry, {"n=1000": '</v2/ns/app/tags/list?last=b>; rel="next"',
                     "last=b": '</v2/ns/app/tags/list?last=c>; rel="next"',
                     "last=c": '</v2/ns/app/tags/list?last=b>; rel="next"'})
    code = client_code(registry, f"client.tags({registry.host + '/ns/app'!r})")
    judged(run_python(code, env=case_dirs.env, timeout=60), "pagination does not end")


def test_endless_distinct_tag_pages_stop_at_the_page_cap(registry: HostileServer, case_dirs: CaseDirs) -> None:
    def page(req) -> Reply:  # noqa: ANN001
        n = int(req.path.rsplit("=", 1)[1]) if "last=" in req.path else 0
        return Reply(200, {"Link": f'</v2/ns/app/tags/list?last={n + 1}>; rel="next"'}, b'{"tags": ["t"]}')
    registry.route("/v2/ns/app/tags/list", page)
    code = client_code(registry, f"client.tags({registry.host + '/ns/app'!r})")
    judged(run_python(code, env={**case_dirs.env, "INDEXFLOW_MAX_TAG_PAGES": "30"}), "more than 30 pages")
    assert len(registry.paths()) <= 31 + 1  # the pages and the /v2/ probe


def test_a_tag_list_pointing_at_another_host_is_refused(registry: HostileServer, other: HostileServer,
                                                        case_dirs: CaseDirs) -> None:
    _tags(registry, {"n=1000": f'<{other.url}/v2/ns/app/tags/list?n=1000>; rel="next"'})
    code = client_code(registry, f"client.tags({registry.host + '/ns/app'!r})", creds_for=(registry,))
    judged(run_python(code, env=case_dirs.env), "another host")
    assert other.received == []


@pytest.mark.parametrize("page", [b"<html>not json</html>", b'{"tags": "v1"}', b'{"tags": [1, 2]}'])
def test_a_tag_page_that_is_not_a_list_of_tags_is_refused(page: bytes, registry: HostileServer,
                                                          case_dirs: CaseDirs) -> None:
    registry.route("/v2/ns/app/tags/list", Reply(200, {"Content-Type": "application/json"}, page))
    code = client_code(registry, f"client.tags({registry.host + '/ns/app'!r})")
    judged(run_python(code, env=case_dirs.env), "not a JSON list of tags")


def test_rollback_delete_tag_on_a_looping_tag_list_ends(registry: HostileServer, case_dirs: CaseDirs) -> None:
    serve_image(registry, "ns/app", "v1", [])
    _tags(registry, {"n=1000": '</v2/ns/app/tags/list?n=1000>; rel="next"'})
    code = client_code(registry, f"client.delete_tag({registry.host + '/ns/app:v1'!r})")
    judged(run_python(code, env=case_dirs.env, timeout=60), "pagination does not end")
    assert not any(r.method == "DELETE" for r in registry.received)


# -- digests and shapes ----------------------------------------------------------------------------
def test_sha512_layers_are_verified_and_used(registry: HostileServer, case_dirs: CaseDirs) -> None:
    from sandbox.images import tar_gz

    serve_image(registry, "ns/app", "v1", [tar_gz({"manifests/a.yaml": b"kind: A\n"})], algorithm="sha512")
    code = client_code(registry, f"out = client.pull_bundle({registry.host + '/ns/app:v1'!r}, "
                                 f"Path({str(case_dirs.out / 'b')!r}))\nprint((out / 'manifests/a.yaml').read_text())")
    assert succeeded(run_python(code, env=case_dirs.env)) == "kind: A\n\n"


def test_a_sha512_layer_that_does_not_match_is_refused(registry: HostileServer, case_dirs: CaseDirs) -> None:
    from sandbox.images import tar_gz

    layer = tar_gz({"manifests/a.yaml": b"kind: A\n"})
    serve_image(registry, "ns/app", "v1", [layer], algorithm="sha512")
    digest = digest_of(layer, "sha512")
    forged = tar_gz({"manifests/a.yaml": b"kind: B\n"})
    assert len(forged) == len(layer)
    registry.route(f"/v2/ns/app/blobs/{digest}", Reply(200, {}, forged))
    code = client_code(registry, f"client.pull_bundle({registry.host + '/ns/app:v1'!r}, Path({str(case_dirs.out)!r}))")
    judged(run_python(code, env=case_dirs.env), "does not match its digest")


@pytest.mark.parametrize("digest", ["sha384:" + "ab" * 48, "md5:" + "ab" * 16])
def test_unverifiable_digest_algorithms_are_refused(digest: str, registry: HostileServer, case_dirs: CaseDirs) -> None:
    config = serve_blob(registry, "ns/app", b"{}")
    serve_manifest(registry, "ns/app", "v1", json.dumps(image_manifest(config, 2, [(digest, 10)])).encode())
    code = client_code(registry, f"client.pull_bundle({registry.host + '/ns/app:v1'!r}, Path({str(case_dirs.out)!r}))")
    judged(run_python(code, env=case_dirs.env), "is not supported (sha256 or sha512)")
    assert not any("/blobs/" in p for p in registry.paths())


@pytest.mark.parametrize("manifest, fragment", [
    ({"schemaVersion": 2, "layers": [{"digest": "sha256:" + "ab" * 32, "size": "abc"}]}, "not a byte count"),
    ({"schemaVersion": 2, "layers": [{"mediaType": "x", "size": 3}]}, "is not a content digest"),
    ([{"layers": []}], "not a JSON object"),
    ({"schemaVersion": 2, "layers": {"digest": "x"}}, "layers is not a list"),
    ({"schemaVersion": 2, "manifests": ["sha256:" + "ab" * 32]}, "not an object"),
], ids=["size-abc", "no-digest", "json-list", "layers-object", "index-of-strings"])
def test_malformed_manifests_are_one_registry_error(manifest: object, fragment: str, registry: HostileServer,
                                                    case_dirs: CaseDirs) -> None:
    serve_manifest(registry, "ns/app", "v1", json.dumps(manifest).encode())
    code = client_code(registry, f"client.pull_bundle({registry.host + '/ns/app:v1'!r}, Path({str(case_dirs.out)!r}))")
    judged(run_python(code, env=case_dirs.env), registry.host, fragment)


def test_a_path_in_docker_content_digest_never_reaches_the_cache(registry: HostileServer, case_dirs: CaseDirs) -> None:
    registry.route("/v2/index-db/app/manifests/v1", Reply(200, {"Docker-Content-Digest": "sha256:../../../../victim"}))
    body = ("from indexflow.registry.artifacts import IndexDbArtifacts\n"
            f"IndexDbArtifacts(client, {registry.host!r}).pull({registry.host + '/index-db/app:v1'!r})")
    watch = case_dirs.watch()
    judged(run_python(client_code(registry, body), env=case_dirs.env), "is not a content digest")
    watch.assert_clean()
    assert not any(Path(case_dirs.root).rglob("victim"))


# -- the cache directory ---------------------------------------------------------------------------
def _db_artifact(registry: HostileServer, data: bytes) -> str:
    config = serve_blob(registry, "index-db/app", b"{}")
    layer = serve_blob(registry, "index-db/app", data)
    manifest = image_manifest(config, 2, [(layer, len(data))])
    manifest["layers"][0].update(mediaType="application/vnd.sqlite",
                                 annotations={"org.opencontainers.image.title": "index.db"})
    serve_manifest(registry, "index-db/app", "v1", json.dumps(manifest).encode())
    return f"{registry.host}/index-db/app:v1"


def test_an_index_db_declaring_100_gib_is_refused_before_its_download(registry: HostileServer,
                                                                      case_dirs: CaseDirs) -> None:
    """The layer's declared size was the only bound on the download: an artifact announcing 100 GiB
    (and a registry that streams that much) filled the cache disk before the digest could fail."""
    config, layer = serve_blob(registry, "index-db/app", b"{}"), "sha256:" + "ab" * 32
    registry.route(f"/v2/index-db/app/blobs/{layer}", Reply(200, {}, endless()))
    manifest = image_manifest(config, 2, [(layer, 100 << 30)])
    manifest["layers"][0].update(mediaType="application/vnd.sqlite",
                                 annotations={"org.opencontainers.image.title": "index.db"})
    serve_manifest(registry, "index-db/app", "v1", json.dumps(manifest).encode())
    body = ("from indexflow.registry.artifacts import IndexDbArtifacts\n"
            f"IndexDbArtifacts(client, 'x').pull({registry.host + '/index-db/app:v1'!r})")
    judged(run_python(client_code(registry, body), env=case_dirs.env), "index-db/app:v1",
           f"index.db is {100 << 30} bytes, more than the {4 << 30}-byte limit (INDEXFLOW_MAX_INDEX_DB_BYTES)")
    assert not any("/blobs/" in p for p in registry.paths())


def test_the_index_db_limit_is_an_operator_setting(registry: HostileServer, case_dirs: CaseDirs) -> None:
    ref = _db_artifact(registry, bytes(2 * MiB))
    body = f"from indexflow.registry.artifacts import IndexDbArtifacts\nIndexDbArtifacts(client, 'x').pull({ref!r})"
    env = {**case_dirs.env, "INDEXFLOW_MAX_INDEX_DB_BYTES": str(MiB)}
    judged(run_python(client_code(registry, body), env=env), f"more than the {MiB}-byte limit")
    env["INDEXFLOW_MAX_INDEX_DB_BYTES"] = str(2 * MiB)  # exactly its size: pulled
    succeeded(run_python(client_code(registry, body), env=env))


def test_a_full_cache_disk_is_one_sentence_naming_the_path(registry: HostileServer, case_dirs: CaseDirs) -> None:
    ref = _db_artifact(registry, bytes(2 * MiB))
    body = f"from indexflow.registry.artifacts import IndexDbArtifacts\nIndexDbArtifacts(client, 'x').pull({ref!r})"
    outcome = run_python(client_code(registry, body), env=case_dirs.env, file_size=256 * 1024)
    judged(outcome, f"cannot write under {case_dirs.cache / 'index-db'}", "File too large")


def test_a_cache_dir_that_is_not_a_directory_is_one_sentence(registry: HostileServer, case_dirs: CaseDirs) -> None:
    ref = _db_artifact(registry, b"SQLite format 3\0")
    blocked = case_dirs.out / "cache-is-a-file"
    blocked.write_text("")
    body = f"from indexflow.registry.artifacts import IndexDbArtifacts\nIndexDbArtifacts(client, 'x').pull({ref!r})"
    outcome = run_python(client_code(registry, body), env={**case_dirs.env, "INDEXFLOW_CACHE_DIR": str(blocked)})
    judged(outcome, f"cannot write under {blocked}", "Not a directory")
