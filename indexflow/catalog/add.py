"""`opm registry add` in one transaction: sanity checks, bundle rows, graph rebuild, prune check.

Unlike opm (which commits bundle rows before building the graph and leaves them stranded when
the graph step fails), a failed call leaves the db exactly as it was.
"""

from __future__ import annotations

import functools
import os
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable

from indexflow.catalog.addchecks import bundle_errors
from indexflow.catalog.bundle import Bundle, BundleFiles, ManifestMemo, load_bundle_dir, load_bundle_files
from indexflow.catalog.db import create_db, require_current, write_transaction
from indexflow.catalog.fbcmodel import check_range
from indexflow.catalog.graph import (GRAPH_INDEXES, BundleMeta, DbState, Entry, aggregate, scratch_indexes,
                                     write_entries)
from indexflow.catalog.image import holding, image_files
from indexflow.catalog.limits import excerpt
from indexflow.catalog.modes import MODES
from indexflow.catalog.semver_go import SemverError, Version, compare_with_build
from indexflow.catalog.validate import reference_error
from indexflow.errors import CatalogError


class SanityError(CatalogError):
    """Pre-write check failed (opm exits 2 for these)."""

    exit_code = 2


def _load_all(refs: list[str], load: Callable[[str], Bundle], concurrency: int) -> list[Bundle]:
    """`load` every ref on a thread pool; results keep the order of `refs`."""
    def one(ref: str) -> Bundle:
        try:
            return load(ref)
        except CatalogError as exc:
            raise CatalogError(f"error loading bundle {ref}: {exc}") from exc

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        return list(pool.map(one, refs))
    finally:  # on the first failure, do not fetch the hundreds of bundles still queued
        pool.shutdown(wait=True, cancel_futures=True)


def fetch_bundles(refs: list[str], fetch: Callable[[str], Path], concurrency: int = 16) -> list[Bundle]:
    """Unpack (`fetch`: ref -> bundle dir) and parse every ref concurrently, in the order of `refs`.

    Parsing holds a bundle's files in memory: the bundles parsed at once share the byte allowance
    of in-memory image reads, so a few huge bundles wait instead of piling up (count alone, 16 x
    the 256 MiB bundle cap, would not bound it)."""
    memo = ManifestMemo()

    def load(ref: str) -> Bundle:
        path = fetch(ref)
        with holding(_dir_bytes(path)):
            return load_bundle_dir(path, ref, memo)

    return _load_all(refs, load, concurrency)


def _dir_bytes(bundle_dir: Path) -> int:
    """Bytes of the regular files a bundle dir's manifests/ and metadata/ hold (links not followed)."""
    total = 0
    for folder in ("manifests", "metadata"):
        try:
            entries = list(os.scandir(Path(bundle_dir) / folder))
        except OSError:
            continue  # a missing folder is the parser's to report
        total += sum(e.stat(follow_symlinks=False).st_size for e in entries if e.is_file(follow_symlinks=False))
    return total


def fetch_bundle_images(client: Any, refs: list[str], concurrency: int = 16,
                        files: Callable[[Any, str], BundleFiles] = image_files) -> list[Bundle]:
    """Read every bundle image through the registry client, in memory, and parse it, concurrently.

    The fast way to load many bundles: no layer files, no unpacked trees (see catalog/image.py).
    `files` reads one image's files (a caching reader may stand in: catalog/bundlecache.py).
    Registry failures propagate as the client's RegistryError (retryable); bad bundles as CatalogError.
    """
    memo = ManifestMemo()
    return _load_all(refs, lambda ref: load_bundle_files(files(client, ref), ref, memo), concurrency)


def add_bundle_refs(db_path: Path | str, refs: list[str], local_dirs: dict[str, Path] | None = None,
                    mode: str = "replaces", concurrency: int = 16, enable_alpha: bool = False,
                    client: Any = None, modes: Mapping[str, str] | None = None) -> None:
    """What `indexflow db add` runs: refs in `local_dirs` load from disk, the others from their images.

    `client` is a RegistryClient to reuse; without one, a client is made for the pulled refs.
    `modes` maps package names to their own graph mode (see `add_bundles`).
    """
    local_dirs = local_dirs or {}
    pulled = [r for r in refs if r not in local_dirs]
    with ExitStack() as stack:
        if pulled and client is None:
            client = stack.enter_context(registry_client_for(pulled))

        memo = ManifestMemo()

        def load(ref: str) -> Bundle:
            if ref in local_dirs:
                return load_bundle_dir(local_dirs[ref], ref, memo)
            return load_bundle_files(image_files(client, ref), ref, memo)

        bundles = _load_all(refs, load, concurrency)
    add_bundles(db_path, bundles, mode, enable_alpha=enable_alpha, modes=modes)


