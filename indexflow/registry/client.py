"""OCI distribution API client: pooled httpx clients per TLS setting, thread safe, retrying.

Why not skopeo: a subprocess per image costs ~17 ms on loopback and much more against a real
registry; a reused HTTP/1.1 connection pool costs 1.5-2 ms per HEAD and lets thousands of
checks run concurrently. Every call has a timeout; 429, 5xx, resets and timeouts are retried
with exponential backoff (Retry-After honoured, capped). Manifests and config blobs are
remembered by `name@digest` (their content can never change), so the label read of a bundle reuses the
manifest fetched by its validation within a run.

Registries are not trusted (`limits.py`): every request has an overall deadline (`deadline.py`),
manifests and blobs are size-capped while they stream, every digest is verified (sha256, sha512;
other algorithms refused), manifests are checked for shape before use, and `tags/list` pagination
stops at a repeated or foreign `Link` and at a page cap.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

from indexflow import workdirs
from indexflow.errors import RegistryError
from indexflow.registry import deadline, digests
from indexflow.registry.auth import DockerAuth, RegistryAuth
from indexflow.registry.cache import disk_errors
from indexflow.registry.limits import Limits
from indexflow.registry.manifests import (cap_redirect_body, check_config, check_manifest, header_digest, next_page,
                                          tag_page)
from indexflow.registry.refs import ImageRef

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join([OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST])
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_MAX_BYTES = 1 << 30
_MEMO_BYTES = 64 << 20
SHARDS = 8  # connection pools per TLS setting (at least 8 connections each); threads are spread over them


class RegistryStatusError(RegistryError):
    """A registry answered with an error status; `status` is kept for callers that classify it."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message, transient=status in RETRY_STATUSES)
        self.status = status

    @property
    def reason(self) -> str:
        """Short cause ("not found", "unauthorized ...") for lists of failures."""
        return _reason(self.status)


@dataclass(frozen=True)
class Manifest:
    media_type: str
    raw: bytes
    digest: str
    json: dict

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or "manifests" in self.json


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _reason(status: int) -> str:
    return {401: "unauthorized (check the registry credentials)", 403: "access denied",
            404: "not found", 429: "rate limited"}.get(status, f"HTTP {status}")


