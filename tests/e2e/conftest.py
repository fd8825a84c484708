"""One sandbox stack and one seed for the whole end-to-end session, on the session's Prefect server.

The merge reaches the registry and the git/GitLab server through fault proxies (transparent until
a test arms a fault), so failures are injected where they happen in real life: a registry that
refuses a write, a GitLab that refuses an MR, a Konflux build that fails. Our code has no hooks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.flow.remote_state import RemoteState, snapshot

BLOCK = "e2e"


@dataclass
class E2E:
    """The seeded sandbox as the merge sees it (through the proxies)."""

    env: object  # sandbox.demo_env.SandboxEnv
    registry_proxy: object  # sandbox.faultproxy.FaultProxy
    git_proxy: object
    ids: Iterator[int]

    @property
    def seed(self):  # noqa: ANN201 - SeedResult
        return self.env.seeded

    def via_proxy(self, pullspec: str) -> str:
        """The same image addressed through the registry proxy."""
        return pullspec.replace(self.env.registry_host, self.registry_proxy.host, 1)

    @property
    def source(self) -> str:
        return self.via_proxy(self.seed.source_index)

    @property
    def target(self) -> str:
        return self.via_proxy(self.seed.target_index)

    def request_id(self, name: str) -> str:
        return f"{name}-{next(self.ids)}"

    def remote_state(self) -> RemoteState:
        from sandbox.demo_env import GIT_PROJECT

        env = self.env
        return snapshot(env.registry_url, env.stack.git, GIT_PROJECT, f"{env.gitlab_url}/api/v4", env.git_token)

    def save_block(self, name: str, **overrides: object) -> str:
        """A MergeSettings block (and its credential blocks) that reaches every service through the
        proxies, as the session's own block does; list and dict overrides extend the defaults."""
        from sandbox.demo_env import GIT_PROJECT
        from sandbox.seed import INDEX_REPO

        rp, gp, env = self.registry_proxy, self.git_proxy, self.env
        values: dict = dict(
            iib_registry=rp.host, index_db_artifact_registry=rp.host, insecure_registries=[rp.host, env.registry_host],
            index_to_gitlab_push_map={f"{rp.host}/{INDEX_REPO}": f"{gp.url}/{GIT_PROJECT}.git"},
            no_ocp_label_allow_list=[f"{rp.host}/{INDEX_REPO}"], konflux_poll_interval=0.2,
            konflux_pipeline_timeout=30)
        for key, value in overrides.items():
            default = values.get(key)
            values[key] = ({**default, **value} if isinstance(default, dict) else [*default, *value]
                           if isinstance(default, list) else value)
        return env.save_blocks(name, gitlab_url=gp.url, **values)

    def clear_faults(self) -> None:
        self.registry_proxy.clear()
        self.git_proxy.clear()
        self.env.stack.set_knobs(fail=False, cancel=False, never_finish=False, delay=0.0)


@pytest.fixture(scope="session")
def e2e(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[E2E]:
    """Stack up and seeded (about 20 s) while the session's Prefect server boots, then blocks saved."""
    from sandbox.demo_env import SandboxEnv
    from sandbox.faultproxy import FaultProxy

    def seeded(stack: ExitStack) -> SandboxEnv:
        env = stack.enter_context(SandboxEnv.up(Path(tmp_path_factory.mktemp("sandbox"))))
        env.seed()
        return env

    with pytest.MonkeyPatch.context() as mp, ExitStack() as stack, ThreadPoolExecutor(1) as pool:
        mp.setenv("INDEXFLOW_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        request.getfixturevalue("prefect_server")  # starts booting
        future = pool.submit(seeded, stack)
        request.getfixturevalue("prefect_session")  # waits for it; the test process uses it from here
        env = future.result()
        git_host = env.gitlab_url.removeprefix("http://").rstrip("/")
        with FaultProxy(env.registry_host) as rp, FaultProxy(git_host) as gp:
            e2e = E2E(env, rp, gp, itertools.count(1))
            e2e.save_block(BLOCK)
            yield e2e


@pytest.fixture
def sandbox(e2e: E2E) -> Iterator[E2E]:
    """The session sandbox with every fault and Konflux knob cleared after the test."""
    e2e.clear_faults()
    yield e2e
    e2e.clear_faults()
