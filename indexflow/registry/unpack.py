"""Safe unpacking of image layers (gzip or plain tar) into one root directory.

Layers come from registries we do not control, so a layer is refused (RegistryError naming the
image and the member) when it would write outside the root: absolute paths, `..`, writes through
a symlink that leads out, symlinks or hard links pointing out, device files and FIFOs. The total
unpacked size is capped. OCI whiteouts are applied (`.wh.name` deletes `name` from lower layers,
`.wh..wh..opq` empties its directory); ownership is never changed and setuid bits are dropped.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from indexflow.errors import RegistryError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def unpack_layers(layers: list[Path], root: Path, max_bytes: int, image: str) -> None:
    """Apply layers in order onto `root`; on refusal the partial tree is removed."""
    root = Path(os.path.realpath(root))
    budget = [max_bytes]
    try:
        for index, layer in enumerate(layers):
            _unpack_one(layer, root, budget, f"{image} layer {index + 1}")
        _check_links(root, image)
    except (RegistryError, tarfile.TarError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        if isinstance(exc, RegistryError):
            raise
        raise RegistryError(f"{image}: cannot unpack a layer ({exc.__class__.__name__}: {exc})") from None


def _unpack_one(layer: Path, root: Path, budget: list[int], where: str) -> None:
    with layer.open("rb") as f:
        magic = f.read(4)
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        raise RegistryError(f"{where}: zstd-compressed layers are not supported")
    mode = "r:gz" if magic.startswith(b"\x1f\x8b") else "r:"
    with tarfile.open(layer, mode) as tar:
        for member in tar:
            _apply(tar, member, root, budget, where)


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


def _apply(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, budget: list[int], where: str) -> None:
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
        budget[0] -= member.size
        if budget[0] < 0:
            raise RegistryError(f"{where}: unpacked content exceeds the size limit")
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
