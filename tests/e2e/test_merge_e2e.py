"""merge_index_image end to end: real registry, git server, GitLab and Konflux stand-ins, real
Prefect API; one seed of real catalog data (45 packages, 413 bundles, 88 missing from the source).

The successful overwrite runs last: it is the only test that moves the target for the others.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from blocks.tokens import local_overwrite_token
from flows.merge_index import merge_index_image
from tasks import report
from tests.e2e.conftest import BLOCK, E2E
from tests.flow.remote_state import RemoteState

pytestmark = pytest.mark.e2e
FAULT_TAG = "e2e-extra"
OVERWRITE_TOKEN = "e2e:not-checked-by-the-sandbox-7f3a"


def merge(sb: E2E, **params):  # noqa: ANN201 - a Prefect State
    params.setdefault("source_from_index", sb.source)
    params.setdefault("settings_block", BLOCK)
    params.setdefault("ignore_bundle_ocp_version", True)
    with local_overwrite_token(OVERWRITE_TOKEN if params.get("overwrite_target_index") else None):
        return merge_index_image(**params, return_state=True)


def artifact(kind: str, state, index: str):  # noqa: ANN001, ANN201 - the run's Artifact of this kind
    """Artifacts are keyed per target index (one history per target); this run's is the one we want."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    key = report.artifact_key(kind, report.target_slug(index))
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])),
            sort=ArtifactSort.CREATED_DESC)
    assert found, f"no artifact {key} in the run"
    return found[0]  # the run's latest of that key (a rolled-back table is written again)


def table(kind: str, state, index: str) -> list[dict]:  # noqa: ANN001
    """Rows of the run's table artifact of this kind."""
    data = artifact(kind, state, index).data
    return json.loads(data) if isinstance(data, str) else data


def flow_run_logs(flow_run_id, at_least: int) -> list:  # noqa: ANN001
    """The run's logs; they are shipped in batches, so wait (briefly) until `at_least` arrived."""
    deadline = time.monotonic() + 20
    while True:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        if len(logs) >= at_least or time.monotonic() > deadline:
            assert len(logs) >= at_least, f"only {len(logs)} log lines arrived"
            return logs
        time.sleep(0.5)


def direct(sb: E2E, pullspec: str) -> str:
    return pullspec.replace(sb.registry_proxy.host, sb.env.registry_host, 1)


def digest(sb: E2E, pullspec: str) -> str | None:
    from indexflow.registry.refs import ImageRef

    return sb.env.registry_client.find_digest(ImageRef.parse(direct(sb, pullspec)))


def pinned(sb: E2E, pullspec: str) -> str:
    """`repository@digest` of a tag pullspec (how bundles are named in an index.db)."""
    from indexflow.registry.refs import ImageRef

    ref = ImageRef.parse(pullspec)
    return str(ref.with_tag(None).with_digest(sb.env.registry_client.resolve(ref)))


def db_layer(sb: E2E, ref: str) -> str:
    """Digest of an artifact's index.db layer (two pushes of one file differ only in their timestamps)."""
    from indexflow.registry.refs import ImageRef

    return sb.env.registry_client.manifest(ImageRef.parse(direct(sb, ref))).json["layers"][0]["digest"]


def bundles_of_artifact(sb: E2E, ref: str) -> set[str]:
    from indexflow.catalog.db import list_bundles

    return {b.bundlePath for b in list_bundles(sb.env.artifacts.pull(direct(sb, ref)).path)}


INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
OCP_LABEL, SCOPE_LABEL = "com.redhat.index.delivery.version", "com.redhat.index.delivery.distribution_scope"


def published(sb: E2E, pullspec: str) -> tuple[dict[str, str], set[str]]:
    """(labels, arches) of an image, read over plain HTTP from the registry itself, not our client."""
    import httpx

    repo, tag = direct(sb, pullspec).split("/", 1)[1].rsplit(":", 1)
    accept = ", ".join([*INDEX_TYPES, "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json"])
    with httpx.Client(base_url=f"{sb.env.registry_url}/v2/{repo}", timeout=10, headers={"Accept": accept}) as http:
        top = http.get(f"/manifests/{tag}").raise_for_status().json()
        images = top["manifests"] if top.get("mediaType") in INDEX_TYPES or "manifests" in top else [None]
        arches = {m["platform"]["architecture"] for m in images if m}
        first = http.get(f"/manifests/{images[0]['digest']}").json() if images[0] else top
        config = http.get(f"/blobs/{first['config']['digest']}").raise_for_status().json()
    if not arches:
        arches = {config["architecture"]}
    return config["config"].get("Labels") or {}, arches


