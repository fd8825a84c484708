"""`olm.substitutesFor` (opm --enable-alpha): a rebuilt bundle takes the place of the one it substitutes.

Rewrites `replaces`/`skips`/`substitutesfor` of the stored bundles so that the normal graph walk
sees the substitute: whoever replaced the original now replaces the newest substitute, and the
substitute skips the original (and every older substitute of it).
"""

from __future__ import annotations

import sqlite3

from indexflow.catalog.bundle import Bundle
from indexflow.catalog.graph import DbState
from indexflow.catalog.semver_go import SemverError, Version, compare_with_build
from indexflow.errors import CatalogError


def _check_cycles(state: DbState, start: str) -> None:
    seen, cur = set(), start
    while cur and cur in state.bundles:
        if cur in seen:
            raise CatalogError(f'cyclic substitutesFor chain detected involving "{cur}"')
        seen.add(cur)
        cur = state.bundles[cur].substitutesfor


def _version(state: DbState, name: str) -> Version:
    try:
        return Version.parse(state.bundles[name].version)
    except SemverError as exc:
        raise CatalogError(f"error parsing bundle {name} version {state.bundles[name].version}: {exc}") from exc


def _newest(state: DbState, names: list[str]) -> str:
    best = names[0]
    for name in names[1:]:
        cmp = compare_with_build(_version(state, name), _version(state, best))
        if cmp == 0:
            raise CatalogError("cannot determine latest substitution because of duplicate versions")
        if cmp > 0:
            best = name
    return best


def apply_substitutions(con: sqlite3.Connection, state: DbState, bundles: list[Bundle]) -> None:
    """Rewire the graph around every original that a bundle of this call substitutes for."""
    changed: set[str] = set()
    for original in dict.fromkeys(b.substitutesfor for b in bundles if b.substitutesfor):
        subs = [n for n, m in state.bundles.items() if m.substitutesfor == original]
        for name in subs:
            _check_cycles(state, name)
        newest = _newest(state, subs)
        older = [n for n in subs if n != newest]
        for name in older:
            state.bundles[name].substitutesfor = newest
        targets = {original, *older}
        for name, meta in state.bundles.items():
            if name != newest and name not in older and meta.replaces in targets:
                meta.replaces = newest
                changed.add(name)
        head = state.bundles[newest]
        head.skips += [t for t in [original, *older] if t not in head.skips]
        changed.update([newest, *older])
    for b in (b for b in bundles if b.replaces):  # replacing a substituted bundle -> newest substitute
        subs = [n for n, m in state.bundles.items() if m.substitutesfor == b.replaces and n != b.name]
        if subs and state.bundles[b.name].replaces == b.replaces:
            state.bundles[b.name].replaces = _newest(state, subs)
            changed.add(b.name)
    con.executemany("UPDATE operatorbundle SET replaces = ?, skips = ?, substitutesfor = ? WHERE name = ?",
                    [(state.bundles[n].replaces, ",".join(state.bundles[n].skips), state.bundles[n].substitutesfor, n)
                     for n in sorted(changed)])
