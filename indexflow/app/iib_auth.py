"""Who is calling `indexflow iib-api`, and what they may do (IIB's Apache login + privileges).

Three ways to learn the user, chosen by `iib_api.auth` in the settings block:
- `kerberos`: the service checks the client's SPNEGO token (`Authorization: Negotiate ...`) itself
  with its keytab, as mod_auth_gssapi does in front of IIB; the user is the client principal;
- `proxy`: a fronting proxy that already logged the user in passes the name in a header, believed
  only when the connection comes from one of `proxy_addresses`;
- `none`: nobody is known (the sandbox); allowed on loopback only.
Reads need no login (as in IIB); creating a build does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import hashlib
import ipaddress
import os
import time
from typing import Any, Protocol

from blocks.iib_api_settings import IibApiSettings
from indexflow.errors import IndexflowError

TOKEN_CACHE_MAX = 10_000
TOKEN_CACHE_MAX_SECONDS = 10 * 3600


class ServeError(IndexflowError):
    """The service's TLS or login configuration is unsafe or incomplete (refused at start-up)."""


class Forbidden(IndexflowError):
    """The authenticated user may not make this request (403)."""


class Authenticator(Protocol):
    mode: str

    async def user(self, headers: Any, client_host: str | None) -> str | None:
        """The authenticated user of a request, or None."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NoLogin:
    mode = "none"

    async def user(self, headers: Any, client_host: str | None) -> str | None:
        return None


class TrustedProxy:
    """The user named by a fronting proxy's header, from the proxy's own addresses only."""

    mode = "proxy"

    def __init__(self, addresses: list[str], header: str) -> None:
        try:
            self.networks = [ipaddress.ip_network(a, strict=False) for a in addresses]
        except ValueError as exc:
            raise ServeError(f"iib_api.proxy_addresses: {exc}") from None
        if not self.networks:
            raise ServeError("iib_api.auth is 'proxy' but iib_api.proxy_addresses is empty")
        self.header = header

    async def user(self, headers: Any, client_host: str | None) -> str | None:
        try:
            address = ipaddress.ip_address(client_host or "")
        except ValueError:
            return None
        if not any(address in net for net in self.networks):
            return None
        return (headers.get(self.header) or "").strip() or None


class Kerberos:
    """SPNEGO verified with the service keytab (python-gssapi over MIT krb5).

    IIB clients (iiblib's IIBKrbAuth) compute one Negotiate header and send it on every request,
    while Kerberos' replay cache accepts a token once; a token already verified is therefore
    remembered (by hash) for the life of its context, at most TOKEN_CACHE_MAX_SECONDS."""

    mode = "kerberos"

    def __init__(self, keytab: str | None, principal: str | None) -> None:
        import gssapi

        if not keytab or not os.access(keytab, os.R_OK):
            raise ServeError(f"iib_api.keytab {keytab!r} is not a readable keytab file")
        name = gssapi.Name(principal, gssapi.NameType.kerberos_principal) if principal else None
        try:
            self.creds = gssapi.Credentials(name=name, usage="accept", store={"keytab": keytab})
        except gssapi.exceptions.GSSError as exc:
            raise ServeError(f"the keytab {keytab} has no usable key"
                             f"{' for ' + principal if principal else ''} ({exc.gen_message()})") from None
        self.verified: dict[str, tuple[str, float]] = {}

    async def user(self, headers: Any, client_host: str | None) -> str | None:
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "negotiate" or not token.strip():
            return None
        key = hashlib.sha256(token.strip().encode()).hexdigest()
        known = self.verified.get(key)
        if known and known[1] > time.monotonic():
            return known[0]
        try:
            raw = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        found = await asyncio.to_thread(self._accept, raw)
        if found:
            self._remember(key, *found)
        return found[0] if found else None

    def _accept(self, raw: bytes) -> tuple[str, float] | None:
        import gssapi

        try:  # python-gssapi may raise a failed step's error only when the context is next read
            ctx = gssapi.SecurityContext(creds=self.creds, usage="accept")
            ctx.step(raw)
            if not ctx.complete:
                return None
            return str(ctx.initiator_name), float(min(ctx.lifetime or 0, TOKEN_CACHE_MAX_SECONDS))
        except gssapi.exceptions.GSSError:
            return None

    def _remember(self, key: str, user: str, seconds: float) -> None:
        if len(self.verified) >= TOKEN_CACHE_MAX:
            now = time.monotonic()
            self.verified = {k: v for k, v in self.verified.items() if v[1] > now}
            if len(self.verified) >= TOKEN_CACHE_MAX:
                self.verified.clear()
        self.verified[key] = (user, time.monotonic() + seconds)


def authenticator(settings: IibApiSettings, host: str) -> Authenticator:
    """The configured login; `none` is refused unless the service listens on loopback only."""
    if settings.auth == "kerberos":
        return Kerberos(settings.keytab, settings.service_principal)
    if settings.auth == "proxy":
        return TrustedProxy(settings.proxy_addresses, settings.proxy_user_header)
    if not is_loopback(host):
        raise ServeError(f"iib_api.auth 'none' is allowed on loopback only, not on {host}: "
                         "configure 'kerberos' or 'proxy'")
    return NoLogin()


def check_tls(host: str, cert: str | None, key: str | None) -> None:
    """Plain HTTP only on loopback; a certificate needs its key."""
    if bool(cert) != bool(key):
        raise ServeError("give both a TLS certificate and its key (--tls-cert and --tls-key)")
    for path in (cert, key):
        if path and not os.access(path, os.R_OK):
            raise ServeError(f"cannot read TLS file {path}")
    if not cert and not is_loopback(host):
        raise ServeError(f"plain HTTP is served on loopback only, not on {host}: give --tls-cert and --tls-key "
                         "(or iib_api.tls_cert and iib_api.tls_key in the settings block)")


def repository(pullspec: str) -> str:
    """registry/namespace/name of a pullspec, without tag or digest."""
    name = pullspec.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rindex(":")]
    return name


def check_overwrite(user: str | None, target_index: str | None, privileged: dict[str, list[str]]) -> None:
    """IIB's privileged-users rule for `overwrite_target_index`, per target repository pattern."""
    repo = repository(target_index or "")
    patterns = privileged.get(user or "", [])
    if not any(fnmatch.fnmatchcase(repo, p) for p in patterns):
        raise Forbidden(f'The user {user or "(anonymous)"} is not allowed to use "overwrite_target_index" '
                        f"on {repo}")