def registry_client_for(refs: list[str], auth_file: Path | None = None, insecure: bool = False,
                        ca_file: Path | None = None) -> Any:
    """A RegistryClient for pulling `refs`, set up the way opm's flags set up its puller.

    Credentials come from a docker config.json (default ~/.docker/config.json, as opm reads it).
    `insecure` is opm's --use-http / --skip-tls-verify for the refs' registries (loopback ones
    always are); `ca_file` is opm's --ca-file for them.
    """
    from indexflow.registry.auth import DockerAuth
    from indexflow.registry.client import RegistryClient
    from indexflow.registry.refs import ImageRef

    hosts = {ImageRef.coerce(r).api_host for r in refs}
    loopback = {h for h in hosts if h.startswith(("127.0.0.1", "localhost", "[::1]"))}
    return RegistryClient(auth=DockerAuth.from_config(auth_file), insecure=hosts if insecure else loopback,
                          ca_files={h: ca_file for h in hosts} if ca_file else None)


def add_bundles(db_path: Path | str, bundles: list[Bundle], mode: str = "replaces",
                enable_alpha: bool = False, modes: Mapping[str, str] | None = None,
                release_order: bool = False) -> None:
    """Add parsed bundles to the db in ONE transaction (all or nothing).

    `enable_alpha` is opm's --enable-alpha: it allows `olm.substitutesFor` bundles.
    `modes` maps a package name to the graph mode its bundles are added in (a catalog whose
    pipeline builds each package in its own mode); packages not in it use `mode`. The result is
    what one `opm registry add --mode M` per mode would give, run in the order of MODES.
    `release_order` adds them as a catalog pipeline did, one release at a time: per package in
    version order, each bundle its own `opm registry add` (graph rebuild and prune check), so a
    bundle that a later release left off its channel is kept, as it was when it was the head.
    """
    for m in [mode, *(modes or {}).values()]:
        if m not in MODES:
            raise CatalogError(f"unknown add mode {m!r}, expected one of {', '.join(MODES)}")
    path = Path(db_path)
    if not path.exists() or path.stat().st_size == 0:  # like opm: a missing db is created empty
        path.unlink(missing_ok=True)
        create_db(path)
    require_current(path)
    _check_inputs(bundles, enable_alpha)
    with write_transaction(path) as con, scratch_indexes(con, GRAPH_INDEXES):
        _add(con, bundles, by_mode(bundles, mode, modes or {}), enable_alpha, release_order)


def by_mode(bundles: list[Bundle], default: str, modes: Mapping[str, str]) -> dict[str, list[Bundle]]:
    """Bundles grouped by their package's graph mode, groups in the order of MODES, bundles in input order."""
    groups: dict[str, list[Bundle]] = {m: [] for m in MODES}
    for b in bundles:
        groups[modes.get(b.package, default)].append(b)
    return {m: group for m, group in groups.items() if group}


def _add(con: sqlite3.Connection, bundles: list[Bundle], groups: dict[str, list[Bundle]], enable_alpha: bool,
         release_order: bool) -> None:
    state = DbState.load(con)
    _sanity_check(state, bundles)
    _insert_bundles(con, state, bundles)
    if enable_alpha:
        from indexflow.catalog.substitutes import apply_substitutions

        apply_substitutions(con, state, bundles)
    for mode, group in groups.items():
        for batch in release_batches(group) if release_order else [group]:
            _build_graph(con, state, mode, batch)
            if release_order:
                _post_check(state, batch)
    _write_packages(con, state, list(dict.fromkeys(b.package for b in bundles)))
    if set(groups) - {"replaces"}:  # opm's ClearNonHeadBundles ends every semver-mode add, db-wide
        con.execute("UPDATE operatorbundle SET bundle = NULL, csv = NULL WHERE bundlepath != '' AND bundlepath "
                    "IS NOT NULL AND (bundle IS NOT NULL OR csv IS NOT NULL) "  # rewrite only rows that change
                    "AND name NOT IN (SELECT head_operatorbundle_name FROM channel)")
    if not release_order:
        _post_check(state, bundles)
    _check_defaults(con, {b.package for b in bundles})


