"""indexflow.konflux and the sensor core with the kubernetes client (through prefect-kubernetes
KubernetesCredentials and the stack's kubeconfig) against the Kubernetes API stand-in."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from indexflow import konflux
from indexflow.errors import PublishError
from tasks.konflux_wait import MISSING_CONFIG, wait_for_image
from tests.publish.conftest import set_knobs

MERGE_PATCH = "application/merge-patch+json"


def run(creds, fn):  # noqa: ANN001, ANN201
    """Run `fn(api)` with a CustomObjectsApi from the credentials (an async kubernetes_asyncio client)."""
    async def main():  # noqa: ANN202
        async with creds.get_client("custom_objects") as api:
            return await fn(api)
    return asyncio.run(main())


def create_run(creds, ns: str, sha: str, status: dict | None = None) -> str:  # noqa: ANN001
    """Create a PipelineRun labelled with `sha` and (like a controller) patch its status subresource."""
    async def go(api) -> str:  # noqa: ANN001
        body = {"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
                "metadata": {"generateName": "catalog-on-pull-request-", "labels": {konflux.SHA_LABEL: sha}},
                "spec": {"pipelineRef": {"name": "fbc"}}}
        created = await api.create_namespaced_custom_object("tekton.dev", "v1", ns, "pipelineruns", body)
        name = created["metadata"]["name"]
        if status is not None:
            await api.patch_namespaced_custom_object_status("tekton.dev", "v1", ns, "pipelineruns", name,
                                                            {"status": status}, _content_type=MERGE_PATCH)
        return name
    return run(creds, go)


def find(creds, ns: str, sha: str) -> dict | None:  # noqa: ANN001
    return run(creds, lambda api: konflux.find_pipelinerun(api, ns, sha))


def cond(status: str, reason: str, message: str = "") -> dict:
    return {"conditions": [{"type": "Succeeded", "status": status, "reason": reason, "message": message}]}


OUTCOMES = [  # (status, expected done, ok, message with {n} for the run name)
    ({}, False, False, "initializing"),
    (cond("Unknown", "Running", "Tasks Completed: 0"), False, False, "Tasks Completed: 0"),
    (cond("Unknown", "Started"), False, False, ""),
    (cond("Unknown", "Pending"), False, False, ""),
    (cond("True", "Succeeded", "All Tasks have completed executing"), True, True,
     "All Tasks have completed executing"),
    (cond("True", "Completed"), True, True, ""),
    (cond("False", "Cancelled", "PipelineRun was cancelled"), True, False, "Pipelinerun {n} was cancelled"),
    (cond("False", "Failed", "Tasks Completed: 1 (Failed: 1)"), True, False,
     "Pipelinerun {n} failed: Tasks Completed: 1 (Failed: 1)"),
    (cond("False", "Failed"), True, False, "Pipelinerun {n} failed"),
    (cond("False", "PipelineRunTimeout", "timed out"), True, False, "Pipelinerun {n} failed due to timeout"),
    (cond("False", "CreateRunFailed", "quota"), True, False,
     "Pipelinerun {n} failed due to resource creation failure"),
    (cond("False", "CouldntGetPipeline", "pipeline fbc not found"), True, False,
     "Pipelinerun {n} failed: pipeline fbc not found"),
    (cond("False", "PipelineValidationFailed"), True, False, "Pipelinerun {n} failed"),
    (cond("False", "Failed", "step-build: " + "x" * 100_000), True, False,  # cut where it becomes a state
     "Pipelinerun {n} failed: step-build: " + "x" * 1988 + "... (98012 more characters)"),
]


@pytest.fixture(scope="module")
def outcome_runs(stack, kube_creds) -> list[tuple[str, dict]]:  # noqa: ANN001
    """One PipelineRun per OUTCOMES row, created and read back through one client session."""
    ns = stack.konflux_namespace

    async def go(api) -> list[tuple[str, dict]]:  # noqa: ANN001
        found = []
        for status, *_ in OUTCOMES:
            sha = secrets.token_hex(20)
            body = {"apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
                    "metadata": {"generateName": "catalog-on-pull-request-", "labels": {konflux.SHA_LABEL: sha}}}
            name = (await api.create_namespaced_custom_object("tekton.dev", "v1", ns, "pipelineruns", body)
                    )["metadata"]["name"]
            if status:
                await api.patch_namespaced_custom_object_status("tekton.dev", "v1", ns, "pipelineruns", name,
                                                                {"status": status}, _content_type=MERGE_PATCH)
            found.append((name, await konflux.find_pipelinerun(api, ns, sha)))
        return found
    return run(kube_creds, go)


@pytest.mark.parametrize(("row", "done", "ok", "message"), [(i, *rest) for i, (_, *rest) in enumerate(OUTCOMES)],
                         ids=[(s.get("conditions") or [{}])[0].get("reason", "none") + str(i)
                              for i, (s, *_) in enumerate(OUTCOMES)])
def test_every_outcome(outcome_runs, row, done, ok, message) -> None:  # noqa: ANN001
    name, pr = outcome_runs[row]
    assert pr["metadata"]["name"] == name
    result = konflux.outcome(pr)
    assert (result.done, result.ok, result.message) == (done, ok, message.format(n=name))


def test_only_the_first_condition_counts() -> None:
    pr = {"metadata": {"name": "r"}, "status": {"conditions": [
        {"type": "Succeeded", "status": "Unknown", "reason": "Running"},
        {"type": "Other", "status": "False", "reason": "Failed"}]}}
    assert konflux.outcome(pr).done is False


def test_newest_run_of_a_commit_wins(stack, kube_creds) -> None:  # noqa: ANN001
    sha = secrets.token_hex(20)
    create_run(kube_creds, stack.konflux_namespace, sha)
    time.sleep(1.05)  # creationTimestamp has one-second resolution, as in Kubernetes
    newer = create_run(kube_creds, stack.konflux_namespace, sha)
    create_run(kube_creds, stack.konflux_namespace, secrets.token_hex(20))  # another commit
    assert find(kube_creds, stack.konflux_namespace, sha)["metadata"]["name"] == newer
    assert find(kube_creds, stack.konflux_namespace, secrets.token_hex(20)) is None


@pytest.mark.parametrize("field", ["results", "pipelineResults"])
def test_image_url_from_v1_results_or_v1beta1_pipeline_results(stack, kube_creds, field) -> None:  # noqa: ANN001
    sha = secrets.token_hex(20)
    status = {**cond("True", "Succeeded"),
              field: [{"name": "IMAGE_URL", "value": "  quay.io/tenant/catalog:on-pr-x\n"},
                      {"name": "IMAGE_DIGEST", "value": "sha256:" + "c" * 64}]}
    create_run(kube_creds, stack.konflux_namespace, sha, status)
    pr = find(kube_creds, stack.konflux_namespace, sha)
    assert konflux.image_url(pr) == "quay.io/tenant/catalog:on-pr-x"
    assert konflux.image_digest(pr) == "sha256:" + "c" * 64


def test_missing_image_url_and_name_are_iib_texts(stack, kube_creds) -> None:  # noqa: ANN001
    sha = secrets.token_hex(20)
    name = create_run(kube_creds, stack.konflux_namespace, sha, cond("True", "Succeeded"))
    with pytest.raises(PublishError) as err:
        konflux.image_url(find(kube_creds, stack.konflux_namespace, sha))
    assert str(err.value) == f"IMAGE_URL not found in pipelinerun {name} results"
    with pytest.raises(PublishError) as err:
        konflux.outcome({"metadata": {}, "status": {}})
    assert str(err.value) == "Pipelinerun name not found in pipeline metadata"


def test_api_errors_are_iib_texts(stack, kube_creds) -> None:  # noqa: ANN001
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    config = KubernetesClusterConfig.from_file(stack.kubeconfig_path)
    config.config["users"][0]["user"]["token"] = "wrong"
    wrong = KubernetesCredentials(cluster_config=config)
    with pytest.raises(PublishError) as err:
        find(wrong, stack.konflux_namespace, "abc")
    assert str(err.value) == "Failed to fetch pipelineruns for commit abc: API error 401"
    with pytest.raises(PublishError) as err:
        run(kube_creds, lambda api: konflux.get_pipelinerun(api, stack.konflux_namespace, "nope"))
    assert str(err.value) == "Failed to monitor pipelinerun nope: API error 404"


SLACK = 10.0  # seconds a loaded 2-core box may add to a deadline; far below what a missed deadline costs


# -- the sensor (its core coroutine; the Prefect task wrapper is tested in test_build.py) --------------
def wait(stack, creds, sha: str, timeout: float, interval: float = 0.05) -> tuple[str, list[str]]:  # noqa: ANN001
    logs: list[str] = []
    url = asyncio.run(wait_for_image(creds, stack.konflux_namespace, sha, interval, timeout, logs.append))
    return url, logs


@pytest.mark.parametrize(("knobs", "text"), [
    ({"fail": True}, "Pipelinerun {n} failed: Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0"),
    ({"fail": "build-image step exited 1"}, "Pipelinerun {n} failed: build-image step exited 1"),
    ({"fail": True, "fail_reason": "PipelineRunTimeout"}, "Pipelinerun {n} failed due to timeout"),
    ({"fail": True, "fail_reason": "CreateRunFailed"}, "Pipelinerun {n} failed due to resource creation failure"),
    ({"cancel": True}, "Pipelinerun {n} was cancelled"),
])
def test_sensor_ends_with_the_builders_failure(stack, kube_creds, knobs, text) -> None:  # noqa: ANN001
    set_knobs(stack, delay=0.3, **knobs)
    sha = secrets.token_hex(20)
    name = stack.builder.start("iib/any", sha, "pull_request", "iib-x")
    with pytest.raises(PublishError) as err:
        wait(stack, kube_creds, sha, timeout=10)
    assert str(err.value) == text.format(n=name)


def test_sensor_logs_each_status_change_once(stack, kube_creds, request_commit, binary_image) -> None:  # noqa: ANN001
    set_knobs(stack, delay=3.0)  # the run stays Running for 3 s: polls every 0.05 s see it even on a loaded box
    name = stack.builder.start(request_commit.project, request_commit.sha, "pull_request", request_commit.branch)
    url, logs = wait(stack, kube_creds, request_commit.sha, timeout=20)
    assert url.endswith(f":on-pr-{request_commit.sha}")
    assert [line.split(":")[1].split()[0] for line in logs[:2]] == ["Running", "Succeeded"]
    assert logs[0].startswith(f"Pipelinerun {name}: Running")
    assert len(logs) == 3 and logs[2].startswith(f"Pipelinerun {name} built {url} (digest sha256:")


def test_sensor_times_out_on_a_run_that_never_finishes(stack, kube_creds) -> None:  # noqa: ANN001
    set_knobs(stack, never_finish=True)
    sha = secrets.token_hex(20)
    name = stack.builder.start("iib/any", sha, "pull_request", "iib-x")
    started = time.monotonic()
    with pytest.raises(PublishError) as err:
        wait(stack, kube_creds, sha, timeout=1.0, interval=0.2)
    assert str(err.value) == f"Timeout waiting for pipelinerun {name} to complete after 1 seconds"
    # a sensor that ignored its deadline would wait for ever; generous slack for a loaded 2-core box
    assert time.monotonic() - started < 1.0 + SLACK


def test_sensor_without_any_run_times_out(stack, kube_creds) -> None:  # noqa: ANN001
    with pytest.raises(PublishError) as err:
        wait(stack, kube_creds, "0" * 40, timeout=0.5)
    assert str(err.value) == f"No pipelineruns found for commit {'0' * 40} within 0.5 seconds"


def test_sensor_never_blocks_past_its_timeout_on_a_hung_api(stack) -> None:  # noqa: ANN001
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from sandbox.faultproxy import FaultProxy

    with FaultProxy(stack.kube_url.removeprefix("http://")) as proxy:
        config = KubernetesClusterConfig.from_file(stack.kubeconfig_path)
        config.config["clusters"][0]["cluster"]["server"] = proxy.url
        fault = proxy.add_fault("hang", path="pipelineruns", times=100)
        started = time.monotonic()
        with pytest.raises(PublishError, match="within 1.5 seconds$"):
            wait(stack, KubernetesCredentials(cluster_config=config), "1" * 40, timeout=1.5)
        # without the overall deadline one hung call alone lasts API_TIMEOUT (30 s)
        assert time.monotonic() - started < 1.5 + SLACK < konflux.API_TIMEOUT
        assert fault.injected >= 1


@pytest.mark.parametrize("fault", [{"action": "status", "status": 503, "times": 2},
                                   {"action": "status", "status": 429, "times": 1},
                                   {"action": "drop", "times": 2},
                                   {"action": "hang", "times": 1}])
def test_sensor_rides_out_a_flaky_cluster_api(stack, kube_creds, fault) -> None:  # noqa: ANN001
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from sandbox.faultproxy import FaultProxy

    sha = secrets.token_hex(20)
    create_run(kube_creds, stack.konflux_namespace, sha,
               {**cond("True", "Succeeded"), "results": [{"name": "IMAGE_URL", "value": "reg/x:on-pr"}]})
    with FaultProxy(stack.kube_url.removeprefix("http://")) as proxy:
        config = KubernetesClusterConfig.from_file(stack.kubeconfig_path)
        config.config["clusters"][0]["cluster"]["server"] = proxy.url
        armed = proxy.add_fault(path="pipelineruns", **fault)
        logs: list[str] = []
        url = asyncio.run(wait_for_image(KubernetesCredentials(cluster_config=config), stack.konflux_namespace,
                                         sha, 0.05, 10, logs.append, api_timeout=0.5))
    assert url == "reg/x:on-pr"
    assert armed.injected == fault["times"]
    # aiohttp itself re-sends a GET once when a kept-alive connection drops
    assert 1 <= sum("asking again" in line for line in logs) <= fault["times"]


def test_sensor_without_credentials_says_what_to_configure(stack) -> None:  # noqa: ANN001
    with pytest.raises(PublishError) as err:
        wait(stack, None, "abc", timeout=1)
    assert str(err.value) == MISSING_CONFIG


def test_knobs_endpoint_requires_the_token_and_rejects_unknown_knobs(stack) -> None:  # noqa: ANN001
    import httpx

    assert httpx.get(f"{stack.kube_url}/_sandbox/knobs", timeout=5).status_code == 401
    bad = httpx.post(f"{stack.kube_url}/_sandbox/knobs", json={"explode": True}, timeout=5,
                     headers={"Authorization": f"Bearer {stack.kube.token}"})
    assert bad.status_code == 400 and "explode" in bad.json()["message"]
    assert set_knobs(stack, delay=0.25)["delay"] == 0.25
