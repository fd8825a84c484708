"""The `kubernetes` work pool end to end: Prefect's real KubernetesWorker renders the pool's base job
template (deployments/kubernetes-job-template.json), creates the Job on the sandbox cluster (every
object checked against the Kubernetes OpenAPI models), the cluster runs the pod from the worker image
pushed to the sandbox registry, and the flow run's outcome comes back through Prefect.
"""

from __future__ import annotations

import time

import pytest

from indexflow.registry.refs import ImageRef
from sandbox.demo_env import GIT_PROJECT
from tests.deploy.conftest import create_run, merge_params, wait_final
from tests.runtime.conftest import K8S_NAMESPACE, K8S_SERVICE_ACCOUNT, deploy_image_merge

MERGE = "merge-index-image/merge-index-image"


@pytest.fixture(scope="module")
def k8s_deployed(runtime_setup, kubernetes_worker, pushed_image: str):  # noqa: ANN001, ANN201
    deploy_image_merge(runtime_setup, "kubernetes", f"image={pushed_image}", "image_pull_policy=Always",
                       f"service_account_name={K8S_SERVICE_ACCOUNT}")
    return runtime_setup


def flow_run_logs(server, flow_run_id: str) -> str:  # noqa: ANN001
    logs = server.api("POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
    return "\n".join(entry["message"] for entry in logs)


def job_of(cluster, flow_run_id: str, timeout: float = 120) -> tuple[dict, list[dict]]:  # noqa: ANN001
    """The flow run's Job once it has finished (the run may report its end before its pod exits)."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = cluster.list("jobs", K8S_NAMESPACE, f"prefect.io/flow-run-id={flow_run_id}")
        assert len(jobs) == 1, jobs
        pods = cluster.list("pods", K8S_NAMESPACE, f"job-name={jobs[0]['metadata']['name']}")
        if jobs[0]["status"].get("conditions") or time.monotonic() > deadline:
            return jobs[0], pods
        time.sleep(0.5)


def test_merge_runs_as_a_kubernetes_job(k8s_deployed, cluster, sandbox, pushed_image: str, state_dir) -> None:  # noqa: ANN001
    rid = "k8s-1"
    run = create_run(k8s_deployed, MERGE, merge_params(sandbox, request_id=rid))
    done = wait_final(k8s_deployed, run["id"], timeout=600)
    job, pods = job_of(cluster, run["id"])
    assert done["state"]["type"] == "COMPLETED", (done["state"]["message"], job.get("status"),
                                                  [p["status"] for p in pods])
    print(f"\nmerge through the kubernetes pool: {done['total_run_time']:.1f} s")

    assert [c["type"] for c in job["status"]["conditions"]][-1] == "Complete"
    [pod] = pods
    container = pod["spec"]["containers"][0]
    assert (container["image"], container["args"]) == (pushed_image, ["prefect", "flow-run", "execute"])
    assert pod["spec"]["serviceAccountName"] == K8S_SERVICE_ACCOUNT
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    # the pod's output came back through the API, and it was the flow run's
    log = cluster.kubelet.logs(K8S_NAMESPACE, pod["metadata"]["name"])
    assert run["id"] in log or "merge-index-image" in log, log[-2000:]
    reasons = [reason for reason, _ in cluster.events_for(K8S_NAMESPACE, pod["metadata"]["name"])]
    assert {"Pulling", "Pulled", "Started"} <= set(reasons)

    # outcomes in the sandbox: the output image exists, the MR was opened and closed (no overwrite)
    assert sandbox.registry_client.exists(ImageRef.parse(f"{sandbox.registry_host}/iib-build:{rid}"))
    mrs = sandbox.stack.gitlab.mrs[GIT_PROJECT].values()
    assert [mr["state"] for mr in mrs if f"request-{rid}-" in mr["source_branch"]] == ["closed"]
    # the cache landed on the persistent claim, not in the pod: the next pod starts warm
    claim = state_dir / "cluster" / "volumes" / K8S_NAMESPACE / "indexflow-cache"
    assert any(path.is_file() for path in claim.rglob("*")), "nothing cached on the claim"
    # every call the worker and its observer made was one the stand-in serves
    assert cluster.unserved == []


def test_failing_jobs_end_the_flow_run_with_the_reason(k8s_deployed, cluster, sandbox) -> None:  # noqa: ANN001
    """A container that exits non-zero, an image that cannot be pulled, a manifest Kubernetes refuses."""
    params = merge_params(sandbox, dry_run=True)
    runs = {
        "exit": create_run(k8s_deployed, MERGE, params, job_variables={
            "command": "sh -c 'echo cannot-start-the-flow >&2; exit 3'"}),
        "pull": create_run(k8s_deployed, MERGE, params, job_variables={
            "image": f"{sandbox.registry_host}/indexflow/worker:does-not-exist", "job_deadline_seconds": 15}),
        "invalid": create_run(k8s_deployed, MERGE, params, job_variables={"memory_limit": "four gigabytes"}),
    }
    done = {key: wait_final(k8s_deployed, run["id"], timeout=300) for key, run in runs.items()}
    assert {key: d["state"]["type"] for key, d in done.items()} == dict.fromkeys(runs, "CRASHED")

    job, [pod] = job_of(cluster, runs["exit"]["id"])
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert job["status"]["conditions"][-1]["reason"] == "BackoffLimitExceeded"
    assert "cannot-start-the-flow" in flow_run_logs(k8s_deployed, runs["exit"]["id"])

    job, _ = job_of(cluster, runs["pull"]["id"])
    assert job["status"]["conditions"][-1]["reason"] == "DeadlineExceeded"
    pulled = flow_run_logs(k8s_deployed, runs["pull"]["id"])
    assert "does-not-exist" in pulled and ("ErrImagePull" in pulled or "ImagePullBackOff" in pulled), pulled

    assert cluster.list("jobs", K8S_NAMESPACE, f"prefect.io/flow-run-id={runs['invalid']['id']}") == []
    message = done["invalid"]["state"]["message"]
    assert "Unable to create Kubernetes job" in message and "resources.limits.memory" in message, message
