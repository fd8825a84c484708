"""One overall deadline per registry request, enforced on every socket operation.

httpx's timeouts apply to each read, so a registry that trickles one byte every half second keeps
a request alive forever under a 3 s timeout (headers included: h11 reads them in small pieces).
The sync client does its I/O in the calling thread, so the caller opens a `deadline(seconds)` scope
and the network backend below clamps every connect, read and write of that thread to what is left
of it; past the deadline the operation fails as an httpcore timeout, which httpx maps to its own
`TimeoutException` like any other. Scopes nest: the inner one never extends the outer.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

_local = threading.local()


@contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Every socket operation of this thread inside the scope ends by `now + seconds`; yields the
    monotonic deadline."""
    outer = getattr(_local, "deadline", None)
    ends = time.monotonic() + seconds
    _local.deadline = ends if outer is None else min(outer, ends)
    try:
        yield _local.deadline
    finally:
        _local.deadline = outer


def expired() -> bool:
    ends = getattr(_local, "deadline", None)
    return ends is not None and time.monotonic() >= ends


def _clamp(timeout: float | None, error: type[Exception]) -> float | None:
    ends = getattr(_local, "deadline", None)
    if ends is None:
        return timeout
    left = ends - time.monotonic()
    if left <= 0:
        raise error("the request's overall deadline has passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _clamp(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.SyncBackend):
    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        timeout = _clamp(timeout, httpcore.ConnectTimeout)
        return _Stream(super().connect_tcp(host, port, timeout, local_address, socket_options))


def transport(verify: bool | ssl.SSLContext, limits: httpx.Limits) -> httpx.HTTPTransport:
    """An httpx transport whose connections honour the calling thread's `deadline` scope.

    httpx does not take a network backend, so its connection pool is rebuilt with the same settings
    and ours (the pool is the transport's one attribute, `_pool`)."""
    built = httpx.HTTPTransport(verify=verify, limits=limits)
    built._pool = httpcore.ConnectionPool(  # noqa: SLF001
        ssl_context=httpx.create_ssl_context(verify=verify), max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
        network_backend=_Backend())
    return built
