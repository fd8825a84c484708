"""IIB's own client, iiblib 7.4.0 unmodified, against `indexflow iib-api` over TLS with Kerberos.

A real MIT KDC on loopback, the service checking SPNEGO with its keytab, a real Prefect server and
process worker running the merge on the sandbox stack. iiblib has no merge call: like release
tooling, the tests post through its authenticated session and use its models, wait and list calls.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from iiblib.iib_authentication import IIBKrbAuth
from iiblib.iib_build_details_model import IIBBuildDetailsModel
from iiblib.iib_client import IIBClient, IIBException

from indexflow.app.iib_api import ApiConfig, create_app
from indexflow.app.iib_builds import request_key
from indexflow.merge.params import ONE_TIME_SECRET_PREFIX
from indexflow.registry.refs import ImageRef
from tests.deploy.conftest import API_TIMEOUT, PrefectServer, merge_params
from tests.iib.conftest import REALM, Realm

MERGE = "builds/merge-index-image"
OFFSET = 5000  # the kerberized settings' request_id_offset
TOKEN = "release-bot:t0ps3cret"


def trust(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls_files[0]))


def client(api: str, realm: Realm, who: str) -> IIBClient:
    auth = IIBKrbAuth(f"{who}@{REALM}", "localhost", ktfile=str(realm.keytab(who)))
    return IIBClient(api, auth=auth, poll_interval=1, wait_for_build_timeout=400)


def post(iib: IIBClient, payload: dict) -> IIBBuildDetailsModel:
    """What release tooling does for a merge: POST through the session, iiblib's checks and model."""
    response = iib.iib_session.post(MERGE, json=payload)
    iib._check_response(response)
    assert response.status_code == 201, response.text
    return IIBBuildDetailsModel.from_dict(response.json())


def runs_tagged(server: PrefectServer, tag: str) -> list[dict]:
    return server.api("POST", "/flow_runs/filter", json={"flow_runs": {"tags": {"all_": [tag]}}})


def with_history(iib: IIBClient, build_id: int, timeout: float = 60.0) -> IIBBuildDetailsModel:
    """get_build once the run's last log lines (they make the history) have reached the API."""
    deadline = time.monotonic() + timeout
    while True:
        full = iib.get_build(build_id)
        if any(s["state_reason"] == "Pushing updated index database" for s in full.state_history):
            return full
        if time.monotonic() > deadline:
            pytest.fail(f"no complete state_history for {build_id}: {full.state_history}")
        time.sleep(1)


def quiet(server: PrefectServer, timeout: float = 400.0) -> None:
    """Wait until no merge is in flight: the in-process tests write to Prefect themselves, and a
    2-core box running several merges keeps the test server's SQLite locked for long stretches."""
    deadline = time.monotonic() + timeout
    merge = server.api("GET", "/deployments/name/merge-index-image/merge-index-image")["id"]
    while server.api("POST", "/flow_runs/count", json={
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED", "PENDING", "RUNNING"]}}},
            "deployments": {"id": {"any_": [merge]}}}) and time.monotonic() < deadline:
        time.sleep(2)


@pytest.fixture(scope="module")
def alice(krb_api: str, realm: Realm) -> IIBClient:
    return client(krb_api, realm, "alice")


