"""Bundle pullspec validation and bundle label reads: thousands of images, concurrently, cached.

IIB runs `skopeo inspect --raw` per pullspec on 5 threads and stops at the first failure. Here
every unique pullspec is checked on a bounded thread pool over one pooled client, ALL failures
come back with their reason, and what was learnt persists under `$INDEXFLOW_CACHE_DIR`:

- `name@digest` pairs confirmed to exist: a digest pullspec seen before needs no request (a tag
  can move, so tag pullspecs are always asked again);
- labels by manifest digest: content under a digest never changes, so a warm read costs nothing
  for digest pullspecs and one HEAD for tag pullspecs.

Validation GETs the manifest (rather than HEAD) so that the label read of the same run finds it in
the client's memory and only fetches the config blob: two requests per digest bundle, cold.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from indexflow.errors import RegistryError
from indexflow.registry.artifacts import cache_root
from indexflow.registry.client import RegistryClient, RegistryStatusError
from indexflow.registry.refs import ImageRef

T = TypeVar("T")
DB_NAME = "registry-cache.sqlite"
_SCHEMA = ("CREATE TABLE IF NOT EXISTS confirmed (ref TEXT PRIMARY KEY, seen REAL)",
           "CREATE TABLE IF NOT EXISTS labels (digest TEXT PRIMARY KEY, labels TEXT)")


class _Store:
    """A key -> value table loaded into memory once; new entries written back in one transaction."""

    table = ""
    _shared: dict[tuple[str, Path], "_Store"] = {}
    _shared_lock = threading.Lock()

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._items: dict[str, str] = {}
        self._pending: dict[str, str] = {}
        if path is not None:
            self._load()

    @classmethod
    def default(cls: type[T]) -> T:
        """One shared instance per cache file and process (chunks in threads share it)."""
        path = cache_root() / DB_NAME
        with _Store._shared_lock:
            store = _Store._shared.get((cls.__name__, path))
            if store is None:
                store = _Store._shared[(cls.__name__, path)] = cls(path)  # type: ignore[call-arg]
            return store  # type: ignore[return-value]

    @classmethod
    def memory(cls: type[T]) -> T:
        """A cache that lives only as long as the object (tests, one-off runs)."""
        return cls(None)  # type: ignore[call-arg]

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        for statement in _SCHEMA:
            con.execute(statement)
        return con

    def _load(self) -> None:
        try:
            with self._connect() as con:
                self._items = dict(con.execute(f"SELECT * FROM {self.table}"))  # noqa: S608 - fixed name
        except (sqlite3.Error, OSError):
            self._items = {}  # an unreadable (or unwritable) cache is a cold cache, never an error

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, value: str) -> None:
        with self._lock:
            if self._items.get(key) != value:
                self._items[key] = self._pending[key] = value

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending or self.path is None:
            return
        try:
            with self._connect() as con:
                con.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?)",  # noqa: S608
                                list(pending.items()))
        except (sqlite3.Error, OSError):
            pass  # the cache only saves requests; losing a write costs a request next time

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class DigestCache(_Store):
    """`registry/repository@digest` references confirmed to exist (content under a digest cannot
    change, but it can be deleted: a confirmation is trusted for `MAX_AGE` seconds, then re-checked)."""

    table = "confirmed"
    MAX_AGE = 7 * 24 * 3600.0

    def confirmed(self, ref: ImageRef) -> bool:
        seen = self.get(f"{ref.name}@{ref.digest}") if ref.digest else None
        try:
            return seen is not None and time.time() - float(seen) < self.MAX_AGE
        except (TypeError, ValueError):
            return False  # not a time: asked again, like an old confirmation

    def confirm(self, ref: ImageRef, digest: str) -> None:
        self.put(f"{ref.name}@{digest}", str(time.time()))


class LabelCache(_Store):
    """Image config labels by manifest digest."""

    table = "labels"

    def labels(self, digest: str) -> dict[str, str] | None:
        """None for a miss, and for an entry that is not a map of strings (another version's, or a
        damaged file's): a bad cache entry costs a request, never the run."""
        value = self.get(digest)
        try:
            labels = json.loads(value) if value is not None else None
        except (TypeError, ValueError, RecursionError):
            return None
        ok = isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())
        return labels if ok else None

    def store(self, digest: str, labels: dict[str, str]) -> None:
        self.put(digest, json.dumps(labels, sort_keys=True))


