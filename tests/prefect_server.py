"""The test session's Prefect server: a real `prefect server start` on loopback (API and UI), own home.

One per test session (per xdist worker: `prefect_server` in tests/conftest.py), shared by every suite
that needs Prefect: flows run in the test process (tests/flow, e2e, the proof suites, publish) and the
deployment suites' workers and CLI calls (deploy, iib, runtime) all talk to it. Subprocesses get
`server.env`. Only the kill-matrix and zombie suites start others (`leased_server`: configured
differently, and restarted by a test). Each server has a PostgreSQL database of its own (tests/postgres.py).
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

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 240.0  # a fresh server took 97 s to answer on a 2-core box at load 46

# a test's read of the Prefect API or the IIB endpoint (which reads the API): on a 2-core box at load 40 an
# answer can take tens of seconds (on SQLite, before tests/postgres.py, a write waited up to 60 s for its
# lock), so a slow answer is not a failure
API_TIMEOUT = 150.0
# a CLI command against the server (prefect deploy, schedule resume, indexflow setup): several API calls,
# each of which may wait out such a lock; at load 40 `prefect deploy --all` ran past 120 s
CLI_TIMEOUT = 300.0


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

    def run(self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT, extra_env: dict | None = None
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
        """GET `path` until it exists: a 404, or no answer from a busy server (the suite's last test once
        saw a 30 s read time out), counts as "not yet" until `timeout`."""
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
        for attempt in range(6):  # like Prefect's own client: a busy server answers 503 for a moment
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
    none of the caller's PREFECT_* settings, workers polling every second, and database calls allowed
    60 s (several concurrent merges on 2 cores) instead of answering 503."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=f"{base}/api", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               DO_NOT_TRACK="1", PWD=str(REPO), PREFECT_WORKER_QUERY_SECONDS="1",
               PREFECT_SERVER_DATABASE_TIMEOUT="60", PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT="30", **extra)
    return env


def start_prefect(home: Path, logs: Path, **extra: str) -> PrefectServer:
    """A `prefect server start` on a free loopback port (its UI there too) with `server_env` (+ `extra`)
    and a PostgreSQL database of its own (tests/postgres.py), not waited for."""
    from tests.postgres import database_url

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(home, base, PREFECT_UI_URL=base, PREFECT_API_DATABASE_CONNECTION_URL=database_url(), **extra)
    proc = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                 logs / "server.log")
    return PrefectServer(f"{base}/api", base, home, env, logs, proc)


def start_server(home: Path, logs: Path) -> PrefectServer:
    """The session's server, started without waiting (callers overlap its boot with their own set-up;
    `ready()` waits)."""
    return start_prefect(home, logs, PREFECT_LOGGING_LEVEL="INFO",
                         PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5")


@contextmanager
def leased_server(tmp_path_factory: pytest.TempPathFactory, name: str, **extra: str) -> Iterator[PrefectServer]:
    """A module's own real Prefect server with concurrency leases on the filesystem (so they outlive a
    server restart), up and set as this process's API while the block runs; `extra` env on top.

    Not the session's server: lease storage, repossessor and heartbeats are server settings, and a test
    stops and restarts it. Its module must request `prefect_session` first, so this override nests
    inside the session's settings and later modules get the session's server back."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    srv = start_prefect(tmp_path_factory.mktemp(f"{name}-home"), tmp_path_factory.mktemp(f"{name}-logs"),
                        PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect.server.concurrency.lease_storage.filesystem",
                        **extra)
    try:
        wait_http(f"{srv.url}/health", 300, srv.service.proc, srv.service.log)  # a loaded box needs more than 90 s
        srv._ready = True
        with temporary_settings(updates={PREFECT_API_URL: srv.url}):
            yield srv
    finally:
        srv.service.stop()  # the service, not the first process: a restart test replaces it
