"""`indexflow sandbox up` from nothing: a background stack that a commit + MR turn into a catalog
image in its registry; `indexflow sandbox down` stops all of it."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import git
import httpx
import pytest

from tests.publish.conftest import AUTHOR, OCP, push_binary_image, write_request


def indexflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "indexflow.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def background(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict, str]]:
    """`indexflow sandbox up` in a fresh directory (default state dir); `down` at the end."""
    cwd = tmp_path_factory.mktemp("fresh-clone")
    up = indexflow("sandbox", "up", cwd=cwd)
    assert up.returncode == 0, up.stderr
    state_dir = cwd / ".indexflow" / "sandbox"
    try:
        yield state_dir, json.loads((state_dir / "stack.json").read_text()), up.stdout
    finally:
        indexflow("sandbox", "down", cwd=cwd)


def test_up_prints_endpoints_tokens_and_kubeconfig(background) -> None:  # noqa: ANN001
    state_dir, state, out = background
    assert state["registry"]["url"] in out and state["gitlab"]["token"] in out
    assert state["konflux"]["kubeconfig"] in out and Path(state["konflux"]["kubeconfig"]).is_file()
    assert stat.S_IMODE((state_dir / "stack.json").stat().st_mode) == 0o600
    assert httpx.get(f"{state['registry']['url']}/v2/", timeout=5).status_code == 200
    gitlab_user = f"{state['gitlab']['url']}/api/v4/user"
    assert httpx.get(gitlab_user, timeout=5).status_code == 401
    assert httpx.get(gitlab_user, headers={"PRIVATE-TOKEN": state["gitlab"]["token"]}, timeout=5).status_code == 200
    again = indexflow("sandbox", "up", cwd=state_dir.parent.parent)
    assert "already running" in again.stdout


def test_commit_and_mr_on_the_background_stack_build_a_catalog_image(background, tmp_path) -> None:  # noqa: ANN001
    from prefect_gitlab import GitLabCredentials
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from indexflow import gitops
    from indexflow.gitlab_mr import MergeRequests
    from indexflow.registry.client import RegistryClient
    from tasks.konflux_wait import wait_for_image

    _, state, _ = background
    token, host = state["gitlab"]["token"], state["registry"]["host"]
    binary = push_binary_image(host)
    seed = git.Repo.init(tmp_path / "seed", initial_branch=OCP)
    (tmp_path / "seed" / "configs" / "etcd").mkdir(parents=True)
    (tmp_path / "seed" / "configs" / "etcd" / "catalog.json").write_text('{"schema": "olm.package"}')
    seed.git.add("-A")
    seed.git.commit("-q", "-m", "published", env=AUTHOR)
    url = f"{state['gitlab']['url']}/iib/index-configs.git"
    gitops.push_branch(seed, OCP, url, token)  # push-to-create, like GitLab

    repo = gitops.clone_branch(url, OCP, tmp_path / "work", token)
    write_request(tmp_path / "work", binary, 9, ["amd64"])
    sha = gitops.commit_all(repo, "IIB: Merge operators for request 9", "IIB", "iib@example.com")
    gitops.push_branch(repo, "iib-sandbox-request-9-v4.17", url, token)
    MergeRequests(GitLabCredentials(url=state["gitlab"]["url"], token=token).get_client(), url) \
        .open("iib-sandbox-request-9-v4.17", OCP, "9")

    creds = KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(state["konflux"]["kubeconfig"]))
    image = asyncio.run(wait_for_image(creds, state["konflux"]["namespace"], sha, 0.1, 60, lambda _: None))
    with RegistryClient(insecure=(host,)) as client:
        assert client.labels(image)["operators.operatorframework.io.index.configs.v1"] == "/configs"
        unpacked = client.pull_bundle(image, tmp_path / "image")
    assert (unpacked / "configs" / "kube-green" / "catalog.json").is_file()
    assert (unpacked / "configs" / "etcd" / "catalog.json").is_file()


def test_down_stops_every_part(tmp_path) -> None:  # noqa: ANN001
    assert indexflow("sandbox", "up", "--state-dir", str(tmp_path), cwd=tmp_path).returncode == 0
    state = json.loads((tmp_path / "stack.json").read_text())
    down = indexflow("sandbox", "down", "--state-dir", str(tmp_path), cwd=tmp_path)
    assert down.returncode == 0 and "stopped" in down.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(state["pid"], 0)
    for url in (state["registry"]["url"] + "/v2/", state["gitlab"]["url"], state["konflux"]["api"]):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=2)
    assert not (tmp_path / "stack.json").exists()
    assert "no sandbox running" in indexflow("sandbox", "status", "--state-dir", str(tmp_path), cwd=tmp_path).stdout


def test_up_without_docker_registry_is_one_sentence(tmp_path) -> None:  # noqa: ANN001
    env = {**os.environ, "PATH": str(tmp_path)}  # nothing installed on this PATH
    up = subprocess.run([sys.executable, "-m", "indexflow.cli", "sandbox", "up", "--state-dir", str(tmp_path)],
                        capture_output=True, text=True, timeout=120, env=env)
    assert up.returncode == 1
    assert up.stderr.startswith(f"Error: the sandbox did not start in {tmp_path}: the docker-registry binary "
                                "is not installed"), up.stderr
    assert "Traceback" not in up.stderr and not (tmp_path / "stack.json").exists()
