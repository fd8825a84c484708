"""A real `prefect server start` on loopback for the deployment tests, with a process worker.

One server per test session (its own PREFECT_HOME in a temp dir). Test code reaches it through the
function-scoped `prefect_api` fixture (temporary settings), so other suites' harnesses in the same
xdist worker are never redirected to it; subprocesses get `server.env`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll `url` until it answers 200; fail with the log tail if the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    pytest.fail(f"{url} did not come up in {timeout:.0f} s\n{tail}")


@dataclass
class Service:
    """A background process this suite started (own session, so it is stopped with its children)."""

    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


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

    def run(self, *args: str, check: bool = True, timeout: float = 120, extra_env: dict | None = None
            ) -> subprocess.CompletedProcess:
        """A CLI command (prefect, indexflow) against this server, from the repository root."""
        env = {**self.env, **(extra_env or {})}
        result = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        return result

    def api(self, method: str, path: str, **kw) -> object:
        response = httpx.request(method, self.url + path, timeout=30.0, **kw)
        response.raise_for_status()
        return response.json() if response.content else None


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    home = tmp_path_factory.mktemp("prefect-home")
    logs = tmp_path_factory.mktemp("logs")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=f"{base}/api", PREFECT_UI_URL=base,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", PWD=str(REPO),
               PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_LOGGING_LEVEL="INFO",
               PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5")
    server = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                   logs / "server.log")
    try:
        wait_http(f"{base}/api/health", STARTUP_TIMEOUT, server.proc, server.log)
        yield PrefectServer(f"{base}/api", base, home, env, logs)
    finally:
        server.stop()


@pytest.fixture()
def prefect_api(prefect_server: PrefectServer) -> Iterator[PrefectServer]:
    """In-process Prefect clients (blocks, get_client) talk to the suite's server for this test."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):
        yield prefect_server


@pytest.fixture(scope="session")
def process_worker(prefect_server: PrefectServer) -> Iterator[Service]:
    """`prefect worker start --pool process`, created by `indexflow setup` (see deployed)."""
    worker = start([str(BIN / "prefect"), "worker", "start", "--pool", "process", "--type", "process",
                    "--name", "deploy-tests"], prefect_server.env, prefect_server.logs / "worker.log")
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
    import yaml

    env._blocks = {"gitlab": GITLAB_BLOCK, "kubernetes": KUBE_BLOCK}  # names the setup file creates
    values = env.settings().model_dump(mode="json", exclude={"block_type_slug", "gitlab_credentials",
                                                             "kubernetes_credentials", "registry_auth_secret"})
    config = {
        "settings": {"name": "indexflow", "values": values},
        "gitlab": {"name": GITLAB_BLOCK, "url": env.gitlab_url, "token": {"from_env": "SANDBOX_GITLAB_TOKEN"}},
        "kubernetes": {"name": KUBE_BLOCK, "kubeconfig": {"from_file": str(env.stack.kubeconfig_path)}},
        "secrets": {"sandbox-overwrite-token": {"from_env": "SANDBOX_OVERWRITE_TOKEN"}},
        "concurrency_limits": {"indexflow-batch-merge": 3},
        "work_pools": {"process": {"type": "process"},
                       "kubernetes": {"type": "kubernetes",
                                      "base_job_template": str(REPO / "deployments/kubernetes-job-template.json")}},
    }
    path = folder / "setup.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, {"SANDBOX_GITLAB_TOKEN": env.git_token, "SANDBOX_OVERWRITE_TOKEN": "sandbox:sandbox"}


@pytest.fixture(scope="session")
def deployed(prefect_server: PrefectServer, sandbox, process_worker: Service,  # noqa: ANN001
             tmp_path_factory: pytest.TempPathFactory) -> PrefectServer:
    """`indexflow setup` for the sandbox, then `prefect deploy --all` from the repository root."""
    config, secrets = write_setup_yaml(sandbox, tmp_path_factory.mktemp("setup"))
    prefect_server.run("indexflow", "setup", str(config), extra_env=secrets)
    prefect_server.run("prefect", "--no-prompt", "deploy", "--all")
    return prefect_server


def wait_final(server: PrefectServer, flow_run_id: str, timeout: float = 150.0) -> dict:
    """Poll a flow run until it is in a final state; returns the run JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = server.api("GET", f"/flow_runs/{flow_run_id}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run
        time.sleep(0.5)
    worker_log = (server.logs / "worker.log").read_text()[-4000:]
    pytest.fail(f"flow run {flow_run_id} still {run['state']['type']} after {timeout:.0f} s\n{worker_log}")
