"""Issue 3 item 8: the opm-shaped verbs, their output shapes and exit codes (local fixtures only)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from indexflow.cli import main
from tests.catalog.fixtures import FIX

FBC = FIX.parent / "fbc"
ETCD_DIRS = FIX / "bundles" / "etcd"


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def etcd_db(tmp_path: Path) -> Path:
    db = tmp_path / "index.db"
    shutil.copyfile(FIX / "etcd-full.db", db)
    return db


def test_db_list_prints_json_lines(etcd_db: Path) -> None:
    rc, out, err = _cli("db", "list", etcd_db)
    assert (rc, err) == (0, "")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 6 and all(list(r) == ["packageName", "csvName", "version", "bundlePath"] for r in rows)
    assert {r["csvName"] for r in rows} >= {"etcdoperator.v0.9.4", "etcdoperator.v0.6.1"}


def test_db_add_records_ref_of_a_local_directory_as_bundlepath(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    ref = "registry.example.com/ops/etcd-bundle@sha256:" + "a" * 64
    assert _cli("db", "add", db, "--mode", "semver", "--bundle", f"{ref}={ETCD_DIRS / '0.9.0'}") == (0, "", "")
    rows = [json.loads(line) for line in _cli("db", "list", db)[1].splitlines()]
    assert rows == [{"packageName": "etcd", "csvName": "etcdoperator.v0.9.0", "version": "0.9.0", "bundlePath": ref}]


def test_db_add_sanity_failure_exits_2_like_opm(etcd_db: Path) -> None:
    rc, _, err = _cli("db", "add", etcd_db, "-b", f"quay.io/conformance/etcd-bundle:0.9.0={ETCD_DIRS / '0.9.0'}")
    assert rc == 2
    assert err.strip() == ("Error: [Bundle quay.io/conformance/etcd-bundle:0.9.0 already exists, "
                           "Bundle already added that provides package and csv]")


def test_db_add_rejects_an_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc, contextlib.redirect_stderr(io.StringIO()):
        main(["db", "add", str(tmp_path / "x.db"), "--mode", "fancy", "-b", "q/a:1"])
    assert exc.value.code == 2


def test_db_deprecatetruncate_exit_codes(etcd_db: Path) -> None:
    rc, _, err = _cli("db", "deprecatetruncate", etcd_db, "-b", "quay.io/conformance/etcd-bundle:0.9.4")
    assert rc == 1 and err.strip() == ("Error: error deprecating bundle quay.io/conformance/etcd-bundle:0.9.4: "
                                       "Bundle deprecation causing default channel removal")
    assert _cli("db", "deprecatetruncate", etcd_db, "-b", "quay.io/conformance/etcd-bundle:0.9.2-clusterwide") \
        == (0, "", "")
    assert "etcdoperator.v0.9.2-clusterwide" not in _cli("db", "list", etcd_db)[1]


def test_db_migrate_formats_and_levels(etcd_db: Path, tmp_path: Path) -> None:
    assert _cli("db", "migrate", etcd_db, tmp_path / "yaml", "-o", "yaml") == (0, "", "")
    assert (tmp_path / "yaml" / "etcd" / "catalog.yaml").read_bytes() == \
        (FBC / "etcd-expected-yaml" / "etcd" / "catalog.yaml").read_bytes()
    level = "bundle-object-to-csv-metadata"
    assert _cli("db", "migrate", etcd_db, tmp_path / "meta", "--migrate-level", level) == (0, "", "")
    text = (tmp_path / "meta" / "etcd" / "catalog.json").read_text()
    assert '"type": "olm.csv.metadata"' in text and '"olm.bundle.object"' not in text
    rc, _, err = _cli("db", "migrate", etcd_db, tmp_path / "meta")
    assert rc == 1 and err.strip() == f'Error: output dir "{tmp_path / "meta"}" must be empty'


def test_fbc_validate_json_output_and_exit_codes() -> None:
    rc, out, err = _cli("fbc", "validate", FBC / "validate" / "ok-simple", "-o", "json")
    assert (rc, json.loads(out), err) == (0, {"passed": True}, "")
    rc, out, err = _cli("fbc", "validate", FBC / "validate" / "comment-only-file", "-o", "json")
    assert rc == 1 and json.loads(out)["passed"] is False and err.startswith("Error: ")


def test_fbc_merge_copies_db_packages_over_git_and_normalises_to_json(etcd_db: Path, tmp_path: Path) -> None:
    assert _cli("db", "migrate", etcd_db, tmp_path / "from_db") == (0, "", "")
    into = tmp_path / "configs"
    shutil.copytree(FBC / "validate" / "ok-yaml-multifile-indexignore", into)
    (into / "etcd").mkdir()
    (into / "etcd" / "catalog.json").write_text("stale")
    assert _cli("fbc", "merge", tmp_path / "from_db", into) == (0, "", "")
    assert (into / "etcd" / "catalog.json").read_bytes() == (tmp_path / "from_db" / "etcd" / "catalog.json").read_bytes()
    assert not list(into.rglob("*.yaml")) and not list(into.rglob("*.yml"))
    assert _cli("fbc", "validate", into) == (0, "", "")
    rc, _, err = _cli("fbc", "merge", tmp_path / "nope", into)
    assert rc == 1 and err.strip() == f"Error: config directory does not exist: {tmp_path / 'nope'}"
