"""The files opm reads from a bundle image, taken from its layers in memory.

`add` needs only `manifests/` and `metadata/` of each bundle. Unpacking every layer to disk and
reading the files back costs more CPU than parsing them (directories, chmods, temp files), and on
2 cores that CPU is the bottleneck of adding thousands of bundles. So the layers are fetched
through the registry client (digest-checked) and read straight from their tar streams. Nothing is
written to disk, so hostile paths cannot escape anywhere; OCI whiteouts, hard links and symlinks
inside the image are still honoured. The decompressed stream and the entry count are capped as for
the on-disk unpack (`registry.limits`), and the compressed layers of all bundles read at once may
hold at most `Limits.load_bytes` of memory together (threads wait for their turn).
"""

from __future__ import annotations

import contextlib
import posixpath
import tarfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from indexflow.catalog.bundle import BundleFiles
from indexflow.catalog.limits import max_bundle_bytes, max_file_bytes
from indexflow.errors import CatalogError
from indexflow.registry.limits import LayerBudget, LayerTar, Limits

WANTED = ("manifests/", "metadata/")
MAX_LAYER_BYTES = 256 << 20  # compressed, per layer


@dataclass(frozen=True)
class _Link:
    target: str  # normalised path inside the image


class _Budget:
    """What one image may cost: its layers' entries and decompressed bytes, and file bytes in memory."""

    def __init__(self, where: str, limits: Limits) -> None:
        self.where, self.bytes = where, max_bundle_bytes()
        self.file_cap = max_file_bytes()
        self.layers = LayerBudget(where, CatalogError, limits)

    def read(self, size: int) -> None:
        if size > self.file_cap:
            raise CatalogError(f"{self.where}: a bundle file is larger than {self.file_cap} bytes "
                               f"(INDEXFLOW_MAX_MANIFEST_BYTES)")
        self.bytes -= max(size, 0)
        if self.bytes < 0:
            raise CatalogError(f"{self.where}: bundle files larger than {max_bundle_bytes()} bytes "
                               f"(INDEXFLOW_MAX_BUNDLE_BYTES)")


@dataclass(frozen=True)
class _Lazy:
    """A file outside manifests/ and metadata/: read only if a link there points at it."""

    tar: tarfile.TarFile
    member: tarfile.TarInfo
    budget: _Budget

    def read(self) -> bytes:
        self.budget.read(self.member.size)
        extracted = self.tar.extractfile(self.member)
        return extracted.read() if extracted else b""


Tree = dict[str, "bytes | _Link | _Lazy"]


class _InFlight:
    """Compressed layer bytes held by the bundles being read at once, process wide. Each image
    reserves its layers' declared sizes in one step (never piecemeal, so two images cannot each hold
    half and wait for the other); an image larger than the whole allowance waits to be alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._used = 0

    @contextmanager
    def hold(self, size: int, allowance: int) -> Iterator[None]:
        size = min(size, allowance)
        with self._cond:
            self._cond.wait_for(lambda: self._used + size <= allowance)
            self._used += size
        try:
            yield
        finally:
            with self._cond:
                self._used -= size
                self._cond.notify_all()


_IN_FLIGHT = _InFlight()


def holding(size: int) -> contextlib.AbstractContextManager[None]:
    """Reserve `size` bytes of the process-wide allowance for bundles being read at once
    (INDEXFLOW_BUNDLE_LOAD_BYTES): in-memory image reads and unpacked bundle dirs share it."""
    return _IN_FLIGHT.hold(size, Limits.from_env().load_bytes)


def image_files(client: Any, ref: str) -> BundleFiles:
    """manifests/* and metadata/* of the (amd64, else first) image of `ref`, after all layers."""
    child, manifest = client.image_manifest(ref)
    limits = Limits.from_env()
    layers = manifest.json.get("layers") or []
    for i, layer in enumerate(layers):
        if layer["size"] > MAX_LAYER_BYTES:  # refuse before downloading it
            raise CatalogError(f"{ref} layer {i + 1}: larger than {MAX_LAYER_BYTES} bytes, not a bundle layer")
    with _IN_FLIGHT.hold(sum(layer["size"] for layer in layers), limits.load_bytes):
        return _read_layers(client, child, ref, layers, _Budget(str(ref), limits))


def _read_layers(client: Any, child: Any, ref: str, layers: list[dict], budget: _Budget) -> BundleFiles:
    tree: Tree = {}
    where = f"{ref} layer"
    try:
        with ExitStack() as stack:
            for i, layer in enumerate(layers):
                where = f"{ref} layer {i + 1}"
                data = client.blob(child, layer["digest"], max_bytes=layer["size"])
                opened = stack.enter_context(LayerTar.open(data, budget.layers, where))
                for member in opened.members():
                    _apply_member(tree, opened.tar, member, budget)
            return _resolve(tree)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise CatalogError(f"{where}: not a readable tar layer ({exc})") from None


def _norm(name: str) -> str | None:
    """Image-root-relative path, or None for the root itself (names cannot climb out of the root)."""
    path = posixpath.normpath("/" + name).lstrip("/")
    return path if path not in ("", ".") else None


def _drop(tree: Tree, path: str) -> None:
    """Remove `path` and everything below it (an OCI whiteout)."""
    for key in [k for k in tree if k == path or k.startswith(path + "/")]:
        del tree[key]


def _apply_member(tree: Tree, tar: tarfile.TarFile, member: tarfile.TarInfo, budget: _Budget) -> None:
    path = _norm(member.name)
    if path is None:
        return
    parent, base = posixpath.split(path)
    if base == ".wh..wh..opq":  # opaque dir: lower layers' content of `parent` is gone
        for key in [k for k in tree if k.startswith(parent + "/")]:
            del tree[key]
        return
    if base.startswith(".wh."):
        _drop(tree, posixpath.join(parent, base[4:]))
        return
    tree.pop(path, None)
    if member.issym():
        target = member.linkname if member.linkname.startswith("/") else posixpath.join(parent, member.linkname)
        tree[path] = _Link(_norm(target) or "")
    elif member.islnk():
        tree[path] = _Link(_norm(member.linkname) or "")
    elif member.isfile():
        lazy = _Lazy(tar, member, budget)
        tree[path] = lazy.read() if path.startswith(WANTED) else lazy


def _follow(tree: Tree, path: str, hops: int = 16) -> str | None:
    """Where `path` really is, following links in any of its components (None when dangling)."""
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        node = tree.get(prefix)
        if isinstance(node, _Link):
            if hops == 0:
                return None
            rest = "/".join(parts[i:])
            return _follow(tree, posixpath.join(node.target, rest) if rest else node.target, hops - 1)
    return path


def _resolve(tree: Tree) -> BundleFiles:
    """Direct children of manifests/ and metadata/ as opm would read them, links followed."""
    files: BundleFiles = {}
    for folder in ("manifests", "metadata"):
        real = _follow(tree, folder)
        if real is None:
            continue
        names = {k[len(real) + 1:].split("/", 1)[0] for k in tree if k.startswith(real + "/")}
        for name in names:
            target = _follow(tree, f"{real}/{name}")
            content = tree.get(target) if target else None
            if isinstance(content, _Lazy):
                content = content.read()
            if isinstance(content, bytes):
                files[f"{folder}/{name}"] = content
    return files
