"""After a full merge (overwrite included) with every secret set, and after a FAILED merge whose Git
`configs/` links to the run's credentials file (the attack issue 10 found: FBC validation quoted the
docker config), no secret value is anywhere the run could have left it: Prefect logs, artifacts,
flow/task run parameters and states, persisted results, the flow's caches and temp dirs, the Git
repository (config, refs, every object) and the registry (every manifest and blob, layers unpacked).

Secrets: the overwrite token, the GitLab token (API + git), the Kubernetes bearer token, and the
registry credentials (a Secret block holding a docker config.json).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId,
                                             LogFilter, LogFilterFlowRunId)
from pydantic import SecretStr

from blocks.tokens import local_overwrite_token
from flows.merge_index import merge_index_image
from tests.hostile.flowcases import symlinked_configs
from tests.reliability.sandbox_session import BLOCK, SETTINGS
from tests.reliability.test_fault_matrix import private_target

OVERWRITE_PASSWORD = "ovw-" + secrets.token_hex(12)
REGISTRY_PASSWORD = "reg-" + secrets.token_hex(12)
# this session's request ids: the temp dir is shared with other pytest sessions on the box, which may run
# this module at the same time; their `indexflow-secrets-*` dirs are theirs, not a leak of this run
SESSION = secrets.token_hex(4)


@pytest.fixture(scope="module", params=["completed", "failed"])
def secret_run(request, proxied_env, tmp_path_factory):  # noqa: ANN001, ANN201
    """One merge with every secret set, completed or failed; returns (secret values, flow run id,
    temp dirs made while it ran, its request id)."""
    if request.param == "failed":
        return _failed_run(proxied_env, tmp_path_factory.mktemp("failed-run"))
    from prefect.blocks.system import Secret

    env = proxied_env
    docker_config = {"auths": {env.registry_host: {
        "auth": base64.b64encode(f"robot:{REGISTRY_PASSWORD}".encode()).decode()}}}
    Secret(value=SecretStr(json.dumps(docker_config))).save("proof-registry-auth", overwrite=True)  # as `indexflow setup`
    env.save_blocks("proof-secrets", registry_auth_secret="proof-registry-auth", **SETTINGS)
    target = private_target(env, "secrets")
    tmp_before = set(Path(tempfile.gettempdir()).iterdir())
    with local_overwrite_token(f"robot:{OVERWRITE_PASSWORD}"):  # as `indexflow merge` hands it over
        state = merge_index_image(source_from_index=env.seeded.source_index, target_index=target,
                                  deprecation_list=env.seeded.deprecation_list, overwrite_target_index=True,
                                  ignore_bundle_ocp_version=True, build_tags=["secrets"], request_id=f"secrets-{SESSION}",
                                  settings_block="proof-secrets", return_state=True)
    env.save_blocks(BLOCK, **SETTINGS)  # leave the shared blocks as the other suites expect them
    assert state.is_completed(), state.message
    values = {"overwrite token": OVERWRITE_PASSWORD, "registry password": REGISTRY_PASSWORD,
              "registry auth (base64)": docker_config["auths"][env.registry_host]["auth"],
              "GitLab token": env.git_token, "Kubernetes token": env.stack.kube.token}
    new_tmp = set(Path(tempfile.gettempdir()).iterdir()) - tmp_before
    return values, state.state_details.flow_run_id, new_tmp, f"secrets-{SESSION}"


def _failed_run(env, tmp: Path):  # noqa: ANN001, ANN202
    """A dry run failing on links in Git's configs/ (one to the run's docker config), overwrite token set."""
    target = symlinked_configs(env, tmp, "secrets-failed", REGISTRY_PASSWORD)
    tmp_before = set(Path(tempfile.gettempdir()).iterdir())
    with local_overwrite_token(f"robot:{OVERWRITE_PASSWORD}"):
        state = merge_index_image(source_from_index=env.seeded.source_index, target_index=target.target_index,
                                  overwrite_target_index=True, ignore_bundle_ocp_version=True, dry_run=True,
                                  request_id=f"secrets-failed-{SESSION}", settings_block=target.settings_block,
                                  return_state=True)
    env.save_blocks(BLOCK, **SETTINGS)
    assert state.is_failed(), f"the hostile run did not fail: {state.type} {state.message}"
    assert "symbolic link" in (state.message or ""), state.message
    auth = base64.b64encode(f"robot:{REGISTRY_PASSWORD}".encode()).decode()
    values = {"overwrite token": OVERWRITE_PASSWORD, "registry password": REGISTRY_PASSWORD,
              "registry auth (base64)": auth, "GitLab token": env.git_token, "Kubernetes token": env.stack.kube.token}
    new_tmp = set(Path(tempfile.gettempdir()).iterdir()) - tmp_before
    return values, state.state_details.flow_run_id, new_tmp, f"secrets-failed-{SESSION}"


def _leaks(values: dict[str, str], text: str | bytes, where: str) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [f"{name} in {where}" for name, value in values.items() if value.encode() in data]


def _files(root: Path) -> list[Path]:
    """Regular files under `root` (os.walk skips what other processes delete meanwhile)."""
    return [Path(d) / f for d, _, files in os.walk(root) for f in files if not os.path.islink(os.path.join(d, f))]


def _read(path: Path) -> bytes:
    """A file's bytes, or nothing if it vanished (other processes share the temp dir)."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return b""