def _build_graph(con: sqlite3.Connection, state: DbState, mode: str, bundles: list[Bundle]) -> None:
    """One opm add's graph step for `bundles` (already inserted) in `mode`."""
    if mode == "replaces":
        errors = [err for pkg in dict.fromkeys(b.package for b in bundles)
                  for err in _rebuild_replaces(con, state, pkg, bundles)]
        if errors:
            raise CatalogError(aggregate(errors))
        return
    for bundle in bundles:
        _add_semver(con, state, bundle, skippatch=mode == "semver-skippatch")


def _release_key(b: Bundle) -> tuple:
    try:
        return (0, functools.cmp_to_key(compare_with_build)(Version.parse(b.version)))
    except SemverError:  # not orderable: after the others, in input order (its add then fails as opm's does)
        return (1,)


def release_batches(bundles: list[Bundle]) -> list[list[Bundle]]:
    """One single-bundle batch per bundle: per package (first-seen order), in version order."""
    by_package: dict[str, list[Bundle]] = {}
    for b in bundles:
        by_package.setdefault(b.package, []).append(b)
    return [[b] for group in by_package.values() for b in sorted(group, key=_release_key)]


# --- input checks (item 7: refuse what opm would write but cannot read back) -------------------

MAX_NAME_BYTES = 253  # a Kubernetes object name; a package name becomes a directory (255 bytes at most)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _name_errors(b: Bundle) -> list[str]:
    """Names that would break a later step (a NUL crashes sqlite readers, a long package name is an
    OSError in migrate): refused here, naming the bundle."""
    errors = []
    names = [("package", b.package), ("bundle", b.name), ("default channel", b.default_channel)]
    names += [("channel", ch) for ch in b.channels]
    for what, value in names:
        if _CONTROL.search(value):
            errors.append(f"bundle {b.bundlepath}: the {what} name \"{excerpt(value)}\" contains control characters")
        elif len(value.encode()) > MAX_NAME_BYTES:
            errors.append(f"bundle {b.bundlepath}: the {what} name \"{excerpt(value, 40)}\" is longer than "
                          f"{MAX_NAME_BYTES} bytes")
    return errors


def _check_inputs(bundles: list[Bundle], enable_alpha: bool) -> None:
    errors = []
    for b in bundles:
        errors += _name_errors(b)
        if b.substitutesfor and not enable_alpha:
            errors.append("SubstitutesFor is an alpha-only feature. You must enable alpha features with the "
                          "flag --enable-alpha in order to use this feature.")
        for image in b.related_images:  # opm stores these; its own validate then rejects the catalog
            reason = reference_error(image) if image else None  # empty is allowed, as in validate
            if reason:
                errors.append(f'bundle {b.name} of package {b.package} has an invalid related image "{image}": '
                              f"{reason}")
        reason = _skiprange_error(b.skiprange)
        if reason:  # opm stores it; migrate (>= v1.69) then refuses the whole catalog naming only the range
            errors.append(f'bundle {b.name} of package {b.package} has invalid skipRange "{b.skiprange}": {reason}')
        errors += bundle_errors(b)  # what opm decodes with Go types (addchecks.py)
    if errors:
        raise CatalogError(aggregate(list(dict.fromkeys(errors))))


def _skiprange_error(text: str) -> str | None:
    """Why migrate's range parser (blang/semver) refuses an `olm.skipRange`, None when it parses."""
    if not text:
        return None
    for part in text.replace("||", " ").split():
        if part.lstrip("<>=!~^").startswith(("v", "V")):
            return f'version "{part}" must not start with "v"'
    try:
        check_range(text)
    except SemverError as exc:
        return str(exc)
    return None


