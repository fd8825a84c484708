"""Issue 3 item 7: where opm v1.73 crashes or writes a db it cannot migrate, indexflow gives one
clear error naming the package (and bundle), or a valid result — never a traceback.

The three shapes come from opm's 7,019-bundle run (../shared/conformance/perf/oracle-timings.md):
an empty default channel after partial semver adds, `v`-prefixed skipRanges (`<=v0.10.1`) and
`sha256:sha256:` digests. Each is tried both ways: as input to `indexflow db add` (refused, db
unchanged) and inside a db opm wrote (SQL-edited copies of opm's own etcd db).
Everything runs through the CLI, as a user would.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sqlite3
from pathlib import Path

import pytest

from indexflow.catalog.db import create_db, list_bundles
from indexflow.cli import main
from tests.catalog.fixtures import FIX, dump

ETCD_CSV = "manifests/etcdoperator.v0.9.0.clusterserviceversion.yaml"
DOTVIRT = ["0.0.27", "0.0.28", "0.0.29", "0.0.32"]


def _cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(list(argv))
    return rc, err.getvalue()


def _dump(db: Path) -> dict:
    return dump(db)


def _one_error_line(stderr: str) -> str:
    """The CLI printed exactly one `Error: ...` line and no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


def _etcd_bundle(tmp_path: Path, old: str, new: str) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(FIX / "bundles" / "etcd" / "0.9.0", dest)
    csv = dest / ETCD_CSV
    text = csv.read_text()
    assert old in text
    csv.write_text(text.replace(old, new, 1))
    return dest


def _opm_db(tmp_path: Path, sql: str) -> Path:
    """opm's etcd db, edited the way opm's own partial/permissive adds leave real dbs."""
    db = tmp_path / "index.db"
    shutil.copyfile(FIX / "etcd-full.db", db)
    con = sqlite3.connect(db)
    assert con.execute(sql).rowcount > 0
    con.commit()
    con.close()
    return db


@pytest.fixture
def fresh_db(tmp_path: Path) -> Path:
    db = tmp_path / "new.db"
    create_db(db)
    return db


# --- v-prefixed skipRange ----------------------------------------------------------------------

def test_add_refuses_v_prefixed_skiprange(fresh_db: Path, tmp_path: Path) -> None:
    before = _dump(fresh_db)
    bundle = _etcd_bundle(tmp_path, "  annotations:\n", "  annotations:\n    olm.skipRange: '<=v0.10.1'\n")
    rc, err = _cli("db", "add", str(fresh_db), "-b", f"quay.io/x/etcd:1={bundle}")
    assert rc == 1
    line = _one_error_line(err)
    assert 'bundle etcdoperator.v0.9.0 of package etcd has invalid skipRange "<=v0.10.1"' in line
    assert _dump(fresh_db) == before


def test_migrate_of_opm_db_with_v_prefixed_skiprange_names_package_and_bundle(tmp_path: Path) -> None:
    db = _opm_db(tmp_path, "UPDATE operatorbundle SET skiprange = '<=v0.10.1' WHERE name = 'etcdoperator.v0.9.4'")
    rc, err = _cli("db", "migrate", str(db), str(tmp_path / "out"))
    assert rc == 1 and "Traceback" not in err
    assert 'invalid package "etcd"' in err and 'invalid bundle "etcdoperator.v0.9.4"' in err
    assert 'invalid skipRange "<=v0.10.1"' in err
    assert not (tmp_path / "out").exists()  # nothing half-written


# --- sha256:sha256: and other pull specs opm stores but its validate rejects -------------------

@pytest.mark.parametrize("old,new,shown", [
    ("@sha256:", "@sha256:sha256:", "@sha256:sha256:"),
    ("image: quay.io/coreos/etcd-operator@", "image: https://hub.docker.com/r/coreos/etcd-operator@",
     "https://hub.docker.com/r/coreos/etcd-operator@"),
])
def test_add_refuses_invalid_image_pull_specs(fresh_db: Path, tmp_path: Path, old: str, new: str,
                                              shown: str) -> None:
    before = _dump(fresh_db)
    rc, err = _cli("db", "add", str(fresh_db), "-b", f"quay.io/x/etcd:1={_etcd_bundle(tmp_path, old, new)}")
    assert rc == 1
    line = _one_error_line(err)
    assert "bundle etcdoperator.v0.9.0 of package etcd has an invalid related image" in line
    assert shown in line and "invalid reference format" in line
    assert _dump(fresh_db) == before


def test_opm_db_with_double_digest_migrates_and_validate_names_package_and_bundle(tmp_path: Path) -> None:
    db = _opm_db(tmp_path, "UPDATE related_image SET image = replace(image, '@sha256:', '@sha256:sha256:') "
                           "WHERE operatorbundle_name = 'etcdoperator.v0.9.4' AND image LIKE '%@sha256:%'")
    out = tmp_path / "out"
    assert _cli("db", "migrate", str(db), str(out)) == (0, "")  # as opm: migrate does not check pull specs
    rc, err = _cli("fbc", "validate", str(out))
    assert rc == 1
    line = _one_error_line(err)
    assert 'package "etcd" bundle "etcdoperator.v0.9.4"' in line and "@sha256:sha256:" in line


