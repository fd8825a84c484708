"""A registry (or token server, or blob storage host) on loopback that answers what a test scripts,
and remembers every request it received, so a test can prove which host saw which credentials.

Each `HostileServer` is one HTTP/1.1 origin. Bind several to 127.0.0.1, 127.0.0.2, 127.0.0.3 to get
distinct hosts. A route answers with a `Reply`: a status, headers and a body that may be bytes, an
endless generator (sent chunked), or trickled (a pause before each chunk); `raw` bytes are written
one at a time, which trickles the status line and headers themselves. `serve_image` publishes an
image (config + layers) under a repository, digests computed with sha256 or sha512.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    pause: float = 0.0  # before each body chunk (or each raw byte)
    raw: bytes | None = None  # the whole answer, status line included, written byte by byte


Route = Reply | Callable[[Received], Reply]


class HostileServer:
    """One loopback origin; `routes[path]` (path with query first, then without) answers requests;
    `/v2/` answers 200 unless routed. Use as a context manager."""

    def __init__(self, bind: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0  # requests being answered at once, of paths containing `watch`
        self.watch = ""
        self._server = ThreadingHTTPServer((bind, 0), self._handler())
        self._server.daemon_threads = True
        self.host = f"{bind}:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> "HostileServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def route(self, path: str, reply: Route) -> None:
        self.routes[path] = reply

    def authorizations(self) -> list[str]:
        """Every Authorization header this host received."""
        with self._lock:
            return [r.headers["authorization"] for r in self.received if "authorization" in r.headers]

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.received]

    def _answer(self, req: Received) -> Reply:
        route = self.routes.get(req.path) or self.routes.get(req.path.split("?", 1)[0])
        if route is None:
            return Reply(200, {"Content-Type": "application/json"}, b"{}") if req.path == "/v2/" else Reply(404)
        return route(req) if callable(route) else route

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                req = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                watched = server.watch in req.path
                with server._lock:
                    server.received.append(req)
                    server.in_flight += watched
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                pending = [watched]

                def answered() -> None:
                    """Counted done once, before the client can see the end of a chunked body: the
                    client may send its next request the moment it does, before this thread runs on."""
                    with server._lock:
                        server.in_flight -= pending.pop() if pending else 0

                self._answered = answered
                try:
                    self._send(server._answer(req))
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True
                finally:
                    answered()

            def _send(self, reply: Reply) -> None:
                if reply.raw is not None:
                    for i in range(len(reply.raw)):
                        self.wfile.write(reply.raw[i:i + 1])
                        self.wfile.flush()
                        time.sleep(reply.pause)
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                body = reply.body
                if isinstance(body, bytes):
                    if "Content-Length" not in reply.headers:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self._chunks([body] if not reply.pause else (body[i:i + 1] for i in range(len(body))),
                                     reply.pause, chunked=False)
                    return
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if self.command != "HEAD":
                    self._chunks(body, reply.pause, chunked=True)

            def _chunks(self, chunks: Iterable[bytes], pause: float, chunked: bool) -> None:
                for chunk in chunks:
                    if pause:
                        time.sleep(pause)
                    if not chunk:
                        continue
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                    self.wfile.flush()
                if chunked:
                    self._answered()
                    self.wfile.write(b"0\r\n\r\n")

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _any

        return Handler


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def serve_blob(server: HostileServer, repo: str, data: bytes, algorithm: str = "sha256") -> str:
    digest = digest_of(data, algorithm)
    server.route(f"/v2/{repo}/blobs/{digest}", Reply(200, {"Content-Type": "application/octet-stream"}, data))
    return digest


def serve_manifest(server: HostileServer, repo: str, tag: str, raw: bytes, digest: str | None = None) -> str:
    """`raw` under the tag and under its digest (sha256 unless given)."""
    digest = digest or digest_of(raw)
    reply = Reply(200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": digest}, raw)
    server.route(f"/v2/{repo}/manifests/{tag}", reply)
    server.route(f"/v2/{repo}/manifests/{digest}", reply)
    return digest


def image_manifest(config_digest: str, config_size: int, layers: list[tuple[str, int]]) -> dict:
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": config_size},
            "layers": [{"mediaType": LAYER_TYPE, "digest": d, "size": s} for d, s in layers]}


def serve_image(server: HostileServer, repo: str, tag: str, layers: list[bytes], algorithm: str = "sha256",
                labels: dict[str, str] | None = None) -> str:
    """An amd64 image whose blobs are named with `algorithm`; returns the manifest digest (sha256)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": labels or {}}}).encode()
    config_digest = serve_blob(server, repo, config, algorithm)
    descs = [(serve_blob(server, repo, layer, algorithm), len(layer)) for layer in layers]
    raw = json.dumps(image_manifest(config_digest, len(config), descs)).encode()
    return serve_manifest(server, repo, tag, raw)


# -- hostile layers ------------------------------------------------------------------------------
def _gzip_stream(write: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=1) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        write(tar)
    return buf.getvalue()


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def bomb_layer(size: int, name: str = "manifests/.wh.hidden") -> bytes:
    """A gzip layer whose one entry hides `size` zero bytes (a whiteout, so nothing reads it except
    the decompressor skipping over it): a few hundred KB that decompress to `size`."""
    def write(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, io.BufferedReader(_Zeros(size), 1 << 20))
    return _gzip_stream(write)


def many_files_layer(count: int) -> bytes:
    """A gzip layer of `count` empty files (a few hundred KB compressed); headers are stamped from one
    template, which is 20 times faster than tarfile for 100,000 entries."""
    template = bytearray(tarfile.TarInfo("x").tobuf(tarfile.GNU_FORMAT))
    out = io.BytesIO()
    for i in range(count):
        header = bytearray(template)
        header[0:100] = f"manifests/f{i}".encode().ljust(100, b"\0")
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % sum(header)
        out.write(header)
    out.write(bytes(1024))
    return gzip.compress(out.getvalue(), compresslevel=1, mtime=0)


def endless(chunk: bytes = b"x" * 65536) -> Iterator[bytes]:
    while True:
        yield chunk
