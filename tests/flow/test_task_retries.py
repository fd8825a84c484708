"""Prefect's task retries run only for transient failures (tasks/retry.py): counted on the wire, a
403 from GitLab reaches it once, a dropped connection as often as the task's retries allow."""

from __future__ import annotations

from collections.abc import Iterator

import git
import pytest
from prefect import flow
from prefect_gitlab import GitLabCredentials

from indexflow.errors import PublishError
from indexflow.gitlab_mr import MergeRequests
from sandbox.faultproxy import FaultProxy
from tasks import git_mr


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from sandbox.stack import Stack

    stack = Stack.up(tmp_path_factory.mktemp("stack"))
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def mrs(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MergeRequests, FaultProxy]]:  # noqa: ANN001
    """MergeRequests for a real project, its python-gitlab client talking through a fault proxy."""
    seed = tmp_path_factory.mktemp("seed")
    seed_repo = git.Repo.init(seed, initial_branch="v4.17")
    (seed / "configs").mkdir()
    (seed / "configs" / "a.json").write_text("{}")
    seed_repo.git.add("-A")
    seed_repo.git.commit("-qm", "seed", env={"GIT_AUTHOR_NAME": "Seed", "GIT_AUTHOR_EMAIL": "seed@example.com",
                                            "GIT_COMMITTER_NAME": "Seed", "GIT_COMMITTER_EMAIL": "seed@example.com"})
    url = stack.publish_git_repo("retries/catalog", seed)
    with FaultProxy(stack.gitlab_url.split("//", 1)[1].rstrip("/")) as proxy:
        gl = GitLabCredentials(url=f"http://{proxy.host}", token=stack.git_token).get_client()
        merge_requests = MergeRequests(gl, url, retry_backoff=0.01)
        merge_requests.project  # noqa: B018 - resolved before any fault is armed
        yield merge_requests, proxy


def _open_attempts(mrs: MergeRequests, proxy: FaultProxy, action: str, **fault: object) -> tuple[int, str]:
    """Run the flow's `open merge request` task (its own retry settings, no delay) against a fault
    that never clears; returns how many create calls reached the proxy and the run's error."""
    proxy.clear()
    armed = proxy.add_fault(action, path=r"/merge_requests$", method="POST", times=100, **fault)
    task = git_mr.open_merge_request.with_options(retry_delay_seconds=0)

    @flow
    def open_once() -> None:
        task(mrs, "feature", "v4.17", "42")

    with pytest.raises(PublishError) as err:
        open_once()
    proxy.clear()
    return armed.matched, str(err.value)


def test_a_refusal_is_not_retried(mrs: tuple[MergeRequests, FaultProxy]) -> None:
    attempts, error = _open_attempts(*mrs, "status", status=403)
    assert (attempts, error) == (1, "Failed to create merge request: 403")


def test_a_dropped_connection_is_retried_as_configured(mrs: tuple[MergeRequests, FaultProxy]) -> None:
    attempts, error = _open_attempts(*mrs, "drop")
    assert attempts == 1 + git_mr.open_merge_request.retries == 3
    assert error.startswith("Failed to create merge request")