def _sanity_check(state: DbState, bundles: list[Bundle]) -> None:
    errors: list[str] = []
    for b in bundles:
        existing = state.package_bundles(b.package)
        if not existing:
            continue
        paths = [state.bundles[n].bundlepath for n in existing]
        if any(not p for p in paths):  # opm quirk: "Index malformed" makes the whole check pass
            return
        if b.bundlepath in paths:
            errors.append(f"Bundle {b.bundlepath} already exists")
        if b.name in existing:
            errors.append("Bundle already added that provides package and csv")
    owners: dict[str, list[str]] = {}
    for b in bundles:
        for name in [b.name, b.replaces, *b.skips]:
            if name and b.package not in owners.setdefault(name, []):
                owners[name].append(b.package)
    for name, pkgs in owners.items():
        if len(pkgs) > 1:
            errors.append(f"bundle {name} must belong to exactly one package, found on: [{' '.join(sorted(pkgs))}]")
            continue
        for other in sorted(state.entry_packages.get(name, set()) - {pkgs[0]}):
            errors.append(f"bundle {name} belongs to package {other} on index, "
                          f"cannot be added as an edge for package {pkgs[0]}")
    if errors:
        raise SanityError(aggregate(errors))


# --- bundle rows (AddOperatorBundle, in bulk) ------------------------------------------------

def _null(text: str | None) -> str | None:
    return text or None


def _insert_bundles(con: sqlite3.Connection, state: DbState, bundles: list[Bundle]) -> None:
    seen: set[str] = set()
    for b in bundles:
        if b.name in state.bundles or b.name in seen:
            raise CatalogError(f'failed to add bundle "{b.name}": UNIQUE constraint failed: operatorbundle.name')
        seen.add(b.name)
    con.executemany(
        "INSERT INTO operatorbundle(name, csv, bundle, bundlepath, version, skiprange, replaces, skips, "
        "substitutesfor) VALUES (?,?,?,?,?,?,?,?,?)",
        [(b.name, b.csv_json, b.bundle_json, b.bundlepath, b.version, b.skiprange, b.replaces,
          ",".join(b.skips), b.substitutesfor) for b in bundles])
    con.executemany("INSERT INTO related_image(image, operatorbundle_name) VALUES (?,?)",
                    [(img, b.name) for b in bundles for img in b.related_images])
    key = [(b, b.name, _null(b.version), _null(b.bundlepath)) for b in bundles]
    con.executemany("INSERT INTO dependencies VALUES (?,?,?,?,?)",
                    [(t, v.encode(), n, ver, p) for b, n, ver, p in key for t, v in b.dependencies])
    props = [(t, v, n, ver, p) for b, n, ver, p in key for t, v in b.properties]
    props += [("olm.deprecated", "{}", n, ver, p) for b, n, ver, p in key if n in state.deprecated]
    con.executemany("INSERT INTO properties VALUES (?,?,?,?,?)", props)
    con.executemany("INSERT OR IGNORE INTO api(group_name, version, kind, plural) VALUES (?,?,?,?)",
                    [api for b in bundles for api in b.provided + b.required])
    for table, attr in (("api_provider", "provided"), ("api_requirer", "required")):
        con.executemany(f"INSERT INTO {table} VALUES (?,?,?,?,?,?)",
                        [(g, v, k, n, ver, p) for b, n, ver, p in key for g, v, k, _ in getattr(b, attr)])
    for b in bundles:
        state.bundles[b.name] = _meta(b)


def _meta(b: Bundle) -> BundleMeta:
    return BundleMeta(b.version, b.replaces, list(b.skips), b.bundlepath, b.substitutesfor)


def _set_entries(state: DbState, pkg: str, rows: list[Entry]) -> None:
    state.entries[pkg] = rows
    for e in rows:
        state.entry_packages.setdefault(e.bundle, set()).add(pkg)


