"""`opm registry deprecatetruncate`: deprecate bundles and cut the upgrade graph below them.

Works on an in-memory copy of channel_entry and issues set-based deletes. opm's api cleanup
triggers do a cross join per deleted row (most of opm's 71 s); they are dropped for the
duration of the transaction, their effect is applied once at the end, and they are restored.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from dataclasses import dataclass
from collections.abc import Collection
from pathlib import Path

from indexflow.catalog.db import TRIGGERS, connect, require_current, write_transaction
from indexflow.catalog.graph import aggregate, scratch_indexes
from indexflow.errors import CatalogError

DEFAULT_HEAD_ERROR = "Bundle deprecation causing default channel removal"


class DefaultChannelRemoval(CatalogError):
    """opm's sentinel `ErrRemovingDefaultChannelDuringDeprecation`: the truncation would take the head
    of the package's default channel. opm keeps going with the next bundle after it (`errors.Is`)."""

    def __init__(self) -> None:
        super().__init__(DEFAULT_HEAD_ERROR)


class DefaultHeadRemoval(CatalogError):
    """--allow-package-removal met a default-channel head without every other channel head listed."""

    def __init__(self, package: str, channel: str, must: str) -> None:
        super().__init__("cannot deprecate default channel head from package without removing all other channel "
                         f"heads in package {package}: must deprecate {must}, head of channel {channel}")
        self.package = package

# opm's schema has no index on the columns cascades and truncation search by; these live only
# inside the transaction (dropped before COMMIT) so the stored schema stays opm's.
_SCRATCH_INDEXES = {
    "ix_ce_replaces": "channel_entry(replaces)", "ix_ce_name": "channel_entry(operatorbundle_name)",
    "ix_ch_head": "channel(head_operatorbundle_name)", "ix_prop_name": "properties(operatorbundle_name)",
    "ix_dep_name": "dependencies(operatorbundle_name)", "ix_ri_name": "related_image(operatorbundle_name)",
    "ix_ap_name": "api_provider(operatorbundle_name)", "ix_ar_name": "api_requirer(operatorbundle_name)",
    "ix_ob_path": "operatorbundle(bundlepath)",
}


@dataclass
class _Row:
    entry_id: int
    channel: str
    package: str
    bundle: str
    replaces: int | None


class _Graph:
    """channel_entry rows around one bundle, read on demand through the scratch indexes.

    One deprecation only looks at its own tail, so reading the whole table per image (as a
    200-image chunk on a 7,000-bundle db would) is wasted work. Build one per deprecation,
    before changing anything: it caches what it has read.
    """

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con
        self.rows: dict[int, _Row | None] = {}
        self.by_name: dict[str, list[int]] = {}

    def row(self, entry_id: int) -> _Row | None:
        if entry_id not in self.rows:
            found = self.con.execute("SELECT entry_id, channel_name, package_name, operatorbundle_name, replaces "
                                     "FROM channel_entry WHERE entry_id = ?", (entry_id,)).fetchone()
            self.rows[entry_id] = _Row(*found) if found else None
        return self.rows[entry_id]

    def ids(self, name: str) -> list[int]:
        if name not in self.by_name:
            found = self.con.execute("SELECT entry_id, channel_name, package_name, operatorbundle_name, replaces "
                                     "FROM channel_entry WHERE operatorbundle_name = ?", (name,)).fetchall()
            for values in found:
                self.rows[values[0]] = _Row(*values)
            self.by_name[name] = [values[0] for values in found]
        return self.by_name[name]

    def channels(self, name: str) -> set[str]:
        return {self.rows[i].channel for i in self.ids(name)}

    def replaced(self, name: str) -> set[str]:
        targets = (self.row(self.rows[i].replaces) for i in self.ids(name) if self.rows[i].replaces is not None)
        return {t.bundle for t in targets if t is not None}

    def replacers(self, name: str) -> set[str]:
        """Names of the entries whose replaces points at one of `name`'s entries."""
        return {n for (n,) in self.con.execute(
            "SELECT DISTINCT ce.operatorbundle_name FROM channel_entry t JOIN channel_entry ce "
            "ON ce.replaces = t.entry_id WHERE t.operatorbundle_name = ?", (name,))}


