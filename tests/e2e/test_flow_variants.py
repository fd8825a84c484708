"""Merge variants no other e2e test runs: semver graph modes through the flow, a real (not dry) merge
started from the command line with two deprecation chunks, one of which removes a whole package, a
merge request GitLab will not close (left open, reported, the merge still done), and the overwrite
token read from a file or the environment.

This module sorts before test_merge_e2e.py, whose last test overwrites the session's target.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from indexflow.app.cli import main
from indexflow.merge import plan
from indexflow.registry.refs import ImageRef
from tests.e2e.conftest import E2E
from tests.e2e.test_merge_e2e import bundles_of_artifact, merge, output_configs

pytestmark = pytest.mark.e2e
BLOCK = "e2e-variants"
TOKEN = "release:variant-token-5c1e"


@pytest.fixture(scope="module")
def variants(e2e: E2E) -> E2E:
    """One deprecation per chunk, semver modes allowed on the session's target."""
    e2e.save_block(BLOCK, deprecate_bundles_limit=1, graph_mode_index_allow_list=[e2e.target])
    return e2e


def _package_heads(sb: E2E) -> tuple[str, list[str]]:
    """(package, pullspecs of the target's channel heads) for a package in both indexes: the merge
    adds the target's newer bundles, then deprecating every channel head (the default channel's
    among them) removes the package (IIB allows package removal). Read with plain SQL."""
    def db(index: str) -> Path:
        return sb.env.artifacts.pull(sb.env.artifacts.canonical_ref(index)).path

    with sqlite3.connect(db(sb.seed.source_index)) as con:
        source = {row[0] for row in con.execute("SELECT bundlepath FROM operatorbundle")}
    with sqlite3.connect(db(sb.seed.target_index)) as con:
        bundles = con.execute("SELECT b.bundlepath, p.package_name FROM operatorbundle b JOIN "
                              "(SELECT DISTINCT operatorbundle_name, package_name FROM channel_entry) p "
                              "ON p.operatorbundle_name = b.name").fetchall()
        heads = con.execute("SELECT c.package_name, b.bundlepath FROM channel c JOIN operatorbundle b "
                            "ON b.name = c.head_operatorbundle_name").fetchall()
    deprecated = sb.seed.deprecation_list[0].split("/")[-1].split(":")[0]
    candidates = sorted(pkg for pkg in {p for _, p in bundles} if deprecated not in pkg and any(
        path in source for path, p in bundles if p == pkg) and sb.seed.invalid_bundle not in
        {path for path, p in bundles if p == pkg})
    assert candidates, "the seed has no package in both indexes to remove"
    package = candidates[0]
    return package, sorted({path for pkg, path in heads if pkg == package})


@pytest.mark.parametrize("mode", ["semver"])
def test_semver_modes_merge_through_the_flow(variants: E2E, mode: str) -> None:
    state = merge(variants, target_index=variants.target, graph_update_mode=mode, dry_run=True,
                  settings_block=BLOCK, request_id=variants.request_id(mode))
    assert state.is_completed(), state.message
    result = state.result()
    assert result["missing"] == len(variants.seed.missing_from_source)
    assert result["bundles_in_db"] >= variants.seed.source_bundles


def test_semver_mode_outside_the_allow_list_is_refused(variants: E2E) -> None:
    state = merge(variants, target_index=variants.target, graph_update_mode="semver", dry_run=True,
                  request_id=variants.request_id("semver-refused"))  # the session block allows no index
    assert state.is_failed() and '"graph_update_mode" can only be used on the following index image' in state.message


def test_cli_merge_with_chunked_deprecations_removing_a_package_and_an_mr_left_open(
        variants: E2E, capsys: pytest.CaptureFixture[str]) -> None:
    sb = variants
    package, heads = _package_heads(sb)
    rid = sb.request_id("cli-real")
    refuse_close = sb.git_proxy.add_fault("status", r"/merge_requests/\d+$", method="PUT", status=403, times=99)
    deprecations = [sb.seed.deprecation_list[0], *heads]  # one chunk each (deprecate_bundles_limit=1)
    rc = main(["merge", "--source-from-index", sb.source, "--target-index", sb.target, "--ignore-bundle-ocp-version",
               *[arg for d in deprecations for arg in ("--deprecation-list", d)],
               "--settings", BLOCK, "--request-id", rid, "--json"])
    out, err = capsys.readouterr()
    sb.git_proxy.clear()
    assert rc == 0, err
    result = json.loads(out)
    try:
        assert refuse_close.injected >= 1
        assert result["mr_state"].startswith("left open"), result["mr_state"]
        mrs = sb.remote_state().mrs
        assert "opened" in mrs.values()
    finally:
        _close_left_open_mrs(sb)
    in_db = bundles_of_artifact(sb, plan.artifact_refs(sb.target, sb.registry_proxy.host, rid).per_request)
    assert not set(heads) & in_db
    with sqlite3.connect(sb.env.artifacts.pull(sb.env.artifacts.canonical_ref(sb.seed.target_index)).path) as con:
        of_package = {row[0] for row in con.execute(
            "SELECT b.bundlepath FROM operatorbundle b JOIN channel_entry e ON e.operatorbundle_name = b.name "
            "WHERE e.package_name = ?", (package,))}
    assert of_package and not of_package & in_db, f"bundles of {package} left in the merged index.db"
    configs = output_configs(sb, result["output_pullspecs"][0])
    assert not (configs / package).exists(), f"package {package} still in the output catalog"
    deprecated = sb.env.registry_client.resolve(ImageRef.parse(sb.seed.deprecation_list[0]))
    assert not any(p.endswith(deprecated) for p in in_db), "the first chunk's deprecation was lost"


def _close_left_open_mrs(sb: E2E) -> None:
    """Put the session back as the other tests expect it: no open MR, no feature branch."""
    from sandbox.demo_env import GIT_PROJECT

    api = f"{sb.env.gitlab_url}/api/v4/projects/{GIT_PROJECT.replace('/', '%2F')}"
    headers = {"Authorization": f"Bearer {sb.env.git_token}"}
    for mr in httpx.get(f"{api}/merge_requests", params={"state": "opened"}, headers=headers, timeout=10).json():
        httpx.put(f"{api}/merge_requests/{mr['iid']}", json={"state_event": "close"}, headers=headers, timeout=10)
        httpx.delete(f"{api}/repository/branches/{mr['source_branch']}", headers=headers, timeout=10)


@pytest.mark.parametrize("where", ["file", "env"])
def test_cli_reads_the_overwrite_token_from_a_file_or_the_environment(
        variants: E2E, where: str, tmp_path, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
        capsys: pytest.CaptureFixture[str]) -> None:
    args = ["merge", "--source-from-index", variants.source, "--target-index", variants.target, "--dry-run",
            "--overwrite-target-index", "--ignore-bundle-ocp-version", "--settings", BLOCK,
            "--request-id", variants.request_id(f"token-{where}")]
    if where == "file":
        (tmp_path / "token").write_text(TOKEN + "\n")
        args += ["--overwrite-target-index-token-file", str(tmp_path / "token")]
    else:
        monkeypatch.setenv("INDEXFLOW_OVERWRITE_TARGET_INDEX_TOKEN", TOKEN)
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 0, err  # without a token this request is refused (test_cli_dry_run_and_a_refused_request)
    assert TOKEN.split(":")[1] not in out + err
