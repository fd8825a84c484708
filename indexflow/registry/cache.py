"""The on-disk caches' size bound (least recently used out first) and their disk errors as one sentence.

Pulled bundles' files (`$INDEXFLOW_CACHE_DIR/bundles/<digest>/files`, catalog/bundlecache.py) and pulled index.db files
(`$INDEXFLOW_CACHE_DIR/index-db/<digest>/`) are kept across runs, one directory ("slot") per digest.
A slot's mtime is its last use (`touch` on every hit). `evict` removes the least recently used slots
until the slots together take at most `Limits.cache_max_bytes` (`INDEXFLOW_CACHE_MAX_BYTES`); a
slot used in the last `GRACE` seconds is never removed, because a run in another thread or process
may be reading it. Eviction scans every slot, so callers run it once per batch (after a run's bundles
are added, after an index.db pull), not per file. A writer builds an entry under a `.part-` name and
renames it into place; one killed mid-write leaves that behind, so eviction also removes `.part-`
entries not written to for `GRACE` (a live writer's are seconds old, or hold a file being written).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from indexflow.errors import RegistryError
from indexflow.registry import digests

GRACE = 300.0
PART = ".part-"  # the prefix of an entry still being written (tempfile.mkdtemp(prefix=PART))


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """An OSError inside (read-only dir, disk full, permissions) becomes one sentence naming `path`."""
    try:
        yield
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise RegistryError(f"cannot write under {path}: {reason}") from None


def slot(folder: Path, digest: str, where: str) -> Path:
    """`digest`'s slot under `folder`, named `<algorithm>-<hex>`: only a checked digest names one, so
    no text from a manifest or a ref can make a path (RegistryError naming `where` otherwise)."""
    return folder / digests.check(digest, where).replace(":", "-")


def touch(slot: Path) -> None:
    """Mark `slot` as just used (a failed touch only makes it look older)."""
    try:
        os.utime(slot)
    except OSError:
        pass


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _slots(dirs: list[Path]) -> list[tuple[float, int, Path]]:
    """(last use, bytes, path) of every finished slot in the cache `dirs`."""
    found = []
    for folder in dict.fromkeys(dirs):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                used = entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            found.append((used, _size(Path(entry.path)), Path(entry.path)))
    return found


def evict(dirs: list[Path], max_bytes: int, now: float | None = None) -> list[Path]:
    """Remove least recently used slots of the cache `dirs` (together) until they fit in `max_bytes`;
    returns what went."""
    now = time.time() if now is None else now
    removed = [part for folder in dict.fromkeys(dirs) for part in sweep_parts(folder, now)]
    slots = sorted(_slots(dirs))
    total = sum(size for _, size, _ in slots)
    for used, size, path in slots:
        if total <= max_bytes:
            break
        if now - used < GRACE:
            continue
        shutil.rmtree(path, ignore_errors=True)
        total -= size
        removed.append(path)
    return removed


def sweep_parts(folder: Path, now: float | None = None) -> list[Path]:
    """Remove the `.part-` entries of `folder` not written to for `GRACE`: what writers killed
    mid-write (kill -9, a lost node) left behind. Returns what went."""
    now = time.time() if now is None else now
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(PART)]
    except OSError:
        return []
    removed = []
    for entry in entries:
        try:
            if now - _last_write(entry) < GRACE:
                continue
        except OSError:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            Path(entry.path).unlink(missing_ok=True)
        removed.append(Path(entry.path))
    return removed


def _last_write(entry: os.DirEntry) -> float:
    """When a part was last written to: its own mtime, or a direct child's when newer (a download
    into a file inside does not change its dir's mtime, and may run longer than GRACE)."""
    newest = entry.stat(follow_symlinks=False).st_mtime
    if entry.is_dir(follow_symlinks=False):
        with os.scandir(entry.path) as children:
            for child in children:
                newest = max(newest, child.stat(follow_symlinks=False).st_mtime)
    return newest
