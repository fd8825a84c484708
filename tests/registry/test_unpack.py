"""Crafted malicious layers, pushed to the real registry and pulled with `pull_bundle`.

Each must be refused with a RegistryError naming the image, leave nothing outside the target
directory, and leave no partial tree behind.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from indexflow.errors import RegistryError
from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef
from sandbox.images import build_image, tar_gz

Entry = Callable[[tarfile.TarFile], None]


def _file(name: str, data: bytes = b"pwned") -> Entry:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return add


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Entry:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tar.addfile(info)
    return add


def _special(name: str, kind: bytes) -> Entry:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.devmajor, info.devminor = kind, 1, 3
        tar.addfile(info)
    return add


def _layer(entries: list[Entry], gzip: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w", format=tarfile.GNU_FORMAT) as tar:
        for add in entries:
            add(tar)
    return buf.getvalue()


def _pull(client: RegistryClient, host: str, layers: list[bytes], dest: Path) -> Path:
    ref = ImageRef.parse(f"{host}/evil{uuid.uuid4().hex[:8]}/bundle:v1")
    build_image(client, ref, layers, {})
    return client.pull_bundle(ref, dest)


MALICIOUS = {
    "absolute path": [[_file("/tmp/indexflow-evil-abs")]],
    "dot-dot": [[_file("manifests/../../escaped")]],
    "symlink out (relative)": [[_link("manifests/up", "../../..")]],
    "symlink out (absolute)": [[_link("etc-link", "/etc")]],
    "symlink out through an inside link": [[_link("d", "."), _link("d/x", "../outside")]],
    "write through a link a later layer re-pointed": [
        [_link("l", "a/.."), _file("a/keep", b"x")], [_link("a", ".")], [_file("l/outside", b"pwned")]],
    "hard link out": [[_link("passwd", "/etc/passwd", tarfile.LNKTYPE)]],
    "hard link with dot-dot": [[_link("h", "../outside-file", tarfile.LNKTYPE)]],
    "device file": [[_special("dev/mem", tarfile.CHRTYPE)]],
    "fifo": [[_special("pipe", tarfile.FIFOTYPE)]],
    "later layer re-points a dir an earlier link goes through": [
        [_link("l", "a/.."), _file("a/keep", b"x")], [_link("a", ".")]],
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_layers_are_refused(case: str, registry_client: RegistryClient, local_registry,  # noqa: ANN001
                                      tmp_path: Path) -> None:
    dest = tmp_path / "root" / "bundle"
    layers = [_layer(entries) for entries in MALICIOUS[case]]
    with pytest.raises(RegistryError) as info:
        _pull(registry_client, local_registry.host, layers, dest)
    assert "/bundle:v1" in str(info.value)
    assert not dest.exists()  # no partial tree left behind
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == []
    assert not Path("/tmp/indexflow-evil-abs").exists()
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "outside").exists()


def test_plain_tar_layers_links_and_whiteouts(registry_client: RegistryClient, local_registry,  # noqa: ANN001
                                              tmp_path: Path) -> None:
    lower = _layer([_file("manifests/a.yaml", b"a"), _file("manifests/b.yaml", b"b"), _file("old/x", b"x"),
                    _link("metadata", "manifests"), _link("manifests/hard.yaml", "manifests/a.yaml", tarfile.LNKTYPE)],
                   gzip=False)
    upper = tar_gz({"old/.wh..wh..opq": b"", "old/new": b"n", "manifests/.wh.b.yaml": b""})
    out = _pull(registry_client, local_registry.host, [lower, upper], tmp_path / "b")
    assert (out / "manifests" / "a.yaml").read_bytes() == b"a"
    assert (out / "manifests" / "hard.yaml").read_bytes() == b"a"
    assert (out / "metadata").is_symlink() and (out / "metadata" / "a.yaml").read_bytes() == b"a"
    assert not (out / "manifests" / "b.yaml").exists()
    assert sorted(p.name for p in (out / "old").iterdir()) == ["new"]


def test_inside_symlinks_are_kept(registry_client: RegistryClient, local_registry, tmp_path: Path) -> None:  # noqa: ANN001
    layer = _layer([_file("lib/real.so", b"elf"), _link("lib/alias.so", "real.so"), _link("usr/lib", "../lib")])
    out = _pull(registry_client, local_registry.host, [layer], tmp_path / "b")
    assert (out / "usr" / "lib" / "alias.so").read_bytes() == b"elf"