# --- empty default channel after partial adds --------------------------------------------------

def _dotvirt(tmp_path: Path, bad_default: str | None = None) -> list[str]:
    """-b args for the dotvirt bundles; with `bad_default`, 0.0.29 names a channel it is not in."""
    args = []
    for version in DOTVIRT:
        src = FIX / "bundles" / "dotvirt-operator" / version
        if bad_default and version == "0.0.29":
            dest = tmp_path / "dotvirt-0.0.29"
            shutil.copytree(src, dest)
            ann = dest / "metadata" / "annotations.yaml"
            ann.write_text(ann.read_text().replace("channel.default.v1: stable-v0", f"channel.default.v1: {bad_default}"))
            src = dest
        args += ["-b", f"quay.io/conformance/dotvirt-operator-bundle:{version}={src}"]
    return args


def test_failed_semver_add_leaves_no_package_without_default_channel(fresh_db: Path, tmp_path: Path) -> None:
    """opm commits bundle by bundle; after a failure (kept with --permissive) the package row is
    left with default_channel '' and opm's own migrate panics. indexflow's call is all or nothing."""
    before = _dump(fresh_db)
    rc, err = _cli("db", "add", str(fresh_db), "--mode", "semver", *_dotvirt(tmp_path, bad_default="v9"))
    assert rc == 1
    line = _one_error_line(err)
    assert "error loading bundle dotvirt-operator.v0.0.29 into db: the default channel (v9) does not exist" in line
    assert _dump(fresh_db) == before
    rc, err = _cli("db", "add", str(fresh_db), "--mode", "semver", *_dotvirt(tmp_path))
    assert rc == 0, err
    out = tmp_path / "out"
    assert _cli("db", "migrate", str(fresh_db), str(out)) == (0, "")
    assert _cli("fbc", "validate", str(out)) == (0, "")


def test_migrate_of_opm_db_with_empty_default_channel_names_the_package(tmp_path: Path) -> None:
    db = _opm_db(tmp_path, "UPDATE package SET default_channel = '' WHERE name = 'etcd'")
    rc, err = _cli("db", "migrate", str(db), str(tmp_path / "out"))
    assert rc == 1
    line = _one_error_line(err)
    assert 'package "etcd" has no usable default channel: "" is not one of its channels' in line
    assert "[alpha clusterwide-alpha singlenamespace-alpha]" in line


def test_adding_to_a_db_with_empty_default_channel_repairs_it(tmp_path: Path) -> None:
    """The next semver add to such a package takes the default from the bundle's annotation."""
    db = tmp_path / "semver.db"
    create_db(db)
    assert _cli("db", "add", str(db), "--mode", "semver", *_dotvirt(tmp_path)[:4]) == (0, "")
    con = sqlite3.connect(db)
    con.execute("UPDATE package SET default_channel = '' WHERE name = 'dotvirt-operator'")
    con.commit()
    con.close()
    assert _cli("db", "add", str(db), "--mode", "semver", *_dotvirt(tmp_path)[4:]) == (0, "")
    assert _dump(db)["packages"] == [{"default_channel": "stable-v0", "name": "dotvirt-operator"}]
    out = tmp_path / "out"
    assert _cli("db", "migrate", str(db), str(out)) == (0, "")
    assert _cli("fbc", "validate", str(out)) == (0, "")


# --- deprecatetruncate: an image truncated away earlier in the same call -----------------------

def test_deprecate_skips_an_image_an_earlier_one_truncated(tmp_path: Path) -> None:
    db = tmp_path / "semver.db"
    create_db(db)
    assert _cli("db", "add", str(db), "--mode", "semver", *_dotvirt(tmp_path))[0] == 0
    ref = "quay.io/conformance/dotvirt-operator-bundle:{}".format
    rc, err = _cli("db", "deprecatetruncate", str(db), "-b", f"{ref('0.0.29')},{ref('0.0.28')}")
    assert rc == 0, err
    assert sorted(r.version for r in list_bundles(db)) == ["0.0.32"]
    assert _dump(db)["deprecated"] == ["dotvirt-operator.v0.0.29"]


def test_empty_image_is_allowed_like_opm(fresh_db: Path, tmp_path: Path) -> None:
    """opm's validate allows an empty image (real bundles have `relatedImages: [{image: ""}]`)."""
    bundle = _etcd_bundle(tmp_path, "image: quay.io/coreos/etcd-operator@", 'image: ""\n#')
    assert _cli("db", "add", str(fresh_db), "-b", f"quay.io/x/etcd:1={bundle}") == (0, "")
    out = tmp_path / "out"
    assert _cli("db", "migrate", str(fresh_db), str(out)) == (0, "")
    assert _cli("fbc", "validate", str(out)) == (0, "")
    assert '"image": ""' in (out / "etcd" / "catalog.json").read_text()