def assert_published_for_target(sb: E2E, pullspec: str, arches: set[str]) -> None:
    """The built image carries the target's OCP version (the seed labels it v4.17; the source is v4.16),
    the seed's distribution scope and the arches of the indexes it merged."""
    labels, built_arches = published(sb, pullspec)
    assert (labels.get(OCP_LABEL), labels.get(SCOPE_LABEL)) == ("v4.17", "prod"), f"{pullspec}: {labels}"
    assert built_arches == arches, f"{pullspec}: arches {built_arches}, expected {arches}"


def output_configs(sb: E2E, pullspec: str) -> Path:
    """Unpack an output image; its /configs must validate."""
    from indexflow.catalog.validate import validate_fbc
    from indexflow.registry.refs import ImageRef

    dest = Path(tempfile.mkdtemp(prefix="e2e-image-"))
    sb.env.registry_client.pull_bundle(ImageRef.parse(direct(sb, pullspec)), dest)
    validate_fbc(dest / "configs")
    return dest / "configs"


def test_dry_run_reports_the_diff_and_writes_nothing(sandbox: E2E):
    before, rid = sandbox.remote_state(), sandbox.request_id("dry")
    state = merge(sandbox, target_index=sandbox.target, deprecation_list=sandbox.seed.deprecation_list,
                  dry_run=True, request_id=rid)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["missing"] == len(sandbox.seed.missing_from_source) == 88
    added = {row["pullspec"] for row in table("bundles-added", state, sandbox.target)}
    assert added == set(sandbox.seed.missing_from_source)
    invalid = [row["pullspec"] for row in table("bundles-invalid", state, sandbox.target)]
    assert invalid == [sandbox.seed.invalid_bundle]
    deprecated = [row["pullspec"] for row in table("bundles-deprecated", state, sandbox.target)]
    assert len(deprecated) == 2 and any("hawtio-operator@" in p for p in deprecated)
    assert "kube-green" in result["packages_touched"] and "output_pullspecs" not in result
    sandbox.remote_state().assert_same(before)


def test_merge_without_the_ocp_allow_list_stops_on_the_guard_with_its_numbers(sandbox: E2E):
    """The demo data without ignore_bundle_ocp_version: most bundles have no OCP label (IIB marks them
    invalid and deprecates them); the guard refuses before any remote write and says how to allow it."""
    before, rid = sandbox.remote_state(), sandbox.request_id("guard")
    state = merge(sandbox, target_index=sandbox.target, ignore_bundle_ocp_version=False, request_id=rid)
    assert state.is_failed()
    message = state.message
    numbers = re.match(r"Refusing a destructive merge: it would drop (\d+) of the target index's (\d+) bundles "
                       r"\(\d+%\) and mark (\d+) invalid \(\d+%\), more than the 10% allowed \((\d+) bundles have no "
                       r"OCP label", message)
    assert numbers, message
    dropped, target, invalid, unlabelled = map(int, numbers.groups())
    assert target == sandbox.seed.target_bundles and invalid > target // 10 and unlabelled <= invalid
    assert "max_removed_share in the settings block 'e2e'" in message
    sandbox.remote_state().assert_same(before)
    summary = artifact("merge-summary", state, sandbox.target).data
    assert "refused (nothing published)" in summary and f"{dropped} of {target} target bundles dropped" in summary
    assert len(table("bundles-invalid", state, sandbox.target)) == invalid  # what it found, though refused
    allowed = merge(sandbox, target_index=sandbox.target, ignore_bundle_ocp_version=False, dry_run=True,
                    max_removed_share=1.0, request_id=sandbox.request_id("guard-allowed"))
    assert allowed.is_completed(), allowed.message
    assert allowed.result()["removals"] == {"target_bundles": target, "dropped": dropped, "invalid": invalid,
                                            "invalid_without_label": unlabelled, "max_share": 1.0}


