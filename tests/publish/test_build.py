"""The whole publishing path on the sandbox: commit + MR -> PaC PipelineRun -> catalog image in the
registry, awaited by the Prefect sensor task on a real Prefect API (the test session's server)."""

from __future__ import annotations

import asyncio
import filecmp
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from indexflow.gitlab_mr import MergeRequests
from indexflow.registry.client import RegistryClient
from tests.publish.conftest import set_knobs

CONFIGS_LABEL = "operators.operatorframework.io.index.configs.v1"


@pytest.fixture(scope="module")
def prefect_api(prefect_session) -> object:  # noqa: ANN001
    """The test session's Prefect server (tests/conftest.py)."""
    return prefect_session


def _wait_in_flow(kube_creds, namespace: str, sha: str, timeout: float) -> str:  # noqa: ANN001
    """The flow's call, verbatim: wait_for_build(k8s_creds, namespace, sha, poll_interval, timeout)."""
    from prefect import flow

    from tasks.konflux_wait import wait_for_build

    @flow(name="konflux-wait-test")
    def waiting() -> str:
        return wait_for_build(kube_creds, namespace, sha, 0.1, timeout)

    return waiting()


def _tree_at(bare: Path, sha: str, dest: Path) -> Path:
    archive = subprocess.run(["git", "archive", "--format=tar", sha, "configs"], cwd=bare, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "configs"


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / p, b / p, shallow=False) for p in files_a)


def test_commit_and_mr_become_a_catalog_image(prefect_api, stack, gl, kube_creds, request_commit,  # noqa: ANN001
                                              binary_image, tmp_path) -> None:
    set_knobs(stack, delay=0.3)  # the sensor must see the run Running first
    mr = MergeRequests(gl, request_commit.url).open(request_commit.branch, "v4.17", "7")
    assert mr.iid >= 1

    image_url = _wait_in_flow(kube_creds, stack.konflux_namespace, request_commit.sha, timeout=60)

    host = stack.registry.host
    assert image_url == f"{host}/konflux/{request_commit.project.rsplit('/', 1)[-1]}:on-pr-{request_commit.sha}"
    runs = stack.kube.list(stack.konflux_namespace, f"pipelinesascode.tekton.dev/sha={request_commit.sha}")
    assert len(runs) == 1 and runs[0]["status"]["conditions"][0]["reason"] == "Succeeded"
    results = {r["name"]: r["value"] for r in runs[0]["status"]["results"]}
    with RegistryClient(insecure=(host,)) as client:
        index = client.manifest(image_url)
        assert index.is_index and results["IMAGE_DIGEST"] == index.digest
        assert client.arches(image_url) == ["amd64", "arm64"]
        expected = _tree_at(stack.git.bare_path(request_commit.project), request_commit.sha, tmp_path / "git")
        for arch in ("amd64", "arm64"):
            _, base = client.image_manifest(binary_image, arch)
            _, built = client.image_manifest(image_url, arch)
            config = client.config(image_url, arch)
            assert config["architecture"] == arch
            assert config["config"]["Labels"] == {
                "name": "ose-operator-registry", CONFIGS_LABEL: "/configs",
                "com.redhat.index.delivery.version": "v4.17",
                "com.redhat.index.delivery.distribution_scope": "prod"}
            assert config["config"]["Entrypoint"] == ["/bin/opm"]
            assert built.json["layers"][:-1] == base.json["layers"]  # FROM the binary image
            assert len(config["rootfs"]["diff_ids"]) == len(built.json["layers"])
            unpacked = client.pull_bundle(image_url, tmp_path / arch, arch=arch)
            assert (unpacked / "bin" / "opm").read_text() == f"opm for {arch}\n"
            assert _same_tree(unpacked / "configs", expected)


def test_sensor_task_times_out_inside_a_flow(prefect_api, stack, kube_creds) -> None:  # noqa: ANN001
    from indexflow.errors import PublishError

    set_knobs(stack, never_finish=True)
    name = stack.builder.start("iib/any", "f" * 40, "pull_request", "iib-x")
    with pytest.raises(PublishError) as err:
        _wait_in_flow(kube_creds, stack.konflux_namespace, "f" * 40, timeout=1.0)
    assert str(err.value) == f"Timeout waiting for pipelinerun {name} to complete after 1 seconds"


def test_push_to_a_watched_branch_builds_too(stack, kube_creds, request_commit, tmp_path) -> None:  # noqa: ANN001
    """A push pipeline: every commit on a watched branch gets a PipelineRun and an image."""
    from indexflow import gitops
    from tasks.konflux_wait import wait_for_image

    stack.builder.watch(request_commit.project, "release")
    repo_dir = tmp_path / "watched-clone"
    repo = gitops.clone_branch(request_commit.url, request_commit.branch, repo_dir, stack.git_token)
    gitops.push_branch(repo, "release", request_commit.url, stack.git_token)
    url = asyncio.run(wait_for_image(kube_creds, stack.konflux_namespace, request_commit.sha, 0.05, 30,
                                     lambda _: None))
    assert url.endswith(f":{request_commit.sha}")
