"""`opm migrate`: an index.db becomes a File-Based Catalog, one directory per package.

Two passes keep memory flat on large dbs: the first reads only the small columns (graph,
properties, heads' icons) and validates the model exactly as opm does, so a bad db fails before
anything is written; the second reads the big `bundle` blobs one package at a time and writes
that package's catalog file.
"""

from __future__ import annotations

import base64
import functools
import binascii
import json
import operator
import os
import re
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import ContextManager, Iterator

from indexflow.catalog import fbcload, fbcmodel
from indexflow.catalog.csvmeta import csv_metadata
from indexflow.catalog.db import readable
from indexflow.catalog.fbcwrite import BundleBlob, ChannelBlob, Properties, blob_json, blob_yaml, compact_raw
from indexflow.catalog.gojson import go_json
from indexflow.catalog.gosort import go_sort_slice
from indexflow.catalog.limits import excerpt
from indexflow.catalog.semver_go import SemverError
from indexflow.errors import CatalogError

LEVELS = (None, "bundle-object-to-csv-metadata")
_HTML_OR_ESCAPE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\x7f-\U0010ffff]')


@dataclass
class _Bundle:
    """A bundle of the catalog: its channels' graph data lives in the model, the rest here."""

    name: str
    package: str
    image: str
    properties: list[tuple[str, str]]  # (type, compact value), sorted, no bundle objects
    has_objects: bool
    package_props: int = 1  # how many olm.package properties (opm wants exactly one)


@dataclass
class _Package:
    model: fbcmodel.Package
    icon: dict | None = None
    bundles: dict[str, _Bundle] = field(default_factory=dict)
    images: dict[str, list[str]] = field(default_factory=dict)  # related_image rows per bundle


def migrate(db_path: Path | str, out_dir: Path | str, level: str | None = None, fmt: str = "json") -> None:
    """Write `<out_dir>/<package>/catalog.<fmt>` for every package of the db, like opm v1.73."""
    if level not in LEVELS:
        raise CatalogError(f"unknown migration level {json.dumps(level)}")
    if fmt not in ("json", "yaml"):
        raise CatalogError(f"invalid output format {json.dumps(fmt)}: expected json or yaml")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CatalogError(f'output dir "{out_dir}" must be empty')
    prefix = f'render catalog image: render reference "{db_path}": '
    with _readable(Path(db_path)) as con, fbcload.paused_gc():
        _migrate(con, out_dir, level, fmt, prefix)


def _migrate(con: sqlite3.Connection, out_dir: Path, level: str | None, fmt: str, prefix: str) -> None:
    """migrate's work, in a function of its own so that the model is freed (by reference counting)
    before the cyclic collector resumes: its first pass would otherwise walk every object of it."""
    try:
        packages = _load(con)
    except CatalogError as exc:
        raise CatalogError(prefix + str(exc)) from None
    tree = fbcmodel.validate_model([p.model for p in packages.values()], root=prefix + "invalid index")
    if tree:
        raise CatalogError(tree.render())
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in sorted(packages):
        try:
            _write_package(con, packages[name], out_dir, level, fmt)
        except _BadStoredJson as exc:
            raise CatalogError(f'{prefix}package "{name}": {exc}') from None


def _readable(path: Path) -> ContextManager[sqlite3.Connection]:
    """`db.readable`, after opm's sentence for a db that is not there."""
    if not path.is_file():
        raise CatalogError(f'render catalog image: render reference "{path}": stat {path}: no such file or directory')
    return readable(path, "migrate")


# --- pass 1: graph, properties, icons -------------------------------------------------------


