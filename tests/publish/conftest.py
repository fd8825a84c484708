"""One sandbox stack per session (git + GitLab + Kubernetes stand-ins + a real docker-registry),
the real clients pointed at it, and a helper that makes a fresh catalog repo per test."""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import git
import pytest
import yaml

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

AUTHOR = {"GIT_AUTHOR_NAME": "Seed", "GIT_AUTHOR_EMAIL": "seed@sandbox.local",
          "GIT_COMMITTER_NAME": "Seed", "GIT_COMMITTER_EMAIL": "seed@sandbox.local"}
OCP = "v4.17"
_names = itertools.count(1)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from sandbox.stack import Stack

    stack = Stack.up(tmp_path_factory.mktemp("stack"))
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(autouse=True)
def default_knobs(stack) -> Iterator[None]:  # noqa: ANN001
    """Every test starts with builds that succeed at once, and GitLab merges that work."""
    from sandbox.konflux import Knobs

    stack.kube.knobs = Knobs()
    stack.gitlab.fail_merge.clear()
    yield


@pytest.fixture(scope="session")
def gl(stack):  # noqa: ANN001, ANN201
    """python-gitlab client built exactly as the flow builds it (prefect-gitlab GitLabCredentials)."""
    from prefect_gitlab import GitLabCredentials

    return GitLabCredentials(url=stack.gitlab_url, token=stack.git_token).get_client()


@pytest.fixture(scope="session")
def kube_creds(stack):  # noqa: ANN001, ANN201
    """prefect-kubernetes KubernetesCredentials from the stack's kubeconfig file."""
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    return KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(stack.kubeconfig_path))


def _layer(files: dict[str, bytes]) -> tuple[bytes, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, gzip.compress(raw, mtime=0)


@pytest.fixture(scope="session")
def binary_image(stack) -> str:  # noqa: ANN001
    return push_binary_image(stack.registry.host)


def push_binary_image(host: str) -> str:
    """A two-arch 'opm' binary image (OCI index) in a registry, one layer per arch."""
    from indexflow.registry.client import OCI_INDEX, OCI_MANIFEST, RegistryClient, sha256
    from indexflow.registry.refs import ImageRef

    repo = ImageRef(host, "openshift4/ose-operator-registry-rhel9")
    entries = []
    with RegistryClient(insecure=(host,)) as client:
        for arch in ("amd64", "arm64"):
            raw, gz = _layer({"bin/opm": f"opm for {arch}\n".encode()})
            config = json.dumps({"architecture": arch, "os": "linux",
                                 "config": {"Labels": {"name": "ose-operator-registry"},
                                            "Entrypoint": ["/bin/opm"]},
                                 "rootfs": {"type": "layers", "diff_ids": [sha256(raw)]}}).encode()
            client.push_blob(repo, gz)
            client.push_blob(repo, config)
            manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                              "digest": sha256(config), "size": len(config)},
                                   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                               "digest": sha256(gz), "size": len(gz)}]}).encode()
            digest = client.push_manifest(repo, manifest, OCI_MANIFEST)
            entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
                            "platform": {"architecture": arch, "os": "linux"}})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        client.push_manifest(repo.with_tag(OCP), index, OCI_INDEX)
    return f"{repo.name}:{OCP}"


@dataclass
class CatalogRepo:
    project: str
    url: str
    branch: str = OCP


@pytest.fixture
def catalog_repo(stack, tmp_path: Path) -> CatalogRepo:  # noqa: ANN001
    """A fresh GitLab project holding `configs/` on branch v4.17 (IIB's layout)."""
    work = tmp_path / "seed-repo"
    repo = git.Repo.init(work, initial_branch=OCP)
    (work / "configs" / "etcd").mkdir(parents=True)
    (work / "configs" / "etcd" / "catalog.json").write_text(json.dumps({"schema": "olm.package", "name": "etcd"}))
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "published catalog", env=AUTHOR)
    project = f"iib/catalog-{os.getpid()}-{next(_names)}"
    return CatalogRepo(project, stack.publish_git_repo(project, work))


def write_request(repo_dir: Path, binary_image: str, request_id: int, arches: list[str]) -> None:
    """What the merge writes before committing: a changed package and the build metadata."""
    pkg = repo_dir / "configs" / "kube-green"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "catalog.json").write_text(json.dumps({"schema": "olm.package", "name": "kube-green"}))
    (repo_dir / ".iib-build-metadata.json").write_text(json.dumps({
        "opm_version": "opm-v1.44.0",
        "labels": {"com.redhat.index.delivery.version": OCP,
                   "com.redhat.index.delivery.distribution_scope": "prod"},
        "binary_image": binary_image, "request_id": request_id, "arches": sorted(arches)}, indent=2))


def kubeconfig(stack) -> dict:  # noqa: ANN001
    return yaml.safe_load(Path(stack.kubeconfig_path).read_text())


@dataclass
class RequestCommit:
    url: str
    branch: str
    sha: str
    project: str


@pytest.fixture
def request_commit(stack, catalog_repo, binary_image, tmp_path) -> RequestCommit:  # noqa: ANN001
    """A merge's feature branch pushed (catalog change + build metadata for amd64 and arm64), no MR yet."""
    from indexflow import gitops

    repo = gitops.clone_branch(catalog_repo.url, OCP, tmp_path / "work", stack.git_token)
    write_request(tmp_path / "work", binary_image, 7, ["amd64", "arm64"])
    branch = f"iib-sandbox-request-7-{OCP}"
    repo.git.checkout("-B", branch)
    sha = gitops.commit_all(repo, "IIB: Merge operators for request 7", "IIB", "iib@example.com")
    gitops.push_branch(repo, branch, catalog_repo.url, stack.git_token)
    return RequestCommit(catalog_repo.url, branch, sha, catalog_repo.project)


def set_knobs(stack, **knobs: object) -> dict:  # noqa: ANN001
    """Set builder knobs the way another process would: POST /_sandbox/knobs with the bearer token."""
    import httpx

    response = httpx.post(f"{stack.kube_url}/_sandbox/knobs", json=knobs, timeout=5,
                          headers={"Authorization": f"Bearer {stack.kube.token}"})
    response.raise_for_status()
    return response.json()
