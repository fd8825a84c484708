"""`indexflow setup CONFIG.yaml` checks: every mistake is one sentence and nothing is written.

Writing to a real server is tested in test_deployments.py (one server per session)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from indexflow.cli import main
from tests.deploy.conftest import setup_file as config

BINARY = os.path.realpath(sys.executable)  # a file that is not UTF-8 text (an ELF binary)

@pytest.mark.parametrize("changes, message", [
    ({"gitlab__token": "glpat-inline"},
     "gitlab.token must be {from_env: VARIABLE} or {from_file: PATH}; secrets are never written in the config file"),
    ({"secrets": {"x": {"from_env": "SETUP_TEST_UNSET_VARIABLE"}}},
     "secrets.x: environment variable SETUP_TEST_UNSET_VARIABLE is not set or empty"),
    ({"kubernetes__kubeconfig": {"from_file": "missing.yaml"}}, "kubernetes.kubeconfig: cannot read"),
    ({"kubernetes__kubeconfig": {"from_file": BINARY}}, f"kubernetes.kubeconfig: cannot read {BINARY} (not UTF-8 text)"),
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
    """Every endpoint is probed; nothing listens on port 9, so each probe reports its failure (not fatal)."""
    dead = "127.0.0.1:9"
    values = {"iib_registry": f"{dead}/iib", "index_db_artifact_registry": f"{dead}/art",
              "konflux_namespace": "iib-tenant", "insecure_registries": [dead]}
    path = config(tmp_path, gitlab__url=f"http://{dead}", settings__values=values)
    assert main(["setup", "--check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "settings setup-test, 2 secret(s), 1 limit(s), 2 work pool(s), results not configured" in out[0]
    assert [line.split(": FAILED (")[0] for line in out[1:]] == [
        f"probe gitlab http://{dead}", "probe konflux namespace iib-tenant",
        f"probe registry {dead} (iib_registry)", f"probe registry {dead} (index_db_artifact_registry)"]
    assert "glpat-s3cr3t" not in "\n".join(out) and "kube-token" not in "\n".join(out)


def test_setup_needs_a_reachable_prefect_api(tmp_path: Path, secrets_env: dict, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    path = str(config(tmp_path))
    with temporary_settings(restore_defaults={PREFECT_API_URL}):  # also overrides an outer harness
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        assert main(["setup", path]) == 1
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert main(["setup", path]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors == [
        "Error: PREFECT_API_URL is not set (environment or Prefect profile): setup needs the server the workers use",
        "Error: the Prefect API at http://127.0.0.1:9/api failed during setup (ConnectError); objects before the "
        "failure were written, re-run setup when it is back"]


def test_iib_api_needs_the_prefect_api_url(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["iib-api", "--port", "0"]) == 1
    assert capsys.readouterr().err == ("Error: PREFECT_API_URL must be set to the Prefect server's API URL "
                                       "(e.g. http://127.0.0.1:4200/api)\n")