def _map(fn: Callable[[str], T], items: list[str], concurrency: int,
         local: Callable[[str], T | None] = lambda item: None) -> list[T]:
    """`fn` over items on a bounded pool; items `local` already answers (cache hits) skip the pool,
    so a warm run costs no thread hand-offs."""
    done = {item: answer for item in items if (answer := local(item)) is not None}
    remote = [item for item in items if item not in done]
    if len(remote) <= 1 or concurrency <= 1:
        done.update(zip(remote, map(fn, remote)))
    else:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(remote)), thread_name_prefix="indexflow-reg") as pool:
            done.update(zip(remote, pool.map(fn, remote)))
    return [done[item] for item in items]


def _known_valid(cache: DigestCache, pullspec: str) -> tuple[str, str | None] | None:
    """(pullspec, None) for a digest pullspec confirmed before, (pullspec, reason) for no reference at
    all; None when only the registry can tell."""
    try:
        return (pullspec, None) if cache.confirmed(ImageRef.parse(pullspec)) else None
    except RegistryError as exc:
        return pullspec, _reason(exc)


def _known_labels(cache: LabelCache, pullspec: str) -> tuple[str, dict | str] | None:
    """(pullspec, labels) from the cache for a digest pullspec, (pullspec, reason) for no reference."""
    try:
        digest = ImageRef.parse(pullspec).digest
    except RegistryError as exc:
        return pullspec, _reason(exc)
    labels = cache.labels(digest) if digest else None
    return (pullspec, labels) if labels is not None else None


def answered_locally(pullspecs: Iterable[str], labels: bool = False) -> dict[str, str | dict | None]:
    """What this machine's cache answers without a request: for validation (pullspec -> None, or why
    it is unusable) or, with `labels`, for the label read (pullspec -> labels, or why). A warm merge
    then needs no task runs and no thread hand-offs for its thousands of cached bundles."""
    cache: _Store = LabelCache.default() if labels else DigestCache.default()
    known = _known_labels if labels else _known_valid
    return dict(hit for p in dict.fromkeys(pullspecs) if (hit := known(cache, p)) is not None)  # type: ignore[arg-type]


def _reason(exc: RegistryError) -> str:
    return exc.reason if isinstance(exc, RegistryStatusError) else str(exc)


def validate_pullspecs(client: RegistryClient, pullspecs: Iterable[str], concurrency: int = 32,
                       cache: DigestCache | None = None) -> dict[str, str]:
    """pullspec -> why it cannot be used (not found, unauthorized, ...); empty when all exist."""
    cache = cache if cache is not None else DigestCache.default()
    items = list(dict.fromkeys(pullspecs))

    def known(pullspec: str) -> tuple[str, str | None] | None:
        return _known_valid(cache, pullspec)

    def check(pullspec: str) -> tuple[str, str | None]:
        try:
            ref = ImageRef.parse(pullspec)
            cache.confirm(ref, client.manifest(ref).digest)
            return pullspec, None
        except RegistryError as exc:
            if exc.transient:  # an unreachable or overloaded registry says nothing about the image
                raise
            return pullspec, _reason(exc)

    try:
        results = _map(check, items, concurrency, known)
    finally:
        cache.flush()
    return {pullspec: reason for pullspec, reason in results if reason is not None}


def raise_for_missing(missing: dict[str, str]) -> None:
    """One RegistryError naming every pullspec that failed and why (IIB stops at the first)."""
    if missing:
        listed = "; ".join(f"{pullspec} ({reason})" for pullspec, reason in sorted(missing.items()))
        raise RegistryError(f"{len(missing)} bundle image(s) cannot be used: {listed}")


def read_bundle_labels(client: RegistryClient, pullspecs: Iterable[str], concurrency: int = 32,
                       cache: LabelCache | None = None) -> dict[str, dict]:
    """pullspec -> config labels of every bundle; every failure reported together."""
    cache = cache if cache is not None else LabelCache.default()
    items = list(dict.fromkeys(pullspecs))

    def known(pullspec: str) -> tuple[str, dict | str] | None:
        return _known_labels(cache, pullspec)

    def read(pullspec: str) -> tuple[str, dict | str]:
        try:
            ref = ImageRef.parse(pullspec)
            digest = client.resolve(ref)
            labels = cache.labels(digest)
            if labels is None:
                labels = client.labels(ref.with_digest(digest))
                cache.store(digest, labels)
            return pullspec, labels
        except RegistryError as exc:
            if exc.transient:
                raise
            return pullspec, _reason(exc)

    try:
        results = _map(read, items, concurrency, known)
    finally:
        cache.flush()
    failed = {p: r for p, r in results if isinstance(r, str)}
    raise_for_missing(failed)
    return {p: r for p, r in results if isinstance(r, dict)}
