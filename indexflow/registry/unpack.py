"""Safe unpacking of image layers (gzip or plain tar) into one root directory.

Layers come from registries we do not control, so a layer is refused (RegistryError naming the
image and the member) when it would write outside the root: absolute paths, `..`, writes through
a symlink that leads out, symlinks or hard links pointing out, device files and FIFOs. The total
unpacked size is capped. OCI whiteouts are applied (`.wh.name` deletes `name` from lower layers,
`.wh..wh..opq` empties its directory); ownership is never changed and setuid bits are dropped.
The decompressed tar streams and the number of entries are capped (`limits.LayerBudget`), so a gzip
bomb or a layer of 100,000 empty files is refused early.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zlib
from dataclasses import replace
from pathlib import Path

from indexflow.errors import RegistryError
from indexflow.registry.limits import LayerBudget, LayerTar, Limits

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def unpack_layers(layers: list[Path], root: Path, max_bytes: int, image: str) -> None:
    """Apply layers in order onto `root`; on refusal the partial tree is removed. At most `max_bytes`
    (and the configured `unpacked_bytes`) of decompressed tar stream are read."""
    root = Path(os.path.realpath(root))
    limits = Limits.from_env()
    budget = LayerBudget(image, RegistryError, replace(limits, unpacked_bytes=min(max_bytes, limits.unpacked_bytes)))
    try:
        for index, layer in enumerate(layers):
            _unpack_one(layer, root, budget, f"{image} layer {index + 1}")
        _check_links(root, image)
    except (RegistryError, tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        shutil.rmtree(root, ignore_errors=True)
        if isinstance(exc, RegistryError):
            raise
        raise RegistryError(f"{image}: cannot unpack a layer ({exc.__class__.__name__}: {exc})") from None


def _unpack_one(layer: Path, root: Path, budget: LayerBudget, where: str) -> None:
    with LayerTar.open(layer, budget, where) as opened:
        for member in opened.members():
            _apply(opened.tar, member, root, where)


def _target(root: Path, name: str, where: str) -> Path:
    """`root/name` after checking the name is relative, has no `..`, and its parent resolves inside."""
    clean = name
    while clean.startswith("./"):
        clean = clean[2:]
    if clean in ("", "."):
        return root
    if clean.startswith("/") or os.path.isabs(clean):
        raise RegistryError(f"{where}: refusing absolute path {name!r}")
    if ".." in Path(clean).parts:
        raise RegistryError(f"{where}: refusing path with '..': {name!r}")
    path = root / clean
    parent = Path(os.path.realpath(path.parent))
    if not _inside(parent, root):
        raise RegistryError(f"{where}: refusing {name!r}, it would be written through a link leaving the image root")
    return parent / path.name


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _apply(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, where: str) -> None:
    target = _target(root, member.name, where)
    base = target.name
    if base == OPAQUE:
        for child in list(target.parent.iterdir()) if target.parent.is_dir() else []:
            _remove(child)
        return
    if base.startswith(WHITEOUT):
        _remove(target.parent / base[len(WHITEOUT):])
        return
    if member.isdev() or member.isfifo():
        raise RegistryError(f"{where}: refusing device or FIFO {member.name!r}")
    if target == root:
        return
    if member.isdir():
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            _remove(target)
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(0o700 | (member.mode & 0o755))
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove(target)
    if member.issym():
        _symlink(member, target, root, where)
    elif member.islnk():
        _hardlink(member, target, root, where)
    elif member.isreg():
        with tar.extractfile(member) as src, target.open("wb") as out:  # type: ignore[union-attr]
            shutil.copyfileobj(src, out, 1 << 20)
        target.chmod(0o600 | (member.mode & 0o755))


def _symlink(member: tarfile.TarInfo, target: Path, root: Path, where: str) -> None:
    link = member.linkname
    resolved = Path(os.path.realpath(target.parent / link))
    if os.path.isabs(link) or not _inside(resolved, root):
        raise RegistryError(f"{where}: refusing symlink {member.name!r} -> {link!r}, it leaves the image root")
    os.symlink(link, target)


def _hardlink(member: tarfile.TarInfo, target: Path, root: Path, where: str) -> None:
    source = _target(root, member.linkname, where)
    real = Path(os.path.realpath(source))
    if not _inside(real, root) or not real.is_file():
        raise RegistryError(f"{where}: refusing hard link {member.name!r} -> {member.linkname!r}")
    os.link(real, target)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _check_links(root: Path, image: str) -> None:
    """A later layer may re-point a directory an earlier symlink goes through: check the end state."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink() and not _inside(Path(os.path.realpath(path)), root):
                raise RegistryError(f"{image}: refusing symlink {path.relative_to(root)} that leads out of the image root")
