"""The deployment tests' process worker, seeded sandbox and setup, on the session's Prefect server
(`prefect_server` in tests/conftest.py: one real `prefect server start` per test session, shared
with every other suite; subprocesses get `server.env`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.prefect_server import (API_TIMEOUT, BIN, CLI_TIMEOUT, REPO, PrefectServer, Service, free_port,  # noqa: F401
                                  leased_server, start, wait_http)


@pytest.fixture()
def prefect_api(prefect_session: PrefectServer) -> PrefectServer:
    """The session's server, ready; in-process clients (blocks, get_client) already talk to it."""
    return prefect_session


@pytest.fixture(scope="session")
def process_worker(prefect_server: PrefectServer) -> Iterator[Service]:
    """`prefect worker start --pool process` (it creates the pool; `indexflow setup` then updates it)."""
    prefect_server.ready()
    worker = start([str(BIN / "prefect"), "worker", "start", "--pool", "process", "--type", "process",
                    "--name", "deploy-tests", "--limit", "3"], prefect_server.env, prefect_server.logs / "worker.log")
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - SandboxEnv
    """The loopback stack (registry, git + GitLab, Konflux) seeded with real catalog data."""
    from sandbox.demo_env import SandboxEnv

    with SandboxEnv.up(tmp_path_factory.mktemp("sandbox")) as env:
        env.seed()
        yield env


GITLAB_BLOCK, KUBE_BLOCK = "sandbox-gitlab", "sandbox-konflux"


def write_setup_yaml(env, folder: Path) -> tuple[Path, dict[str, str]]:  # noqa: ANN001 - SandboxEnv
    """An operator setup file for the sandbox, secrets only referenced; returns it and the env they need."""
    env._blocks = {"gitlab": GITLAB_BLOCK, "kubernetes": KUBE_BLOCK}  # names the setup file creates
    values = env.settings().model_dump(mode="json", exclude={"block_type_slug", "gitlab_credentials",
                                                             "kubernetes_credentials", "registry_auth_secret"})
    config = {
        "settings": {"name": "indexflow", "values": values},
        "gitlab": {"name": GITLAB_BLOCK, "url": env.gitlab_url, "token": {"from_env": "SANDBOX_GITLAB_TOKEN"}},
        "kubernetes": {"name": KUBE_BLOCK, "kubeconfig": {"from_file": str(env.stack.kubeconfig_path)}},
        "secrets": {"sandbox-overwrite-token": {"from_env": "SANDBOX_OVERWRITE_TOKEN"}},
        "concurrency_limits": {},
        "results": {"name": "indexflow-results", "basepath": str(folder / "results")},
        "work_pools": {"process": {"type": "process"},
                       "kubernetes": {"type": "kubernetes",
                                      "base_job_template": str(REPO / "deployments/kubernetes-job-template.json")}},
    }
    path = folder / "setup.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, {"SANDBOX_GITLAB_TOKEN": env.git_token, "SANDBOX_OVERWRITE_TOKEN": "sandbox:sandbox"}


@pytest.fixture(scope="session")
def deployed(prefect_server: PrefectServer, sandbox, tmp_path_factory: pytest.TempPathFactory,  # noqa: ANN001
             request: pytest.FixtureRequest) -> PrefectServer:
    """`indexflow setup` for the sandbox, then `prefect deploy --all` from the repository root.

    The server boots while the sandbox is seeded (fixture order), then the worker starts.
    """
    request.getfixturevalue("process_worker")
    config, secrets = write_setup_yaml(sandbox, tmp_path_factory.mktemp("setup"))
    # minutes, not seconds, on a loaded box (the default 120 s once cut `deploy --all` short: every test erred)
    prefect_server.run("indexflow", "setup", str(config), extra_env=secrets)
    prefect_server.run("prefect", "--no-prompt", "deploy", "--all")
    return prefect_server


