"""Outputs of the catalog steps, kept by the digest of everything they read.

add, deprecatetruncate, migrate and validate are pure functions of their inputs (a db's bytes,
the bundle refs, which are digest-pinned, the modes, the level). A re-run of the same merge
(the warm case: a retry after a failed build, a nightly batch with nothing new) would redo seconds
of parsing and SQL to get the same bytes again; here it copies them instead.

Entries are written under a temporary name and renamed, so a crash never leaves a half entry,
and two workers writing the same key write the same bytes. Keys are digests, so nothing goes
stale; only the `keep` most recently used entries stay (a db entry is tens of MB).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from indexflow.catalog.db import file_identity
from indexflow.registry.cache import PART, sweep_parts

ENGINE = "indexflow-catalog-2"  # bump when a step's output for the same input changes
DIGEST = "out_sha256"  # in an entry's note: the sha256 of its `out` file
_CHUNK = 1 << 20


_KNOWN: dict[tuple, str] = {}  # file identity (db.file_identity) -> sha256 of the file's bytes
_KNOWN_MAX = 4096


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes. A file whose digest this process knows (it hashed the file, or copied
    it from a step cache entry of known digest) and that has not changed since is not read again: a
    merge keys three steps and the index.db push on ~60 MB dbs, 0.15 s of hashing each."""
    path = Path(path)
    key = file_identity(path)
    known = _KNOWN.get(key)
    if known is not None:
        return known
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    if file_identity(path) == key:  # unchanged while it was read
        _know(key, h.hexdigest())
    return h.hexdigest()


def remember_digest(path: Path, digest: str) -> None:
    """Let `file_digest` answer `digest` for `path` until the file changes: for a file whose bytes were
    checked against that digest (a verified download, a copy of such a file)."""
    _know(file_identity(Path(path)), digest)


def _know(key: tuple, digest: str) -> None:
    if len(_KNOWN) >= _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN[key] = digest


def tree_digest(root: Path) -> str:
    """sha256 over every regular file under `root`: relative path and content, in path order."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(file_digest(path).encode())
    return h.hexdigest()


def step_key(step: str, *inputs: Any) -> str:
    """The key of one step's output: its name, the engine version and its JSON-able inputs."""
    text = json.dumps([ENGINE, step, *inputs], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class StepCache:
    """A directory of step outputs: `<key>/` holding files, a tree, and a small JSON note."""

    def __init__(self, root: Path, keep: int = 12) -> None:
        self.root = root
        self.keep = keep

    def _slot(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str, dest: Path | None) -> dict | None:
        """Copy the entry's `out` (file or tree) to `dest` and return its note; None on a miss."""
        slot = self._slot(key)
        note = slot / "note.json"
        if not note.is_file():
            return None
        out = slot / "out"
        os.utime(slot)  # recently used: kept by prune()
        if dest is None:
            return json.loads(note.read_text())
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        known = json.loads(note.read_text())
        if out.is_dir():
            shutil.copytree(out, dest)
        elif out.is_file():
            shutil.copyfile(out, dest)
            if isinstance(known.get(DIGEST), str):  # the bytes put() hashed: the next step's key needs no read
                remember_digest(dest, known[DIGEST])
        return known

    def put(self, key: str, out: Path | None, note: dict | None = None) -> None:
        """Keep `out` (a file, a tree, or nothing) and `note` under `key`."""
        slot = self._slot(key)
        if (slot / "note.json").is_file():
            return
        slot.parent.mkdir(parents=True, exist_ok=True)
        part = Path(tempfile.mkdtemp(dir=slot.parent, prefix=PART))
        try:
            if out is not None and out.is_dir():
                shutil.copytree(out, part / "out")
            elif out is not None:
                shutil.copyfile(out, part / "out")
                note = {**(note or {}), DIGEST: file_digest(out)}  # what the next step keys on anyway
            (part / "note.json").write_text(json.dumps(note or {}))
            os.rename(part, slot)
        except OSError:  # another worker stored the same key first: theirs is identical
            shutil.rmtree(part, ignore_errors=True)
        self.prune()

    def prune(self) -> None:
        """Drop all but the `keep` most recently used entries. Another run may be pruning the same
        cache at the same moment: an entry that vanishes meanwhile is simply gone."""
        used = []
        for slot in self.root.glob("??/*"):
            try:
                if not slot.name.startswith("."):
                    used.append((slot.stat().st_mtime, slot))
            except OSError:
                continue
        for _, old in sorted(used, reverse=True)[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        for folder in self.root.glob("??"):  # entries a killed writer left half written
            sweep_parts(folder)