def deprecate_truncate(db_path: Path | str, refs: list[str], allow_package_removal: bool = False,
                       remove_package_of: Collection[str] = ()) -> list[str]:
    """Deprecate the bundles whose bundlepath is in `refs`, in one transaction, then VACUUM.

    `remove_package_of` (a subset of `refs`, with `allow_package_removal`) is a policy opm does not
    have: when one of these heads its package's default channel, every other channel head of the
    package is deprecated with it, i.e. the package is removed instead of failing. Returns the
    packages removed that way.
    """
    require_current(db_path)
    widened: list[str] = []
    with write_transaction(db_path) as con:
        for name in TRIGGERS:
            con.execute(f"DROP TRIGGER IF EXISTS {name}_cleanup")
        with scratch_indexes(con, _SCRATCH_INDEXES):
            touched = _deprecate(con, refs, allow_package_removal, set(remove_package_of), widened)
            _api_cleanup(con, touched)
        for ddl in TRIGGERS.values():
            con.execute(ddl)
    con = connect(db_path)
    try:
        con.execute("VACUUM")  # opm compacts after deprecating
    finally:
        con.close()
    return widened


def _deprecate(con: sqlite3.Connection, refs: list[str], allow_removal: bool, widen: set[str],
               widened: list[str]) -> set[tuple]:
    listed = dict(con.execute(
        "SELECT DISTINCT ob.bundlepath, ob.name FROM operatorbundle ob JOIN channel_entry ce "
        "ON ce.operatorbundle_name = ob.name WHERE ob.version IS NOT NULL AND ob.bundlepath IS NOT NULL "
        "AND ce.channel_name IS NOT NULL").fetchall())
    if not listed:  # opm: an index without bundles reports every path missing, without an error
        return set()
    missing = [r for r in refs if r not in listed]
    if missing:
        raise CatalogError(f"target bundlepaths for deprecation missing from registry: [{' '.join(missing)}]")
    touched: set[tuple] = set()
    if allow_removal:
        refs = _remove_whole_packages(con, refs, listed, touched, widen, widened)
    errors: list[str] = []
    cleaned = False
    for ref in refs:
        row = con.execute("SELECT name FROM operatorbundle WHERE bundlepath = ? LIMIT 1", (ref,)).fetchone()
        if row is None:  # opm ignores an image that an earlier one of this call truncated away
            continue
        try:
            _deprecate_one(con, row[0], ref, touched)
            # only removing packages strands bundles, and no deprecation removes one: the scan of
            # every olm.package property is needed once per call, not once per image
            _strand_cleanup(con, touched, scan_packages=not cleaned)
            cleaned = True
        except DefaultChannelRemoval as exc:  # opm: errors.Is(err, ErrRemovingDefaultChannel...) -> next bundle
            errors.append(f"error deprecating bundle {ref}: {exc}")
        except CatalogError as exc:
            errors.append(f"error deprecating bundle {ref}: {exc}")
            break
    if errors:
        raise CatalogError(aggregate(errors))
    return touched


def _heads(con: sqlite3.Connection, pkg: str) -> dict[str, str]:
    return dict(con.execute("SELECT name, head_operatorbundle_name FROM channel WHERE package_name = ?", (pkg,)))


def _package_of(con: sqlite3.Connection, name: str) -> str | None:
    row = con.execute("SELECT package_name FROM channel_entry WHERE operatorbundle_name = ? LIMIT 1",
                      (name,)).fetchone()
    return row[0] if row else None


