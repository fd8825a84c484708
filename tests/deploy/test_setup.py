"""`indexflow setup CONFIG.yaml`: one file -> blocks, secrets, limits, work pools; mistakes in one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from indexflow.cli import main

KUBECONFIG = {"apiVersion": "v1", "kind": "Config", "current-context": "konflux",
              "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
              "users": [{"name": "u", "user": {"token": "kube-token"}}],
              "contexts": [{"name": "konflux", "context": {"cluster": "c", "user": "u"}}]}


def config(tmp_path: Path, **changes: object) -> Path:
    """A complete setup file (secrets referenced, not inline) with `changes` applied per section."""
    (tmp_path / "kube.yaml").write_text(yaml.safe_dump(KUBECONFIG))
    (tmp_path / "docker.json").write_text('{"auths": {"quay.example.com": {"auth": "dTpw"}}}')
    doc = {
        "settings": {"name": "setup-test", "values": {"iib_registry": "quay.example.com/iib",
                                                     "index_db_artifact_registry": "quay.example.com/art",
                                                     "konflux_namespace": "iib-tenant"}},
        "gitlab": {"name": "setup-test-gitlab", "url": "https://gitlab.example.com",
                   "token": {"from_env": "SETUP_TEST_GITLAB_TOKEN"}},
        "kubernetes": {"name": "setup-test-konflux", "kubeconfig": {"from_file": "kube.yaml"}},
        "registry_auth": {"name": "setup-test-registry", "docker_config": {"from_file": "docker.json"}},
        "secrets": {"setup-test-token": {"from_env": "SETUP_TEST_OVERWRITE"}},
        "concurrency_limits": {"setup-test-limit": 3},
        "work_pools": {"setup-test-process": {"type": "process"},
                       "setup-test-k8s": {"type": "kubernetes",
                                          "base_job_template": str(Path(__file__).parents[2] /
                                                                   "deployments/kubernetes-job-template.json")}},
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            doc[section][field] = value
        elif value is None:
            doc.pop(section)
        else:
            doc[section] = value
    path = tmp_path / "setup.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture()
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"SETUP_TEST_GITLAB_TOKEN": "glpat-s3cr3t", "SETUP_TEST_OVERWRITE": "user:pa55"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.mark.parametrize("changes, message", [
    ({"gitlab__token": "glpat-inline"},
     "gitlab.token must be {from_env: VARIABLE} or {from_file: PATH}; secrets are never written in the config file"),
    ({"secrets": {"x": {"from_env": "SETUP_TEST_UNSET_VARIABLE"}}},
     "secrets.x: environment variable SETUP_TEST_UNSET_VARIABLE is not set or empty"),
    ({"kubernetes__kubeconfig": {"from_file": "missing.yaml"}}, "kubernetes.kubeconfig: cannot read"),
    ({"kubernetes__context": "prod"}, "kubernetes.context 'prod' is not one of the kubeconfig's contexts"),
    ({"registry_auth__docker_config": {"from_env": "SETUP_TEST_GITLAB_TOKEN"}},
     "registry_auth.docker_config is not a docker config.json"),
    ({"settings__values": {"iib_registry": "q"}}, "settings.values.index_db_artifact_registry: Field required"),
    ({"concurrency_limits": {"l": 0}}, "concurrency_limits.l must be a positive integer"),
    ({"work_pools": {"p": {"type": "docker"}}}, "work_pools.p.type must be 'process' or 'kubernetes'"),
    ({"extra": {}}, "setup config has unknown section(s): extra"),
])
def test_mistakes_are_one_sentence_and_write_nothing(tmp_path: Path, secrets_env: dict, changes: dict,
                                                     message: str, capsys: pytest.CaptureFixture) -> None:
    rc = main(["setup", "--check", str(config(tmp_path, **changes))])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith(f"Error: {message}")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "glpat-inline" not in err and "glpat-s3cr3t" not in err


def test_check_reads_everything_and_reports(tmp_path: Path, secrets_env: dict, capsys: pytest.CaptureFixture) -> None:
    assert main(["setup", "--check", str(config(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "settings setup-test, 2 secret(s), 1 limit(s), 2 work pool(s)" in out
    assert "glpat-s3cr3t" not in out


def test_setup_writes_blocks_limits_and_pools_idempotently(prefect_api, tmp_path: Path, secrets_env: dict,  # noqa: ANN001
                                                           capsys: pytest.CaptureFixture) -> None:
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect_gitlab import GitLabCredentials
    from prefect_kubernetes.credentials import KubernetesCredentials

    from blocks.settings import MergeSettings

    path = config(tmp_path)
    assert main(["setup", str(path)]) == 0
    first = capsys.readouterr().out
    assert "work pool setup-test-k8s (kubernetes)" in first and "glpat-s3cr3t" not in first

    settings = MergeSettings.load("setup-test")
    assert (settings.gitlab_credentials, settings.kubernetes_credentials, settings.registry_auth_secret) == \
        ("setup-test-gitlab", "setup-test-konflux", "setup-test-registry")
    gitlab = GitLabCredentials.load("setup-test-gitlab")
    assert gitlab.token.get_secret_value() == "glpat-s3cr3t" and gitlab.url == "https://gitlab.example.com"
    kube = KubernetesCredentials.load("setup-test-konflux")
    assert kube.cluster_config.context_name == "konflux"
    assert kube.cluster_config.config["users"][0]["user"]["token"] == "kube-token"
    # Secret.get() parses JSON text: the docker config comes back as a mapping
    assert Secret.load("setup-test-registry").get() == {"auths": {"quay.example.com": {"auth": "dTpw"}}}
    assert Secret.load("setup-test-token").get() == "user:pa55"

    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("setup-test-limit").limit == 3
        pool = client.read_work_pool("setup-test-k8s")
        block_id = client.read_block_document_by_name("setup-test", "indexflow-merge-settings").id
    assert pool.type == "kubernetes"
    assert pool.base_job_template["variables"]["properties"]["secret_name"]["default"] == "indexflow-worker-env"

    # a second run updates in place: same block document, new values
    secrets_env_changed = config(tmp_path, concurrency_limits={"setup-test-limit": 5})
    assert main(["setup", str(secrets_env_changed)]) == 0
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name("setup-test-limit").limit == 5
        assert client.read_block_document_by_name("setup-test", "indexflow-merge-settings").id == block_id