class Stats:
    """HTTP requests actually sent (token fetches and retries included), by method; thread safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, method: str) -> None:
        with self._lock:
            self._counts[method] += 1

    @property
    def requests(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def by_method(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class _Memo:
    """Bounded digest -> value store (by bytes), for immutable manifests and config blobs."""

    def __init__(self, max_bytes: int = _MEMO_BYTES) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._size, self._max = 0, max_bytes

    def get(self, key: str) -> object | None:
        with self._lock:
            item = self._items.get(key)
            return item[0] if item else None

    def discard(self, key: str) -> None:
        with self._lock:
            item = self._items.pop(key, None)
            self._size -= item[1] if item else 0

    def put(self, key: str, value: object, size: int) -> None:
        with self._lock:
            if key in self._items or size > self._max // 4:  # a big item would evict everything
                return
            self._items[key] = (value, size)
            self._size += size
            while self._size > self._max and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                self._size -= dropped


class RegistryClient:
    """See docs/DESIGN.md "Registry layer". Use as a context manager or call `close()`."""

    def __init__(self, auth: DockerAuth | None = None, insecure: Iterable[str] = (), timeout: float = 30.0,
                 max_connections: int = 64, retries: int = 5, ca_files: dict[str, str | Path] | None = None,
                 backoff: float = 0.25, limits: Limits | None = None) -> None:
        self.limits = limits or Limits.from_env()
        self.insecure = frozenset(insecure)
        self.ca_files = {host: str(path) for host, path in (ca_files or {}).items()}
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.retries, self.backoff = retries, backoff
        self.stats = Stats()
        self._auth = RegistryAuth(auth, token_timeout=timeout)
        self._shards = max(1, min(SHARDS, max_connections // 8))
        per_shard = max(1, -(-max_connections // self._shards))
        self._limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        self._clients: dict[tuple[str, int], httpx.Client] = {}
        self._local, self._dealer = threading.local(), itertools.count()
        self._schemes: dict[str, str] = {}
        self._lock, self._probe_lock = threading.Lock(), threading.Lock()
        self._manifests, self._blobs = _Memo(), _Memo(16 << 20)

    # -- plumbing ------------------------------------------------------------------------------
    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _http(self, host: str) -> httpx.Client:
        """One pooled client per verification setting (default CAs, a registry's CA file, or none) and
        per shard of the calling threads: httpcore serialises every request's pool bookkeeping on one
        lock, so tens of threads on a single pool mostly queue for that lock."""
        key = "insecure" if host in self.insecure else self.ca_files.get(host, "default")
        shard = (key, self._shard())
        client = self._clients.get(shard)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(shard)
            if client is None:
                client = self._clients[shard] = self._new_client(key)
            return client

    def _shard(self) -> int:
        """This thread's pool: threads are dealt round-robin over the shards as they first ask."""
        mine = getattr(self._local, "shard", None)
        if mine is None:
            mine = self._local.shard = next(self._dealer) % self._shards
        return mine

    def _new_client(self, key: str) -> httpx.Client:
        verify: bool | str = False if key == "insecure" else (True if key == "default" else key)
        if isinstance(verify, str):
            import ssl

            try:
                verify = ssl.create_default_context(cafile=verify)  # type: ignore[assignment]
            except ssl.SSLError:  # before OSError: it is one
                raise RegistryError(f"the CA file {key} holds no PEM certificate") from None
            except OSError as exc:
                raise RegistryError(f"cannot read the CA file {key} ({exc.strerror or exc.__class__.__name__})") from None
        return httpx.Client(transport=deadline.transport(verify, self._limits), timeout=self.timeout,
                            auth=self._auth, follow_redirects=True,
                            event_hooks={"request": [lambda r: self.stats.count(r.method)],
                                         "response": [cap_redirect_body]})

    def _base(self, ref: ImageRef) -> str:
        """`https://host`, or for an insecure registry whatever it speaks."""
        host = ref.api_host
        if host not in self.insecure:
            return f"https://{host}"
        scheme = self._schemes.get(host)
        if scheme is None:
            with self._probe_lock:
                return self._probe(host)
        return f"{scheme}://{host}"

    def _probe(self, host: str) -> str:
        """Plain HTTP when the host answers the v2 API on it, else https without verification;
        remembered per host. (Asking http first is cheap both ways: a TLS server answers a plain
        request with an immediate 400, while a plain server may never answer a TLS hello.)"""
        scheme = self._schemes.get(host)
        if scheme is None:
            try:
                response = self._http(host).get(f"http://{host}/v2/", auth=None,
                                                 timeout=min(self.timeout.connect or 5.0, 5.0))
                scheme = "http" if response.status_code in (200, 401) else "https"
            except httpx.TransportError:
                scheme = "https"
            self._schemes[host] = scheme
        return f"{scheme}://{host}"

    def _sleep(self, attempt: int, response: httpx.Response | None) -> None:
        delay = self.backoff * (2 ** attempt) * (0.5 + random.random())
        if response is not None and response.headers.get("Retry-After", "").isdigit():
            delay = float(response.headers["Retry-After"])
        time.sleep(min(delay, 10.0))

    def request(self, method: str, ref: ImageRef, path: str, *, ok: Iterable[int] = (200,),
                content: bytes | Path | None = None, headers: dict[str, str] | None = None,
                stream: bool = False, what: str | None = None) -> httpx.Response:
        """Send with retries; a status outside `ok` raises RegistryStatusError naming `what`."""
        what = what or str(ref)
        with deadline.deadline(self.limits.request_deadline):
            url = path if path.startswith("http") else f"{self._base(ref)}/v2/{ref.repository}/{path}"
            return self._attempts(method, ref, url, content, headers, stream, tuple(ok), what)

    def _attempts(self, method: str, ref: ImageRef, url: str, content: bytes | Path | None,
                  headers: dict[str, str] | None, stream: bool, ok: tuple[int, ...], what: str) -> httpx.Response:
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._send(method, ref, url, content, headers, stream)
            except httpx.TransportError as exc:
                self._check_deadline(what, ref)
                if last:
                    raise RegistryError(f"{what}: registry {ref.registry} is unreachable "
                                        f"({exc.__class__.__name__} after {attempt + 1} attempts)",
                                        transient=True) from None
                self._sleep(attempt, None)
                continue
            if response.status_code in RETRY_STATUSES and not last and not deadline.expired():
                response.close()
                self._sleep(attempt, response)
                continue
            if response.status_code not in ok:
                response.close()
                raise RegistryStatusError(f"{what}: {_reason(response.status_code)}", response.status_code)
            return response
        raise AssertionError("unreachable")

    def _check_deadline(self, what: str, ref: ImageRef) -> None:
        if deadline.expired():
            raise RegistryError(f"{what}: registry {ref.registry} did not answer within the "
                                f"{self.limits.request_deadline:g}-second deadline")

    @staticmethod
    def _read(response: httpx.Response, max_bytes: int, what: str, kind: str) -> bytes:
        """A streamed body, refused as soon as it passes `max_bytes` (Content-Length checked first);
        transport errors propagate (the caller retries)."""
        try:
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise RegistryError(f"{what}: the {kind} is larger than the {max_bytes}-byte limit")
            chunks, size = [], 0
            for chunk in response.iter_bytes(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise RegistryError(f"{what}: the {kind} is larger than the {max_bytes}-byte limit")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            response.close()

    def _get_capped(self, ref: ImageRef, path: str, max_bytes: int, what: str, kind: str,
                    headers: dict[str, str] | None = None, ok: Iterable[int] = (200,)) -> tuple[httpx.Response, bytes]:
        """GET a body under one deadline, capped while it streams; a connection lost mid-body is
        retried like one lost before the answer; the deadline passing is one sentence."""
        with deadline.deadline(self.limits.request_deadline):
            for attempt in range(self.retries + 1):
                response = self.request("GET", ref, path, headers=headers, stream=True, what=what, ok=ok)
                try:
                    return response, self._read(response, max_bytes, what, kind)
                except httpx.TransportError as exc:
                    self._check_deadline(what, ref)
                    if attempt == self.retries:
                        raise RegistryError(f"{what}: reading the {kind} failed ({exc.__class__.__name__} after "
                                            f"{attempt + 1} attempts)", transient=True) from None
                    self._sleep(attempt, None)
        raise AssertionError("unreachable")

    def _send(self, method: str, ref: ImageRef, url: str, content: bytes | Path | None,
              headers: dict[str, str] | None, stream: bool) -> httpx.Response:
        http = self._http(ref.api_host)
        if isinstance(content, Path):
            with content.open("rb") as body:
                return http.send(http.build_request(method, url, content=body, headers=headers))
        return http.send(http.build_request(method, url, content=content, headers=headers), stream=stream)

    # -- reads ---------------------------------------------------------------------------------
    def resolve(self, ref: ImageRef | str) -> str:
        """The manifest digest a tag points to (a digest ref is returned as is, no request)."""
        ref = ImageRef.coerce(ref)
        if ref.digest:
            return ref.digest
        response = self.request("HEAD", ref, f"manifests/{ref.reference}", headers={"Accept": ACCEPT})
        return header_digest(response, str(ref)) or self.manifest(ref).digest

    def find_digest(self, ref: ImageRef | str) -> str | None:
        """One HEAD: the manifest digest, or None when the tag or digest does not exist."""
        ref = ImageRef.coerce(ref)
        response = self.request("HEAD", ref, f"manifests/{ref.reference}", ok=(200, 404), headers={"Accept": ACCEPT})
        if response.status_code == 404:
            return None
        return header_digest(response, str(ref)) or self.manifest(ref).digest

    def exists(self, ref: ImageRef | str) -> bool:
        """HEAD the manifest: True/False; auth and server errors raise (they are not 'missing')."""
        ref = ImageRef.coerce(ref)
        if ref.digest and self._manifests.get(f"{ref.name}@{ref.digest}") is not None:
            return True
        response = self.request("HEAD", ref, f"manifests/{ref.reference}", ok=(200, 404), headers={"Accept": ACCEPT})
        return response.status_code == 200

    def manifest(self, ref: ImageRef | str) -> Manifest:
        """GET the manifest (any of the four media types); digest-pinned ones come from memory."""
        ref = ImageRef.coerce(ref)
        if ref.digest:
            cached = self._manifests.get(f"{ref.name}@{ref.digest}")
            if cached is not None:
                return cached  # type: ignore[return-value]
        if ref.digest:
            digests.check(ref.digest, str(ref))
        response, raw = self._get_capped(ref, f"manifests/{ref.reference}", self.limits.manifest_bytes, str(ref),
                                         "manifest", headers={"Accept": ACCEPT})
        digest = sha256(raw)
        if ref.digest and not digests.of(ref.digest, raw, str(ref)):
            raise RegistryError(f"{ref}: the registry returned a manifest whose digest is {digest}")
        body = check_manifest(raw, str(ref))
        media_type = body.get("mediaType") or response.headers.get("Content-Type", "").split(";")[0]
        manifest = Manifest(media_type, raw, digest, body)
        self._manifests.put(f"{ref.name}@{digest}", manifest, len(raw))
        return manifest

    def image_manifest(self, ref: ImageRef | str, arch: str | None = None) -> tuple[ImageRef, Manifest]:
        """The single-image manifest for `arch` (amd64 by default, else the first) of an image or index."""
        ref = ImageRef.coerce(ref)
        manifest = self.manifest(ref)
        if not manifest.is_index:
            return ref, manifest
        entries = [m for m in manifest.json.get("manifests", []) if _platform(m)[1] != "unknown"]
        if not entries:
            raise RegistryError(f"{ref}: the image index lists no image manifests")
        wanted = arch or "amd64"
        chosen = next((m for m in entries if _platform(m)[1] == wanted), None)
        if chosen is None and arch:
            raise RegistryError(f"{ref}: no manifest for architecture {arch} (has {', '.join(self.arches(ref))})")
        child = ref.with_digest((chosen or entries[0])["digest"])
        return child, self.manifest(child)

    def blob(self, ref: ImageRef, digest: str, max_bytes: int = 16 << 20) -> bytes:
        """A small blob (config, artifact) in memory, digest checked and remembered."""
        cached = self._blobs.get(digest)
        if cached is not None:
            return cached  # type: ignore[return-value]
        what = f"{ref.name}@{digests.check(digest, ref.name)}"
        _, data = self._get_capped(ref, f"blobs/{digest}", max_bytes, what, "blob")
        if not digests.of(digest, data, what):
            raise RegistryError(f"{what}: downloaded blob does not match its digest")
        self._blobs.put(digest, data, len(data))
        return data

    def config(self, ref: ImageRef | str, arch: str | None = None) -> dict:
        """The image config JSON (of `arch`'s image when `ref` is an index)."""
        child, manifest = self.image_manifest(ref, arch)
        digest = (manifest.json.get("config") or {}).get("digest")
        if not digest:
            raise RegistryError(f"{child}: the manifest has no config blob")
        return check_config(self.blob(child, digest), str(child))

    def labels(self, ref: ImageRef | str) -> dict[str, str]:
        return dict((self.config(ref).get("config") or {}).get("Labels") or {})

    def arches(self, ref: ImageRef | str) -> list[str]:
        """Architectures of an index (attestation entries skipped) or of a single image."""
        manifest = self.manifest(ref)
        if manifest.is_index:
            found = [_platform(m)[1] for m in manifest.json.get("manifests", [])]
            return list(dict.fromkeys(a for a in found if a and a != "unknown"))
        return [self.config(ref).get("architecture") or "amd64"]

    def tags(self, repo_ref: ImageRef | str) -> list[str]:
        """Every tag of a repository, following `Link` pagination on the same registry: a page seen
        before or past `limits.tag_pages` pages ends in one sentence instead of a loop."""
        ref = ImageRef.coerce(repo_ref)
        base = self._base(ref)
        url, tags, seen = f"{base}/v2/{ref.repository}/tags/list?n=1000", [], set()
        while url:
            if url in seen or len(seen) >= self.limits.tag_pages:
                raise RegistryError(f"{ref.name}: the registry's tag list pagination does not end "
                                    f"(a repeated page or more than {self.limits.tag_pages} pages)")
            seen.add(url)
            response, page = self._get_capped(ref, url, self.limits.manifest_bytes, ref.name, "tag list", ok=(200, 404))
            if response.status_code == 404:
                return []
            tags += tag_page(page, ref.name)
            url = next_page(response.headers.get("Link", ""), base, ref.name)
        return tags

    # -- writes --------------------------------------------------------------------------------
    def blob_exists(self, repo_ref: ImageRef, digest: str) -> bool:
        response = self.request("HEAD", repo_ref, f"blobs/{digest}", ok=(200, 404), what=f"{repo_ref.name}@{digest}")
        return response.status_code == 200

    def push_blob(self, repo_ref: ImageRef | str, data: bytes | Path, digest: str | None = None) -> str:
        """Monolithic upload (POST then PUT ?digest=); skipped when the registry already has it."""
        ref = ImageRef.coerce(repo_ref)
        digest = digest or (sha256(data) if isinstance(data, bytes) else _file_digest(data))
        if self.blob_exists(ref, digest):
            return digest
        return self.upload_blob(ref, data, digest)

    def upload_blob(self, repo_ref: ImageRef, data: bytes | Path, digest: str) -> str:
        """POST + PUT without the existence check (for callers that know the blob is new)."""
        ref = repo_ref
        start = self.request("POST", ref, "blobs/uploads/", ok=(202,), what=ref.name)
        location = start.headers.get("Location", "")
        if location.startswith("/"):
            location = f"{self._base(ref)}{location}"
        # httpx `params=` would replace the upload URL's own query (the registry then 404s)
        url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
        try:
            self.request("PUT", ref, url, ok=(201,), content=data, what=f"{ref.name}@{digest}",
                         headers={"Content-Type": "application/octet-stream"})
        except RegistryStatusError as exc:
            # a retried PUT whose first attempt completed finds its upload session gone
            if exc.status != 404 or not self.blob_exists(ref, digest):
                raise
        return digest

    def mount_blob(self, repo_ref: ImageRef, digest: str, source_repository: str) -> bool:
        """Cross-repository mount within one registry; False when the registry started an upload instead."""
        path = f"blobs/uploads/?mount={digest}&from={source_repository}"
        response = self.request("POST", repo_ref, path, ok=(201, 202), what=f"{repo_ref.name}@{digest}")
        if response.status_code == 201:
            return True
        location = response.headers.get("Location", "")
        if location:  # abandon the upload session the registry opened
            url = location if location.startswith("http") else f"{self._base(repo_ref)}{location}"
            self.request("DELETE", repo_ref, url, ok=(204, 404, 405), what=repo_ref.name)
        return False

    def push_manifest(self, ref: ImageRef | str, raw: bytes, media_type: str) -> str:
        """PUT under the ref's tag (or digest); returns the manifest digest."""
        ref = ImageRef.coerce(ref)
        digest = sha256(raw)
        target = ref.tag if ref.tag and not ref.digest else (ref.digest or digest)
        self.request("PUT", ref, f"manifests/{target}", ok=(201,), content=raw,
                     headers={"Content-Type": media_type})
        self._manifests.put(f"{ref.name}@{digest}", Manifest(media_type, raw, digest, json.loads(raw)), len(raw))
        return digest

    def delete_manifest(self, ref: ImageRef, digest: str) -> None:
        self.request("DELETE", ref, f"manifests/{digest}", ok=(202, 404), what=f"{ref.name}@{digest}")
        self._manifests.discard(f"{ref.name}@{digest}")

    def copy(self, src: ImageRef | str, dst: ImageRef | str) -> str:
        from indexflow.registry.transfer import copy_image

        return copy_image(self, ImageRef.coerce(src), ImageRef.coerce(dst))

    def copy_blob(self, src: ImageRef | str, dst: ImageRef | str, digest: str) -> None:
        """One blob into `dst`'s repository: skipped if there, mounted within a registry, else streamed."""
        from indexflow.registry.transfer import copy_blob

        copy_blob(self, ImageRef.coerce(src), ImageRef.coerce(dst), digest)

    def delete_tag(self, ref: ImageRef | str) -> None:
        from indexflow.registry.transfer import delete_tag

        delete_tag(self, ImageRef.coerce(ref))

    # -- bundles -------------------------------------------------------------------------------
    def download_blob(self, ref: ImageRef, digest: str, dest: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
        """Stream a blob to `dest`, refusing more than `max_bytes`, digest checked."""
        for attempt in range(self.retries + 1):
            try:
                return self._stream_to(ref, digest, dest, max_bytes)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise RegistryError(f"{ref.name}@{digest}: download failed ({exc.__class__.__name__})",
                                        transient=True) from None
                self._sleep(attempt, None)
        raise AssertionError("unreachable")

    def _stream_to(self, ref: ImageRef, digest: str, dest: Path, max_bytes: int) -> Path:
        what = f"{ref.name}@{digests.check(digest, ref.name)}"
        with deadline.deadline(self.limits.request_deadline):
            response = self.request("GET", ref, f"blobs/{digest}", stream=True, what=what)
            hasher, size = digests.hasher(digest, what), 0
            try:
                with disk_errors(dest), dest.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        size += len(chunk)
                        if size > max_bytes:
                            raise RegistryError(f"{what}: layer is larger than the {max_bytes}-byte limit")
                        hasher.update(chunk)
                        out.write(chunk)
            except httpx.TransportError:
                self._check_deadline(what, ref)
                raise
            finally:
                response.close()
        if not digests.matches(digest, hasher):
            raise RegistryError(f"{what}: downloaded layer does not match its digest")
        return dest

    def pull_bundle(self, ref: ImageRef | str, dest: Path | str, max_bytes: int = DEFAULT_MAX_BYTES,
                    arch: str | None = None) -> Path:
        """Download and safely unpack every layer of an image into `dest` (created), in order."""
        from indexflow.registry.unpack import unpack_layers

        ref, dest = ImageRef.coerce(ref), Path(dest)
        child, manifest = self.image_manifest(ref, arch)
        layers = manifest.json.get("layers") or []
        if sum(layer["size"] for layer in layers) > max_bytes:
            raise RegistryError(f"{ref}: the image is larger than the {max_bytes}-byte limit")
        with disk_errors(dest):
            dest.mkdir(parents=True, exist_ok=True)
        with disk_errors(Path(tempfile.gettempdir())), workdirs.scratch("layers") as tmp:
            files = [self.download_blob(child, layer["digest"], Path(tmp) / f"layer{i}", min(layer["size"], max_bytes))
                     for i, layer in enumerate(layers)]
            unpack_layers(files, dest, max_bytes, str(ref))
        return dest


def _platform(entry: dict) -> tuple[str, str]:
    platform = entry.get("platform") or {}
    return platform.get("os", ""), platform.get("architecture", "")


def _file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"

