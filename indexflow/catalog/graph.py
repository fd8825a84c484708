"""In-memory view of the parts of an index.db that `add` and `deprecatetruncate` reason about.

opm answers every graph question with per-row SQL; loading the few cheap columns once and
working on dicts is what makes a 7,000-bundle db fast.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

# channel_entry.replaces is a deferred self-FK with no index: every entry inserted or deleted makes
# sqlite scan the table for rows pointing at it (adding 673 bundles to a 6,343-bundle db: 18 s of 22).
GRAPH_INDEXES = {"ix_scratch_ce_replaces": "channel_entry(replaces)",
                 "ix_scratch_ce_package": "channel_entry(package_name)"}


@contextmanager
def scratch_indexes(con: sqlite3.Connection, indexes: Mapping[str, str]) -> Iterator[None]:
    """Indexes that live only inside the caller's transaction: created now, dropped before COMMIT,
    so the stored schema stays opm's (a rollback drops them too)."""
    for name, target in indexes.items():
        con.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")
    yield
    for name in indexes:
        con.execute(f"DROP INDEX IF EXISTS {name}")


@dataclass
class BundleMeta:
    """The operatorbundle columns the graph code needs (no blobs)."""

    version: str
    replaces: str
    skips: list[str]
    bundlepath: str | None
    substitutesfor: str = ""


@dataclass
class Entry:
    """One channel_entry row; `replaces` is the index of another Entry in the same list, or None."""

    channel: str
    package: str
    bundle: str
    replaces: int | None
    depth: int


@dataclass
class DbState:
    """Bundles, entries per package, package defaults and deprecated names of one db."""

    bundles: dict[str, BundleMeta]
    entries: dict[str, list[Entry]]
    defaults: dict[str, str | None]
    deprecated: set[str]
    entry_packages: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, con: sqlite3.Connection) -> "DbState":
        bundles = {n: BundleMeta(v or "", r or "", [s for s in (sk or "").split(",") if s], p, sf or "")
                   for n, v, r, sk, p, sf in con.execute(
                       "SELECT name, version, replaces, skips, bundlepath, substitutesfor FROM operatorbundle")}
        raw = con.execute("SELECT entry_id, channel_name, package_name, operatorbundle_name, replaces, depth "
                          "FROM channel_entry ORDER BY entry_id").fetchall()
        entries: dict[str, list[Entry]] = defaultdict(list)
        where: dict[int, tuple[str, int]] = {}
        for eid, ch, pkg, name, _, depth in raw:
            where[eid] = (pkg, len(entries[pkg]))
            entries[pkg].append(Entry(ch, pkg, name, None, depth))
        for eid, _, pkg, _, rep, _ in raw:
            if rep is not None and rep in where and where[rep][0] == pkg:
                entries[pkg][where[eid][1]].replaces = where[rep][1]
        entry_packages: dict[str, set[str]] = defaultdict(set)
        for pkg, rows in entries.items():
            for e in rows:
                entry_packages[e.bundle].add(pkg)
        return cls(
            bundles=bundles, entries=dict(entries),
            defaults=dict(con.execute("SELECT name, default_channel FROM package").fetchall()),
            deprecated={n for (n,) in con.execute("SELECT operatorbundle_name FROM deprecated")},
            entry_packages=dict(entry_packages))

    def package_bundles(self, pkg: str) -> dict[str, list[str]]:
        """Existing bundles of a package -> channels they have entries in (entry order)."""
        out: dict[str, list[str]] = {}
        for e in self.entries.get(pkg, []):
            if e.bundle in self.bundles:
                chans = out.setdefault(e.bundle, [])
                if e.channel not in chans:
                    chans.append(e.channel)
        return out

    def channel_edges(self, pkg: str) -> dict[str, dict[str, set[str]]]:
        """channel -> real bundle -> names its entries point at (the sqlite graph loader's view)."""
        rows = self.entries.get(pkg, [])
        graph: dict[str, dict[str, set[str]]] = defaultdict(dict)
        for e in rows:
            if e.bundle in self.bundles:
                targets = graph[e.channel].setdefault(e.bundle, set())
                if e.replaces is not None:
                    targets.add(rows[e.replaces].bundle)
        return dict(graph)


def write_entries(con: sqlite3.Connection, pkg: str, rows: list[Entry]) -> None:
    """Replace a package's channel_entry rows by `rows` (ids allocated after the current maximum)."""
    con.execute("DELETE FROM channel_entry WHERE package_name = ?", (pkg,))
    base = (con.execute("SELECT max(entry_id) FROM channel_entry").fetchone()[0] or 0) + 1
    con.executemany(
        "INSERT INTO channel_entry(entry_id, channel_name, package_name, operatorbundle_name, replaces, depth) "
        "VALUES (?,?,?,?,?,?)",
        [(base + i, e.channel, e.package, e.bundle, None if e.replaces is None else base + e.replaces, e.depth)
         for i, e in enumerate(rows)])


def aggregate(errors: list[str]) -> str:
    """k8s utilerrors.NewAggregate text: the message alone, or `[e1, e2]`."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"
