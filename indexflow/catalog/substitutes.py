"""`olm.substitutesFor` (opm --enable-alpha): a rebuilt bundle takes the place of the one it substitutes.

opm rewires `replaces`/`skips`/`substitutesfor` of the stored bundles as it inserts each bundle
(AddOperatorBundle), seeing only the bundles inserted before it; the graph is then built from those
columns as usual. The rules, per inserted bundle B that substitutes for S:
- every bundle that replaced S now replaces B;
- several substitutes of one bundle are chained by version (build metadata counts): each older one
  substitutes for the next newer one, and the newer one skips the older one and its skips;
- B skips everything down its substitution chain; bundles that substitute for B (added earlier)
  inherit B's skips; skipping a substituted bundle also skips its substitutes;
- a bundle that replaces a substituted bundle replaces its newest substitute instead.
Done here on the in-memory DbState, with a reverse index, then written back once.
"""

from __future__ import annotations

import sqlite3

from indexflow.catalog.bundle import Bundle
from indexflow.catalog.graph import DbState
from indexflow.catalog.semver_go import SemverError, Version, compare_with_build
from indexflow.errors import CatalogError


class _Early(Exception):
    """opm's `if err != nil || len(subs) > 1 { return err }`: stop this bundle's rewiring, no error."""


class _Substitutions:
    """The bundles opm can see while adding one (the db so far), with a reverse substitutesfor index."""

    def __init__(self, state: DbState, present: list[str]) -> None:
        self.meta = state.bundles
        self.present: dict[str, None] = dict.fromkeys(present)
        self.by_target: dict[str, list[str]] = {}
        for name in present:
            self._index(name)
        self.changed: set[str] = set()

    def _index(self, name: str) -> None:
        target = self.meta[name].substitutesfor
        if target:
            self.by_target.setdefault(target, []).append(name)

    def insert(self, name: str) -> None:
        self.present[name] = None
        self._index(name)

    def substitutes_of(self, name: str) -> list[str]:
        """getBundlesThatSubstitutesFor: present bundles whose substitutesfor is `name`, in insertion order."""
        return [n for n in self.by_target.get(name, []) if n in self.present]

    def substitution(self, name: str) -> str:
        return self.meta[name].substitutesfor if name in self.present else ""

    def set_substitution(self, name: str, target: str) -> None:
        old = self.meta[name].substitutesfor
        if old and name in self.by_target.get(old, []):
            self.by_target[old].remove(name)
        self.meta[name].substitutesfor = target
        self._index(name)
        self.changed.add(name)

    def append_skips(self, name: str, skips: list[str]) -> None:
        """opm's appendSkips: new names after the current ones (checked against the current ones only)."""
        current = self.meta[name].skips
        known = set(current)
        current.extend(s for s in skips if s not in known)
        self.changed.add(name)

    def version(self, name: str, text: str) -> Version:
        try:
            return Version.parse(text)
        except SemverError as exc:
            raise CatalogError(f"failed to add substitutes : {exc}") from None


def _mark(seen: set[str], name: str) -> None:
    if name in seen:
        raise CatalogError(f'failed to add substitutes : cyclic substitutesFor chain detected involving "{name}"')
    seen.add(name)


def _single(subs: list[str]) -> list[str]:
    if len(subs) > 1:
        raise _Early
    return subs


def _order_substitutes(db: _Substitutions, b: Bundle, skips: list[str]) -> None:
    """Chain B with the other substitutes of the same bundle, newest last."""
    for name in db.present:  # (opm's UPDATE ... WHERE replaces = S; B itself included)
        if db.meta[name].replaces == b.substitutesfor:
            db.meta[name].replaces = b.name
            db.changed.add(name)
    others, seen = db.substitutes_of(b.substitutesfor), {b.name}
    while others:
        other, others = others[0], others[1:]
        if other == b.name:
            continue
        _mark(seen, other)
        cmp = compare_with_build(db.version(other, db.meta[other].version), db.version(b.name, b.version))
        if cmp < 0:
            db.set_substitution(b.name, other)
            others += db.substitutes_of(other)
        elif cmp > 0:
            db.set_substitution(other, b.name)
            db.append_skips(other, skips + [b.name])
            if len(db.substitutes_of(b.name)) > 1:
                raise CatalogError(f"failed to add substitutes : programmer error: more than one substitution "
                                   f"pointing to {b.name}")
        else:
            raise CatalogError("failed to add substitutes : cannot determine latest substitution because of "
                               "duplicate versions")


def _add_one(db: _Substitutions, b: Bundle) -> None:
    """opm's addSubstitutesFor for one inserted bundle."""
    skips = list(b.skips)
    if b.substitutesfor:
        _order_substitutes(db, b, skips)
    target, seen = db.substitution(b.name), {b.name}
    while target:  # B skips its whole substitution chain
        _mark(seen, target)
        skips.append(target)
        target = db.substitution(target)
    subs, seen = _single(db.substitutes_of(b.name)), {b.name}
    while subs:  # substitutes added before B inherit B's skips
        _mark(seen, subs[0])
        db.append_skips(subs[0], skips + [b.name])
        subs = _single(db.substitutes_of(subs[0]))
    skips = _with_substitutes_of_skips(db, b.name, skips)
    replaces = b.replaces
    subs, seen = db.substitutes_of(replaces) if replaces else [], {replaces}
    while subs:  # replacing a substituted bundle means replacing its newest substitute
        replaces = subs[0]
        _mark(seen, replaces)
        subs = _single(db.substitutes_of(replaces))
    meta = db.meta[b.name]
    if (meta.replaces, meta.skips) != (replaces, skips):
        meta.replaces, meta.skips = replaces, skips
        db.changed.add(b.name)


def _with_substitutes_of_skips(db: _Substitutions, name: str, skips: list[str]) -> list[str]:
    """Skipping a substituted bundle also skips its substitutes (but never the bundle itself)."""
    if not skips:
        return skips
    out: dict[str, None] = {}
    for skip in skips:
        out[skip] = None
        subs, seen = _single(db.substitutes_of(skip)), {skip}
        while subs:
            sub, subs = subs[0], subs[1:]
            if sub != name:
                _mark(seen, sub)
                out[sub] = None
                subs = _single(db.substitutes_of(sub))
    return list(out)


def apply_substitutions(con: sqlite3.Connection, state: DbState, bundles: list[Bundle]) -> None:
    """Run opm's per-bundle substitution rewiring for `bundles` in order; write what changed."""
    new = {b.name for b in bundles}
    db = _Substitutions(state, [n for n in state.bundles if n not in new])
    for b in bundles:
        db.insert(b.name)
        try:
            _add_one(db, b)
        except _Early:
            pass
    con.executemany("UPDATE operatorbundle SET replaces = ?, skips = ?, substitutesfor = ? WHERE name = ?",
                    [(state.bundles[n].replaces, ",".join(state.bundles[n].skips), state.bundles[n].substitutesfor,
                      n) for n in sorted(db.changed)])
