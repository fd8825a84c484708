"""Catalog db engine on small local fixtures (opm v1.73.0 golden dumps in tests/fixtures/catalog)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import sqlite3
from pathlib import Path

import pytest

from indexflow.catalog.add import add_bundle_refs
from indexflow.catalog.bundle import load_bundle_dir
from indexflow.catalog.db import SCHEMA_VERSION, create_db, list_bundles, open_db, schema_version, vouch
from indexflow.catalog.deprecate import deprecate_truncate
from indexflow.catalog.gojson import compact_raw, go_json
from indexflow.cli import main
from indexflow.errors import CatalogError
from tests.catalog.fixtures import FIX, golden as _golden
from tests.catalog.fixtures import dump as _dump

ETCD = ["0.6.1", "0.9.0", "0.9.2", "0.9.2-clusterwide", "0.9.4", "0.9.4-clusterwide"]


def _ref(pkg: str, version: str) -> str:
    return f"quay.io/conformance/{pkg}-bundle:{version}"


def _dirs(pkg: str, versions: list[str]) -> dict[str, Path]:
    return {_ref(pkg, v): FIX / "bundles" / pkg / v for v in versions}


@pytest.fixture
def etcd_db(tmp_path: Path) -> Path:
    db = tmp_path / "index.db"
    shutil.copyfile(FIX / "etcd-full.db", db)
    return db


def test_go_json_matches_go_encoding() -> None:
    assert go_json({"b": 1.0, "a": "x<y&z", "c": [1.5, 1e-7, 1e22]}) == \
        '{"a":"x\\u003cy\\u0026z","b":1,"c":[1.5,1e-7,1e+22]}'
    assert compact_raw('{"b": 1, "a": "x <y"}') == '{"b":1,"a":"x \\u003cy"}'


def test_create_db_is_current_schema_with_foreign_keys(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    create_db(db)
    assert schema_version(db) == SCHEMA_VERSION
    con = sqlite3.connect(db)
    tables = {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"operatorbundle", "channel_entry", "properties", "deprecated", "api_provider"} <= tables
    engine = open_db(db)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
    with pytest.raises(CatalogError, match="file exists"):
        create_db(db)


def test_bundle_parse_is_byte_identical_to_opm() -> None:
    bundle = load_bundle_dir(FIX / "bundles" / "etcd" / "0.9.2", _ref("etcd", "0.9.2"))
    assert (bundle.name, bundle.replaces, bundle.package) == ("etcdoperator.v0.9.2", "etcdoperator.v0.9.0", "etcd")
    want = next(b for b in _golden("add-replaces-etcd-full")["bundles"] if b["name"] == bundle.name)
    assert hashlib.sha256(bundle.csv_json).hexdigest() == want["csv_sha256"]
    assert hashlib.sha256(bundle.bundle_json).hexdigest() == want["bundle_sha256"]


def test_add_replaces_matches_opm(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    dirs = _dirs("etcd", ETCD)
    add_bundle_refs(db, list(dirs), dirs, mode="replaces")
    assert _dump(db) == _golden("add-replaces-etcd-full")


def test_add_semver_matches_opm(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    dirs = _dirs("dotvirt-operator", ["0.0.27", "0.0.28", "0.0.29", "0.0.32"])
    add_bundle_refs(db, list(dirs), dirs, mode="semver")
    assert _dump(db) == _golden("add-semver-dotvirt")


def test_failed_add_leaves_db_untouched(etcd_db: Path, tmp_path: Path) -> None:
    before = _dump(etcd_db)
    dirs = _dirs("dotvirt-operator", ["0.0.27"])
    dirs[_ref("etcd", "0.9.2")] = FIX / "bundles" / "etcd" / "0.9.2"  # duplicate -> sanity failure
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["db", "add", str(etcd_db), *[f"-b{r}={d}" for r, d in dirs.items()]])
    assert rc == 2
    assert "Bundle quay.io/conformance/etcd-bundle:0.9.2 already exists" in err.getvalue()
    assert _dump(etcd_db) == before

    fresh = tmp_path / "fresh.db"
    with pytest.raises(CatalogError, match="replaces nonexistent bundle etcdoperator.v0.9.0"):
        add_bundle_refs(fresh, [_ref("etcd", "0.9.2")], _dirs("etcd", ["0.9.2"]))
    assert _dump(fresh)["bundles"] == []


def test_deprecatetruncate_matches_opm(etcd_db: Path) -> None:
    deprecate_truncate(etcd_db, [_ref("etcd", "0.9.2-clusterwide")])
    assert _dump(etcd_db) == _golden("dt-etcd-shared-tail")
    names = {r.csvName for r in list_bundles(etcd_db)}
    assert "etcdoperator.v0.9.2-clusterwide" not in names and "etcdoperator.v0.9.4" in names


def test_deprecatetruncate_errors_change_nothing(etcd_db: Path) -> None:
    before = _dump(etcd_db)
    with pytest.raises(CatalogError, match=r"missing from registry: \[quay.io/x:1\]"):
        deprecate_truncate(etcd_db, [_ref("etcd", "0.9.0"), "quay.io/x:1"])
    with pytest.raises(CatalogError, match="causing default channel removal"):
        deprecate_truncate(etcd_db, [_ref("etcd", "0.9.4")])
    assert _dump(etcd_db) == before


def test_list_bundles(etcd_db: Path) -> None:
    records = list_bundles(etcd_db)
    assert len(records) == 6
    assert {r.packageName for r in records} == {"etcd"}
    assert all(r.bundlePath.startswith("quay.io/conformance/etcd-bundle:") for r in records)


def test_a_db_changed_in_place_after_it_passed_is_checked_again(etcd_db: Path) -> None:
    """The check of an index.db is remembered per file; an edit in place (same size, same clock tick:
    sqlite rewrites a page) must not ride on the earlier pass."""
    assert len(list_bundles(etcd_db)) == 6
    con = sqlite3.connect(etcd_db)
    con.execute("UPDATE operatorbundle SET version = CAST('0.9.0' AS BLOB) WHERE name = 'etcdoperator.v0.9.0'")
    con.commit()
    con.close()
    with pytest.raises(CatalogError, match="operatorbundle.version holds a blob value"):
        list_bundles(etcd_db)


@pytest.mark.parametrize(("update", "refusal"), [
    ("UPDATE channel_entry SET depth = 'deep'", "channel_entry.depth holds a text value"),
    ("UPDATE channel_entry SET depth = 1.5", "channel_entry.depth holds a real value"),
    ("UPDATE channel_entry SET replaces = x'00'", "channel_entry.replaces holds a blob value"),
    ("UPDATE properties SET value = CAST(value AS BLOB)", "properties.value holds a blob value"),
    ("UPDATE dependencies SET value = CAST(value AS BLOB)", None),  # Go []byte: opm writes bytes there
    ("UPDATE operatorbundle SET csv = CAST(csv AS BLOB), skiprange = NULL", None),
])
def test_column_storage_classes_are_checked_per_column(etcd_db: Path, update: str, refusal: str | None) -> None:
    """Each column may hold only what opm writes there (NULL everywhere): a value of another storage
    class is refused naming the table, the column and the class."""
    con = sqlite3.connect(etcd_db)
    con.execute("INSERT INTO dependencies (type, value, operatorbundle_name) VALUES ('olm.gvk', '{}', 'x')")
    con.execute(update)
    con.commit()
    con.close()
    if refusal is None:
        assert len(list_bundles(etcd_db)) == 6
    else:
        with pytest.raises(CatalogError, match=refusal):
            list_bundles(etcd_db)


def test_a_copy_is_spared_the_scan_only_when_its_original_passed(etcd_db: Path, tmp_path: Path) -> None:
    """`vouch(copy, copy_of=original)` (the merge's working copy) trusts the copy only when the original
    passed the check in this process: a copy of a file that was never checked, or that failed, is still
    scanned and refused."""
    con = sqlite3.connect(etcd_db)
    con.execute("UPDATE operatorbundle SET version = CAST('0.9.0' AS BLOB) WHERE name = 'etcdoperator.v0.9.0'")
    con.commit()
    con.close()
    copy = tmp_path / "copy.db"
    shutil.copyfile(etcd_db, copy)
    vouch(copy, copy_of=etcd_db)  # never checked: vouches for nothing
    with pytest.raises(CatalogError, match="operatorbundle.version holds a blob value"):
        list_bundles(copy)
    with pytest.raises(CatalogError, match="operatorbundle.version holds a blob value"):
        list_bundles(etcd_db)
    again = tmp_path / "again.db"
    shutil.copyfile(etcd_db, again)
    vouch(again, copy_of=etcd_db)  # failed its check: still nothing
    with pytest.raises(CatalogError, match="operatorbundle.version holds a blob value"):
        list_bundles(again)


def _edited_bundle(tmp_path: Path, old: str, new: str) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(FIX / "bundles" / "etcd" / "0.9.0", dest)
    csv = dest / "manifests" / "etcdoperator.v0.9.0.clusterserviceversion.yaml"
    text = csv.read_text()
    assert old in text
    csv.write_text(text.replace(old, new, 1))
    return dest


def test_bad_digest_is_a_clear_error(tmp_path: Path) -> None:
    bundle = _edited_bundle(tmp_path, "@sha256:", "@sha256:sha256:")
    with pytest.raises(CatalogError, match=r"bundle etcdoperator.v0.9.0 of package etcd has an invalid related image"):
        add_bundle_refs(tmp_path / "x.db", ["r/etcd:1"], {"r/etcd:1": bundle})


def test_v_prefixed_skiprange_is_a_clear_error(tmp_path: Path) -> None:
    bundle = _edited_bundle(tmp_path, "  annotations:\n", "  annotations:\n    olm.skipRange: '<v0.9.0'\n")
    with pytest.raises(CatalogError, match=r"bundle etcdoperator.v0.9.0 of package etcd has invalid skipRange"):
        add_bundle_refs(tmp_path / "x.db", ["r/etcd:1"], {"r/etcd:1": bundle})


def test_old_schema_is_refused_for_writes(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    create_db(db)
    con = sqlite3.connect(db)
    con.execute("UPDATE schema_migrations SET version = 12")
    con.commit()
    con.close()
    with pytest.raises(CatalogError, match="schema version 12"):
        deprecate_truncate(db, ["x"])
    assert list_bundles(db) == []  # readers upgrade a copy
    assert schema_version(db) == 12


def test_substitutes_for_rewires_the_graph(tmp_path: Path) -> None:
    rebuild = _edited_bundle(tmp_path, "  name: etcdoperator.v0.9.0\n",
                             "  name: etcdoperator.v0.9.0-rebuild\n")
    csv = rebuild / "manifests" / "etcdoperator.v0.9.0.clusterserviceversion.yaml"
    csv.write_text(csv.read_text().replace("  version: 0.9.0\n", "  version: 0.9.0+1\n").replace(
        "  annotations:\n", "  annotations:\n    olm.substitutesFor: etcdoperator.v0.9.0\n", 1))
    db = tmp_path / "sub.db"
    dirs = {**_dirs("etcd", ["0.9.0", "0.9.2"]), "quay.io/x/etcd:rebuild": rebuild}
    with pytest.raises(CatalogError, match="alpha-only feature"):
        add_bundle_refs(db, list(dirs), dirs)
    add_bundle_refs(db, list(dirs), dirs, enable_alpha=True)
    rows = {b["name"]: b for b in _dump(db)["bundles"]}
    assert rows["etcdoperator.v0.9.2"]["replaces"] == "etcdoperator.v0.9.0-rebuild"
    assert rows["etcdoperator.v0.9.0-rebuild"]["skips"] == "etcdoperator.v0.9.0"
    assert {r.csvName for r in list_bundles(db)} == set(rows)


_V5 = [
    "CREATE TABLE schema_migrations (version bigint NOT NULL, timestamp DATETIME DEFAULT CURRENT_TIMESTAMP)",
    "CREATE TABLE api (group_name TEXT, version TEXT, kind TEXT, plural TEXT NOT NULL, "
    "PRIMARY KEY(group_name, version, kind))",
    "CREATE TABLE operatorbundle (name TEXT PRIMARY KEY, csv TEXT, bundle TEXT, bundlepath TEXT, skiprange TEXT, "
    "version TEXT)",
    "CREATE TABLE package (name TEXT PRIMARY KEY, default_channel TEXT)",
    "CREATE TABLE channel (name TEXT, package_name TEXT, head_operatorbundle_name TEXT, "
    "PRIMARY KEY(name, package_name))",
    "CREATE TABLE channel_entry (entry_id INTEGER PRIMARY KEY, channel_name TEXT, package_name TEXT, "
    "operatorbundle_name TEXT, replaces INTEGER, depth INTEGER)",
    "CREATE TABLE api_provider (group_name TEXT, version TEXT, kind TEXT, channel_entry_id INTEGER)",
    "CREATE TABLE api_requirer (group_name TEXT, version TEXT, kind TEXT, channel_entry_id INTEGER)",
    "CREATE TABLE related_image (image TEXT, operatorbundle_name TEXT)",
]


def test_schema_5_db_is_upgraded_on_a_copy_only(tmp_path: Path) -> None:
    """A db at opm schema 5 (like operator-registry's fixture) is read through an upgraded copy."""
    db = tmp_path / "v5.db"
    con = sqlite3.connect(db)
    for ddl in _V5:
        con.execute(ddl)
    con.executescript("""
        INSERT INTO schema_migrations(version) VALUES (5);
        INSERT INTO operatorbundle VALUES ('foo.v2', '{}', '{}', 'q/foo:2', '', '2.0.0'),
                                          ('foo.v1', '{}', '{}', '', '', '1.0.0');
        INSERT INTO package VALUES ('foo', 'stable');
        INSERT INTO channel VALUES ('stable', 'foo', 'foo.v2');
        INSERT INTO channel_entry VALUES (1, 'stable', 'foo', 'foo.v2', 3, 0), (2, 'stable', 'foo', 'foo.v1x', NULL, 1),
                                         (3, 'stable', 'foo', 'foo.v1', NULL, 1), (4, 'stable', 'foo', 'foo.v2', 2, 1);
        INSERT INTO api VALUES ('g.io', 'v1', 'Foo', 'foos');
        INSERT INTO api_provider VALUES ('g.io', 'v1', 'Foo', 1);
    """)
    con.commit()
    con.close()
    assert [(r.csvName, r.bundlePath) for r in list_bundles(db)] == [("foo.v1", ""), ("foo.v2", "q/foo:2")]
    assert schema_version(db) == 5

    from indexflow.catalog.db import upgrade_copy

    up = upgrade_copy(db, tmp_path / "v13.db")
    assert schema_version(up) == SCHEMA_VERSION
    data = _dump(up)
    props = {(p["bundle"], p["type"], p["value_raw"]) for p in data["properties"]}
    assert ("foo.v2", "olm.gvk", '{"group":"g.io","kind":"Foo","version":"v1"}') in props
    assert ("foo.v1", "olm.package", '{"packageName":"foo","version":"1.0.0"}') in props
    assert data["api_provider"] == [{"bundle": "foo.v2", "bundle_path": "q/foo:2", "bundle_version": "2.0.0",
                                     "group": "g.io", "kind": "Foo", "version": "v1"}]
    with pytest.raises(CatalogError, match="schema version 5"):
        add_bundle_refs(db, [], {})


def test_unpacked_bundles_wait_for_the_shared_byte_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing an unpacked bundle dir takes its bytes from the allowance in-memory image reads use:
    while the whole allowance is held elsewhere, fetched bundles are not parsed; once it is free, they are."""
    import threading

    from indexflow.catalog.add import fetch_bundles
    from indexflow.catalog.image import holding

    monkeypatch.setenv("INDEXFLOW_BUNDLE_LOAD_BYTES", str(1 << 20))
    fetched: list[str] = []
    done: list[list] = []

    def fetch(ref: str) -> Path:
        fetched.append(ref)
        return FIX / "bundles" / "etcd" / "0.9.0"

    with holding(1 << 20):
        worker = threading.Thread(target=lambda: done.append(fetch_bundles(["a", "b"], fetch, concurrency=2)))
        worker.start()
        worker.join(2.0)
        assert worker.is_alive() and not done  # fetched (or fetching), but parsing waits for the bytes
    worker.join(60)
    assert sorted(fetched) == ["a", "b"] and [b.name for b in done[0]] == ["etcdoperator.v0.9.0"] * 2


@pytest.mark.parametrize("value", ["ten minutes", "-5", "0", "nan"])
def test_a_query_deadline_that_is_not_a_positive_number_is_one_sentence(tmp_path: Path, value: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, a typo silently ran with the default, a negative value failed every query as 'past the
    deadline' and NaN disabled the deadline."""
    db = tmp_path / "index.db"
    create_db(db)
    monkeypatch.setenv("INDEXFLOW_DB_QUERY_SECONDS", value)
    with pytest.raises(CatalogError) as err:
        list_bundles(db)
    assert str(err.value) == f"INDEXFLOW_DB_QUERY_SECONDS={value!r} is not a positive number of seconds"
    monkeypatch.setenv("INDEXFLOW_DB_QUERY_SECONDS", "0.5")
    assert list_bundles(db) == []
