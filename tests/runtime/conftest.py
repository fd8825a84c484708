"""The production runtime: the worker image built with podman, merges run inside it.

Reuses the session's real `prefect server start` (tests/conftest.py) and tests/deploy's seeded sandbox
(an imported fixture is this suite's own instance). The image is built by `sandbox.image.build_image`, cached by content in
indexflow's private podman store, so a second session does not rebuild it. Tests skip only when
podman cannot run a container on this machine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import sandbox, write_setup_yaml  # noqa: F401 - fixtures (prefect_server: tests/conftest.py)

IMAGE_POOL = "image-process"
SETUP_SECRET = "sandbox-overwrite-token"


@pytest.fixture(scope="session")
def podman():  # noqa: ANN201 - sandbox.image.Podman
    from sandbox.image import Podman, can_run_containers

    podman = Podman.private()
    reason = can_run_containers(podman)
    if reason:
        pytest.skip(f"podman cannot run containers here: {reason}")
    return podman


@pytest.fixture(scope="session")
def worker_image(podman) -> str:  # noqa: ANN001
    """The worker image of this checkout (built once; later sessions find it by its content tag)."""
    from sandbox.image import build_image

    started = time.monotonic()
    tag = build_image(podman)
    print(f"\nworker image {tag}: {podman.image_size(tag) / 2**20:.0f} MiB "
          f"(ready in {time.monotonic() - started:.0f} s)")
    return tag


@pytest.fixture(scope="session")
def runtime_setup(prefect_server, sandbox, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    """`indexflow setup` for the sandbox plus a process pool served by a worker inside the image."""
    config, secrets = write_setup_yaml(sandbox, tmp_path_factory.mktemp("runtime-setup"))
    doc = yaml.safe_load(config.read_text())
    doc["work_pools"][IMAGE_POOL] = {"type": "process"}
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    prefect_server.run("indexflow", "setup", str(config), extra_env=secrets)
    return prefect_server


def deploy_image_merge(server, pool: str, *job_variables: str) -> None:  # noqa: ANN001
    """`merge-index-image` from deployments/prefect-kubernetes.yaml (code at /opt/indexflow) onto `pool`."""
    args = [arg for var in job_variables for arg in ("--job-variable", var)]
    server.run("prefect", "--no-prompt", "deploy", "--prefect-file", "deployments/prefect-kubernetes.yaml",
               "--name", "merge-index-image", "--pool", pool, *args)


class Container:
    """A podman container this suite started; removed at the end."""

    def __init__(self, podman, name: str) -> None:  # noqa: ANN001
        self.podman, self.name = podman, name

    def exec(self, *argv: str) -> str:
        return self.podman.run("exec", self.name, *argv, timeout=60).stdout

    def logs(self) -> str:
        result = self.podman.run("logs", self.name, check=False, timeout=60)
        return result.stdout + result.stderr

    def remove(self) -> None:
        self.podman.run("rm", "--force", "--time", "5", self.name, check=False, timeout=120)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture()
def container_cleanup(podman) -> Iterator[list]:  # noqa: ANN001
    started: list[Container] = []
    yield started
    for container in started:
        container.remove()


# -- the Kubernetes work pool ------------------------------------------------------------------------
K8S_NAMESPACE = "indexflow"
K8S_SERVICE_ACCOUNT = "indexflow-worker"


@pytest.fixture(scope="session")
def cluster(podman, sandbox, state_dir: Path) -> Iterator[object]:  # noqa: ANN001
    """The sandbox cluster with its podman kubelet; namespace, service account and cache claim created
    over the API from the manifests an operator applies (deployments/kubernetes-cache-pvc.yaml)."""
    import httpx

    from sandbox.cluster import Cluster
    from sandbox.kubelet import Kubelet

    cluster = Cluster(namespaces=("default", K8S_NAMESPACE))
    kubelet = Kubelet(cluster, podman, state_dir / "cluster", insecure=(sandbox.registry_host,))
    cluster.start()
    try:
        api = f"{cluster.url}/api/v1/namespaces/{K8S_NAMESPACE}"
        headers = {"Authorization": f"Bearer {cluster.token}"}
        claim = yaml.safe_load((Path(__file__).resolve().parents[2] / "deployments/kubernetes-cache-pvc.yaml")
                               .read_text())
        for path, body in (("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                "metadata": {"name": K8S_SERVICE_ACCOUNT}}),
                           ("persistentvolumeclaims", claim)):
            response = httpx.post(f"{api}/{path}", json=body, headers=headers, timeout=30)
            assert response.status_code == 201, response.text
        yield cluster
    finally:
        kubelet.close()
        cluster.stop()


@pytest.fixture(scope="session")
def pushed_image(podman, worker_image: str, sandbox) -> str:  # noqa: ANN001
    """The worker image pushed to the sandbox registry, as an operator pushes it to theirs."""
    ref = f"{sandbox.registry_host}/indexflow/worker:{worker_image.rsplit(':', 1)[1]}"
    podman.run("push", "--tls-verify=false", worker_image, f"docker://{ref}", timeout=600)
    return ref


@pytest.fixture(scope="session")
def kubernetes_worker(runtime_setup, cluster, state_dir: Path) -> Iterator[object]:  # noqa: ANN001
    """Prefect's real KubernetesWorker (`prefect worker start --type kubernetes`) against the cluster;
    its observer (kopf) watches the namespace through the same kubeconfig."""
    from tests.deploy.conftest import BIN, start

    kubeconfig = cluster.write_kubeconfig(state_dir / "kubeconfig.yaml", K8S_NAMESPACE)
    env = {**runtime_setup.env, "KUBECONFIG": str(kubeconfig),
           "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES": K8S_NAMESPACE}
    worker = start([str(BIN / "prefect"), "worker", "start", "--pool", "kubernetes", "--type", "kubernetes",
                    "--name", "runtime-tests", "--limit", "3"], env, runtime_setup.logs / "k8s-worker.log")
    try:
        yield worker
    finally:
        worker.stop()
