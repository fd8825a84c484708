"""opm's sqlite schema migrations 6..13, applied to a copy of an old index.db.

A table of (opm migration id, step), one function per opm migration, so each can be run and
tested from the version before it. Only the steps a schema-5+ db needs are implemented
(production dbs are at 13; operator-registry's own fixture is at 5). All steps run in one
transaction, like opm.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from typing import Callable

from indexflow.catalog.db import SCHEMA, TRIGGERS
from indexflow.catalog.gojson import go_json


def _ddl(prefix: str) -> str:
    return next(s for s in SCHEMA if s.startswith(prefix))


def _m6_apis_by_bundle(con: sqlite3.Connection) -> None:
    """api_provider/api_requirer rows move from channel_entry ids to (bundle, version, path)."""
    for table in ("api_provider", "api_requirer"):
        rows = con.execute(
            f"SELECT DISTINCT t.group_name, t.version, t.kind, ob.name, ob.version, ob.bundlepath "
            f"FROM {table} t JOIN channel_entry ce ON ce.entry_id = t.channel_entry_id "
            f"JOIN operatorbundle ob ON ob.name = ce.operatorbundle_name").fetchall()
        con.execute(f"DROP TABLE {table}")
        con.execute(_ddl(f'CREATE TABLE IF NOT EXISTS "{table}"'))
        con.executemany(f"INSERT INTO {table} VALUES (?,?,?,?,?,?)", rows)
    con.execute(_ddl("CREATE UNIQUE INDEX pk"))


def _m7_replaces_skips(con: sqlite3.Connection) -> None:
    """replaces = what the bundle's shallowest entry points at, skips = the other targets."""
    con.execute("ALTER TABLE operatorbundle ADD COLUMN replaces TEXT")
    con.execute("ALTER TABLE operatorbundle ADD COLUMN skips TEXT")
    targets: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for name, depth, target in con.execute(
            "SELECT ce.operatorbundle_name, ce.depth, r.operatorbundle_name FROM channel_entry ce "
            "LEFT JOIN channel_entry r ON r.entry_id = ce.replaces"):
        targets[name].append((depth, target))
    updates = []
    for name, found in targets.items():
        ordered = list(dict.fromkeys(t for _, t in sorted(found, key=lambda x: x[0])))
        replaces = ordered[0] or ""
        skips = [t for t in ordered[1:] if t]
        updates.append((replaces, ",".join(skips), name))
    con.executemany("UPDATE operatorbundle SET replaces = ?, skips = ? WHERE name = ?", updates)
    for ddl in TRIGGERS.values():
        con.execute(ddl)


def _m8_dependencies(con: sqlite3.Connection) -> None:
    """008: a dependencies table; every required API becomes an olm.gvk dependency (its value names its type)."""
    con.execute(_ddl("CREATE TABLE dependencies"))
    rows = con.execute("SELECT DISTINCT group_name, version, kind, operatorbundle_name, operatorbundle_version, "
                       "operatorbundle_path FROM api_requirer").fetchall()
    con.executemany("INSERT INTO dependencies SELECT 'olm.gvk', ?, ?, ?, ?", [
        (go_json({"group": g, "kind": k, "type": "olm.gvk", "version": v}), n, bv, bp) for g, v, k, n, bv, bp in rows])


def _m9_properties(con: sqlite3.Connection) -> None:
    """009: a properties table; each bundle providing APIs gets its olm.package, then its olm.gvk
    properties; dependency values lose their "type" key — through opm's own UPDATE, whose subquery
    matches every row, so every dependency takes the first one's value (kept: it is what opm writes).
    Bundles providing no API also get their olm.package here (opm leaves them without one)."""
    con.execute(_ddl("CREATE TABLE properties"))
    provided: dict[tuple, list[tuple[str, str, str]]] = {}
    for g, v, k, n, bv, bp in con.execute("SELECT group_name, version, kind, operatorbundle_name, "
                                          "operatorbundle_version, operatorbundle_path FROM api_provider"):
        if None not in (g, v, k, n):
            gvks = provided.setdefault((n, bv, bp), [])
            if (g, v, k) not in gvks:
                gvks.append((g, v, k))
    packages = dict(con.execute("SELECT operatorbundle_name, min(package_name) FROM channel_entry "
                                "GROUP BY operatorbundle_name").fetchall())
    rows = []
    for (n, bv, bp), gvks in provided.items():
        rows.append(("olm.package", go_json({"packageName": packages.get(n, ""), "version": bv or ""}), n, bv, bp))
        rows += [("olm.gvk", go_json({"group": g, "kind": k, "version": v}), n, bv, bp) for g, v, k in gvks]
    named = {n for n, _, _ in provided}
    rows += [("olm.package", go_json({"packageName": p, "version": v or ""}, sort_keys=False), n, v, bp)
             for p, n, v, bp in con.execute(
                 "SELECT DISTINCT ce.package_name, ob.name, ob.version, ob.bundlepath FROM channel_entry ce "
                 "JOIN operatorbundle ob ON ob.name = ce.operatorbundle_name") if n not in named]
    con.executemany("INSERT INTO properties VALUES (?,?,?,?,?)", rows)
    con.execute("UPDATE dependencies SET value = (SELECT json_remove(value, '$.type') FROM dependencies "
                "WHERE operatorbundle_name = dependencies.operatorbundle_name)")


def _m10_bundlepath_in_properties(con: sqlite3.Connection) -> None:
    """010: properties carry their bundle's path."""
    con.execute("UPDATE properties SET operatorbundle_path = (SELECT bundlepath FROM operatorbundle "
                "WHERE operatorbundle.name = properties.operatorbundle_name)")


def _m11_substitutes_for(con: sqlite3.Connection) -> None:
    """011: the substitutesfor column (opm's alpha olm.substitutesFor)."""
    con.execute("ALTER TABLE operatorbundle ADD COLUMN substitutesfor TEXT")


def _m12_deprecated(con: sqlite3.Connection) -> None:
    """012: a deprecated table, filled with every bundle that has an olm.deprecated property (once)."""
    con.execute(_ddl("CREATE TABLE deprecated"))
    con.execute("INSERT OR IGNORE INTO deprecated SELECT DISTINCT operatorbundle_name FROM properties "
                "WHERE type = 'olm.deprecated'")


def _m13_rm_truncated_deprecations(con: sqlite3.Connection) -> None:
    """013: deprecations of bundles that are gone (truncated) are dropped."""
    con.execute("DELETE FROM deprecated WHERE operatorbundle_name NOT IN (SELECT name FROM operatorbundle)")


# opm's migration ids and what each does; a db at version N runs every step after N, in order
MIGRATIONS: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [
    (6, _m6_apis_by_bundle), (7, _m7_replaces_skips), (8, _m8_dependencies), (9, _m9_properties),
    (10, _m10_bundlepath_in_properties), (11, _m11_substitutes_for), (12, _m12_deprecated),
    (13, _m13_rm_truncated_deprecations),
]
LATEST = MIGRATIONS[-1][0]


def upgrade(con: sqlite3.Connection, version: int, target: int = LATEST) -> None:
    """Run migrations version+1 .. target in one transaction (as opm does) and record target."""
    con.execute("PRAGMA foreign_keys = OFF")  # tables are rebuilt; FKs are re-checked by opm's cascades later
    con.execute("BEGIN")
    try:
        for number, step in MIGRATIONS:
            if version < number <= target:
                step(con)
        con.execute("DELETE FROM schema_migrations")
        con.execute("INSERT INTO schema_migrations(version) VALUES (?)", (target,))
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        con.execute("PRAGMA foreign_keys = ON")