def _load(con: sqlite3.Connection) -> dict[str, _Package]:
    packages = _packages(con)
    meta = {n: (v, p, sr or "", has) for n, v, p, sr, has in con.execute(
        "SELECT name, version, bundlepath, skiprange, length(bundle) > 0 FROM operatorbundle")}
    props = _rows_by_bundle(con, "properties")
    deps = _rows_by_bundle(con, "dependencies")
    deprecated = {b for (b,) in con.execute("SELECT operatorbundle_name FROM properties WHERE type = 'olm.deprecated'")}
    records, entries = _records(con, meta)
    for (bundle, pkg, channel), (replaces, skips) in sorted(records.items()):
        if bundle in deprecated:
            continue
        if pkg not in packages:
            raise CatalogError(f'populate channels: unknown package "{pkg}" for bundle "{bundle}"')
        model_ch = packages[pkg].model.channels.get(channel)
        if model_ch is None:
            raise CatalogError(f'populate channels: unknown channel "{channel}" for bundle "{bundle}"')
        version, path, skip_range, has_objects = meta[bundle]
        entry = packages[pkg].bundles.get(bundle)
        if entry is None:  # a bundle's first record: its version is checked once, not per channel
            _check_version(bundle, version)
            entry = _Bundle(bundle, pkg, path, _properties(pkg, version, props.get(bundle, ()), deps.get(bundle, ())),
                            bool(has_objects))
            entry.package_props = list(map(_TYPE, entry.properties)).count("olm.package")
            packages[pkg].bundles[bundle] = entry
        model_ch.bundles[bundle] = fbcmodel.Bundle(
            name=bundle, version=version, replaces=replaces, skips=skips, skip_range=skip_range, image=path,
            package_props=entry.package_props, has_objects=entry.has_objects)
    images = _related_image_rows(con)
    heads = _default_heads(con, entries)
    for pkg in packages.values():
        pkg.icon = _icon(pkg.model, heads.get(pkg.model.name))
        pkg.images = {name: images.get(name, []) for name in pkg.bundles}
    return packages


_PLAIN_VERSION = re.compile(r"(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)")


def _check_version(bundle: str, version: str) -> None:
    """opm's version parse of a bundle (a plain X.Y.Z always parses: one regular expression)."""
    if _PLAIN_VERSION.fullmatch(version):
        return
    try:
        fbcmodel.parse_version(version)
    except SemverError as exc:
        raise CatalogError(f'populate channels: convert bundle "{bundle}": parse version "{version}": {exc}') from None


def _related_image_rows(con: sqlite3.Connection) -> dict[str, list[str]]:
    """All related_image rows at once: the table has no index, a query per bundle scans it each time."""
    out: dict[str, dict[str, None]] = defaultdict(dict)
    for bundle, image in con.execute("SELECT operatorbundle_name, image FROM related_image"):
        if image is not None:
            out[bundle][image] = None
    return {k: list(v) for k, v in out.items()}


def _packages(con: sqlite3.Connection) -> dict[str, _Package]:
    rows = con.execute("SELECT p.name, p.default_channel, c.name FROM package p "
                       "LEFT JOIN channel c ON c.package_name = p.name").fetchall()
    out: dict[str, _Package] = {}
    for name, default, channel in rows:
        pkg = out.setdefault(name, _Package(fbcmodel.Package(name or "", default or "")))
        if channel is not None:
            pkg.model.channels[channel] = fbcmodel.Channel(channel)
    for name, pkg in out.items():
        if not pkg.model.channels:
            raise CatalogError(f"package {name} not found")
    return out