def test_not_in_prefect_logs_artifacts_runs(secret_run):
    values, run_id, _, _ = secret_run
    found: list[str] = []
    with get_client(sync_client=True) as client:
        logs, offset = [], 0
        while page := client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                                       limit=200, offset=offset):
            logs += page
            offset += len(page)
        found += _leaks(values, "\n".join(log.message for log in logs), "flow run logs")
        run = client.read_flow_run(run_id)
        found += _leaks(values, run.model_dump_json(), "flow run (parameters, state)")
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        found += _leaks(values, json.dumps([t.model_dump(mode="json") for t in tasks]), "task runs")
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        found += _leaks(values, json.dumps([a.model_dump(mode="json") for a in artifacts]), "artifacts")
    assert logs, "the run left no logs to check"
    assert not found, found


def test_not_in_results_caches_or_temp_files(secret_run):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    values, _, new_tmp, request_id = secret_run
    roots = [Path(str(PREFECT_LOCAL_STORAGE_PATH.value())), Path(os.environ["INDEXFLOW_CACHE_DIR"]), *new_tmp]
    found = [leak for root in roots for f in _files(root) for leak in _leaks(values, _read(f), str(f))]
    assert not found, found
    left = [p for p in new_tmp if p.name.startswith(f"indexflow-{request_id}-")]  # workdirs.make's name
    assert not left, f"the run left its work dir: {left}"


def test_not_in_git(secret_run, proxied_env):
    values, _, _, _ = secret_run
    bare = proxied_env.stack.git.bare_path(proxied_env.git_project)
    objects = subprocess.run(["git", "-C", str(bare), "cat-file", "--batch-all-objects", "--batch"],
                             capture_output=True, check=True, timeout=60).stdout
    assert objects, "no git objects to check"
    found = _leaks(values, objects, "git objects (commits, trees, blobs)")
    found += [leak for f in _files(bare) if f.suffix != ".pack" for leak in _leaks(values, f.read_bytes(), str(f))]
    assert not found, found


def test_not_in_registry(secret_run, proxied_env):
    values, _, _, _ = secret_run
    blobs = _files(Path(proxied_env.stack.registry.root) / "storage" / "docker" / "registry" / "v2" / "blobs")
    assert len(blobs) > 100, "no registry content to check"
    found = []
    for f in blobs:
        data = f.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        found += _leaks(values, data, f"registry blob {f.parent.name}")
    assert not found, found