def _write_packages(con: sqlite3.Connection, state: DbState, packages: list[str]) -> None:
    """Write the rebuilt channel entries, plus the olm.package property opm adds for walked bundles."""
    from indexflow.catalog.gojson import go_json

    have = set(con.execute("SELECT operatorbundle_name, value FROM properties WHERE type = 'olm.package'"))
    rows = []
    for pkg in packages:
        entries = state.entries.get(pkg, [])
        write_entries(con, pkg, entries)
        for name in sorted({e.bundle for e in entries if e.bundle in state.bundles}):
            meta = state.bundles[name]
            value = go_json({"packageName": pkg, "version": meta.version}, sort_keys=False)
            if (name, value) not in have:
                rows.append(("olm.package", value, name, _null(meta.version), _null(meta.bundlepath)))
    con.executemany("INSERT INTO properties VALUES (?,?,?,?,?)", rows)


# --- replaces mode ---------------------------------------------------------------------------

def _parse_version(name: str, text: str) -> Version:
    try:
        return Version.parse(text or "0.0.0-z")
    except SemverError as exc:
        raise CatalogError(f"error parsing bundle {name} version {text}: {exc}") from exc


def _manifest(pkg: str, items: list[tuple[str, list[str], str, Version]]) -> tuple[dict[str, str], str]:
    """opm's semver package manifest: channel heads by version, and the default channel."""
    heads: dict[str, list] = {}
    best: Version | None = None
    best_count = 0
    default = ""
    for name, channels, declared, version in items:
        for ch in channels:
            head = heads.get(ch)
            cmp = 1 if head is None else compare_with_build(version, head[1])
            if cmp > 0:
                heads[ch] = [name, version, 1]
            elif cmp == 0:
                head[2] += 1
        cmp = 1 if best is None else compare_with_build(version, best)
        if cmp >= 0:
            best_count = 1 if cmp > 0 else best_count + 1
            best = version
            default = declared or default
    for ch, (_, _, count) in sorted(heads.items()):
        if count > 1:
            raise CatalogError(f"more than one potential channel head for {ch}")
    if best_count > 1 and best is not None:
        raise CatalogError(f"more than one bundle with maximum version {_go_version(best)}")
    if default not in heads:
        if len(heads) == 1 and not default:
            default = next(iter(heads))
        else:
            shown = " ".join(f"{ch}:{{name:{n} version:{v.go_repr()} count:{c}}}"
                             for ch, (n, v, c) in sorted(heads.items()))
            raise CatalogError(f"unable to determine default channel among channel heads: map[{shown}]")
    return {ch: h[0] for ch, h in heads.items()}, default


def _go_version(v: Version) -> str:
    text = f"{v.major}.{v.minor}.{v.patch}"
    if v.pre:
        text += "-" + ".".join(map(str, v.pre))
    return text + ("+" + ".".join(v.build) if v.build else "")


def _rebuild_replaces(con: sqlite3.Connection, state: DbState, pkg: str, new: list[Bundle]) -> list[str]:
    """Recompute the whole package from the semver manifest and the replaces chains."""
    try:
        items = [(n, chans, state.defaults.get(pkg) or "", _parse_version(n, state.bundles[n].version))
                 for n, chans in state.package_bundles(pkg).items()]
        items += [(b.name, b.channels, b.default_channel, _parse_version(b.name, b.version))
                  for b in new if b.package == pkg]
        heads, default = _manifest(pkg, items)
    except CatalogError as exc:
        return [str(exc)]
    con.execute("DELETE FROM channel_entry WHERE package_name = ?", (pkg,))
    con.execute("DELETE FROM channel WHERE package_name = ?", (pkg,))
    con.execute("DELETE FROM package WHERE name = ?", (pkg,))
    con.execute("INSERT INTO package(name) VALUES (?)", (pkg,))
    errors: list[str] = []
    rows: list[Entry] = []
    default_set = False
    for ch, head in sorted(heads.items()):
        if head in state.deprecated:
            continue
        con.execute("INSERT INTO channel(name, package_name, head_operatorbundle_name) VALUES (?,?,?)",
                    (ch, pkg, head))
        if ch == default or len(heads) == 1:
            con.execute("UPDATE package SET default_channel = ? WHERE name = ?", (ch, pkg))
            default_set = True
        err = _walk_replaces(state, pkg, ch, head, rows)
        if err:
            errors.append(err)
    if not default_set:
        errors.append(f"no default channel specified for {pkg}")
    _set_entries(state, pkg, rows)
    state.defaults[pkg] = default if default_set else None
    return errors


