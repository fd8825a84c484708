"""A loopback HTTP/1.1 proxy that puts distance and failures between a client and a sandbox server.

Real registries, GitLab and Kubernetes APIs are far away and fail in ways loopback servers never
do. This proxy sits in front of any plain-HTTP sandbox server (registry, git/GitLab, k8s API) and,
when told to (it is transparent by default):

- adds latency: one delay per request/response round trip and one per new connection (the TCP
  handshake is a round trip too), which is what a distant server costs a chatty client;
- injects faults into requests matching a method/path pattern, counted so a test can fail exactly
  the Nth match: an HTTP error status, a hang (timeout), a dropped connection, or a partial write
  (the upstream response cut in half, then the connection closed);
- runs an in-process callback just before forwarding a matching request (action "call"), so a test
  can change the server between two requests of one client, e.g. re-point a tag mid-pull.

It understands just enough HTTP/1.1 framing (Content-Length, chunked, close-delimited,
`Expect: 100-continue`) to keep keep-alive connections in step, and forwards bytes otherwise
untouched. Control it in-process (`FaultProxy.set_latency`, `add_fault`, `clear`, `stats`) or over
its admin HTTP port (`GET /state`, `POST /latency {"seconds": 0.05}`, `POST /faults {...}`,
`DELETE /faults`), e.g. from another process.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACTIONS = ("status", "hang", "drop", "partial", "call")
CHUNK = 256 * 1024
MAX_HEAD = 64 * 1024
LOG_SIZE = 100_000  # (method, path) of the latest requests, for tests that check what was sent


@dataclass
class Fault:
    """Fail matches `nth` .. `nth + times - 1` of requests whose method and path match.

    `action`: "status" (answer `status` without forwarding), "hang" (never answer), "drop" (close
    the connection), "partial" (forward, then send half the upstream response and close), "call"
    (run `call()` in a worker thread, then forward the request untouched).
    `after_upstream`: for hang/drop, forward the request first, so the server acts on it but the
    client never learns the outcome (the nastiest case for rollback). `hang_seconds` bounds a hang
    (then the connection drops), for tests that cannot wait for a client's own timeout.
    """

    action: str
    path: str = ".*"
    method: str | None = None
    nth: int = 1
    times: int = 1
    status: int = 503
    after_upstream: bool = False
    hang_seconds: float | None = None  # a hang that ends (in a dropped connection) after this long
    call: Callable[[], object] | None = field(default=None, repr=False)  # for action "call"
    matched: int = 0
    injected: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"fault action {self.action!r} is not one of {', '.join(ACTIONS)}")
        self._re = re.compile(self.path)

    def hit(self, method: str, path: str) -> bool:
        """Count a match; True when this match is one to fail."""
        if self.method and self.method.upper() != method.upper():
            return False
        if not self._re.search(path):
            return False
        self.matched += 1
        if self.nth <= self.matched < self.nth + self.times:
            self.injected += 1
            return True
        return False

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_") and k != "call"}


@dataclass
class _Request:
    method: str
    path: str
    head: bytes
    headers: dict[str, str]
    log: list[str] = field(default_factory=list)


class _Closed(Exception):
    """The peer went away; end this connection quietly."""


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


async def _read_head(reader: asyncio.StreamReader, prefix: bytes = b"") -> bytes | None:
    """Bytes up to and including the blank line (after `prefix`, already read); None on a clean EOF
    between messages."""
    try:
        return prefix + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial and not prefix:
            return None
        raise _Closed from e
    except asyncio.LimitOverrunError as e:
        raise _Closed from e


async def _copy_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None,
                     headers: dict[str, str], until_eof: bool) -> None:
    """Forward one message body (or drain it when writer is None), framed as the headers say."""

    async def put(data: bytes) -> None:
        if writer is not None:
            writer.write(data)
            await writer.drain()

    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                line = await reader.readuntil(b"\r\n")
                await put(line)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                        await put(trailer)
                    await put(b"\r\n")
                    return
                await put(await reader.readexactly(size + 2))
        elif "content-length" in headers:
            left = int(headers["content-length"])
            while left > 0:
                data = await reader.read(min(left, CHUNK))
                if not data:
                    raise _Closed
                left -= len(data)
                await put(data)
        elif until_eof:
            while data := await reader.read(CHUNK):
                await put(data)
    except (asyncio.IncompleteReadError, ValueError) as e:
        raise _Closed from e


def _response_has_body(method: str, status: int) -> bool:
    return not (method == "HEAD" or status in (204, 304) or 100 <= status < 200)


def _status_response(status: int) -> bytes:
    body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": f"injected fault {status}"}]}).encode()
    extra = "Retry-After: 0\r\n" if status in (429, 503) else ""
    return (f"HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class FaultProxy:
    """Loopback proxy in front of `upstream` ("host:port"); a context manager (starts and stops).

    `.host` ("127.0.0.1:PORT") is what clients should use instead of the upstream; `.admin_url` is
    the control endpoint when `admin=True`.
    """

    def __init__(self, upstream: str, port: int = 0, admin: bool = False, latency: float = 0.0) -> None:
        host, _, up_port = upstream.rpartition(":")
        self.upstream = (host or "127.0.0.1", int(up_port))
        self._want_port, self._want_admin = port, admin
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._latency = latency
        self._counts: Counter[str] = Counter()
        self._log: deque[tuple[str, str]] = deque(maxlen=LOG_SIZE)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._admin: ThreadingHTTPServer | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0

    # -- control -------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def admin_url(self) -> str | None:
        return f"http://127.0.0.1:{self._admin.server_address[1]}" if self._admin else None

    def set_latency(self, seconds: float) -> None:
        """Delay added to every round trip and every new connection (0 turns it off)."""
        with self._lock:
            self._latency = max(0.0, float(seconds))

    def add_fault(self, action: str, path: str = ".*", **kw: Any) -> Fault:
        """Arm a fault (see `Fault`); returns it so a test can read `.matched` / `.injected`."""
        fault = Fault(action, path, **kw)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Back to a transparent proxy: no faults, no latency (counters are kept)."""
        with self._lock:
            self._faults.clear()
            self._latency = 0.0

    def reset_stats(self) -> None:
        """Zero the counters and forget the request log."""
        with self._lock:
            self._counts.clear()
            self._log.clear()

    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request since the last `reset_stats` (the latest LOG_SIZE)."""
        with self._lock:
            return list(self._log)

    def stats(self) -> dict[str, Any]:
        """Requests seen (total, per method), connections, injected faults, current settings."""
        with self._lock:
            return {"requests": self._counts["requests"], "connections": self._counts["connections"],
                    "by_method": {k[7:]: v for k, v in self._counts.items() if k.startswith("method:")},
                    "injected": sum(f.injected for f in self._faults), "latency": self._latency,
                    "faults": [f.public() for f in self._faults]}

    def _match(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self._counts["requests"] += 1
            self._counts[f"method:{method}"] += 1
            self._log.append((method, path))
            hit = None
            for f in self._faults:
                if f.hit(method, path) and hit is None:
                    hit = f
            return hit

    def _delay(self) -> float:
        with self._lock:
            return self._latency

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "FaultProxy":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self.port:
            raise RuntimeError(f"fault proxy could not listen on port {self._want_port}")
        if self._want_admin:
            self._admin = ThreadingHTTPServer(("127.0.0.1", 0), _admin_handler(self))
            self._admin.daemon_threads = True
            threading.Thread(target=self._admin.serve_forever, args=(0.05,), name="faultproxy-admin",
                             daemon=True).start()
        return self

    def stop(self) -> None:
        if self._admin:
            self._admin.shutdown()
            self._admin.server_close()
            self._admin = None
        if self._loop and self._stopping:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: threading.Event) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        try:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._want_port,
                                                      limit=MAX_HEAD, backlog=512)
        except OSError:
            ready.set()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        await self._stopping.wait()
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one client connection -----------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._counts["connections"] += 1
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            if delay := self._delay():
                await asyncio.sleep(delay)
            first = await reader.read(1)
            if not first or first == b"\x16":  # EOF, or a TLS hello: this proxy speaks plain HTTP only
                return
            while True:
                head = await _read_head(reader, first)
                first = b""
                if head is None:
                    return
                if upstream is None or upstream[0].at_eof():
                    if upstream:
                        upstream[1].close()
                    upstream = await asyncio.open_connection(*self.upstream, limit=MAX_HEAD)
                if not await self._round_trip(head, reader, writer, *upstream):
                    return
        except (_Closed, ConnectionError, OSError, asyncio.CancelledError):
            return
        finally:
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    w.close()

    async def _round_trip(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          up_r: asyncio.StreamReader, up_w: asyncio.StreamWriter) -> bool:
        """Forward one request and its response; False when the connection must end."""
        start, headers = _parse_head(head)
        method, path = (start.split(" ") + ["", ""])[:2]
        fault = self._match(method, path)
        if fault and fault.action == "call":
            await asyncio.get_running_loop().run_in_executor(None, fault.call or (lambda: None))
            fault = None
        if fault and not fault.after_upstream and fault.action in ("drop", "hang", "status"):
            return await self._fault_before(fault, reader, writer, headers)
        if delay := self._delay():
            await asyncio.sleep(delay)
        up_w.write(head)
        await up_w.drain()
        resp_head, resp_headers, status = await self._send_request_body(head, headers, reader, writer, up_r, up_w)
        has_body = _response_has_body(method, status)
        close = ("close" in resp_headers.get("connection", "").lower() or "close" in headers.get("connection", "").lower()
                 or (has_body and "content-length" not in resp_headers
                     and "chunked" not in resp_headers.get("transfer-encoding", "").lower()))
        if fault:
            return await self._fault_after(fault, writer, resp_head, resp_headers, up_r, has_body, close)
        writer.write(resp_head)
        if has_body:
            await _copy_body(up_r, writer, resp_headers, until_eof=close)
        await writer.drain()
        return not close

    async def _send_request_body(self, head: bytes, headers: dict[str, str], reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter, up_r: asyncio.StreamReader,
                                 up_w: asyncio.StreamWriter) -> tuple[bytes, dict[str, str], int]:
        """Stream the request body upstream (honouring 100-continue); returns the final response head."""
        if "100-continue" in headers.get("expect", "").lower():
            resp = await self._response_head(up_r)
            if resp[2] != 100:
                return resp
            writer.write(resp[0])
            await writer.drain()
        await _copy_body(reader, up_w, headers, until_eof=False)
        while True:
            resp = await self._response_head(up_r)
            if resp[2] >= 200:
                return resp
            writer.write(resp[0])  # other interim responses pass through
            await writer.drain()

    @staticmethod
    async def _response_head(up_r: asyncio.StreamReader) -> tuple[bytes, dict[str, str], int]:
        head = await _read_head(up_r)
        if head is None:
            raise _Closed
        start, headers = _parse_head(head)
        try:
            return head, headers, int(start.split(" ")[1])
        except (IndexError, ValueError) as e:
            raise _Closed from e

    async def _fault_before(self, fault: Fault, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            headers: dict[str, str]) -> bool:
        """Faults the upstream never sees."""
        if fault.action == "drop":
            return False  # closed mid-request: the body (if any) is never read
        await _copy_body(reader, None, headers, until_eof=False)
        if fault.action == "status":
            writer.write(_status_response(fault.status))
            await writer.drain()
            return True
        await self._hang(reader, fault.hang_seconds)
        return False

    async def _fault_after(self, fault: Fault, writer: asyncio.StreamWriter, resp_head: bytes,
                           resp_headers: dict[str, str], up_r: asyncio.StreamReader, has_body: bool,
                           close: bool) -> bool:
        """Faults applied once the upstream has acted on the request."""
        if fault.action == "partial":
            body = bytearray()
            if has_body:
                sink = _Collector(body)
                await _copy_body(up_r, sink, resp_headers, until_eof=close)  # type: ignore[arg-type]
            whole = resp_head + bytes(body)
            cut = len(resp_head) + len(body) // 2 if body else len(resp_head) // 2
            writer.write(whole[:cut])
            await writer.drain()
            return False
        if has_body:
            await _copy_body(up_r, None, resp_headers, until_eof=close)
        if fault.action == "status":
            writer.write(_status_response(fault.status))
            await writer.drain()
            return not close
        if fault.action == "hang":
            await self._hang(None, fault.hang_seconds)
        return False

    async def _hang(self, reader: asyncio.StreamReader | None, limit: float | None) -> None:
        """Never answer: wait until the client gives up (closes), `limit` passes or the proxy stops."""
        stop = asyncio.ensure_future(self._stopping.wait())  # type: ignore[union-attr]
        waits = [stop]
        if reader is not None:
            waits.append(asyncio.ensure_future(reader.read()))
        try:
            await asyncio.wait(waits, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()


class _Collector:
    """A StreamWriter stand-in that keeps what is written (the partial-write fault needs it whole)."""

    def __init__(self, buf: bytearray) -> None:
        self.buf = buf

    def write(self, data: bytes) -> None:
        self.buf += data

    async def drain(self) -> None:
        return None


def _admin_handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Admin(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet: tests read stdout
            return None

        def _reply(self, code: int, obj: object) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def do_GET(self) -> None:  # noqa: N802
            self._reply(200, proxy.stats()) if self.path == "/state" else self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            try:
                body = self._body()
                if self.path == "/latency":
                    proxy.set_latency(float(body.get("seconds", 0)))
                elif self.path == "/faults":
                    proxy.add_fault(**body)
                else:
                    return self._reply(404, {"error": "not found"})
            except (TypeError, ValueError) as e:
                return self._reply(400, {"error": str(e)})
            self._reply(200, proxy.stats())

        def do_DELETE(self) -> None:  # noqa: N802
            if self.path != "/faults":
                return self._reply(404, {"error": "not found"})
            proxy.clear()
            self._reply(200, proxy.stats())

    return Admin


def main(argv: list[str] | None = None) -> None:
    """`python -m sandbox.faultproxy UPSTREAM [--port N] [--latency S]`: run until interrupted."""
    import argparse
    import time

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("upstream", help="host:port of the server to front")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added per round trip")
    args = ap.parse_args(argv)
    with FaultProxy(args.upstream, port=args.port, admin=True, latency=args.latency) as proxy:
        print(json.dumps({"proxy": proxy.url, "admin": proxy.admin_url}), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