def _rows_by_bundle(con: sqlite3.Connection, table: str) -> dict[str, list[tuple[str, str, str]]]:
    """bundle -> its (bundle, type, value) rows in table order, NULL read as "" (duplicates fold
    later, in the bundle's property dict)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for row in con.execute(f"SELECT operatorbundle_name, coalesce(type, ''), coalesce(value, '') FROM {table}"):
        if type(row[2]) is bytes:
            row = (row[0], row[1], row[2].decode("utf-8", "replace"))
        out.setdefault(row[0], []).append(row)
    return out


_Records = dict[tuple[str, str, str], tuple[str, list[str]]]


def _records(con: sqlite3.Connection, meta: dict) -> tuple[_Records, set[tuple[str, str, str]]]:
    """opm's ListBundles: (bundle, package, channel) -> (replaces, skips) from channel_entry; and
    every (channel, package, bundle) that has an entry.

    The main chain is every entry reachable through `replaces` from the shallowest entries (the
    heads); links leaving an entry that is not on it are the synthetic skip pairs.
    """
    rows = con.execute("SELECT entry_id, channel_name, package_name, operatorbundle_name, replaces, depth "
                       "FROM channel_entry").fetchall()
    entries = {(r[1], r[2], r[3]) for r in rows}
    by_id = {r[0]: r for r in rows}
    top = min((r[5] for r in rows if r[5] is not None), default=None)
    main: set[int] = set()
    todo = [r[0] for r in rows if top is not None and r[5] == top]
    while todo:
        eid = todo.pop()
        if eid in main:
            continue
        main.add(eid)
        target = by_id[eid][4]
        if target in by_id:
            todo.append(target)
    replaces: dict[tuple, set[str]] = {}
    skips: dict[tuple, set[str]] = {}
    keys: set[tuple] = set()
    for eid, channel, pkg, bundle, target, _ in rows:
        info = meta.get(bundle)
        if info is None or info[0] is None or info[1] is None or channel is None:
            continue
        key = (bundle, pkg, channel)
        keys.add(key)
        if target in by_id:
            (replaces if eid in main else skips).setdefault(key, set()).add(by_id[target][3])
    return {k: (max(replaces[k]) if k in replaces else "", sorted(skips[k]) if k in skips else []) for k in keys}, \
        entries


def _properties(pkg: str, version: str, props: list[tuple], deps: list[tuple]) -> list[tuple[str, str]]:
    """Record -> FBC properties (opm 4.3), sorted by (type, compact value), objects excluded."""
    out: dict[tuple[str, str], None] = {}
    for _, typ, value in props:
        if typ == "olm.gvk":
            value = _stored_gvk(value)
        elif type(value) is str and _FLAT_COMPACT.fullmatch(value):  # already compact JSON (olm.package)
            out[(typ, value)] = None
            continue
        elif not isinstance(value, str) or not _is_json(value):
            raise _BadStoredJson(f"a properties.value of type '{excerpt(str(typ))}' is not valid JSON")
        out[(typ, compact_raw(value))] = None
    if not any(t == "olm.package" for t, _ in out):
        out[("olm.package", go_json({"packageName": pkg, "version": version}, sort_keys=False))] = None
    for _, typ, value in deps:
        dep = _loads(value, f"a dependencies.value of package {pkg}") if value else {}
        dep = dep if isinstance(dep, dict) else {}
        if typ == "olm.gvk":
            out[("olm.gvk.required", _gvk_json(dep))] = None
        elif typ == "olm.package":
            out[("olm.package.required", go_json({"packageName": dep.get("packageName", ""),
                                                    "versionRange": dep.get("version", "")}, sort_keys=False))] = None
    return sorted(out)


_FLAT_STR = r'"[^"\\\x00-\x1f]*"'  # a JSON string without escapes
_FLAT_COMPACT = re.compile(rf"\{{{_FLAT_STR}:{_FLAT_STR}(?:,{_FLAT_STR}:{_FLAT_STR})*\}}")


@functools.lru_cache(maxsize=65536)
def _stored_gvk(value: str) -> str:
    gvk = _loads(value, "an olm.gvk properties.value")
    if not isinstance(gvk, dict):
        raise _BadStoredJson(f"an olm.gvk properties.value is not a JSON object: {excerpt(str(value))}")
    return _gvk_json(gvk)


class _BadStoredJson(CatalogError):
    """A JSON column of the db holds something else (the db is hostile or broken)."""


def _loads(text: str | bytes, what: str) -> object:
    """A JSON value stored in the db, or one sentence saying which column is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise _BadStoredJson(f"{what} is not valid JSON") from None