def _walk_replaces(state: DbState, pkg: str, ch: str, head: str, rows: list[Entry]) -> str | None:
    """Entries of one channel from its head down the replaces chain; skips become synthetic pairs."""
    rows.append(Entry(ch, pkg, head, None, 0))
    main, cur, depth, seen = len(rows) - 1, head, 1, {head}
    while True:
        meta = state.bundles.get(cur)
        if meta is None:
            return f"no bundle found for bundlename {cur}"
        if cur in state.deprecated:
            return None
        for skip in meta.skips:
            rows.append(Entry(ch, pkg, skip, None, depth))
            rows.append(Entry(ch, pkg, cur, len(rows) - 1, depth))
            depth += 1
        if not meta.replaces:
            return None
        rows.append(Entry(ch, pkg, meta.replaces, None, depth))
        rows[main].replaces = main = len(rows) - 1
        if meta.replaces in seen:
            return f"Cycle detected, {cur} replaces {meta.replaces}"
        if meta.replaces not in state.bundles:
            return f"Invalid bundle {head}, replaces nonexistent bundle {meta.replaces}"
        seen.add(meta.replaces)
        cur = meta.replaces
        depth += 1


# --- semver modes ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=65536)
def _precedence(text: str) -> tuple:
    """Sort key of a version text (semver precedence), parsed once per text, not per comparison."""
    return Version.parse(text).precedence()


def _semver_of(state: DbState, name: str) -> tuple:
    return _precedence(state.bundles[name].version)


def _add_semver(con: sqlite3.Connection, state: DbState, b: Bundle, skippatch: bool) -> None:
    """Insert one bundle into each of its channels by version order and re-walk the package."""
    pkg = b.package
    default = b.default_channel or state.defaults.get(pkg) or (min(b.channels) if b.channels else "")
    if not default:
        raise CatalogError("Default channel is missing and can't be inferred")
    try:
        version = Version.parse(b.version)
    except SemverError as exc:
        raise CatalogError(f"Bundle version {b.version} is not valid") from exc
    graph = state.channel_edges(pkg)
    heads = {ch: _find_head(ch, nodes) for ch, nodes in graph.items()}
    for ch in b.channels:
        nodes = graph.setdefault(ch, {})
        if not nodes:
            nodes[b.name], heads[ch] = set(), b.name
            continue
        heads[ch] = _insert_node(nodes, heads[ch], b.name, version, state, skippatch)
    prefix = f"error loading bundle {b.name} into db: "
    if default not in graph:
        raise CatalogError(f"{prefix}the default channel ({default}) does not exist: channel not found")
    if pkg not in state.defaults:
        con.execute("INSERT INTO package(name) VALUES (?)", (pkg,))
    rows: list[Entry] = []
    for ch in sorted(graph):
        con.execute("INSERT INTO channel(name, package_name, head_operatorbundle_name) VALUES (?,?,?) "
                    "ON CONFLICT(name, package_name) DO UPDATE SET head_operatorbundle_name = excluded."
                    "head_operatorbundle_name", (ch, pkg, heads[ch]))
        expected, found = _walk_semver(pkg, ch, heads[ch], graph[ch], rows)
        if expected != found:
            raise CatalogError(f"{prefix}Invalid graph: some (non-bottom) nodes defined in the graph were not "
                               f"mentioned as replacements of any node ({expected} != {found})")
    con.execute("UPDATE package SET default_channel = ? WHERE name = ?", (default, pkg))
    state.defaults[pkg] = default
    _set_entries(state, pkg, rows)


def _find_head(ch: str, nodes: dict[str, set[str]]) -> str:
    replaced = set().union(*nodes.values()) if nodes else set()
    heads = sorted(n for n in nodes if n not in replaced)
    if not heads:
        raise CatalogError(f"no channel head found for {ch}")
    if len(heads) > 1:
        raise CatalogError(f"multiple candidate channel heads found for {ch}: [{' '.join(heads)}]")
    return heads[0]