def _remove_whole_packages(con: sqlite3.Connection, refs: list[str], listed: dict[str, str],
                           touched: set[tuple], widen: set[str], widened: list[str]) -> list[str]:
    """Packages whose default head is requested go entirely, if every channel head is requested
    (or the head is in `widen`: then the package goes whatever the other heads are)."""
    wanted = set(refs)
    paths = {name: path for path, name in listed.items()}
    removed: set[str] = set()
    for ref in refs:
        pkg = _package_of(con, listed[ref])
        if pkg is None or pkg in removed:
            continue
        default = con.execute("SELECT default_channel FROM package WHERE name = ?", (pkg,)).fetchone()
        heads = _heads(con, pkg)
        if not default or heads.get(default[0]) != listed[ref]:
            continue
        unlisted = [(ch, head) for ch, head in sorted(heads.items()) if paths.get(head) not in wanted]
        if unlisted and ref not in widen:
            ch, head = unlisted[0]
            raise DefaultHeadRemoval(pkg, ch, paths.get(head, head))
        if unlisted:
            widened.append(pkg)
        removed.add(pkg)
    for pkg in sorted(removed):
        _remove_package(con, pkg, touched)
    if removed:  # opm's RemovePackage ends with RemoveStrandedBundles: deprecated heads of gone packages too
        _strand_cleanup(con, touched)
    left = {n for (n,) in con.execute("SELECT name FROM operatorbundle")}
    return [r for r in refs if listed[r] in left]


def _delete_bundles(con: sqlite3.Connection, names: list[str], touched: set[tuple]) -> None:
    """Remove bundles with their api links (by name) and every channel entry of theirs."""
    params = [(n,) for n in names]
    for table in ("api_provider", "api_requirer"):
        touched.update(_gvks(con, table, names))
        con.executemany(f"DELETE FROM {table} WHERE operatorbundle_name = ?", params)
    con.executemany("UPDATE channel_entry SET replaces = NULL WHERE replaces IN "
                    "(SELECT entry_id FROM channel_entry WHERE operatorbundle_name = ?)", params)
    con.executemany("DELETE FROM channel_entry WHERE operatorbundle_name = ?", params)
    con.executemany("DELETE FROM operatorbundle WHERE name = ?", params)


def _gvks(con: sqlite3.Connection, table: str, names: list[str]) -> set[tuple]:
    out: set[tuple] = set()
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        out.update(con.execute(f"SELECT group_name, version, kind FROM {table} WHERE operatorbundle_name IN "
                               f"({','.join('?' * len(chunk))})", chunk).fetchall())
    return out


def _remove_package(con: sqlite3.Connection, pkg: str, touched: set[tuple]) -> None:
    """`opm registry rm` of one package: its bundles, channels, deprecations; then stranded bundles."""
    names = sorted({n for (n,) in con.execute(
        "SELECT DISTINCT operatorbundle_name FROM channel_entry WHERE package_name = ?", (pkg,))})
    params = [(n,) for n in names]
    con.executemany("DELETE FROM deprecated WHERE operatorbundle_name = ?", params)
    for table in ("properties", "dependencies", "related_image"):
        con.executemany(f"DELETE FROM {table} WHERE operatorbundle_name = ?", params)
    _delete_bundles(con, names, touched)
    con.execute("DELETE FROM channel_entry WHERE package_name = ?", (pkg,))
    con.execute("DELETE FROM channel WHERE package_name = ?", (pkg,))
    con.execute("DELETE FROM package WHERE name = ?", (pkg,))
    stranded = [n for (n,) in con.execute(
        "SELECT name FROM operatorbundle WHERE name NOT IN (SELECT operatorbundle_name FROM channel_entry) "
        "AND name NOT IN (SELECT operatorbundle_name FROM deprecated)")]
    _delete_bundles(con, stranded, touched)


def _tail(graph: _Graph, start: str) -> dict[str, set[str]]:
    """D and everything reachable through replaces links, name -> names it replaces."""
    tail: dict[str, set[str]] = {}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        if name in tail:
            continue
        tail[name] = graph.replaced(name)
        queue.extend(tail[name])
    return tail


