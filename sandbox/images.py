"""Build images straight into a registry through the RegistryClient: no container engine needed.

An image is a list of tar.gz layers plus a config whose labels are what the merge reads; the
manifest is OCI. `build_index` puts several per-arch images behind one OCI index or Docker
manifest list, as real multi-arch index images are.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path

from indexflow.registry.client import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, RegistryClient, sha256
from indexflow.registry.refs import ImageRef

LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"


def tar_gz(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    """A reproducible layer (sorted, mtime 0, no owner names) from `{path: content}`."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def bundle_layer(bundle_dir: Path) -> bytes:
    """The bundle directory (`manifests/`, `metadata/`) as the image root, like `opm`-built bundles."""
    root = Path(bundle_dir)
    return tar_gz({str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()})


def _uncompressed(layer: bytes) -> bytes:
    return gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer


def _layer_type(types: dict[str, str], layer: bytes) -> str:
    """Plain tar layers are legal too (OCI `...tar`, Docker has only the gzip type)."""
    return types["layer"] if layer[:2] == b"\x1f\x8b" or types is DOCKER_TYPES else LAYER_TAR


def image_config(layers: Iterable[bytes], labels: dict[str, str], arch: str = "amd64") -> bytes:
    diff_ids = [f"sha256:{hashlib.sha256(_uncompressed(layer)).hexdigest()}" for layer in layers]
    config = {"architecture": arch, "os": "linux", "config": {"Labels": dict(labels)},
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [{"created_by": "indexflow sandbox"} for _ in diff_ids]}
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


DOCKER_TYPES = {"manifest": DOCKER_MANIFEST, "config": "application/vnd.docker.container.image.v1+json",
                "layer": "application/vnd.docker.image.rootfs.diff.tar.gzip"}
OCI_TYPES = {"manifest": OCI_MANIFEST, "config": CONFIG, "layer": LAYER_GZIP}


def _manifest(client: RegistryClient, ref: ImageRef, layers: list[bytes], labels: dict[str, str], arch: str,
              types: dict[str, str]) -> bytes:
    """Push layers and config; the manifest bytes that reference them."""
    repo = ref.in_repository(ref.repository)
    config = image_config(layers, labels, arch)
    manifest = {"schemaVersion": 2, "mediaType": types["manifest"],
                "config": {"mediaType": types["config"], "digest": client.push_blob(repo, config), "size": len(config)},
                "layers": [{"mediaType": _layer_type(types, layer), "digest": client.push_blob(repo, layer), "size": len(layer)}
                           for layer in layers]}
    return json.dumps(manifest, separators=(",", ":")).encode()


def build_image(client: RegistryClient, ref: ImageRef, layers: list[bytes], labels: dict[str, str],
                arch: str = "amd64") -> str:
    """Push layers, config and an OCI manifest under `ref`; returns the manifest digest."""
    return client.push_manifest(ref, _manifest(client, ref, layers, labels, arch, OCI_TYPES), OCI_MANIFEST)


def build_index(client: RegistryClient, ref: ImageRef, layers: list[bytes], labels: dict[str, str],
                arches: Iterable[str], media_type: str = OCI_INDEX) -> str:
    """One image per arch (same layers, arch in the config), pushed by digest, behind an OCI index
    or a Docker manifest list (then the children are Docker schema 2 manifests) under `ref`."""
    types = DOCKER_TYPES if media_type == DOCKER_LIST else OCI_TYPES
    entries = []
    for arch in arches:
        raw = _manifest(client, ref, layers, labels, arch, types)
        digest = client.push_manifest(ref.with_tag(None).with_digest(sha256(raw)), raw, types["manifest"])
        entries.append({"mediaType": types["manifest"], "digest": digest, "size": len(raw),
                        "platform": {"architecture": arch, "os": "linux"}})
    index = {"schemaVersion": 2, "mediaType": media_type, "manifests": entries}
    return client.push_manifest(ref, json.dumps(index, separators=(",", ":")).encode(), media_type)


def push_bundle_image(client: RegistryClient, ref: ImageRef, bundle_dir: Path, labels: dict[str, str]) -> str:
    """A bundle image from a bundle directory; returns its manifest digest."""
    return build_image(client, ref, [bundle_layer(bundle_dir)], labels)
