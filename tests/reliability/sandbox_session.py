"""One seeded sandbox per test process for the proof suites (bad inputs, faults, secrets, concurrency).

Every remote (registry, git + GitLab, Kubernetes API) is reached through a FaultProxy, transparent
until a test arms it; the demo seed (45 real packages) is the starting state.

The stack is built once per process (several conftests import these fixtures, and pytest keeps one
instance of a session fixture per conftest, so the stack lives in `_SHARED` and is closed at exit).
The Prefect API is the test session's one server (`prefect_session` in tests/conftest.py), shared with
every other suite the same xdist worker runs, so no second API is ever started in this process
(Prefect's event client could then drop task-run events). The kill matrix points its module at a
server of its own, nested inside the session's.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.flow.remote_state import RemoteState, snapshot

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
BLOCK = "proof-suites"
SETTINGS = {"konflux_pipeline_timeout": 25}  # a Kubernetes API that never answers fails the run this soon
_SHARED: dict = {}


def _sandbox() -> object:
    """The process's seeded ProxiedEnv (built on first use, closed at interpreter exit)."""
    if "env" not in _SHARED:
        from sandbox.demo_env import GIT_PROJECT
        from sandbox.seed_scale import ProxiedEnv

        state = Path(tempfile.mkdtemp(prefix="indexflow-proof-"))
        os.environ["INDEXFLOW_CACHE_DIR"] = str(state / "flow-cache")  # never the user's ~/.cache
        stack = ExitStack()
        atexit.register(stack.close)
        env = stack.enter_context(ProxiedEnv.up(state))
        env.seed()
        env.git_project = GIT_PROJECT
        _SHARED["env"] = env
    return _SHARED["env"]


@pytest.fixture(scope="module")
def prefect_api(prefect_session) -> object:  # noqa: ANN001 - tests.prefect_server.PrefectServer
    """The Prefect API in-process clients use: the session's server, or the one a module nests inside it."""
    return prefect_session


@pytest.fixture(scope="module")
def proxied_env(prefect_api) -> Iterator[object]:  # noqa: ANN001
    """The stack behind fault proxies, seeded with the demo data, its blocks saved in this API."""
    env = _sandbox()
    env.save_blocks(BLOCK, **SETTINGS)
    yield env


@pytest.fixture()
def clean_proxies(proxied_env) -> Iterator[None]:  # noqa: ANN001
    """Every test starts and ends with transparent proxies."""
    for proxy in proxied_env.proxies.values():
        proxy.clear()
    yield
    for proxy in proxied_env.proxies.values():
        proxy.clear()


def remote_state(env) -> RemoteState:  # noqa: ANN001
    """Registry tags, git refs and MRs, read straight from the services (not through the proxies)."""
    return snapshot(env.stack.registry.url, env.stack.git, env.git_project, f"{env.stack.gitlab_url}/api/v4",
                    env.git_token)


WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def reset_request_logs(env) -> None:  # noqa: ANN001
    for proxy in env.proxies.values():
        proxy.reset_stats()


def remote_writes(env) -> list[str]:  # noqa: ANN001
    """Write requests that went through the proxies since `reset_request_logs` (a git fetch is a POST
    to git-upload-pack: a read)."""
    out = []
    for name, proxy in env.proxies.items():
        for method, path in proxy.requests():
            if method in WRITE_METHODS and not path.endswith("git-upload-pack"):
                out.append(f"{name}: {method} {path}")
    return out
