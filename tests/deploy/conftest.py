"""A real `prefect server start` on loopback for the deployment tests, with a process worker.

One server per test session (its own PREFECT_HOME in a temp dir). Test code reaches it through the
function-scoped `prefect_api` fixture (temporary settings), so other suites' harnesses in the same
xdist worker are never redirected to it; subprocesses get `server.env`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 240.0  # a fresh server took 97 s to answer on a 2-core box at load 46


# a test's read of the Prefect API or the IIB endpoint (which reads the API): on a loaded box the server's
# SQLite waits up to 60 s for its write lock (server_env), so a slow answer is not a failure
API_TIMEOUT = 150.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll `url` until it answers 200; fail with the log tail if the process died or time ran out."""
    from indexflow.app.serve_cmd import answers

    if not answers(url, timeout, proc):
        tail = log.read_text()[-3000:] if log and log.exists() else ""
        pytest.fail(f"{url} did not come up in {timeout:.0f} s\n{tail}")


@dataclass
class Service:
    """A background process this suite started (own session, so it is stopped with its children)."""

    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        from indexflow.app.serve_cmd import Child, stop_all

        stop_all([Child(self.log.stem, self.proc, self.log)])


def start(args: list[str], env: dict[str, str], log: Path) -> Service:
    out = log.open("ab")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    return Service(proc, log)


@dataclass
class PrefectServer:
    url: str  # .../api
    ui_url: str
    home: Path
    env: dict[str, str]
    logs: Path
    service: Service
    _ready: bool = False

    def run(self, *args: str, check: bool = True, timeout: float = 120, extra_env: dict | None = None
            ) -> subprocess.CompletedProcess:
        """A CLI command (prefect, indexflow) against this server, from the repository root."""
        env = {**self.env, **(extra_env or {})}
        self.ready()
        result = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return result

    def ready(self) -> "PrefectServer":
        """Wait (once) until the server answers; started early so fixtures can overlap its boot."""
        if not self._ready:
            wait_http(f"{self.url}/health", STARTUP_TIMEOUT, self.service.proc, self.service.log)
            self._ready = True
        return self

    def wait_for(self, path: str, timeout: float = 180.0) -> object:
        """GET `path` until it exists: a 404, or no answer while a busy SQLite server waits for its lock
        (the suite's last test once saw a 30 s read time out), counts as "not yet" until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = httpx.get(self.ready().url + path, timeout=API_TIMEOUT)
                if response.status_code == 200:
                    return response.json()
                last = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            assert time.monotonic() < deadline, f"{path} not there after {timeout:.0f} s ({last})"
            time.sleep(1)

    def api(self, method: str, path: str, **kw) -> object:
        for attempt in range(6):  # like Prefect's own client: a busy SQLite server answers 503 for a moment
            try:
                response = httpx.request(method, self.ready().url + path, timeout=API_TIMEOUT, **kw)
            except httpx.TimeoutException:
                if attempt == 5:
                    raise
                continue
            if response.status_code not in (429, 503):
                break
            time.sleep(0.5 * 2 ** attempt)
        response.raise_for_status()
        return response.json() if response.content else None


def server_env(home: Path, base: str, **extra: str) -> dict[str, str]:
    """The environment of a test's own `prefect server start` at `base` and of the processes that use it:
    none of the caller's PREFECT_* settings, workers polling every second, and SQLite waiting for its
    lock instead of answering 503 (several concurrent merges on 2 cores)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=f"{base}/api", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", PWD=str(REPO), PREFECT_WORKER_QUERY_SECONDS="1",
               PREFECT_SERVER_DATABASE_TIMEOUT="60", PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT="30", **extra)
    return env


@contextmanager
def leased_server(tmp_path_factory: pytest.TempPathFactory, name: str, **extra: str) -> Iterator[PrefectServer]:
    """A module's own real Prefect server with concurrency leases on the filesystem (so they outlive a
    server restart), up and set as this process's API while the block runs; `extra` env on top."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home, logs = tmp_path_factory.mktemp(f"{name}-home"), tmp_path_factory.mktemp(f"{name}-logs")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(home, base, PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=
                     "prefect.server.concurrency.lease_storage.filesystem", **extra)
    proc = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                 logs / "server.log")
    srv = PrefectServer(f"{base}/api", base, home, env, logs, proc)
    try:
        wait_http(f"{srv.url}/health", 300, proc.proc, proc.log)  # a loaded box needs more than 90 s
        srv._ready = True
        with temporary_settings(updates={PREFECT_API_URL: srv.url}):
            yield srv
    finally:
        srv.service.stop()  # the service, not `proc`: a restart test replaces the first process


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp("prefect-home")
    logs = tmp_path_factory.mktemp("logs")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(home, base, PREFECT_UI_URL=base, PREFECT_LOGGING_LEVEL="INFO",
                     PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5")
    server = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                   logs / "server.log")
    try:
        yield PrefectServer(f"{base}/api", base, home, env, logs, server)
    finally:
        server.stop()


@pytest.fixture()
def prefect_api(prefect_server: PrefectServer) -> Iterator[PrefectServer]:
    """In-process Prefect clients (blocks, get_client) talk to the suite's server for this test."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.ready().url}):
        yield prefect_server


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
    prefect_server.run("indexflow", "setup", str(config), extra_env=secrets, timeout=300)
    prefect_server.run("prefect", "--no-prompt", "deploy", "--all", timeout=300)
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
