"""Bundle files kept per machine by image digest, one packed file per bundle.

Content under a digest never changes, so a bundle pulled once need not be pulled again: a merge
re-run after a failure (or a task retry) reads its bundles from here. What is kept is only what
`add` reads, the `BundleFiles` of `catalog/image.py` (manifests/* and metadata/*, links already
resolved, size caps already applied), packed into one file: one write per bundle instead of an
unpacked tree of directories, files and permission changes whose cost on 2 cores was most of the
add step's CPU.

A slot is `<cache>/<algorithm>-<hex>/files`, so `registry/cache.py` bounds and evicts it like the
index.db slots. The pack is a JSON header line ([[name, size], ...]) then the contents back to back.
A pack that does not read back whole is treated as absent (pulled again and replaced), never trusted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from indexflow.catalog.bundle import BundleFiles
from indexflow.catalog.image import holding, image_files
from indexflow.registry import cache as slots
from indexflow.registry.refs import ImageRef

PACK = "files"


def pack(files: BundleFiles) -> bytes:
    header = json.dumps([[name, len(data)] for name, data in files.items()]).encode()
    return b"".join([header, b"\n", *files.values()])


def unpack(blob: bytes) -> BundleFiles | None:
    """The files `pack` wrote, or None when `blob` is not a whole pack (truncated, foreign, damaged)."""
    header, _, body = blob.partition(b"\n")
    try:
        entries = json.loads(header)
    except ValueError:
        return None
    if not isinstance(entries, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and type(e[1]) is int and e[1] >= 0
            for e in entries):
        return None
    if sum(size for _, size in entries) != len(body):
        return None
    files: BundleFiles = {}
    at = 0
    for name, size in entries:
        files[name] = body[at:at + size]
        at += size
    return files


def _read(slot: Path) -> BundleFiles | None:
    try:
        size = (slot / PACK).stat().st_size
        with holding(size):  # cached bundles share the allowance of bundles read from images
            return unpack((slot / PACK).read_bytes())
    except OSError:
        return None


def _write(cache: Path, slot: Path, files: BundleFiles) -> None:
    """Publish the pack under `slot` by one rename (a reader sees a whole slot or none)."""
    with slots.disk_errors(cache):
        cache.mkdir(parents=True, exist_ok=True)
        part = Path(tempfile.mkdtemp(dir=cache, prefix=slots.PART))
    try:
        with slots.disk_errors(cache):
            (part / PACK).write_bytes(pack(files))
        if slot.exists():  # a damaged pack (or an older cache's unpacked tree) is replaced
            shutil.rmtree(slot, ignore_errors=True)
        os.rename(part, slot)
    except OSError:  # another worker published the same digest first; theirs is identical
        pass
    finally:
        shutil.rmtree(part, ignore_errors=True)


def cached_image_files(client: Any, ref: str, cache: Path) -> BundleFiles:
    """`image_files` of `ref`, read from `cache` when it holds the digest; a digest-pinned ref that is
    pulled is kept there. A tag ref may move, so it is always pulled and never kept."""
    digest = ImageRef.parse(ref).digest
    if digest is None:
        return image_files(client, ref)
    slot = slots.slot(cache, digest, ref)
    if slot.is_dir():
        files = _read(slot)
        if files is not None:
            slots.touch(slot)
            return files
    files = image_files(client, ref)
    _write(cache, slot, files)
    return files
