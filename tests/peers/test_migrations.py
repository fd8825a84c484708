"""operator-registry v1.73.0 pkg/sqlite/migrations/*_test.go "Up" cases, one migration at a time.

Each peer test creates a db at migration N-1 (CreateTestDBAt), inserts rows, runs only migration N
and reads the result. Here the db at N-1 is opm's schema 5 (as operator-registry's own fixture has
it) brought to N-1 with `upgrade(..., target=N-1)`; then `upgrade(N-1, target=N)` runs the one step.
The "Down" cases have no counterpart: indexflow never downgrades.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from indexflow.catalog.upgrade import MIGRATIONS, upgrade
from tests.catalog.test_db_unit import _V5


def db_at(tmp_path: Path, version: int) -> sqlite3.Connection:
    """A db at opm schema `version` (>= 5), through our own migration table."""
    con = sqlite3.connect(tmp_path / f"at-{version}.db", isolation_level=None)
    for ddl in _V5:
        con.execute(ddl)
    con.execute("INSERT INTO schema_migrations(version) VALUES (5)")
    upgrade(con, 5, target=version)
    return con


def step(con: sqlite3.Connection, number: int) -> None:
    upgrade(con, number - 1, target=number)
    assert con.execute("SELECT version FROM schema_migrations").fetchall() == [(number,)]


BUNDLE = ("INSERT INTO operatorbundle(name, csv, bundle, bundlepath, version, skiprange, replaces, skips) "
          "VALUES ('etcdoperator.v0.6.1', '{}', '{}', 'quay.io/image', '0.6.1', '>0.5.0 <0.6.1', '0.9.0', '0.9.1,0.9.2')")


def _bundle_at(tmp_path: Path, version: int, api_table: str = "") -> sqlite3.Connection:
    """The peers' etcdoperator.v0.6.1 row in a db at `version` (foreign keys off, as the peer has them),
    with its test API in `api_table` when given."""
    con = db_at(tmp_path, version)
    con.execute("PRAGMA foreign_keys = 0")
    con.execute(BUNDLE)
    if api_table:
        con.execute(f"INSERT INTO {api_table}(group_name, version, kind, operatorbundle_name, operatorbundle_version, "
                    "operatorbundle_path) VALUES ('test.coreos.com', 'v1', 'testapi', 'etcdoperator.v0.6.1', '0.6.1', "
                    "'quay.io/image')")
    return con


def test_table_lists_opm_migrations_6_to_13_in_order() -> None:
    assert [n for n, _ in MIGRATIONS] == list(range(6, 14))


def test_008_dependencies_up(tmp_path: Path) -> None:
    """Peer: 008_dependencies_test.go:16 TestDependenciesUp: a required API becomes an olm.gvk dependency
    whose value carries "type":"olm.gvk"."""
    con = _bundle_at(tmp_path, 7, "api_requirer")
    step(con, 8)
    rows = con.execute("SELECT DISTINCT type, value FROM dependencies WHERE operatorbundle_name = ? AND "
                       "operatorbundle_version = ? AND operatorbundle_path = ?",
                       ("etcdoperator.v0.6.1", "0.6.1", "quay.io/image")).fetchall()
    assert [(t, json.loads(v)) for t, v in rows] == [
        ("olm.gvk", {"group": "test.coreos.com", "kind": "testapi", "type": "olm.gvk", "version": "v1"})]


def test_010_bundlepath_up(tmp_path: Path) -> None:
    """Peer: 010_set_bundlepath_pkg_property_test.go:16 TestBundlePathPropertyUp."""
    con = _bundle_at(tmp_path, 9)
    con.execute("INSERT INTO properties(type, value, operatorbundle_name, operatorbundle_version, operatorbundle_path) "
                "VALUES ('olm.package', '{}', 'etcdoperator.v0.6.1', '0.6.1', '')")
    step(con, 10)
    assert con.execute("SELECT operatorbundle_path FROM properties WHERE operatorbundle_name = ? AND "
                       "operatorbundle_version = ?", ("etcdoperator.v0.6.1", "0.6.1")).fetchall() == [("quay.io/image",)]


def test_011_substitutes_for_up(tmp_path: Path) -> None:
    """Peer: 011_substitutes_for_test.go: after the step a bundle row takes a substitutesfor value."""
    con = db_at(tmp_path, 10)
    step(con, 11)
    con.execute("INSERT INTO operatorbundle(name, csv, bundle, bundlepath, version, skiprange, replaces, skips, "
                "substitutesfor) VALUES ('etcdoperator.v0.6.1', '{}', '{}', 'quay.io/image', '0.6.1', "
                "'>0.5.0 <0.6.1', '0.9.0', '0.9.1,0.9.2', 'dummy')")
    assert con.execute("SELECT substitutesfor FROM operatorbundle").fetchall() == [("dummy",)]


def test_012_deprecated_up(tmp_path: Path) -> None:
    """Peer: 012_deprecated_test.go:15 TestDeprecated: bundles with an olm.deprecated property (twice, to
    check idempotency) fill the deprecated table once; other properties do not."""
    con = db_at(tmp_path, 11)
    insert_bundle = "INSERT INTO operatorbundle(name, version, bundlepath, csv) VALUES (?, ?, ?, ?)"
    insert_prop = ("INSERT INTO properties(type, operatorbundle_name, operatorbundle_version, operatorbundle_path) "
                   "VALUES (?, ?, ?, ?)")
    con.execute(insert_bundle, ("operator.v1.0.0", "1.0.0", "quay.io/operator:v1.0.0", "csv"))
    for typ in ("olm.deprecated", "olm.deprecated", "extraneous"):
        con.execute(insert_prop, (typ, "operator.v1.0.0", "1.0.0", "quay.io/operator:v1.0.0"))
    con.execute(insert_bundle, ("operator.v2.0.0", "2.0.0", "quay.io/operator:v2.0.0", "csv"))
    con.execute(insert_prop, ("extraneous", "operator.v2.0.0", "2.0.0", "quay.io/operator:v2.0.0"))
    step(con, 12)
    assert con.execute("SELECT * FROM deprecated").fetchall() == [("operator.v1.0.0",)]


def test_013_rm_truncated_deprecations_up(tmp_path: Path) -> None:
    """Peer: 013_rm_truncated_deprecations_test.go:14 TestRmTruncatedDeprecations: a deprecation whose
    bundle is gone is dropped."""
    con = db_at(tmp_path, 12)
    con.execute("INSERT INTO operatorbundle(name, version, bundlepath, csv) VALUES ('operator.v1.0.0', '1.0.0', "
                "'quay.io/operator:v1.0.0', 'csv')")
    con.execute("INSERT INTO channel(name, package_name, head_operatorbundle_name) VALUES ('stable', 'apple', "
                "'operator.v1.0.0')")
    con.execute("INSERT INTO channel_entry(entry_id, channel_name, package_name, operatorbundle_name) VALUES "
                "(0, 'stable', 'apple', 'operator.v1.0.0')")
    con.execute("INSERT INTO deprecated(operatorbundle_name) VALUES ('operator.v1.0.0')")
    con.execute("INSERT INTO deprecated(operatorbundle_name) VALUES ('operator.v1.0.0-pre')")
    step(con, 13)
    assert con.execute("SELECT * FROM deprecated").fetchall() == [("operator.v1.0.0",)]


def test_009_properties_up(tmp_path: Path) -> None:
    """Peer: 009_properties_test.go:16 TestPropertiesUp: the bundle gets its olm.package then its olm.gvk
    property; the dependency value loses its "type" key."""
    con = _bundle_at(tmp_path, 8, "api_provider")
    con.execute("INSERT INTO channel_entry(entry_id, channel_name, package_name, operatorbundle_name, replaces, depth) "
                "VALUES ('1', 'alpha', 'etcd', 'etcdoperator.v0.6.1', '', '0')")
    con.execute("INSERT INTO dependencies(type, value, operatorbundle_name, operatorbundle_version, operatorbundle_path) "
                "VALUES ('olm.package', ?, 'etcdoperator.v0.6.1', '0.6.1', 'quay.io/image')",
                ('{"packageName":"etcd","type":"olm.package","version":">0.6.0"}',))
    step(con, 9)
    assert con.execute("SELECT DISTINCT type, value FROM properties WHERE operatorbundle_name = ? AND "
                       "operatorbundle_version = ? AND operatorbundle_path = ?",
                       ("etcdoperator.v0.6.1", "0.6.1", "quay.io/image")).fetchall() == [
        ("olm.package", '{"packageName":"etcd","version":"0.6.1"}'),
        ("olm.gvk", '{"group":"test.coreos.com","kind":"testapi","version":"v1"}')]
    assert con.execute("SELECT DISTINCT type, value FROM dependencies").fetchall() == [
        ("olm.package", '{"packageName":"etcd","version":">0.6.0"}')]


# (entry id, channel, bundle, replaces entry id or "", depth) as the peer inserts them
_ENTRIES_007 = [
    (1, "alpha", "0.9.2", "4", 0), (2, "alpha", "0.9.1", "", 1), (3, "alpha", "0.9.2", "2", 1),
    (4, "alpha", "0.9.0", "5", 2), (5, "alpha", "0.6.1", "", 3), (6, "alpha", "0.5.0", "", 4),
    (7, "alpha", "0.6.1", "6", 4), (8, "alpha", "0.4.1", "", 5), (9, "alpha", "0.6.1", "8", 5),
    (10, "alpha", "0.3.2-a", "", 6), (11, "alpha", "0.6.1", "10", 6), (12, "beta", "0.9.0", "13", 0),
    (13, "beta", "0.6.1", "", 1), (14, "beta", "0.5.0", "", 2), (15, "beta", "0.6.1", "14", 2),
    (16, "beta", "0.4.1", "", 3), (17, "beta", "0.6.1", "16", 3), (18, "beta", "0.3.2-a", "", 4),
    (19, "beta", "0.6.1", "18", 4), (20, "stable", "0.9.2", "23", 0), (21, "stable", "0.9.1", "", 1),
    (22, "stable", "0.9.2", "21", 1), (23, "stable", "0.9.0", "24", 2), (24, "stable", "0.6.1", "", 3),
    (25, "stable", "0.5.0", "", 4), (26, "stable", "0.6.1", "25", 4), (27, "stable", "0.4.1", "", 5),
    (28, "stable", "0.6.1", "27", 5), (29, "stable", "0.3.2-a", "", 6), (30, "stable", "0.6.1", "29", 6),
]


def test_007_replaces_skips_up(tmp_path: Path) -> None:
    """Peer: 007_replaces_skips_test.go:17 TestReplacesSkipsUp: each bundle's replaces is what its
    shallowest entry points at, its skips the other targets; new rows take both columns."""
    e = "etcdoperator.v"
    con = db_at(tmp_path, 6)
    con.execute("PRAGMA foreign_keys = 0")
    con.executemany("INSERT INTO operatorbundle(name, csv, bundle) VALUES (?, 'csv', 'bundle')",
                    [(e + v,) for v in ("0.6.1", "0.9.0", "0.9.2")])
    con.execute("INSERT INTO package(name, default_channel) VALUES ('etcd', 'alpha')")
    con.executemany("INSERT INTO channel(name, package_name, head_operatorbundle_name) VALUES (?, 'etcd', ?)",
                    [("alpha", e + "0.9.2"), ("beta", e + "0.9.0"), ("stable", e + "0.9.2")])
    con.executemany("INSERT INTO channel_entry(entry_id, channel_name, package_name, operatorbundle_name, replaces, "
                    "depth) VALUES (?, ?, 'etcd', ?, ?, ?)", [(i, ch, e + v, r, d) for i, ch, v, r, d in _ENTRIES_007])
    step(con, 7)
    con.execute("INSERT INTO operatorbundle(name, csv, bundle, bundlepath, version, skiprange, replaces, skips) "
                "VALUES ('testName', 'newtestcsv', 'newtestbundle', 'quay.io/test', '1.0.0', '< 1.0.0', '0.9.0', "
                "'0.9.1,0.9.2')")
    got = {n: (r or "", s or "") for n, r, s in con.execute("SELECT name, replaces, skips FROM operatorbundle")}
    assert got[e + "0.9.2"] == (e + "0.9.0", e + "0.9.1")
    assert got[e + "0.9.0"] == (e + "0.6.1", "")
    assert got[e + "0.6.1"] == ("", ",".join(e + v for v in ("0.5.0", "0.4.1", "0.3.2-a")))


def test_006_associate_apis_with_bundle_up(tmp_path: Path) -> None:
    """Peer: 006_associate_apis_with_bundle_test.go:18 TestAssociateApisWithBundleUp: provided APIs keyed
    by channel entry move to the bundle; the query by bundle finds the same entry."""
    con = db_at(tmp_path, 5)
    con.execute("PRAGMA foreign_keys = 0")
    con.execute("INSERT INTO operatorbundle(name, csv, bundle) VALUES ('etcdoperator.v0.6.1', 'csv', 'bundle')")
    con.execute("INSERT INTO package(name, default_channel) VALUES ('etcd', 'alpha')")
    con.execute("INSERT INTO channel(name, package_name, head_operatorbundle_name) VALUES ('alpha', 'etcd', "
                "'etcdoperator.v0.6.1')")
    entry = con.execute("INSERT INTO channel_entry(channel_name, package_name, operatorbundle_name, depth) VALUES "
                        "('alpha', 'etcd', 'etcdoperator.v0.6.1', 0)").lastrowid
    for kind in ("EtcdClusters", "EtcdBackups", "EtcdRestores"):
        con.execute("INSERT INTO api(group_name, version, kind, plural) VALUES ('etcd.database.coreos.com', "
                    "'v1alpha1', ?, ?)", (kind, kind.lower()))
        con.execute("INSERT INTO api_provider(group_name, version, kind, channel_entry_id) VALUES "
                    "('etcd.database.coreos.com', 'v1alpha1', ?, ?)", (kind, entry))
    step(con, 6)
    found = con.execute(
        "SELECT DISTINCT ce.package_name, ce.channel_name, ce.operatorbundle_name, r.operatorbundle_name "
        "FROM channel_entry ce JOIN api_provider ap ON ce.operatorbundle_name = ap.operatorbundle_name "
        "LEFT OUTER JOIN channel_entry r ON ce.replaces = r.entry_id "
        "WHERE ap.group_name = ? AND ap.version = ? AND ap.kind = ?",
        ("etcd.database.coreos.com", "v1alpha1", "EtcdRestores")).fetchall()
    assert found == [("etcd", "alpha", "etcdoperator.v0.6.1", None)]