def test_merge_without_overwrite_publishes_outputs_and_closes_the_mr(sandbox: E2E):
    from indexflow.merge import plan

    seed, rid = sandbox.seed, sandbox.request_id("plain")
    target_before = digest(sandbox, sandbox.target)
    canonical = plan.artifact_refs(sandbox.target, sandbox.registry_proxy.host, rid)
    canonical_before = digest(sandbox, canonical.canonical)
    arches = published(sandbox, sandbox.source)[1] | published(sandbox, sandbox.target)[1]
    state = merge(sandbox, target_index=sandbox.target, deprecation_list=seed.deprecation_list,
                  build_tags=["e2e-tag"], request_id=rid)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["mr_state"] == "closed"
    outputs = result["output_pullspecs"]
    assert [o.rsplit(":", 1)[1] for o in outputs] == [rid, "e2e-tag"]
    for output in outputs:
        assert_published_for_target(sandbox, output, arches)
    built = digest(sandbox, result["image_url"])
    assert {digest(sandbox, o) for o in outputs} == {built}
    assert result["outputs"] == [{"pullspec": o, "digest": built} for o in outputs]
    assert result["removals"]["target_bundles"] == sandbox.seed.target_bundles
    assert artifact("merge-result", state, sandbox.target).data == {k: v for k, v in result.items() if k != "lines"}
    assert f"]({result['mr_url']})" in artifact("merge-request", state, sandbox.target).data
    assert state.message.startswith("The operator(s) ") and " more were successfully merged" in state.message
    assert digest(sandbox, sandbox.target) == target_before
    assert digest(sandbox, canonical.canonical) == canonical_before
    in_db = bundles_of_artifact(sandbox, canonical.per_request)
    in_source = bundles_of_artifact(sandbox, plan.artifact_refs(sandbox.source, sandbox.registry_proxy.host,
                                                                rid).canonical)
    assert seed.invalid_bundle in seed.missing_from_source and seed.invalid_bundle not in in_db
    deprecated = pinned(sandbox, seed.deprecation_list[0])
    assert deprecated in in_source and deprecated not in in_db
    hawtio = "/hawtio-operator@"
    assert sum(hawtio in p for p in in_db) < sum(hawtio in p for p in in_source | set(seed.missing_from_source))
    kube_green = {p for p in seed.missing_from_source if "/kube-green@" in p}
    assert kube_green <= in_db and len(in_db) == result["bundles_in_db"]
    configs = output_configs(sandbox, outputs[0])
    assert (configs / "kube-green" / "catalog.json").is_file()
    state_after = sandbox.remote_state()
    assert not any(rid in branch for branch in state_after.refs)
    assert "opened" not in state_after.mrs.values()
    summary = artifact("merge-summary", state, sandbox.target).data
    assert outputs[0] in summary and result["mr_url"] in summary and "| Waiting on KONFLUX build |" in summary
    assert artifact("merge-progress", state, sandbox.target).data == 100.0


def test_rerun_takes_index_db_from_the_cache(sandbox: E2E):
    first = merge(sandbox, target_index=sandbox.target, dry_run=True, request_id=sandbox.request_id("cache"))
    assert first.is_completed(), first.message
    probe = sandbox.registry_proxy.add_fault("status", r"^/v2/index-db/blobs/", method="GET", nth=10**9)
    state = merge(sandbox, target_index=sandbox.target, dry_run=True, request_id=sandbox.request_id("cache"))
    assert state.is_completed(), state.message
    assert state.result()["index_db_pulls"] == ["Cached", "Cached"]  # as the task states show in the UI
    assert probe.matched == 0, "an index.db was downloaded again"


def test_merge_without_target_uses_the_source_branch(sandbox: E2E):
    from indexflow.merge import plan

    rid = sandbox.request_id("notarget")
    canonical = plan.artifact_refs(sandbox.source, sandbox.registry_proxy.host, rid)
    before = digest(sandbox, canonical.canonical)
    state = merge(sandbox, deprecation_list=sandbox.seed.deprecation_list, request_id=rid)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["missing"] == 0 and result["mr_state"] == "closed"
    assert digest(sandbox, canonical.canonical) == before
    assert digest(sandbox, canonical.per_request) is not None
    metadata_branch = plan.branch_name("sandbox", rid, "v4.16")
    assert metadata_branch not in sandbox.remote_state().refs
    configs = output_configs(sandbox, result["output_pullspecs"][0])
    assert not (configs / "kube-green").exists()  # only the target has that package


def _refuse(proxy_attr: str, path: str, method: str, status: int = 403):  # noqa: ANN202
    return lambda sb: getattr(sb, proxy_attr).add_fault("status", path, method=method, status=status, times=99)


def _lost_reply(path: str):  # noqa: ANN202
    """The registry applies every attempt of the write but the client never hears back, so only
    an undo recorded before the write can put the tag back (the undo's own write then gets through)."""
    from indexflow.registry.client import RegistryClient

    attempts = RegistryClient().retries + 1
    return lambda sb: sb.registry_proxy.add_fault("drop", path, method="PUT", times=attempts, after_upstream=True)