def _insert_node(nodes: dict[str, set[str]], head: str, name: str, version: Version, state: DbState,
                 skippatch: bool) -> str:
    """Place `name` between its semver neighbours; returns the channel head afterwards."""
    key = version.precedence()
    versions = {n: _semver_of(state, n) for n in nodes}
    if key in versions.values():
        raise CatalogError(f"Bundle version {state.bundles[name].version} already added to index")
    lower = max((n for n, v in versions.items() if v < key), key=versions.get, default=None)
    higher = min((n for n, v in versions.items() if v > key), key=versions.get, default=None)
    nodes[name] = {lower} if lower else set()
    if skippatch:
        for n, v in versions.items():
            if v[:2] == key[:2] and v < key:
                nodes[name].add(n)
                nodes.pop(n, None)
    if higher is None:
        return name
    nodes[higher] = {name}
    return head


def _walk_semver(pkg: str, ch: str, head: str, nodes: dict[str, set[str]], rows: list[Entry]) -> tuple[int, int]:
    """Entries from the head; replaced names outside the node set become synthetic pairs."""
    rows.append(Entry(ch, pkg, head, None, 0))
    main, cur, depth, found, seen = len(rows) - 1, head, 1, 0, {head}
    while True:
        targets = sorted(nodes.get(cur, set()))
        for skip in (t for t in targets if t not in nodes):
            rows.append(Entry(ch, pkg, skip, None, depth))
            rows.append(Entry(ch, pkg, cur, len(rows) - 1, depth))
            depth += 1
        real = [t for t in targets if t in nodes and t not in seen]
        if not real:
            return len(nodes) - 1, found
        cur = real[0]
        seen.add(cur)
        rows.append(Entry(ch, pkg, cur, None, depth))
        rows[main].replaces = main = len(rows) - 1
        found += 1
        depth += 1


# --- post checks -----------------------------------------------------------------------------

def _post_check(state: DbState, bundles: list[Bundle]) -> None:
    """Every added bundle must be reachable in each channel it declares (opm's prune check)."""
    errors = []
    for b in bundles:
        graph = state.channel_edges(b.package)
        for ch in b.channels:
            nodes = graph.get(ch, {})
            if any(state.bundles[n].bundlepath == b.bundlepath for n in nodes):
                continue
            head = next((e.bundle for e in state.entries.get(b.package, [])
                         if e.channel == ch and e.depth == 0), "")
            errors.append(
                f"add prunes bundle {b.name} ({b.bundlepath}) from package {b.package}, channel {ch}: this may be "
                f"due to incorrect channel head ({head}, skips/replaces [{' '.join(sorted(nodes.get(head, ())))}]). "
                f"Be aware that the head of the channel {ch} where you are trying to add the {b.name} is {head}. "
                f"Upgrade graphs follows the Semantic Versioning 2.0.0 (https://semver.org/) which means that is "
                f"not possible add new versions lower then the head of the channel")
    if errors:
        raise CatalogError(aggregate(errors))


def _check_defaults(con: sqlite3.Connection, packages: set[str]) -> None:
    """Never leave a package whose default channel does not exist (opm's migrate crashes on it)."""
    for pkg in sorted(packages):
        row = con.execute("SELECT p.default_channel, (SELECT count(*) FROM channel c WHERE c.package_name = p.name "
                          "AND c.name = p.default_channel) FROM package p WHERE p.name = ?", (pkg,)).fetchone()
        if row is not None and not row[1]:
            raise CatalogError(f"package {pkg} would be left without a valid default channel "
                               f"({row[0] or 'none'}) after this add")


def confirm_added(db_path: Path | str, refs: list[str]) -> None:
    """Every ref just added is a bundle in a channel of the db: a merge never reports a bundle
    added that is not in its result."""
    from indexflow.catalog.db import connect_ro, db_error

    con = connect_ro(db_path)
    try:
        present = {p for (p,) in con.execute(
            "SELECT DISTINCT ob.bundlepath FROM operatorbundle ob JOIN channel_entry ce "
            "ON ce.operatorbundle_name = ob.name")}
    except sqlite3.Error as exc:
        raise db_error(db_path, exc) from None
    finally:
        con.close()
    lost = [ref for ref in refs if ref not in present]
    if lost:
        raise CatalogError(f"bundle {lost[0]} was added but is not in any channel of the index.db"
                           + (f" (nor {len(lost) - 1} more)" if len(lost) > 1 else ""))
