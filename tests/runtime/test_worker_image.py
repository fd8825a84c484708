"""The worker image: built here from Debian packages, non-root, nothing secret in it, and a
`merge-index-image` deployment run completes inside it (a process worker in a podman container on
the host network, against this session's Prefect server and sandbox).
"""

from __future__ import annotations

import json
import secrets

from indexflow.merge import plan
from indexflow.registry.refs import ImageRef
from sandbox.demo_env import GIT_PROJECT
from tests.deploy.conftest import create_run, merge_params, secret_ref, wait_final
from tests.runtime.conftest import IMAGE_POOL, SETUP_SECRET, Container, deploy_image_merge

MERGE = "merge-index-image/merge-index-image"
# what the image's environment may hold: paths and switches, never a credential
IMAGE_ENV = {"PATH", "INDEXFLOW_CACHE_DIR", "PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK", "PYTHONUNBUFFERED",
             "PYTHONDONTWRITEBYTECODE", "PREFECT_RESULTS_LOCAL_STORAGE_PATH"}


def test_image_is_non_root_and_carries_code_not_secrets(podman, worker_image: str) -> None:  # noqa: ANN001
    config = json.loads(podman.run("image", "inspect", worker_image).stdout)[0]["Config"]
    assert config["User"] == "1001" and config["WorkingDir"] == "/opt/indexflow"
    assert {entry.split("=", 1)[0] for entry in config["Env"]} <= IMAGE_ENV
    probe = "id -u; ls -A /opt/indexflow; cd /opt/indexflow && python -c 'import flows.merge_index, flows.batch_merge'"
    out = podman.run("run", "--rm", "--network", "none", worker_image, "sh", "-c", probe, timeout=180).stdout.split()
    assert out[0] == "1001"
    assert {"blocks", "deployments", "flows", "indexflow", "prefect.yaml", "pyproject.toml", "tasks"} <= set(out)
    assert not {".git", ".venv", ".indexflow", "tests", "sandbox", "bench"} & set(out)
    # build-time mounts (host pip config, pip cache) left at most empty mount points, no content
    probe = "test ! -s /etc/pip.conf && echo pip-conf-empty; find /root/.cache -type f 2>/dev/null | wc -l"
    out = podman.run("run", "--rm", "--network", "none", "--user", "0", worker_image, "sh", "-c", probe).stdout.split()
    assert out == ["pip-conf-empty", "0"]


def test_merge_deployment_runs_inside_the_image(podman, worker_image: str, runtime_setup, sandbox,  # noqa: ANN001
                                                container_cleanup: list) -> None:
    server = runtime_setup
    deploy_image_merge(server, IMAGE_POOL)
    name = f"indexflow-worker-{secrets.token_hex(4)}"
    podman.run("run", "--detach", "--name", name, "--network", "host", "--hostname", name,
               "--env", f"PREFECT_API_URL={server.url}", "--env", "PREFECT_WORKER_QUERY_SECONDS=1",
               worker_image, "prefect", "worker", "start", "--pool", IMAGE_POOL, "--type", "process", "--name", name)
    container = Container(podman, name)
    container_cleanup.append(container)

    rid = "image-1"
    # overwrite (the MR is merged): it replaces the seeded target, so this file runs after the other merges
    # of a session (test_kubernetes.py sorts first; a second merge against the overwritten target fails
    # "replaces nonexistent bundle", a finding of its own)
    run = create_run(server, MERGE, merge_params(sandbox, request_id=rid, deprecation_list=[],
                                                 overwrite_target_index=True,
                                                 overwrite_target_index_token_secret=secret_ref(SETUP_SECRET)))
    done = wait_final(server, run["id"], timeout=600)
    assert done["state"]["type"] == "COMPLETED", f"{done['state']['message']}\n{container.logs()[-4000:]}"
    print(f"\nmerge inside the image: {done['total_run_time']:.1f} s")

    # it ran in the container: only that worker serves the pool, and it reports the run finished
    assert run["id"] in container.logs()
    # its working, cache and temp dirs were the image's own: nothing of the host is mounted
    assert json.loads(podman.run("inspect", "--format", "{{json .Mounts}}", name).stdout) == []
    cached = container.exec("find", "/var/cache/indexflow", "-type", "f").split()
    assert cached, "the merge left nothing in the image's cache dir"

    # outcomes, read from the sandbox (not from the run): output image, MR merged, index.db pushed
    registry = sandbox.registry_client
    assert registry.exists(ImageRef.parse(f"{sandbox.registry_host}/iib-build:{rid}"))
    mrs = sandbox.stack.gitlab.mrs[GIT_PROJECT].values()
    assert [mr["state"] for mr in mrs if f"request-{rid}-" in mr["source_branch"]] == ["merged"]
    refs = plan.artifact_refs(sandbox.seeded.target_index, sandbox.registry_host, rid)
    assert registry.exists(ImageRef.parse(refs.per_request)) and registry.exists(ImageRef.parse(refs.canonical))