def test_iiblib_drives_a_merge_to_completion(alice: IIBClient, krb_api: str, sandbox, deployed,  # noqa: ANN001
                                             tls_files: tuple[Path, Path]) -> None:
    build = post(alice, merge_params(sandbox, build_tags=["krb"]))
    assert build.id > OFFSET and build.user == f"alice@{REALM}" and build.state == "in_progress"
    done = alice.wait_for_build(build)
    assert done.state == "complete", done.state_reason
    assert done.state_reason.startswith("The operator(s) [") and done.state_reason.endswith(
        "were successfully merged from the source index image into the target index image")
    # the output is really there, under the IIB id (and the extra build tag)
    output = f"{sandbox.registry_host}/iib-build:{build.id}"
    assert done.index_image == output
    assert sandbox.registry_client.exists(ImageRef.parse(output))
    assert sandbox.registry_client.exists(ImageRef.parse(f"{sandbox.registry_host}/iib-build:krb"))
    # IIB's full request: every transition newest first, resolved pullspecs, arches, logs
    full = with_history(alice, build.id)
    history = [(s["state"], s["state_reason"]) for s in full.state_history]
    assert history[0] == ("complete", done.state_reason)
    assert history[-1] == ("in_progress", "The request was initiated")
    reasons = [r for _, r in history]
    assert reasons.index("Cloning Git repository") > reasons.index("Committing changes to Git repository")
    assert len(history) >= 10 and full.updated == full.state_history[0]["updated"]
    assert full.source_from_index_resolved.startswith(sandbox.seeded.source_index.rsplit(":", 1)[0] + "@sha256:")
    assert full.target_index_resolved.startswith(sandbox.seeded.target_index.rsplit(":", 1)[0] + "@sha256:")
    assert full.binary_image_resolved and "@sha256:" in full.binary_image_resolved
    assert full.arches and full.distribution_scope in ("prod", "stage", "dev")
    logs = httpx.get(full.logs["url"], verify=trust(tls_files), timeout=API_TIMEOUT)
    assert logs.status_code == 200 and "state_reason: Cloning Git repository" in logs.text


def test_the_same_post_twice_makes_one_build(alice: IIBClient, sandbox, deployed) -> None:  # noqa: ANN001
    payload = merge_params(sandbox, dry_run=True, build_tags=["twice"])
    first, second = post(alice, payload), post(alice, payload)
    assert first.id == second.id
    with ThreadPoolExecutor(2) as pool:  # and two identical POSTs at the same moment
        racing = list(pool.map(lambda _: post(alice, {**payload, "build_tags": ["racing"]}), range(2)))
    assert racing[0].id == racing[1].id != first.id
    assert len(runs_tagged(deployed, f"iib-request:{first.id}")) == 1
    assert len(runs_tagged(deployed, f"iib-request:{racing[0].id}")) == 1
    keys = {t for r in runs_tagged(deployed, "iib") for t in r["tags"] if t.startswith("iib-key:")}
    runs_per_key = [len(runs_tagged(deployed, k)) for k in keys]
    assert runs_per_key and set(runs_per_key) == {1}


def test_logins_and_privileges(alice: IIBClient, krb_api: str, realm: Realm, sandbox, deployed,  # noqa: ANN001
                               tls_files: tuple[Path, Path]) -> None:
    ca = trust(tls_files)
    url = f"https://{krb_api}/api/v1/{MERGE}"
    payload = merge_params(sandbox, dry_run=True, overwrite_target_index=True, overwrite_target_index_token=TOKEN)
    anonymous = httpx.post(url, json=payload, verify=ca, timeout=API_TIMEOUT)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Negotiate"
    assert "verify that you are authorized" in anonymous.json()["error"]
    forged = httpx.post(url, json=payload, verify=ca, timeout=API_TIMEOUT, headers={"Authorization": "Negotiate YWJj"})
    assert forged.status_code == 401
    with pytest.raises(IIBException, match='not allowed to use "overwrite_target_index"'):
        post(client(krb_api, realm, "bob"), payload)
    allowed = post(alice, payload)  # alice may overwrite 127.0.0.1:*/* targets
    assert allowed.user == f"alice@{REALM}" and allowed.id > OFFSET
    mine = runs_tagged(deployed, f"iib-request:{allowed.id}")[0]
    assert TOKEN not in str(mine["parameters"])
    reference = mine["parameters"]["overwrite_target_index_token_secret"]  # the one-time block, by reference
    assert list(reference) == ["$ref"] and list(reference["$ref"]) == ["block_document_id"]
    # reads need no login, as in IIB
    anonymous_read = httpx.get(f"https://{krb_api}/api/v1/builds/{allowed.id}", verify=ca, timeout=API_TIMEOUT)
    assert anonymous_read.status_code == 200 and anonymous_read.json()["user"] == f"alice@{REALM}"


