"""What one registry answer may cost, and the reader that holds image layers to it.

Registries, bundle images and index.db artifacts come from people we do not trust, so every read
has a ceiling that is checked while the bytes arrive (never after reading them whole): a manifest
may be 4 MiB (containerd's limit), a layer's tar stream may unpack to 256 MiB and hold 10,000
entries per image, an index.db artifact may be 4 GiB, one request may take 300 s in all, whatever
the per-read timeout. The defaults are generous for bundles (tens of files, KBs to a few MB); each
can be changed by an environment variable (`Limits.from_env`, listed in docs/DESIGN.md "Limits").
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO

import httpx

from indexflow.errors import IndexflowError, RegistryError

_ENV = {"manifest_bytes": "INDEXFLOW_MAX_IMAGE_MANIFEST_BYTES", "unpacked_bytes": "INDEXFLOW_MAX_UNPACKED_BYTES",
        "layer_entries": "INDEXFLOW_MAX_LAYER_ENTRIES", "tag_pages": "INDEXFLOW_MAX_TAG_PAGES",
        "request_deadline": "INDEXFLOW_REGISTRY_DEADLINE", "cache_max_bytes": "INDEXFLOW_CACHE_MAX_BYTES",
        "load_bytes": "INDEXFLOW_BUNDLE_LOAD_BYTES", "index_db_bytes": "INDEXFLOW_MAX_INDEX_DB_BYTES"}


@dataclass(frozen=True)
class Limits:
    """Ceilings on what hostile registry content may cost (see the module docstring)."""

    manifest_bytes: int = 4 << 20  # one manifest or index, as containerd
    unpacked_bytes: int = 256 << 20  # the decompressed tar streams of one image's layers
    layer_entries: int = 10_000  # tar entries of one image, all layers (bundles have tens)
    tag_pages: int = 1_000  # `tags/list` pages of 1,000 tags followed at most
    request_deadline: float = 300.0  # seconds for one request, retries, redirects and token fetch included
    cache_max_bytes: int = 10 << 30  # bundle + index.db caches under $INDEXFLOW_CACHE_DIR, LRU-evicted
    load_bytes: int = 512 << 20  # compressed layer bytes of bundles read in memory at once
    index_db_bytes: int = 4 << 30  # one index.db artifact layer (real ones are tens to hundreds of MB)

    @classmethod
    def from_env(cls) -> "Limits":
        """Defaults, overridden by the `INDEXFLOW_MAX_*` variables (a bad value is one sentence)."""
        values: dict[str, float | int] = {}
        for f in fields(cls):
            text = os.environ.get(_ENV[f.name], "").strip()
            if not text:
                continue
            kind = float if f.type == "float" else int
            try:
                value = kind(text)
            except ValueError:
                value = -1
            if not value > 0:  # NaN included
                raise RegistryError(f"{_ENV[f.name]}={text!r} is not a positive {kind.__name__}")
            values[f.name] = value
        return cls(**values)  # type: ignore[arg-type]


class CappedBody(httpx.SyncByteStream):
    """A response body that ends in one RegistryError once it passes `limit` bytes; set as
    `response.stream` before httpx reads it (redirect answers, token answers)."""

    def __init__(self, inner: httpx.SyncByteStream, limit: int, what: str) -> None:
        self.inner, self.limit, self.what = inner, limit, what

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self.inner:
            seen += len(chunk)
            if seen > self.limit:
                raise RegistryError(f"{self.what} is larger than {self.limit} bytes")
            yield chunk

    def close(self) -> None:
        self.inner.close()


class LayerBudget:
    """What one image's layers may cost while they are read: tar entries and decompressed bytes.
    `error` is the IndexflowError subclass the caller's floor raises (RegistryError, CatalogError)."""

    def __init__(self, where: str, error: type[IndexflowError], limits: Limits | None = None) -> None:
        limits = limits or Limits.from_env()
        self.where, self.error = where, error
        self.entries_left, self.max_entries = limits.layer_entries, limits.layer_entries
        self.bytes_left, self.max_bytes = limits.unpacked_bytes, limits.unpacked_bytes

    def entry(self) -> None:
        self.entries_left -= 1
        if self.entries_left < 0:
            raise self.error(f"{self.where}: the image has more than {self.max_entries} files")

    def spend(self, size: int, where: str) -> None:
        self.bytes_left -= size
        if self.bytes_left < 0:
            raise self.error(f"{where}: unpacked content exceeds the {self.max_bytes}-byte limit")


class _Capped(io.RawIOBase):
    """A decompressed layer stream that refuses to read or seek past the image's remaining budget,
    so a gzip bomb costs at most the budget in CPU and a forged tar header cannot make tarfile read
    gigabytes (PAX and GNU long-name records are read whole)."""

    def __init__(self, raw: BinaryIO, budget: LayerBudget, where: str) -> None:
        super().__init__()
        self.raw, self.budget, self.where = raw, budget, where
        self.limit, self.high = budget.bytes_left, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _reach(self, end: int) -> None:
        if end > self.limit:
            self.budget.spend(end, self.where)  # raises: more than what is left
        self.high = max(self.high, end)

    def read(self, size: int = -1) -> bytes:
        start = self.raw.tell()
        if size is not None and size >= 0:
            self._reach(start + size)
            return self.raw.read(size)
        data = self.raw.read(self.limit - start + 1)
        self._reach(start + len(data))
        return data

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a writable buffer
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        target = {0: offset, 1: self.raw.tell() + offset}.get(whence)
        if target is None:
            raise OSError("seeking from the end of a layer stream is not supported")
        self._reach(target)
        return self.raw.seek(target)

    def tell(self) -> int:
        return self.raw.tell()

    def settle(self) -> None:
        """Charge what this layer used to the image's budget."""
        self.budget.spend(self.high, self.where)


class LayerTar:
    """One layer opened under a budget: `members()` counts entries; `tar.extractfile` reads content."""

    def __init__(self, tar: tarfile.TarFile, capped: _Capped, raw: BinaryIO, budget: LayerBudget) -> None:
        self.tar, self._capped, self._raw, self._budget = tar, capped, raw, budget

    @classmethod
    @contextmanager
    def open(cls, source: Path | bytes, budget: LayerBudget, where: str) -> Iterator["LayerTar"]:
        head = source[:4] if isinstance(source, bytes) else _head(source)
        if head.startswith(b"\x28\xb5\x2f\xfd"):
            raise budget.error(f"{where}: zstd-compressed layers are not supported")
        raw: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
        try:
            stream: BinaryIO = gzip.GzipFile(fileobj=raw) if head.startswith(b"\x1f\x8b") else raw  # type: ignore[assignment]
            capped = _Capped(stream, budget, where)
            tar = tarfile.open(fileobj=capped, mode="r:")  # type: ignore[arg-type]
            yield cls(tar, capped, raw, budget)
            capped.settle()
        finally:
            raw.close()

    def members(self) -> Iterator[tarfile.TarInfo]:
        for member in self.tar:
            self._budget.entry()
            yield member


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(4)
