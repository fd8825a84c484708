"""index.db ORAS artifacts (merge.md B §9.3): naming, pull through a digest-keyed cache, push, restore.

The artifacts are written in the format the `oras` CLI writes for `oras push <ref>
index.db:application/vnd.sqlite --annotation k=v` (empty config descriptor, one layer titled
`index.db`, manifest annotations), so `oras pull` and IIB read them, and we read theirs. Transport
is our RegistryClient rather than the oras Python package, because that package sends requests
without timeouts and with its own auth/TLS handling; tests check interoperability with it.

Pulls are cached by artifact manifest digest: a second pull of an unchanged tag costs one HEAD and
downloads nothing. A cached file that was modified in place (size or mtime changed) is fetched
again rather than trusted. The cache shares `INDEXFLOW_CACHE_MAX_BYTES` with the bundle cache
(`cache.py`: least recently used slots go first); a cache dir that cannot be written is one sentence.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from indexflow.errors import RegistryError
from indexflow.merge import plan
from indexflow.registry import cache
from indexflow.registry.auth import DockerAuth
from indexflow.registry.client import OCI_MANIFEST, RegistryClient, sha256
from indexflow.registry.refs import ImageRef

SQLITE_MEDIA_TYPE = "application/vnd.sqlite"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
ARTIFACT_TYPE = "application/vnd.unknown.artifact.v1"  # what `oras push` sets when no --artifact-type
EMPTY_CONFIG = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2,
                "data": "e30="}
DB_NAME = "index.db"


def cache_root() -> Path:
    """`$INDEXFLOW_CACHE_DIR`, default `~/.cache/indexflow` (shared with the validation caches)."""
    return Path(os.environ.get("INDEXFLOW_CACHE_DIR") or Path.home() / ".cache" / "indexflow")


@dataclass(frozen=True)
class PulledDb:
    path: Path
    digest: str
    downloaded: bool


class IndexDbArtifacts:
    """ORAS index.db artifacts on `registry`, named by the IIB templates."""

    def __init__(self, client_or_config: RegistryClient | Path | str | None, registry: str,
                 template: str = "{registry}/index-db:{tag}", tag_template: str = "{image_name}-{tag}",
                 cache_dir: Path | str | None = None) -> None:
        if isinstance(client_or_config, RegistryClient):
            self.client = client_or_config
        else:
            self.client = RegistryClient(auth=DockerAuth.from_config(client_or_config))
        self.registry, self.template, self.tag_template = registry, template, tag_template
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root() / "index-db"

    def __repr__(self) -> str:
        return f"IndexDbArtifacts(registry={self.registry!r}, cache_dir={str(self.cache_dir)!r})"

    # -- naming --------------------------------------------------------------------------------
    def canonical_ref(self, index_pullspec: str) -> str:
        """`<registry>/index-db:<image_name>-<tag>` for an index pullspec (B §9.3)."""
        return plan.artifact_refs(index_pullspec, self.registry, "", self.template, self.tag_template).canonical

    def request_ref(self, index_pullspec: str, request_id: str) -> str:
        return plan.artifact_refs(index_pullspec, self.registry, request_id, self.template,
                                  self.tag_template).per_request

    # -- reads ---------------------------------------------------------------------------------
    def digest(self, ref: ImageRef | str) -> str | None:
        """The artifact's manifest digest, or None when the tag does not exist (one HEAD)."""
        return self.client.find_digest(ImageRef.coerce(ref))

    def pull(self, ref: ImageRef | str) -> PulledDb:
        """The artifact's index.db, from the cache when its digest was pulled before. Do not modify
        the returned file in place: copy it first (the merge works on a copy)."""
        ref = ImageRef.coerce(ref)
        digest = self.digest(ref)
        if digest is None:
            raise RegistryError(f"Failed to pull OCI artifact {ref}: it does not exist")
        cached = self._cached(digest)
        if cached is not None:
            cache.touch(cached.parent)
            return PulledDb(cached, digest, False)
        manifest = self.client.manifest(ref.with_digest(digest))
        layer = _db_layer(manifest.json, str(ref))
        if layer["size"] > self.client.limits.index_db_bytes:  # refused before a byte is written to disk
            raise RegistryError(f"Failed to pull OCI artifact {ref}: its index.db is {layer['size']} bytes, more than "
                                f"the {self.client.limits.index_db_bytes}-byte limit (INDEXFLOW_MAX_INDEX_DB_BYTES)")
        path = self._store(digest, layer["digest"],
                           lambda part: self.client.download_blob(ref, layer["digest"], part, layer["size"]))
        # one bound for both caches: the bundle cache lives beside the default index.db cache
        cache.evict([self.cache_dir, self.cache_dir.parent / "bundles"], self.client.limits.cache_max_bytes)
        return PulledDb(path, digest, True)

    def _slot(self, digest: str) -> Path:
        return cache.slot(self.cache_dir, digest, "index.db artifact")

    def _store(self, digest: str, layer_digest: str, fill: Callable[[Path], object]) -> Path:
        """`fill` writes the index.db of `digest` into a `.part-` dir beside the slots, and one rename
        publishes it. A writer killed midway leaves only that dir, which eviction sweeps once it is
        GRACE old (inside a slot, as before, nothing ever looked at it)."""
        slot = self._slot(digest)
        with cache.disk_errors(self.cache_dir):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix=cache.PART) as tmp:
                fill(Path(tmp) / DB_NAME)
                slot.mkdir(exist_ok=True)
                cache.touch(slot)  # an old empty slot is in use again: eviction must not take it now
                cache.sweep_parts(slot)  # what a killed download left inside it under the old layout
                os.replace(Path(tmp) / DB_NAME, slot / DB_NAME)
            self._remember(slot / DB_NAME, layer_digest)
        return slot / DB_NAME

    def _cached(self, digest: str) -> Path | None:
        path = self._slot(digest) / DB_NAME
        return path if self.layer_digest(path) is not None else None

    @staticmethod
    def layer_digest(path: Path) -> str | None:
        """The verified layer digest a cached index.db was downloaded (or pushed) under, while the file
        is still as it was written (size and mtime); None for any other file."""
        try:
            meta = json.loads((path.parent / "meta.json").read_text())
            stat = path.stat()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or (stat.st_size, stat.st_mtime_ns) != (meta.get("size"), meta.get("mtime_ns")):
            return None
        return meta.get("layer") if isinstance(meta.get("layer"), str) else None

    def _remember(self, path: Path, layer_digest: str) -> None:
        stat = path.stat()
        meta = {"layer": layer_digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        (path.parent / "meta.json").write_text(json.dumps(meta))

    # -- writes --------------------------------------------------------------------------------
    def push(self, ref: ImageRef | str, db_path: Path | str, annotations: dict[str, str],
             layer_digest: str | None = None) -> str:
        """Push `db_path` as the artifact's only layer (`application/vnd.sqlite`, title `index.db`);
        `layer_digest`, when the caller knows it, spares hashing the file again."""
        ref, db_path = ImageRef.coerce(ref), Path(db_path)
        if not db_path.is_file():
            raise RegistryError(f"Failed to push OCI artifact to {ref}: {db_path} is not a file")
        repo = ref.in_repository(ref.repository)
        try:
            layer_digest = self.client.push_blob(repo, db_path, layer_digest)
            self.client.push_blob(repo, b"{}")
            manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": ARTIFACT_TYPE,
                        "config": EMPTY_CONFIG,
                        "layers": [{"mediaType": SQLITE_MEDIA_TYPE, "digest": layer_digest,
                                    "size": db_path.stat().st_size, "annotations": {TITLE: DB_NAME}}],
                        "annotations": {**{k: str(v) for k, v in annotations.items()},
                                        CREATED: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
            digest = self.client.push_manifest(ref, json.dumps(manifest, indent=2).encode(), OCI_MANIFEST)
        except RegistryError as exc:
            raise RegistryError(f"Failed to push OCI artifact to {ref}: {exc}") from None
        self._seed_cache(db_path, digest, layer_digest)
        return digest

    def _seed_cache(self, db_path: Path, digest: str, layer_digest: str) -> None:
        """What we pushed is what a later pull would download: keep a copy under its digest. Only an
        optimisation: a cache that cannot take it (disk full) must not fail a push that has landed;
        the next pull downloads it."""
        if self._cached(digest) is not None:
            return
        try:
            self._store(digest, layer_digest, lambda part: shutil.copyfile(db_path, part))
        except RegistryError:
            pass

    def restore(self, ref: ImageRef | str, digest: str) -> None:
        """Point the tag back at `digest` (an earlier artifact manifest in the same repository)."""
        ref = ImageRef.coerce(ref)
        self.client.copy(ref.with_tag(None).with_digest(digest), ref)


def _db_layer(manifest: dict, ref: str) -> dict:
    """The layer titled index.db (or the only sqlite layer)."""
    layers = manifest.get("layers") or []
    titled = [la for la in layers if (la.get("annotations") or {}).get(TITLE) == DB_NAME]
    typed = [la for la in layers if la.get("mediaType") == SQLITE_MEDIA_TYPE]
    found = titled or typed
    if not found:
        raise RegistryError(f"Index.db file not found in OCI artifact {ref}")
    return found[0]
