"""Registry-to-registry copies that keep digests, and tag deletion on a delete-by-digest registry.

A copy pushes the source manifest bytes unchanged, so the destination digest equals the source
digest; an index is copied child by child first. Blobs already at the destination are skipped,
blobs in another repository of the same registry are mounted (no bytes move), anything else is
streamed through a temp file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from indexflow import workdirs
from indexflow.errors import RegistryError
from indexflow.registry.refs import ImageRef

if TYPE_CHECKING:
    from indexflow.registry.client import Manifest, RegistryClient


def copy_image(client: "RegistryClient", src: ImageRef, dst: ImageRef) -> str:
    """Copy an image or a whole index from `src` to `dst` (tag or digest); returns the digest."""
    manifest = client.manifest(src)
    if dst.digest and dst.digest != manifest.digest:
        raise RegistryError(f"cannot copy {src} to {dst}: the source digest is {manifest.digest}")
    if dst.tag and not dst.digest and client.exists(dst) and client.resolve(dst) == manifest.digest:
        return manifest.digest
    pinned = src.with_tag(None).with_digest(manifest.digest)
    if manifest.is_index:
        for entry in manifest.json.get("manifests", []):
            child = pinned.with_digest(entry["digest"])
            _copy_single(client, child, client.manifest(child), dst.with_tag(None).with_digest(entry["digest"]))
        return client.push_manifest(dst, manifest.raw, manifest.media_type)
    return _copy_single(client, pinned, manifest, dst)


def _copy_single(client: "RegistryClient", src: ImageRef, manifest: "Manifest", dst: ImageRef) -> str:
    if manifest.is_index:  # nested index: rare, but the same rule applies
        return copy_image(client, src, dst)
    descriptors = [manifest.json.get("config") or {}, *(manifest.json.get("layers") or [])]
    for desc in descriptors:
        if desc.get("digest") and not desc.get("urls"):  # foreign layers stay where their URLs say
            copy_blob(client, src, dst, desc["digest"])
    return client.push_manifest(dst, manifest.raw, manifest.media_type)


def copy_blob(client: "RegistryClient", src: ImageRef, dst: ImageRef, digest: str) -> None:
    repo = dst.in_repository(dst.repository)
    if client.blob_exists(repo, digest):
        return
    if src.api_host == dst.api_host and client.mount_blob(repo, digest, src.repository):
        return
    with workdirs.scratch("copy") as tmp:
        path = client.download_blob(src, digest, Path(tmp) / "blob")
        client.push_blob(repo, path, digest)


def delete_tag(client: "RegistryClient", ref: ImageRef) -> None:
    """Remove one tag, keeping every other tag of the repository on its digest.

    The registry deletes manifests by digest, which drops every tag on that digest; the others are
    re-pushed right after (briefly absent in between). An index in the same repository that lists
    this digest as a child would lose it: not a case our writes create (outputs are separate repos).
    """
    if not ref.tag or ref.digest:
        raise RegistryError(f"cannot delete {ref}: give a tag, not a digest")
    digest = client.resolve(ref)
    manifest = client.manifest(ref.with_digest(digest))
    siblings = [t for t in client.tags(ref) if t != ref.tag
                and client.resolve(ref.with_tag(t)) == digest]
    client.delete_manifest(ref, digest)
    for tag in siblings:
        client.push_manifest(ref.with_tag(tag), manifest.raw, manifest.media_type)
