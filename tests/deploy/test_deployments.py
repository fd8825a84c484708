"""On a real `prefect server start` with a process worker: setup, `prefect deploy --all`, and merges
triggered over REST, the CLI, the IIB-compatible endpoint and the batch deployment, on the sandbox.

Every flow run is started at once by the `started` fixture (they overlap on the worker), then each
test waits for its own run; the UI test looks at the finished REST-triggered merge.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from indexflow.cli import main
from indexflow.registry.refs import ImageRef
from tests.deploy import browser
from tests.deploy.conftest import (API_TIMEOUT, BIN, CLI_TIMEOUT, REPO, artifacts_of, create_run, deployment_id,
                                   merge_params, save_secret, secret_ref, setup_file, wait_final, write_setup_yaml)

MERGE, BATCH = "merge-index-image/merge-index-image", "batch-merge/batch-merge"
BUILDS = "/api/v1/builds"
TOKEN = "release-bot:t0ps3cret"
GUARD_SECRET = "deploy-guard-token"


@pytest.fixture(scope="module")
def started(deployed, sandbox, iib_api: str, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: ANN001
    """Fire every run the tests below check, the way each client would, without waiting."""
    folder = tmp_path_factory.mktemp("batch")
    good = merge_params(sandbox, dry_run=True)
    batch_file = folder / "batch.yaml"
    batch_file.write_text(yaml.safe_dump({"settings_block": "indexflow", "merges": [
        {"name": "nightly-a", **good}, {"name": "nightly-b", **good, "build_tags": ["b"]},
        {"name": "broken", **good, "source_from_index": f"{sandbox.registry_host}/rh-osbs/iib-pub-pending:v4.98"}]}))
    api = f"{iib_api}{BUILDS}/merge-index-image"
    runs = {
        "rest": create_run(deployed, MERGE, merge_params(sandbox, request_id="rest-1"), tags=["release-tooling"]),
        # without ignore_bundle_ocp_version most of the demo target is unlabelled: the guard refuses; its
        # token is a Secret block referenced by name (the run never gets as far as using it)
        "guard": create_run(deployed, MERGE, merge_params(
            sandbox, request_id="guard-1", ignore_bundle_ocp_version=False, overwrite_target_index=True,
            overwrite_target_index_token_secret=secret_ref(save_secret(deployed, GUARD_SECRET, TOKEN)))),
        "batch": create_run(deployed, BATCH, {"batch_file": str(batch_file), "max_parallel": 3}),
        "iib_ok": httpx.post(api, json=merge_params(sandbox, dry_run=True, overwrite_target_index=True,
                                                    overwrite_target_index_token=TOKEN, build_tags=["api"]),
                             timeout=API_TIMEOUT),
        "iib_failed": httpx.post(api, json=merge_params(
            sandbox, dry_run=True, source_from_index=f"{sandbox.registry_host}/rh-osbs/iib-pub-pending:v4.99"),
            timeout=API_TIMEOUT),
    }
    # the CLI run is refused by the flow's own IIB checks: proves the trigger without another full merge
    params = json.dumps(merge_params(sandbox, dry_run=True, request_id="cli-1", distribution_scope="qa"))
    runs["cli"] = subprocess.run([str(BIN / "prefect"), "deployment", "run", MERGE, "--params", params],
                                 cwd=REPO, env=deployed.env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    return runs


def target_key(kind: str, sandbox) -> str:  # noqa: ANN001
    """Merge artifacts are keyed per target index (one history per target on the Artifacts page)."""
    from tasks.report import artifact_key, target_slug

    return artifact_key(kind, target_slug(sandbox.seeded.target_index))


# -- setup and deploy ------------------------------------------------------------------------------
def test_setup_writes_blocks_limits_and_pools_idempotently(prefect_api, tmp_path: Path, secrets_env: dict,  # noqa: ANN001
                                                           capsys: pytest.CaptureFixture) -> None:
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect_gitlab import GitLabCredentials
    from prefect_kubernetes.credentials import KubernetesCredentials

    from blocks.settings import MergeSettings

    assert main(["setup", str(setup_file(tmp_path))]) == 0
    first = capsys.readouterr().out
    assert "work pool setup-test-k8s (kubernetes)" in first and "glpat-s3cr3t" not in first
    settings = MergeSettings.load("setup-test")
    assert (settings.gitlab_credentials, settings.kubernetes_credentials, settings.registry_auth_secret) == \
        ("setup-test-gitlab", "setup-test-konflux", "setup-test-registry")
    gitlab = GitLabCredentials.load("setup-test-gitlab")
    assert gitlab.token.get_secret_value() == "glpat-s3cr3t" and gitlab.url == "https://gitlab.example.com"
    kube = KubernetesCredentials.load("setup-test-konflux")
    assert kube.cluster_config.context_name == "konflux"
    assert kube.cluster_config.config["users"][0]["user"]["token"] == "kube-token"
    # Secret.get() parses JSON text: the docker config comes back as a mapping
    assert Secret.load("setup-test-registry").get() == {"auths": {"quay.example.com": {"auth": "dTpw"}}}
    assert Secret.load("setup-test-token").get() == "user:pa55"
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("setup-test-limit").limit == 3
        pool = client.read_work_pool("setup-test-k8s")
        block_id = client.read_block_document_by_name("setup-test", "indexflow-merge-settings").id
    assert pool.type == "kubernetes"
    assert pool.base_job_template["variables"]["properties"]["secret_name"]["default"] == "indexflow-worker-env"

    assert main(["setup", str(setup_file(tmp_path, concurrency_limits={"setup-test-limit": 5}))]) == 0
    with get_client(sync_client=True) as client:  # updated in place
        assert client.read_global_concurrency_limit_by_name("setup-test-limit").limit == 5
        assert client.read_block_document_by_name("setup-test", "indexflow-merge-settings").id == block_id


def test_setup_check_probes_every_endpoint_of_the_sandbox(sandbox, tmp_path: Path) -> None:  # noqa: ANN001
    config, secrets = write_setup_yaml(sandbox, tmp_path)
    checked = subprocess.run([str(BIN / "indexflow"), "setup", "--check", str(config)], cwd=REPO, capture_output=True,
                             text=True, timeout=CLI_TIMEOUT, env={**os.environ, **secrets})
    assert checked.returncode == 0, checked.stderr
    probes = [line for line in checked.stdout.splitlines() if line.startswith("probe ")]
    assert len(probes) == 4 and all(": ok (" in line for line in probes), probes
    assert sandbox.git_token not in checked.stdout


def test_deploy_all_creates_the_two_deployments(deployed) -> None:  # noqa: ANN001
    merge = deployed.api("GET", f"/deployments/name/{MERGE}")
    assert merge["enforce_parameter_schema"] is True and merge["work_pool_name"] == "process"
    assert merge["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    assert merge["global_concurrency_limit"]["limit"] == 4
    assert merge["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert merge["schedules"] == []
    batch = deployed.api("GET", f"/deployments/name/{BATCH}")
    # the shipped nightly batch file lists no merges: the schedule is created paused
    assert [(s["schedule"]["cron"], s["active"], s["slug"]) for s in batch["schedules"]] == [("0 2 * * *", False, "nightly")]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    assert merge["version"] == batch["version"] == commit.strip()
    assert batch["parameters"] == {"batch_file": "deployments/batches/nightly.yaml", "max_parallel": 2}


def nightly(server) -> dict:  # noqa: ANN001
    schedules = server.api("GET", f"/deployments/name/{BATCH}")["schedules"]
    assert [s["slug"] for s in schedules] == ["nightly"]
    return schedules[0]


def scheduled_runs(server, deployment_id: str) -> list[dict]:  # noqa: ANN001
    return server.api("POST", "/flow_runs/filter", json={"flow_runs": {
        "deployment_id": {"any_": [deployment_id]}, "state": {"type": {"any_": ["SCHEDULED"]}}}})


def test_a_redeploy_keeps_the_state_the_operator_gave_the_nightly_schedule(deployed) -> None:  # noqa: ANN001
    batch_id, first = deployment_id(deployed, BATCH), nightly(deployed)
    assert scheduled_runs(deployed, batch_id) == []  # paused: the scheduler plans no nights
    deployed.run("prefect", "deployment", "schedule", "resume", BATCH, first["id"])
    deployed.run("prefect", "--no-prompt", "deploy", "--name", "batch-merge")
    assert (nightly(deployed)["id"], nightly(deployed)["active"]) == (first["id"], True)
    # the server's scheduler turns the active cron schedule into runs at 02:00 UTC (its loop is 5 s here,
    # but on a loaded box each of its writes may wait up to 60 s for SQLite's lock: allow a few)
    deadline, scheduled = time.monotonic() + 240, []
    while not scheduled and time.monotonic() < deadline:
        scheduled = scheduled_runs(deployed, batch_id)
        time.sleep(1)
    assert scheduled and all(r["expected_start_time"].endswith("T02:00:00Z") for r in scheduled)
    deployed.run("prefect", "deployment", "schedule", "pause", BATCH, first["id"])
    deployed.run("prefect", "--no-prompt", "deploy", "--name", "batch-merge")
    assert nightly(deployed)["active"] is False


def test_a_new_nightly_schedule_is_active_only_when_its_batch_file_lists_merges(prefect_api, deployed,  # noqa: ANN001
                                                                                 sandbox, tmp_path: Path) -> None:
    from flows.deploy_steps import schedule_active

    listed, empty, broken = tmp_path / "listed.yaml", tmp_path / "empty.yaml", tmp_path / "broken.yaml"
    listed.write_text(yaml.safe_dump({"merges": [{"name": "one", **merge_params(sandbox)}]}))
    empty.write_text(yaml.safe_dump({"merges": []}))
    broken.write_text("merges: [{source_from_index: x}]\n")
    assert schedule_active("batch-merge/not-deployed", "nightly", str(listed)) == {"active": True}
    assert schedule_active("batch-merge/not-deployed", "nightly", str(empty)) == {"active": False}
    assert schedule_active("batch-merge/not-deployed", "nightly", str(broken)) == {"active": False}
    # deployed already: `active` is left out of the deploy, whatever the file says
    assert schedule_active(BATCH, "nightly", str(listed)) == {"active": None}
    assert schedule_active(BATCH, "other-slug", str(empty)) == {"active": False}


def test_kubernetes_pool_renders_a_job_with_resources_and_secret_env(prefect_api, deployed) -> None:  # noqa: ANN001
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    pool = deployed.api("GET", "/work_pools/kubernetes")
    job = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(
        pool["base_job_template"], {"image": "quay.example.com/indexflow/worker:1", "memory_limit": "6Gi"}))
    pod = job.job_manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "quay.example.com/indexflow/worker:1"
    assert container["resources"] == {"limits": {"cpu": "2", "memory": "6Gi"},
                                      "requests": {"cpu": "500m", "memory": "1Gi"}}
    assert container["envFrom"] == [{"secretRef": {"name": "indexflow-worker-env", "optional": True}}]
    assert pod["serviceAccountName"] == "indexflow-worker" and job.job_manifest["metadata"]["namespace"] == "indexflow"
    assert pod["volumes"] == [{"name": "cache", "persistentVolumeClaim": {"claimName": "indexflow-cache"}}]
    assert job.job_manifest["spec"]["activeDeadlineSeconds"] == 21600


def test_parameter_schema_is_enforced(deployed) -> None:  # noqa: ANN001
    url = f"{deployed.url}/deployments/{deployment_id(deployed, MERGE)}/create_flow_run"
    response = httpx.post(url, json={"parameters": {"source_from_index": 17, "dry_run": "maybe"}}, timeout=API_TIMEOUT)
    assert response.status_code == 409
    assert "Validation failed for field 'source_from_index'" in response.text


# -- REST and CLI triggers -------------------------------------------------------------------------
def test_rest_triggered_merge_publishes_on_the_sandbox(started: dict, deployed, sandbox) -> None:  # noqa: ANN001
    done = wait_final(deployed, started["rest"]["id"])
    assert done["state"]["type"] == "COMPLETED", done["state"]["message"]
    output = f"{sandbox.registry_host}/iib-build:rest-1"
    assert sandbox.registry_client.exists(ImageRef.parse(output))
    keys = artifacts_of(deployed, done["id"])
    assert output in keys[target_key("merge-summary", sandbox)]["data"] and target_key("bundles-added", sandbox) in keys
    # the result as data: in the API (a result artifact) and in the result storage setup configured
    result = keys[target_key("merge-result", sandbox)]["data"]
    digest = sandbox.registry_client.resolve(ImageRef.parse(output))
    assert {"pullspec": output, "digest": digest} in result["outputs"] and result["mr_state"] == "closed"
    assert result["missing"] == len(sandbox.seeded.missing_from_source) and result["timings"]
    storage = done["state"]["data"]
    assert storage["serializer"]["type"] == "json" and storage["storage_block_id"]
    block = deployed.api("GET", f"/block_documents/{storage['storage_block_id']}")
    stored = Path(block["data"]["basepath"]) / storage["storage_key"]
    assert json.loads(stored.read_text())["outputs"] == result["outputs"]  # the JSON serializer: the dict itself
    assert done["name"] == "merge-rest-1-" + sandbox.seeded.target_index.rsplit(":", 1)[1]


def test_rest_merge_without_the_ocp_allow_list_is_refused_with_a_summary(started: dict, deployed, sandbox) -> None:  # noqa: ANN001
    done = wait_final(deployed, started["guard"]["id"])
    assert done["state"]["type"] == "FAILED"
    # the guard speaks: the referenced Secret was loaded and its token accepted before the merge began
    assert done["state"]["message"].startswith("Refusing a destructive merge: it would drop ")
    assert done["parameters"]["overwrite_target_index_token_secret"] == secret_ref(GUARD_SECRET)  # as stored
    assert TOKEN not in json.dumps(done["parameters"])
    assert not sandbox.registry_client.exists(ImageRef.parse(f"{sandbox.registry_host}/iib-build:guard-1"))
    summary = artifacts_of(deployed, done["id"])[target_key("merge-summary", sandbox)]["data"]
    assert "# merge_index_image refused (nothing published)" in summary and "target bundles dropped" in summary
    assert done["state"]["message"] in summary


def test_prefect_deployment_run_cli(started: dict, deployed) -> None:  # noqa: ANN001
    cli = started["cli"]
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "Created flow run" in cli.stdout
    runs = deployed.api("POST", "/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [
        deployment_id(deployed, MERGE)]}}})
    cli_run = next(r for r in runs if r["parameters"].get("request_id") == "cli-1")
    done = wait_final(deployed, cli_run["id"])
    assert (done["state"]["type"], done["state"]["message"]) == (
        "FAILED", 'The "distribution_scope" value must be one of "dev", "stage", or "prod"')


# -- the overwrite token: never a parameter value ---------------------------------------------------
def test_deployed_schema_types_the_token_as_a_secret_block_reference(deployed) -> None:  # noqa: ANN001
    """Read back from the API `prefect deploy` wrote to: no raw token property, a Secret block picker."""
    schema = deployed.api("GET", f"/deployments/{deployment_id(deployed, MERGE)}")["parameter_openapi_schema"]
    assert not [name for name in schema["properties"] if name == "overwrite_target_index_token"]
    secret = schema["properties"]["overwrite_target_index_token_secret"]
    assert secret["anyOf"] == [{"$ref": "#/definitions/Secret"}, {"type": "null"}]
    assert schema["definitions"]["Secret"]["block_type_slug"] == "secret"  # the UI's block picker


@pytest.mark.parametrize("secret", [{"value": TOKEN}, TOKEN], ids=["inline-secret", "bare-string"])
def test_a_token_value_for_the_secret_is_refused_and_never_stored(deployed, sandbox, secret: object) -> None:  # noqa: ANN001
    url = f"{deployed.url}/deployments/{deployment_id(deployed, MERGE)}/create_flow_run"
    body = {"parameters": merge_params(sandbox, dry_run=True, overwrite_target_index=True, request_id="refused-token",
                                       overwrite_target_index_token_secret=secret)}
    response = httpx.post(url, json=body, timeout=API_TIMEOUT)
    assert response.status_code == 409, response.text  # Prefect's answer to parameters its schema refuses
    stored = deployed.api("POST", "/flow_runs/filter", json={})
    assert TOKEN not in json.dumps([r["parameters"] for r in stored])


# -- IIB-compatible endpoint -----------------------------------------------------------------------
def poll_build(api: str, build_id: int, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = httpx.get(f"{api}{BUILDS}/{build_id}", timeout=API_TIMEOUT).json()
        if body["state"] != "in_progress":
            return body
        time.sleep(0.5)
    pytest.fail(f"build {build_id} still in progress after {timeout:.0f} s: {body['state_reason']}")


@pytest.mark.parametrize("payload, status, error", [
    ([1, 2], 400, "The input data must be a JSON object"),
    ({"target_index": "a:b"}, 400, 'The "source_from_index" value must be a string'),
    ({"source_from_index": "a:b", "deprecation_list": [""]}, 400,
     'The "deprecation_list" value should be an empty array or an array of strings'),
    ({"source_from_index": "a:b", "target_index": "c:d", "overwrite_target_index": True}, 400,
     'The "overwrite_target_index_token" value is required when the "overwrite_target_index" value is set'),
    ({"source_from_index": "a:b", "distribution_scope": "qa"}, 400,
     'The "distribution_scope" value must be one of "dev", "stage", or "prod"'),
    ({"source_from_index": "a:b", "target_index": "c:d", "graph_update_mode": "semver"}, 403,
     '"graph_update_mode" can only be used on the following index image: []'),
    ({"source_from_index": "a:b", "bundles": []}, 400, "The following parameters are invalid: bundles"),
])
def test_iib_validation(iib_api: str, payload: object, status: int, error: str) -> None:
    response = httpx.post(f"{iib_api}{BUILDS}/merge-index-image", json=payload, timeout=API_TIMEOUT)
    assert (response.status_code, response.json()) == (status, {"error": error})


def test_iib_request_runs_the_deployment_and_reports_iib_states(started: dict, iib_api: str, deployed,  # noqa: ANN001
                                                                sandbox) -> None:
    response = started["iib_ok"]
    assert response.status_code == 201, response.text
    created = response.json()
    assert isinstance(created["id"], int) and created["request_type"] == "merge-index-image"
    assert (created["state"], created["state_reason"]) == ("in_progress", "The request was initiated")
    assert created["source_from_index"] == sandbox.seeded.source_index and created["build_tags"] == ["api"]
    assert TOKEN not in response.text and "overwrite_target_index_token" not in created
    run = deployed.api("GET", f"/flow_runs/{created['flow_run_id']}")
    assert run["parameters"]["request_id"] == str(created["id"]) and f"iib-request:{created['id']}" in run["tags"]
    # Prefect stores parameters in plain text: the run holds a reference to a one-time Secret block
    assert TOKEN not in json.dumps(run["parameters"])
    reference = run["parameters"]["overwrite_target_index_token_secret"]
    assert list(reference) == ["$ref"] and list(reference["$ref"]) == ["block_document_id"]

    done = poll_build(iib_api, created["id"])
    assert done["state"] == "complete", done["state_reason"]
    assert done["state_reason"].startswith("The operator(s) [")
    assert done["state_reason"].endswith("were successfully merged from the source index image into the "
                                         "target index image")
    assert done["index_image"] is None  # a dry run publishes nothing
    assert TOKEN not in httpx.get(f"{iib_api}{BUILDS}/{created['id']}", timeout=API_TIMEOUT).text
    with pytest.raises(httpx.HTTPStatusError, match="404"):  # the run deleted the token once it had read it
        deployed.api("GET", f"/block_documents/{reference['$ref']['block_document_id']}")


def test_iib_failed_request_keeps_the_flow_error_as_state_reason(started: dict, iib_api: str) -> None:
    created = started["iib_failed"].json()
    done = poll_build(iib_api, created["id"])
    assert done["state"] == "failed"
    assert "v4.99" in done["state_reason"] and "Traceback" not in done["state_reason"]
    assert httpx.get(f"{iib_api}{BUILDS}/{created['id'] + 1000}", timeout=API_TIMEOUT).status_code == 404


# -- batch -----------------------------------------------------------------------------------------
def test_batch_of_three_with_one_failing(started: dict, deployed) -> None:  # noqa: ANN001
    done = wait_final(deployed, started["batch"]["id"], timeout=300)
    summary = artifacts_of(deployed, done["id"])["batch-merge-summary"]["data"]
    assert done["state"]["type"] == "FAILED"
    assert done["state"]["message"] == "1 of 3 merges failed: broken", summary
    # the batch's own result (persisted, JSON): every entry with its run and its merge result
    block = deployed.api("GET", f"/block_documents/{done['state']['data']['storage_block_id']}")
    stored = json.loads((Path(block["data"]["basepath"]) / done["state"]["data"]["storage_key"]).read_text())
    children = deployed.api("POST", "/flow_runs/filter", json={
        "flow_runs": {"parent_flow_run_id": {"any_": [done["id"]]}}})
    states = {r["id"]: r["state"]["type"] for r in children}
    assert {entry: states[v["flow_run_id"]] for entry, v in stored.items()} == {
        "nightly-a": "COMPLETED", "nightly-b": "COMPLETED", "broken": "FAILED"}, summary
    assert stored["nightly-b"]["result"]["dry_run"] is True and stored["nightly-b"]["result"]["missing"] == 88
    assert stored["broken"]["state"] == "failed" and stored["broken"]["result"] is None
    assert "2 of 3 merges complete" in summary and "**Failed:** broken" in summary
    assert "| nightly-a | dry run | dry run, nothing published (88 added" in summary
    assert "| broken | failed | Failed: " in summary and "v4.98" in summary


def test_bad_batch_file_fails_in_one_sentence(prefect_api, tmp_path: Path) -> None:  # noqa: ANN001
    from flows.batch_merge import batch_merge

    batch_file = tmp_path / "inline-token.yaml"
    batch_file.write_text(yaml.safe_dump({"merges": [{"name": "x", "source_from_index": "a:b",
                                                      "overwrite_target_index_token": "u:p"}]}))
    state = asyncio.run(batch_merge(batch_file=str(batch_file), return_state=True))
    assert state.is_failed()
    assert state.message == ("merge 'x': put the token in a Secret block and name it in "
                             "'overwrite_target_index_token_secret', never in the batch file")


# -- the UI, as a person sees it -------------------------------------------------------------------
@pytest.mark.skipif(browser.CHROMIUM is None, reason="chromium is not installed")
def test_ui_shows_the_run_its_task_graph_and_summary(started: dict, deployed, sandbox, tmp_path: Path) -> None:  # noqa: ANN001
    done = wait_final(deployed, started["rest"]["id"])
    summary_id = artifacts_of(deployed, done["id"])[target_key("merge-summary", sandbox)]["id"]
    with browser.Browser() as page:
        page.open(f"{deployed.ui_url}/runs/flow-run/{done['id']}")
        page.wait_for_text(done["name"], "Completed", "Task runs", "merge-index-image", timeout=60)
        assert page.evaluate("[...document.querySelectorAll('canvas')].some(c => c.width > 300)")  # task graph
        page.click_text("Artifacts")
        page.wait_for_text(target_key("merge-summary", sandbox), target_key("bundles-added", sandbox),
                           "merge_index_image result")
        time.sleep(1.0)  # let the graph finish drawing
        run_png = page.screenshot(tmp_path / "run.png")
        page.open(f"{deployed.ui_url}/artifacts/artifact/{summary_id}")
        page.wait_for_text("bundles added", "iib-build:rest-1", "Timings")
        summary_png = page.screenshot(tmp_path / "summary.png")
    out = browser.compose([run_png, summary_png], tmp_path / "ui-merge-run.png")
    assert out.stat().st_size > 100_000
    if os.environ.get("INDEXFLOW_SAVE_SCREENSHOTS"):  # a directory: refresh docs/ui-merge-run.png
        (Path(os.environ["INDEXFLOW_SAVE_SCREENSHOTS"]) / "ui-merge-run.png").write_bytes(out.read_bytes())


@pytest.mark.skipif(browser.CHROMIUM is None, reason="chromium is not installed")
def test_ui_shows_a_refused_run_a_batch_and_the_run_form_with_field_help(started: dict, deployed, sandbox,  # noqa: ANN001
                                                                         tmp_path: Path) -> None:
    refused = wait_final(deployed, started["guard"]["id"])
    batch = wait_final(deployed, started["batch"]["id"], timeout=300)
    refused_summary = artifacts_of(deployed, refused["id"])[target_key("merge-summary", sandbox)]["id"]
    batch_summary = artifacts_of(deployed, batch["id"])["batch-merge-summary"]["id"]
    shots = {}
    with browser.Browser() as page:
        page.open(f"{deployed.ui_url}/artifacts/artifact/{refused_summary}")
        page.wait_for_text("refused (nothing published)", "Refusing a destructive merge", "target bundles dropped")
        shots["ui-failed-run.png"] = [page.screenshot(tmp_path / "refused.png")]
        page.open(f"{deployed.ui_url}/runs/flow-run/{batch['id']}")
        page.wait_for_text(batch["name"], "Failed", timeout=60)
        batch_run = page.screenshot(tmp_path / "batch-run.png")
        page.open(f"{deployed.ui_url}/artifacts/artifact/{batch_summary}")
        page.wait_for_text("2 of 3 merges complete", "dry run, nothing published")
        shots["ui-batch.png"] = [batch_run, page.screenshot(tmp_path / "batch-summary.png")]
        page.open(f"{deployed.ui_url}/deployments/deployment/{deployment_id(deployed, MERGE)}/run")
        page.wait_for_text("source_from_index", "Index image whose catalog is the base of the merge",
                           "Destructive-merge guard for this run", "The Secret block holding", timeout=60)
        shots["ui-run-form.png"] = [page.screenshot(tmp_path / "form.png")]
    save_to = os.environ.get("INDEXFLOW_SAVE_SCREENSHOTS")  # a directory: refresh the pictures in docs/
    for name, images in shots.items():
        out = browser.compose(images, tmp_path / name)
        assert out.stat().st_size > 50_000
        if save_to:
            (Path(save_to) / name).write_bytes(out.read_bytes())
