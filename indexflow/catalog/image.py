"""The files opm reads from a bundle image, taken from its layers in memory.

`add` needs only `manifests/` and `metadata/` of each bundle. Unpacking every layer to disk and
reading the files back costs more CPU than parsing them (directories, chmods, temp files), and on
2 cores that CPU is the bottleneck of adding thousands of bundles. So the layers are fetched
through the registry client (digest-checked) and read straight from their tar streams. Nothing is
written to disk, so hostile paths cannot escape anywhere; OCI whiteouts, hard links and symlinks
inside the image are still honoured, and the unpacked size is capped.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from indexflow.catalog.bundle import BundleFiles
from indexflow.catalog.limits import max_bundle_bytes, max_file_bytes
from indexflow.errors import CatalogError

WANTED = ("manifests/", "metadata/")
MAX_LAYER_BYTES = 256 << 20  # compressed, per layer
MAX_MEMBERS = 10_000  # bundles have tens of files; bounds the whiteout bookkeeping


@dataclass(frozen=True)
class _Link:
    target: str  # normalised path inside the image


class _Budget:
    """What one image may cost: files seen and bytes read into memory."""

    def __init__(self, where: str) -> None:
        self.where, self.members, self.bytes = where, MAX_MEMBERS, max_bundle_bytes()
        self.file_cap = max_file_bytes()

    def member(self) -> None:
        self.members -= 1
        if self.members < 0:
            raise CatalogError(f"{self.where}: the image has more than {MAX_MEMBERS} files")

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


def image_files(client: Any, ref: str) -> BundleFiles:
    """manifests/* and metadata/* of the (amd64, else first) image of `ref`, after all layers."""
    child, manifest = client.image_manifest(ref)
    tree: Tree = {}
    budget = _Budget(str(ref))
    where = f"{ref} layer"
    try:
        with ExitStack() as stack:
            for i, layer in enumerate(manifest.json.get("layers") or []):
                where = f"{ref} layer {i + 1}"
                if int(layer.get("size") or 0) > MAX_LAYER_BYTES:  # refuse before downloading it
                    raise CatalogError(f"{where}: larger than {MAX_LAYER_BYTES} bytes, not a bundle layer")
                data = client.blob(child, layer["digest"], max_bytes=MAX_LAYER_BYTES)
                tar = stack.enter_context(_open(data, where))
                for member in tar:
                    _apply_member(tree, tar, member, budget)
            return _resolve(tree)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise CatalogError(f"{where}: not a readable tar layer ({exc})") from None


def _open(data: bytes, where: str) -> tarfile.TarFile:
    if data[:4] == b"\x28\xb5\x2f\xfd":
        raise CatalogError(f"{where}: zstd-compressed layers are not supported")
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz" if data[:2] == b"\x1f\x8b" else "r:")


def _norm(name: str) -> str | None:
    """Image-root-relative path, or None for the root itself (names cannot climb out of the root)."""
    path = posixpath.normpath("/" + name).lstrip("/")
    return path if path not in ("", ".") else None


def _drop(tree: Tree, path: str) -> None:
    """Remove `path` and everything below it (an OCI whiteout)."""
    for key in [k for k in tree if k == path or k.startswith(path + "/")]:
        del tree[key]


def _apply_member(tree: Tree, tar: tarfile.TarFile, member: tarfile.TarInfo, budget: _Budget) -> None:
    budget.member()
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