def wait_final(server: PrefectServer, flow_run_id: str, timeout: float = 240.0) -> dict:
    """Poll a flow run until it is in a final state; returns the run JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = server.api("GET", f"/flow_runs/{flow_run_id}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(0.5)
    worker_log = (server.logs / "worker.log").read_text()[-4000:]
    pytest.fail(f"flow run {flow_run_id} still {run['state']['type']} after {timeout:.0f} s\n{worker_log}")


def merge_params(env, **extra: object) -> dict:  # noqa: ANN001 - SandboxEnv
    """The seeded merge (source lags target; one OCP-incompatible bundle allowed through the allow-list)."""
    seed = env.seeded
    return {"source_from_index": seed.source_index, "target_index": seed.target_index,
            "deprecation_list": seed.deprecation_list, "ignore_bundle_ocp_version": True, **extra}


def save_secret(server: PrefectServer, name: str, value: str) -> str:
    """A Secret block on `server`, as an operator saves one; returns its name."""
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.ready().url}):
        Secret(value=value).save(name, overwrite=True)
    return name


def secret_ref(name: str) -> dict:
    """A deployment run's overwrite token: a reference to the saved Secret block `name` (blocks/tokens.py)."""
    return {"$ref": {"block_document_slug": f"secret/{name}"}}


def deployment_id(server: PrefectServer, name: str) -> str:
    return server.api("GET", f"/deployments/name/{name}")["id"]


def create_run(server: PrefectServer, deployment: str, parameters: dict, **body: object) -> dict:
    """POST /deployments/{id}/create_flow_run, exactly what release tooling would send."""
    return server.api("POST", f"/deployments/{deployment_id(server, deployment)}/create_flow_run",
                      json={"parameters": parameters, **body})


def artifacts_of(server: PrefectServer, flow_run_id: str) -> dict[str, dict]:
    found = server.api("POST", "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return {a["key"]: a for a in found if a.get("key")}


@pytest.fixture(scope="session")
def iib_api(deployed: PrefectServer) -> Iterator[str]:
    """`indexflow iib-api` in front of the deployed merge; yields its base URL."""
    port = free_port()
    service = start([str(BIN / "indexflow"), "iib-api", "--port", str(port)],
                    {**deployed.env, "INDEXFLOW_API_LOG_LEVEL": "warning"}, deployed.logs / "iib-api.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/docs", 60, service.proc, service.log)
        yield f"http://127.0.0.1:{port}"
    finally:
        service.stop()


# -- a complete operator setup file (secrets referenced, not inline) -------------------------------
KUBECONFIG = {"apiVersion": "v1", "kind": "Config", "current-context": "konflux",
              "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
              "users": [{"name": "u", "user": {"token": "kube-token"}}],
              "contexts": [{"name": "konflux", "context": {"cluster": "c", "user": "u"}}]}


def setup_file(tmp_path: Path, **changes: object) -> Path:
    """A complete setup file (secrets referenced, not inline) with `changes` applied per section."""
    (tmp_path / "kube.yaml").write_text(yaml.safe_dump(KUBECONFIG))
    (tmp_path / "docker.json").write_text('{"auths": {"quay.example.com": {"auth": "dTpw"}}}')
    doc = {
        "settings": {"name": "setup-test", "values": {"iib_registry": "quay.example.com/iib",
                                                     "index_db_artifact_registry": "quay.example.com/art",
                                                     "konflux_namespace": "iib-tenant"}},
        "gitlab": {"name": "setup-test-gitlab", "url": "https://gitlab.example.com",
                   "token": {"from_env": "SETUP_TEST_GITLAB_TOKEN"}},
        "kubernetes": {"name": "setup-test-konflux", "kubeconfig": {"from_file": "kube.yaml"}},
        "registry_auth": {"name": "setup-test-registry", "docker_config": {"from_file": "docker.json"}},
        "secrets": {"setup-test-token": {"from_env": "SETUP_TEST_OVERWRITE"}},
        "concurrency_limits": {"setup-test-limit": 3},
        "work_pools": {"setup-test-process": {"type": "process"},
                       "setup-test-k8s": {"type": "kubernetes",
                                          "base_job_template": str(REPO / "deployments/kubernetes-job-template.json")}},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            doc[section][field] = value
        elif value is None:
            doc.pop(section)
        else:
            doc[section] = value
    path = tmp_path / "setup.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture()
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"SETUP_TEST_GITLAB_TOKEN": "glpat-s3cr3t", "SETUP_TEST_OVERWRITE": "user:pa55"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values