@pytest.mark.parametrize("change, message", [
    ({"dry_run": "false"}, 'The "dry_run" value must be a boolean'),
    ({"ignore_bundle_ocp_version": []}, 'The "ignore_bundle_ocp_version" value must be a boolean'),
    ({"overwrite_target_index": "true", "overwrite_target_index_token": TOKEN},
     'The "overwrite_target_index" value must be a boolean'),
    ({"distribution_scope": 3}, 'The "distribution_scope" value must be a string'),
])
def test_wrong_types_are_refused_before_anything_is_created(alice: IIBClient, sandbox, deployed,  # noqa: ANN001
                                                            change: dict, message: str) -> None:
    def names(kind: str) -> set[str]:
        return {d["name"] for d in deployed.api("POST", f"/{kind}/filter", json={}) if d.get("name")}

    variables, blocks = names("variables"), names("block_documents")
    response = alice.iib_session.post(MERGE, json=merge_params(sandbox, **change))
    assert (response.status_code, response.json()) == (400, {"error": message})
    assert names("variables") == variables  # no request id claimed
    assert not names("block_documents") - blocks  # no token block written


def test_iib_error_bodies(alice: IIBClient, krb_api: str, tls_files: tuple[Path, Path]) -> None:
    ca = trust(tls_files)
    base = f"https://{krb_api}/api/v1"
    # no build has a number this high: ids only grow from the highest claimed (the session's Prefect server
    # is shared, so small numbers like 1 are other suites' builds)
    absent = f"/builds/{OFFSET * 1000}/logs"
    for path in ("/builds/²", "/builds/" + "9" * 5000, "/builds/0x10", "/no-such-endpoint", absent):
        response = httpx.get(base + path, verify=ca, timeout=API_TIMEOUT)
        assert (response.status_code, response.json()) == (404, {"error": "The requested resource was not found"})
    wrong_verb = httpx.delete(f"{base}/builds", verify=ca, timeout=API_TIMEOUT)
    assert wrong_verb.status_code == 405 and wrong_verb.json() == {
        "error": "The method is not allowed for the requested URL."}
    huge = alice.iib_session.post(MERGE, data=b'{"source_from_index": "' + b"x" * 200_000 + b'"}',
                                  headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "capacity limit" in huge.json()["error"]
    chunked = alice.iib_session.post(MERGE, data=iter([b"[" + b"1," * 40_000] * 2 + [b"1]"]))
    assert chunked.status_code == 413
    assert httpx.get(f"{base}/healthcheck", verify=ca, timeout=API_TIMEOUT).json() == {"status": "Health check OK"}
    for page in (str(2 ** 63), "9" * 4000):  # an offset past the database's integers was a 500
        far = httpx.get(f"{base}/builds", params={"page": page}, verify=ca, timeout=API_TIMEOUT)
        assert (far.status_code, far.json()) == (404, {"error": "The requested resource was not found"})
    bad_state = httpx.get(f"{base}/builds", params={"state": "done"}, verify=ca, timeout=API_TIMEOUT)
    assert (bad_state.status_code, bad_state.json()["error"]) == (
        400, "done is not a valid build request state. Valid states are: complete, failed, in_progress")


def test_get_builds_pages_like_iib(alice: IIBClient, sandbox, deployed) -> None:  # noqa: ANN001
    ids = {post(alice, merge_params(sandbox, dry_run=True, build_tags=[f"page-{n}"])).id for n in range(3)}
    pager = alice.get_builds()  # page 1; max_per_page is 2 in the kerberized settings
    total = pager.meta["total"]
    assert pager.meta["per_page"] == 2 and pager.meta["pages"] == -(-total // 2) and total >= 3
    assert pager.meta["previous"] is None and pager.meta["next"].endswith("page=2&per_page=2")
    seen = [b.id for b in pager.items()]
    while pager.meta["next"]:
        pager.next()
        seen += [b.id for b in pager.items()]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == total
    assert ids <= set(seen) and all(i > OFFSET for i in ids)  # others' builds on the shared server may be lower
    mine = alice.get_builds(raw=True)
    assert all(item["request_type"] == "merge-index-image" and "state_history" not in item for item in mine["items"])
    by_user = alice.iib_session.get("builds", params={"user": f"bob@{REALM}"}).json()
    assert by_user["items"] == [] and by_user["meta"]["total"] == 0
    other_type = alice.iib_session.get("builds", params={"request_type": "add"}).json()
    assert other_type["meta"]["total"] == 0


def test_token_block_removed_when_the_run_is_refused(deployed, sandbox) -> None:  # noqa: ANN001
    """Prefect refuses the run (a deployment whose schema wants an integer request_id): 503, and the
    one-time token block the endpoint wrote first is gone again."""
    quiet(deployed)
    merge = deployed.api("GET", "/deployments/name/merge-index-image/merge-index-image")
    deployed.api("POST", "/deployments/", json={
        "name": "refusing", "flow_id": merge["flow_id"], "enforce_parameter_schema": True,
        "parameter_openapi_schema": {"type": "object", "properties": {"request_id": {"type": "integer"}}}})
    app = create_app(ApiConfig(deployed.url, deployment="merge-index-image/refusing"))

    payload = merge_params(sandbox, dry_run=True, overwrite_target_index=True, overwrite_target_index_token=TOKEN,
                           build_tags=["refused"])

    async def post() -> httpx.Response:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)), base_url="http://t") as http:
            return await http.post(f"/api/v1/{MERGE}", json=payload)

    def claims() -> set[str]:
        return {v["name"] for v in deployed.api("POST", "/variables/filter", json={})
                if v["name"].startswith("indexflow_iib_request_")}

    claims_before = claims()
    response = asyncio.run(post())
    assert response.status_code == 503 and "refused the request's parameters" in response.json()["error"]
    claimed = claims() - claims_before
    assert len(claimed) == 1  # the block was written for this id (then the run was refused)
    block = f"{ONE_TIME_SECRET_PREFIX}{claimed.pop().rsplit('_', 1)[1]}-{request_key(None, payload, None)[:12]}"
    with pytest.raises(httpx.HTTPStatusError, match="404"):
        deployed.api("GET", f"/block_types/slug/secret/block_documents/name/{block}")