@functools.lru_cache(maxsize=65536)  # property values repeat across bundles
def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _gvk_json(gvk: dict) -> str:
    """opm re-marshals GVKs from its struct: fixed key order group, kind, version."""
    return (f'{{"group":{_html_str(gvk.get("group", ""))},"kind":{_html_str(gvk.get("kind", ""))},'
            f'"version":{_html_str(gvk.get("version", ""))}}}')


def _html_str(value: object) -> str:
    """A string as Go's json.Marshal writes it (HTML-escaped), for values opm builds itself."""
    return go_json(value) if not isinstance(value, str) or _HTML_OR_ESCAPE.search(value) else f'"{value}"'



def _default_heads(con: sqlite3.Connection, entries: set[tuple[str, str, str]]) -> dict[str, tuple]:
    """package -> (head bundle, its CSV) of the default channel, when the head has an entry there.

    One query for all packages: channel_entry has no index, so a query per package scanned it each time."""
    rows = con.execute("SELECT p.name, c.name, ob.name, ob.csv FROM package p JOIN channel c "
                       "ON c.package_name = p.name AND c.name = p.default_channel "
                       "JOIN operatorbundle ob ON c.head_operatorbundle_name = ob.name")
    return {pkg: (head, csv) for pkg, channel, head, csv in rows if (channel, pkg, head) in entries}


def _icon(pkg: fbcmodel.Package, row: tuple | None) -> dict | None:
    """Icon of the default channel head's CSV, re-encoded like opm (bad base64 -> no icon)."""
    if row is None:  # opm v1.73 panics here (nil default channel); say which package instead
        raise CatalogError(f'package "{pkg.name}" has no usable default channel: "{pkg.default_channel}" is not '
                           f"one of its channels [{' '.join(sorted(pkg.channels))}]")
    name, csv_text = row
    if isinstance(csv_text, bytes):
        csv_text = csv_text.decode("utf-8", "replace")
    try:
        csv = json.loads(csv_text or "")
    except json.JSONDecodeError:
        raise CatalogError(f'populate package icons: unmarshal CSV json for bundle "{name}": '
                           "unexpected end of JSON input") from None
    icons = ((csv.get("spec") or {}).get("icon") or []) if isinstance(csv, dict) else []
    if not icons or not isinstance(icons[0], dict):
        return None
    data = _b64decode(icons[0].get("base64data") or "")
    if not data:
        return None
    return {"base64data": base64.b64encode(data).decode(), "mediatype": icons[0].get("mediatype") or ""}


def _b64decode(text: str) -> bytes | None:
    """Go's StdEncoding (newlines ignored), retried without spaces as opm does."""
    for candidate in (text, text.replace(" ", "")):
        try:
            return base64.b64decode(candidate.replace("\n", "").replace("\r", ""), validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


# --- pass 2: blobs and files --------------------------------------------------------------


def _objects(con: sqlite3.Connection, name: str) -> list[tuple[str, object]]:
    """A bundle's manifest objects as stored (JSON text, trailing newline dropped) with their
    parsed value; one bundle at a time so a package of big bundles never sits in memory whole."""
    row = con.execute("SELECT bundle FROM operatorbundle WHERE name = ?", (name,)).fetchone()
    blob = row[0] if row else None
    if isinstance(blob, bytes):
        blob = blob.decode("utf-8", "replace")
    return _split_objects(blob or "")


def _split_objects(text: str) -> list[tuple[str, object]]:
    """The `bundle` column is JSON documents back to back; keep each one's exact bytes (and the
    value the parse that finds its end gives anyway: the CSV is not parsed a second time)."""
    decoder = json.JSONDecoder()
    objs, i = [], 0
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text):
            return objs
        try:
            obj, end = decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            raise _BadStoredJson("an operatorbundle.bundle value is not valid JSON") from None
        objs.append((text[i:end], obj))
        i = end