def _deprecate_one(con: sqlite3.Connection, name: str, ref: str, touched: set[tuple]) -> None:
    """opm's DeprecateBundle for one bundle (spec §3.2)."""
    graph = _Graph(con)
    pkg = _package_of(con, name)
    default = con.execute("SELECT default_channel FROM package WHERE name = ?", (pkg,)).fetchone()
    head = _heads(con, pkg).get(default[0]) if default else None
    tail = _tail(graph, name)
    if head in tail:
        raise DefaultChannelRemoval()
    d_channels = graph.channels(name)
    others = [n for n in tail if n != name]
    plan = [(b, [i for i in graph.ids(b) if graph.rows[i].channel in d_channels],
             graph.channels(b) <= d_channels and graph.replacers(b) <= tail.keys()) for b in others]
    doomed = []
    for b, ids, gone in plan:
        con.executemany("UPDATE channel_entry SET replaces = NULL WHERE replaces = ?", [(i,) for i in ids])
        con.executemany("DELETE FROM channel_entry WHERE entry_id = ?", [(i,) for i in ids])
        if gone:
            doomed.append(b)
    _delete_bundles(con, doomed, touched)
    con.execute("UPDATE channel_entry SET replaces = NULL WHERE operatorbundle_name = ?", (name,))
    con.execute("DELETE FROM channel WHERE head_operatorbundle_name = ?", (name,))
    version = con.execute("SELECT version FROM operatorbundle WHERE name = ?", (name,)).fetchone()[0]
    con.execute("INSERT INTO properties VALUES ('olm.deprecated', '{}', ?, ?, ?)", (name, version or None, ref))
    con.execute("INSERT OR REPLACE INTO deprecated(operatorbundle_name) VALUES (?)", (name,))


def _strand_cleanup(con: sqlite3.Connection, touched: set[tuple], scan_packages: bool = True) -> None:
    """Drop bundles whose package no longer exists, and deprecations of vanished bundles."""
    if scan_packages:
        _drop_packageless(con, touched)
    con.execute("DELETE FROM deprecated WHERE operatorbundle_name NOT IN (SELECT name FROM operatorbundle)")


def _drop_packageless(con: sqlite3.Connection, touched: set[tuple]) -> None:
    gone = [n for (n,) in con.execute(
        "SELECT DISTINCT operatorbundle_name FROM properties WHERE type = 'olm.package' AND "
        "json_extract(value, '$.packageName') NOT IN (SELECT name FROM package)")]
    for table in ("api_provider", "api_requirer"):  # what the FK cascade would remove
        for i in range(0, len(gone), 500):
            chunk = gone[i:i + 500]
            where = (f"FROM {table} t JOIN operatorbundle ob ON ob.name = t.operatorbundle_name AND "
                     f"ob.version = t.operatorbundle_version AND ob.bundlepath = t.operatorbundle_path "
                     f"WHERE ob.name IN ({','.join('?' * len(chunk))})")
            touched.update(con.execute(f"SELECT t.group_name, t.version, t.kind {where}", chunk).fetchall())
    con.executemany("DELETE FROM operatorbundle WHERE name = ?", [(n,) for n in gone])


def _api_cleanup(con: sqlite3.Connection, touched: set[tuple]) -> None:
    """The cleanup triggers' effect, evaluated once on the final state.

    A gvk survives when a (provider, requirer) pair still mentions it — including opm's quirk that
    an empty api_requirer table makes every touched gvk go.
    """
    if not touched:
        return
    providers = {tuple(r) for r in con.execute("SELECT DISTINCT group_name, version, kind FROM api_provider")}
    requirers = {tuple(r) for r in con.execute("SELECT DISTINCT group_name, version, kind FROM api_requirer")}
    has_p = con.execute("SELECT EXISTS(SELECT 1 FROM api_provider)").fetchone()[0]
    has_r = con.execute("SELECT EXISTS(SELECT 1 FROM api_requirer)").fetchone()[0]
    dead = [g for g in touched if not ((g in providers and has_r) or (g in requirers and has_p))]
    con.executemany("DELETE FROM api WHERE group_name = ? AND version = ? AND kind = ?", dead)