def test_trusted_proxy_and_the_per_user_limit(deployed, sandbox) -> None:  # noqa: ANN001
    """Proxy mode in process (the real app and Prefect server; runs parked on a pool no worker serves,
    so they stay in progress): the header counts from the proxy's address only, each build records
    its user, and a user's second build in flight is refused while another user's is not."""
    quiet(deployed)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks.settings import MergeSettings
    from indexflow.app.iib_auth import TrustedProxy

    with temporary_settings(updates={PREFECT_API_URL: deployed.url}):
        values = MergeSettings.load("indexflow").model_dump(exclude={"block_type_slug"})
        values["iib_api"] = {"auth": "proxy", "proxy_addresses": ["127.0.0.7"], "max_builds_in_flight_per_user": 1}
        MergeSettings(**values).save("iib-proxy", overwrite=True)
    merge = deployed.api("GET", "/deployments/name/merge-index-image/merge-index-image")
    deployed.api("POST", "/work_pools/", json={"name": "parked", "type": "process"})
    deployed.api("POST", "/deployments/", json={"name": "parked", "flow_id": merge["flow_id"],
                                                 "work_pool_name": "parked"})
    app = create_app(ApiConfig(deployed.url, deployment="merge-index-image/parked", settings_block="iib-proxy"),
                     TrustedProxy(["127.0.0.7"], "X-Remote-User"))

    async def posts() -> list[httpx.Response]:
        answers = []
        async with app.router.lifespan_context(app):
            for address, user, tag in [("127.0.0.7", "carol", "c1"), ("127.0.0.7", "carol", "c2"),
                                       ("127.0.0.7", "dave", "d1"), ("127.0.0.8", "carol", "c3")]:
                transport = httpx.ASGITransport(app=app, client=(address, 40000))
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                    answers.append(await http.post(f"/api/v1/{MERGE}", headers={"X-Remote-User": user},
                                                   json=merge_params(sandbox, dry_run=True, build_tags=[tag])))
        return answers

    first, second, other_user, not_from_proxy = asyncio.run(posts())
    assert (first.status_code, first.json()["user"]) == (201, "carol")
    assert (second.status_code, second.json()) == (429, {
        "error": "The user carol already has 1 builds in progress (the limit is 1)"})
    assert (other_user.status_code, other_user.json()["user"]) == (201, "dave")
    assert not_from_proxy.status_code == 401
    assert runs_tagged(deployed, "iib-user:carol")[0]["parameters"]["build_tags"] == ["c1"]
