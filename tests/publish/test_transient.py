"""Which failures are worth a retry is decided by type, where the cause is seen (STYLE.md §4):
each row makes a real failure through a real adapter (registry client, python-gitlab, git) against
the sandbox, with faults injected on the wire, and checks `tasks.retry.is_transient` on what comes
out. The message text never decides: an image named `connection-operator-bundle` that does not
exist is final, however much its name sounds like a network error."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from prefect_gitlab import GitLabCredentials

from indexflow import gitops
from indexflow.errors import IndexflowError, PublishError, RegistryError
from indexflow.gitlab_mr import MergeRequests
from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef
from sandbox.faultproxy import FaultProxy
from sandbox.images import build_image, tar_gz
from tasks.retry import is_transient


@pytest.fixture(scope="module")
def registry_proxy(stack) -> Iterator[FaultProxy]:  # noqa: ANN001
    with FaultProxy(stack.registry.host) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def gitlab_proxy(stack) -> Iterator[FaultProxy]:  # noqa: ANN001
    with FaultProxy(stack.gitlab_url.split("//", 1)[1].rstrip("/")) as proxy:
        yield proxy


@pytest.fixture
def registry(registry_proxy: FaultProxy) -> Iterator[RegistryClient]:
    registry_proxy.clear()
    with RegistryClient(insecure=(registry_proxy.host,), timeout=2.0, retries=2, backoff=0.01) as client:
        yield client
    registry_proxy.clear()


@pytest.fixture
def image(registry: RegistryClient, registry_proxy: FaultProxy) -> ImageRef:
    ref = ImageRef.parse(f"{registry_proxy.host}/t{uuid.uuid4().hex[:8]}/connection-operator-bundle:v1")
    build_image(registry, ref, [tar_gz({"manifests/a.yaml": b"a"})], {"k": "v"})
    return ref


def _raised(call: Callable[[], object]) -> IndexflowError:
    with pytest.raises(IndexflowError) as err:
        call()
    return err.value


@pytest.mark.parametrize(("fault", "transient"), [
    (None, False),  # 404: the image is not there, and will not be on a retry
    ({"action": "status", "status": 403}, False),
    ({"action": "status", "status": 401}, False),
    ({"action": "status", "status": 503}, True),
    ({"action": "status", "status": 429}, True),
    ({"action": "drop"}, True),
])
def test_registry_failures_are_classified_by_status_and_cause(registry: RegistryClient, registry_proxy: FaultProxy,
                                                              image: ImageRef, fault: dict | None,
                                                              transient: bool) -> None:
    target = image.with_tag("missing") if fault is None else image
    if fault:
        kw = dict(fault)
        registry_proxy.add_fault(kw.pop("action"), path=r"/manifests/", times=100, **kw)
    error = _raised(lambda: registry.manifest(target))
    assert isinstance(error, RegistryError)
    assert "connection-operator-bundle" in str(error)  # the text alone would have fooled a regex
    assert is_transient(error) is transient


@pytest.mark.parametrize(("fault", "transient"), [
    ({"action": "status", "status": 403}, False),
    ({"action": "status", "status": 404}, False),
    ({"action": "status", "status": 503}, True),
    ({"action": "drop"}, True),
])
def test_gitlab_failures_are_classified_by_status_and_cause(stack, gitlab_proxy: FaultProxy, catalog_repo,  # noqa: ANN001
                                                            fault: dict, transient: bool) -> None:
    gitlab_proxy.clear()
    gl = GitLabCredentials(url=f"http://{gitlab_proxy.host}", token=stack.git_token).get_client()
    mrs = MergeRequests(gl, catalog_repo.url, retry_backoff=0.01)
    mrs.project  # noqa: B018 - the project lookup goes through before the fault is armed
    kw = dict(fault)
    injected = gitlab_proxy.add_fault(kw.pop("action"), path=r"/merge_requests", method="POST", times=100, **kw)
    error = _raised(lambda: mrs.open("iib-connection-timeout-branch", "v4.17", "42"))
    gitlab_proxy.clear()
    assert isinstance(error, PublishError) and str(error).startswith("Failed to create merge request")
    assert injected.injected >= 1
    assert is_transient(error) is transient


def test_git_unreachable_host_is_transient_and_missing_repository_is_not(stack, tmp_path) -> None:  # noqa: ANN001
    with FaultProxy(stack.registry.host) as dead:  # a port that was open a moment ago, now closed
        closed = dead.host
    unreachable = _raised(lambda: gitops.clone_branch(f"http://{closed}/grp/x.git", "v4.17", tmp_path / "a",
                                                      stack.git_token))
    missing_branch = _raised(lambda: gitops.clone_branch(stack.git_repo_url(f"nope-{uuid.uuid4().hex[:6]}"),
                                                         "v4.17", tmp_path / "b", stack.git_token))
    assert (is_transient(unreachable), is_transient(missing_branch)) == (True, False)


def test_only_indexflow_errors_that_say_so_are_retried() -> None:
    assert is_transient(RegistryError("x: HTTP 503 timed out connection reset")) is False  # words decide nothing
    assert is_transient(RegistryError("x", transient=True)) is True
    assert is_transient(ConnectionError("a bug that reached the task")) is False
    assert is_transient(ValueError("timeout")) is False