def _find_csv(objects: list[tuple[str, object]]) -> dict | None:
    for raw, obj in objects:
        if "ClusterServiceVersion" not in raw:  # (the raw text names its kind, unescaped)
            continue
        if isinstance(obj, dict) and obj.get("kind") == "ClusterServiceVersion":
            return obj
    return None


def _related_images(csv: dict | None, table_images: list[str]) -> list[dict]:
    if csv is None:  # (most bundles: no objects stored) only the table's images, distinct: plain sort
        return [{"name": "", "image": img} for img in sorted(table_images)]
    images = [{"name": r.get("name") or "", "image": r.get("image") or ""}
              for r in (((csv or {}).get("spec") or {}).get("relatedImages") or []) if isinstance(r, dict)]
    seen = {r["image"] for r in images}
    ties = len(seen) < len(images)  # one image under two names: only these can come out of order
    images += [{"name": "", "image": img} for img in table_images if img not in seen]
    if ties and len(images) > 12:  # up to 12, Go's sort.Slice is an insertion sort: stable, like sorted()
        # opm appends the table images in Go map order; here they keep the table's order
        return go_sort_slice(images, key=_BY_IMAGE)
    return sorted(images, key=_BY_IMAGE)


_BY_IMAGE = operator.itemgetter("image")
_TYPE = operator.itemgetter(0)


def _bundle_blob(b: _Bundle, objects: list[tuple[str, object]], images: list[str], level: str | None) -> dict:
    csv = _find_csv(objects) if objects else None
    if objects and csv is None:
        raise CatalogError(f'bundle "{b.name}": no csv in bundle')
    if level == "bundle-object-to-csv-metadata" and b.image and csv is not None:
        extra = [("olm.csv.metadata", csv_metadata(csv))]
    else:
        extra = sorted({("olm.bundle.object", '{"data":"' + base64.b64encode(o.encode()).decode() + '"}')
                        for o, _ in objects})  # identical manifests collapse, like any duplicate property
    blob = BundleBlob(schema="olm.bundle", name=b.name, package=b.package, image=b.image,
                      properties=Properties(b.properties + extra))
    related = _related_images(csv, images)
    if related:
        blob["relatedImages"] = related
    return blob


def _package_blobs(con: sqlite3.Connection, pkg: _Package, level: str | None) -> Iterator[dict]:
    head: dict = {"schema": "olm.package", "name": pkg.model.name, "defaultChannel": pkg.model.default_channel}
    if pkg.icon:
        head["icon"] = pkg.icon
    yield head
    for name in sorted(pkg.model.channels):
        ch = pkg.model.channels[name]
        entries = []
        for bname in sorted(ch.bundles):
            b = ch.bundles[bname]
            entry: dict = {"name": bname}
            if b.replaces:
                entry["replaces"] = b.replaces
            if b.skips:
                entry["skips"] = b.skips
            if b.skip_range:
                entry["skipRange"] = b.skip_range
            entries.append(entry)
        yield ChannelBlob(schema="olm.channel", name=name, package=pkg.model.name, entries=entries)
    for name in sorted(pkg.bundles):
        bundle = pkg.bundles[name]  # most non-head bundles of semver dbs have no objects: skip the query
        yield _bundle_blob(bundle, _objects(con, name) if bundle.has_objects else [], pkg.images[name], level)


def _write_package(con: sqlite3.Connection, pkg: _Package, out_dir: Path, level: str | None, fmt: str) -> None:
    name = pkg.model.name
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name or len(name.encode()) > 255:
        raise CatalogError(f'invalid package name "{excerpt(name)}": must be a single local path element')
    target = out_dir / name
    target.mkdir()
    render = blob_json if fmt == "json" else blob_yaml
    parts: list[str] = []
    try:
        for blob in _package_blobs(con, pkg, level):
            parts.append(render(blob))
    finally:  # one write per file; a bundle that fails leaves the blobs before it, as before
        with open(target / f"catalog.{fmt}", "wb") as fh:
            fh.write("".join(parts).encode("utf-8"))
