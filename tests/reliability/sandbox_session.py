"""One seeded sandbox per test session for the proof suites (bad inputs, faults, secrets, concurrency).

Every remote (registry, git + GitLab, Kubernetes API) is reached through a FaultProxy, transparent
until a test arms it; the demo seed (45 real packages) is the starting state. Suites import these
fixtures into their conftest so one xdist worker builds the stack once, whatever suite it runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.flow.remote_state import RemoteState, merge_requests, registry_tags

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
BLOCK = "proof-suites"


@pytest.fixture(scope="session")
def proxied_env(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> Iterator[object]:  # noqa: ANN001
    """A stack behind fault proxies, seeded with the demo data, with its Prefect blocks saved."""
    from sandbox.demo_env import GIT_PROJECT
    from sandbox.seed_scale import ProxiedEnv

    state = tmp_path_factory.mktemp("proof-sandbox")
    os.environ["INDEXFLOW_CACHE_DIR"] = str(state / "flow-cache")  # never the user's ~/.cache
    with ProxiedEnv.up(state) as env:
        env.seed()
        env.save_blocks(BLOCK)
        env.git_project = GIT_PROJECT
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
    return RemoteState(tags=registry_tags(env.stack.registry.url), refs=env.stack.git.refs(env.git_project),
                       mrs=merge_requests(f"{env.stack.gitlab_url}/api/v4", env.git_project, env.git_token))