def _knob(**knobs):  # noqa: ANN202
    return lambda sb: sb.env.stack.set_knobs(**knobs)


# (id, arm the fault, overwrite?, step named in the failure, what the rollback must say: a regex)
FAULTS = [
    ("git-push-refused", _refuse("git_proxy", r"git-receive-pack$", "POST"), False,
     report.COMMITTING, "Nothing remote had been changed"),
    ("mr-open-refused", _refuse("git_proxy", r"/merge_requests$", "POST"), False,
     report.COMMITTING, "deleted branch"),
    ("konflux-build-failed", _knob(fail="unit tests failed"), False, report.WAITING, "closed the merge request"),
    ("konflux-build-cancelled", _knob(cancel=True), False, report.WAITING, "closed the merge request"),
    ("output-copy-refused", _refuse("registry_proxy", rf"^/v2/iib-build/manifests/{FAULT_TAG}$", "PUT"), False,
     report.COPYING, "restored"),
    ("target-overwrite-refused", _refuse("registry_proxy", r"^/v2/rh-osbs/iib-pub-pending/manifests/v4\.17$", "PUT"),
     True, "Overwriting the index image", "iib-build"),
    ("target-overwrite-reply-lost", _lost_reply(r"^/v2/rh-osbs/iib-pub-pending/manifests/v4\.17$"), True,
     "Overwriting the index image", r"Rolled back: restored [^;]*/rh-osbs/iib-pub-pending:v4\.17;"),
    ("request-index-db-refused", _refuse("registry_proxy", r"^/v2/index-db/manifests/iib-pub-pending-v4\.17-", "PUT"),
     True, report.PUSHING_DB, "rh-osbs/iib-pub-pending:v4.17"),
    ("canonical-index-db-refused", _refuse("registry_proxy", r"^/v2/index-db/manifests/iib-pub-pending-v4\.17$",
                                           "PUT"), True, report.PUSHING_DB, "index-db:iib-pub-pending-v4.17-"),
    ("mr-merge-refused", _refuse("git_proxy", r"/merge_requests/\d+/merge(\?|$)", "PUT", status=405), True,
     report.PUSHING_DB, "index-db:iib-pub-pending-v4.17"),
]


@pytest.mark.parametrize(("arm", "overwrite", "step", "undid"), [f[1:] for f in FAULTS], ids=[f[0] for f in FAULTS])
def test_failure_at_each_remote_step_leaves_remote_state_as_before(sandbox: E2E, arm, overwrite, step, undid):
    before = sandbox.remote_state()
    arm(sandbox)
    state = merge(sandbox, target_index=sandbox.target, overwrite_target_index=overwrite, build_tags=[FAULT_TAG],
                  request_id=sandbox.request_id("fault"))
    assert state.is_failed()
    assert f"Failed to merge operators at step '{step}" in state.message, state.message
    assert re.search(undid, state.message), state.message
    sandbox.clear_faults()
    sandbox.remote_state().assert_same(before)
    # the failed run's summary says what it found, what it undid and why; undone tables say so
    summary = artifact("merge-summary", state, sandbox.target).data
    assert summary.startswith("# merge_index_image ") and state.message in summary and "| bundles added | 88 |" in summary
    if "Rolled back:" in state.message:
        assert "**Rolled back:**" in summary
        assert artifact("bundles-added", state, sandbox.target).description.endswith("(rolled back)")
    assert artifact("merge-progress", state, sandbox.target).description.startswith(state.message)


def test_target_moved_during_the_build_is_not_overwritten(sandbox: E2E):
    """Someone else publishes the target while Konflux builds: the overwrite is refused, all undone."""
    from indexflow.registry.refs import ImageRef

    env, target = sandbox.env, ImageRef.parse(sandbox.seed.target_index)
    original = env.registry_client.resolve(target)

    def someone_publishes(project: str, branch: str, sha: str) -> None:
        env.registry_client.copy(ImageRef.parse(sandbox.seed.source_index), target)

    before = sandbox.remote_state()
    env.stack.gitlab.on_mr_opened.insert(0, someone_publishes)
    try:
        state = merge(sandbox, target_index=sandbox.target, overwrite_target_index=True,
                      request_id=sandbox.request_id("moved"))
    finally:
        env.stack.gitlab.on_mr_opened.remove(someone_publishes)
    moved = sandbox.remote_state()
    env.registry_client.copy(target.with_tag(None).with_digest(original), target)
    assert state.is_failed() and "The supplied from_index image changed during the IIB request" in state.message
    assert "restored" in state.message and "closed the merge request" in state.message
    assert moved.tags.pop(f"{target.repository}:{target.tag}") != original
    moved.assert_same(RemoteState({k: v for k, v in before.tags.items() if k != f"{target.repository}:{target.tag}"},
                                  before.refs, before.mrs))


def test_cli_dry_run_and_a_refused_request(sandbox: E2E, capsys: pytest.CaptureFixture[str]):
    from indexflow.cli import main

    args = ["merge", "--source-from-index", sandbox.source, "--target-index", sandbox.target, "--dry-run",
            "--ignore-bundle-ocp-version", "--settings", BLOCK]
    assert main([*args, "--request-id", sandbox.request_id("cli")]) == 0
    assert "88 bundles added" in capsys.readouterr().out
    assert main([*args, "--overwrite-target-index"]) == 1
    err = capsys.readouterr().err
    assert err.startswith('Error: The "overwrite_target_index_token" value is required') and "Traceback" not in err


def test_rerun_after_a_failed_build_succeeds(sandbox: E2E):
    rid = sandbox.request_id("again")
    sandbox.env.stack.set_knobs(fail=True)
    assert merge(sandbox, target_index=sandbox.target, request_id=rid).is_failed()
    sandbox.clear_faults()
    state = merge(sandbox, target_index=sandbox.target, request_id=rid)
    assert state.is_completed(), state.message
    assert state.result()["mr_state"] == "closed"


def test_overwrite_merges_the_mr_and_replaces_target_and_canonical_index_db(sandbox: E2E):
    from indexflow.merge import plan
    from sandbox.demo import check_output_image
    from sandbox.gitserver import run_git
    from sandbox.demo_env import GIT_PROJECT
    from tasks.lock import lock_name

    rid = sandbox.request_id("overwrite")
    refs = plan.artifact_refs(sandbox.target, sandbox.registry_proxy.host, rid)
    branch_before = sandbox.remote_state().refs["v4.17"]
    canonical_before = digest(sandbox, refs.canonical)
    arches = published(sandbox, sandbox.source)[1] | published(sandbox, sandbox.target)[1]
    state = merge(sandbox, target_index=sandbox.target, deprecation_list=sandbox.seed.deprecation_list,
                  overwrite_target_index=True, request_id=rid)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["mr_state"] == "merged"
    assert_published_for_target(sandbox, sandbox.target, arches)  # the overwritten target itself
    assert_published_for_target(sandbox, result["output_pullspecs"][0], arches)
    git_server = sandbox.env.stack.git
    metadata = json.loads(run_git(git_server.bare_path(GIT_PROJECT), "show", "v4.17:.iib-build-metadata.json"))
    assert metadata["labels"] == {OCP_LABEL: "v4.17", SCOPE_LABEL: "prod"}
    assert (str(metadata["request_id"]), set(metadata["arches"])) == (rid, arches)
    assert digest(sandbox, sandbox.target) == digest(sandbox, result["output_pullspecs"][0]), "target not replaced"
    assert db_layer(sandbox, refs.canonical) == db_layer(sandbox, refs.per_request), "index.db not replaced"
    assert digest(sandbox, refs.canonical) != canonical_before
    after = sandbox.remote_state()
    assert after.refs["v4.17"] != branch_before, "the MR did not land on v4.17"
    assert "merged" in after.mrs.values()
    with tempfile.TemporaryFile("w+") as out:
        check_output_image(sandbox.env, direct(sandbox, result["output_pullspecs"][0]), "v4.17", out,
                           direct(sandbox, result["index_db"][0]))
    secrets = (OVERWRITE_TOKEN.split(":")[1], sandbox.env.git_token)
    locks = [lock_name(part) for part in plan.lock_parts(f"{sandbox.git_proxy.url}/{GIT_PROJECT}.git", "v4.17",
                                                          sandbox.target, refs.canonical)]
    with get_client(sync_client=True) as client:
        limits = [client.read_global_concurrency_limit_by_name(lock) for lock in locks]
        run = client.read_flow_run(state.state_details.flow_run_id)
    logs = flow_run_logs(run.id, at_least=20)
    assert not any(x in log.message for log in logs for x in secrets), "a secret reached the logs"
    assert not any(x in json.dumps(run.parameters, default=str) for x in secrets), "a secret is a stored parameter"
    # one lock per shared resource (Git branch, target image, canonical index.db), created on demand, released
    assert [(limit.limit, limit.active_slots) for limit in limits] == [(1, 0)] * 3
