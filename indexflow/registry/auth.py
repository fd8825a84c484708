"""Registry credentials from a docker `config.json`, and the challenge flows that use them.

Registries answer 401 with `WWW-Authenticate: Basic ...` or `Bearer realm=...,service=...,scope=...`.
`RegistryAuth` (an httpx auth flow) answers both: basic credentials are resent, bearer tokens are
fetched from the realm and cached per (host, scope), so after the first challenge every request
is authorised up front and costs one round trip. Secrets never leave this module except inside
an Authorization header: reprs are redacted and nothing here logs.

Where credentials may go: to the registry host they are keyed by, and to the token realm that host
names only over https (or over plain http on the registry's own host). A 401 that comes from another
origin after a redirect (a blob served by a storage host) is not answered: the registry's
credentials are never sent in reply to a challenge some other host made.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from indexflow.errors import RegistryError
from indexflow.registry.limits import CappedBody
from indexflow.registry.refs import DOCKER_HUB, DOCKER_HUB_API, ImageRef

_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io", DOCKER_HUB)
_PARAM = re.compile(r'(\w+)="([^"]*)"|(\w+)=([^,\s]+)')
_REPO_PATH = re.compile(r"^/v2/(.+?)/(manifests|blobs|tags)/")
MAX_TOKEN_BYTES = 1 << 20  # token answers are a few KB (a JWT and its expiry)


@dataclass(frozen=True)
class Credentials:
    username: str = field(repr=False)
    password: str = field(repr=False)

    def basic_header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()

    def __repr__(self) -> str:
        return "Credentials(*****)"


def _normalise_key(key: str) -> str:
    """`https://quay.io/v1/` -> `quay.io`; Docker Hub's many spellings -> `docker.io`."""
    if key in _HUB_KEYS:
        return DOCKER_HUB
    key = re.sub(r"^https?://", "", key).rstrip("/")
    key = re.sub(r"/v[12]$", "", key)
    return DOCKER_HUB if key in _HUB_KEYS else key


def _entry_credentials(entry: dict, key: str) -> Credentials | None:
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError, TypeError):  # TypeError: not a string at all
            raise RegistryError(f"the docker config entry for {key} has an auth value that is not base64 "
                                "'user:password'") from None
        return Credentials(user, password)
    if entry.get("username") and entry.get("password"):
        if not isinstance(entry["username"], str) or not isinstance(entry["password"], str):
            raise RegistryError(f"the docker config entry for {key} has a username or password that is not a string")
        return Credentials(entry["username"], entry["password"])
    return None


def default_config_path() -> Path | None:
    """Where podman/skopeo and docker look: $REGISTRY_AUTH_FILE, then $DOCKER_CONFIG or ~/.docker."""
    candidates = [os.environ.get("REGISTRY_AUTH_FILE"),
                  os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


class DockerAuth:
    """Credentials keyed by registry host, or by `host/namespace[/repo]` for narrower entries."""

    def __init__(self, entries: dict[str, Credentials | None] | None = None) -> None:
        self._entries = dict(entries or {})

    @classmethod
    def from_config(cls, path: Path | str | None = None) -> "DockerAuth":
        """Read a docker/podman `config.json` (`auths` only; credential helpers are not supported)."""
        path = Path(path) if path else default_config_path()
        if path is None:
            return cls()
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise RegistryError(f"cannot read the registry auth file {path}: {exc.__class__.__name__}") from None
        return cls.from_dict(data, f"the registry auth file {path}")

    @classmethod
    def from_dict(cls, data: object, source: str) -> "DockerAuth":
        """Credentials from a parsed docker `config.json` (a Secret block's value, say), so a secret
        never has to be written to disk to be read; a JSON string is parsed first. `source` names the
        data in errors (never its content)."""
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except (ValueError, RecursionError):
                raise RegistryError(f"{source} is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("auths", {}), dict):
            raise RegistryError(f"{source} is not a docker config.json (no 'auths' object)")
        entries = {}
        for key, entry in (data.get("auths") or {}).items():
            creds = _entry_credentials(entry if isinstance(entry, dict) else {}, key)
            if creds:
                entries[_normalise_key(key)] = creds
        return cls(entries)

    def with_token(self, ref: ImageRef, token: str) -> "DockerAuth":
        """A copy where `ref`'s registry uses `user:password` (IIB's overwrite token); never logged.

        IIB writes the token base64-encoded as that registry's `auth` entry; skopeo/podman skip an
        entry without a ':' (as docker does), so such a token means anonymous access there, and so here.
        """
        user, sep, password = token.partition(":")
        return DockerAuth({**self._entries, ref.registry: Credentials(user, password) if sep else None})

    def credentials(self, registry: str, repository: str = "") -> Credentials | None:
        """The most specific entry: `host/ns/repo`, then `host/ns`, ..., then `host`."""
        registry = DOCKER_HUB if registry == DOCKER_HUB_API else registry
        parts = repository.split("/") if repository else []
        for i in range(len(parts), -1, -1):
            key = "/".join([registry, *parts[:i]])
            if key in self._entries:
                return self._entries[key]
        return None

    def __repr__(self) -> str:
        return f"DockerAuth(registries={sorted(self._entries)})"


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _realm_may_have_credentials(realm: str, registry: httpx.URL) -> bool:
    """https anywhere, or plain http on the registry's own host (an insecure registry's token server)."""
    try:
        url = httpx.URL(realm)
    except (httpx.InvalidURL, ValueError):
        return False
    return url.scheme == "https" or (url.scheme == "http" and url.host == registry.host)


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` -> ("bearer", {"realm": ..., "service": ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1) or m.group(3): m.group(2) if m.group(1) else m.group(4) for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


def scope_for(request: httpx.Request) -> str | None:
    """The token scope a request needs, guessed from its path and method (the challenge may refine it)."""
    match = _REPO_PATH.match(request.url.path)
    if not match:
        return None
    action = "pull" if request.method in ("GET", "HEAD") else ("delete" if request.method == "DELETE" else "pull,push")
    return f"repository:{match.group(1)}:{action}"


class RegistryAuth(httpx.Auth):
    """httpx auth flow for basic and bearer challenges, with per-(host, scope) token cache."""

    def __init__(self, docker_auth: DockerAuth | None, token_timeout: float = 30.0) -> None:
        self.docker_auth = docker_auth or DockerAuth()
        self.token_timeout = token_timeout
        self._lock = threading.Lock()
        self._schemes: dict[str, str] = {}  # host -> "basic" | "bearer" (what it challenged with)
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (host, scope) -> (token, expiry)

    def __repr__(self) -> str:
        return f"RegistryAuth({self.docker_auth!r})"

    def _credentials(self, request: httpx.Request) -> Credentials | None:
        match = _REPO_PATH.match(request.url.path)
        return self.docker_auth.credentials(request.url.netloc.decode(), match.group(1) if match else "")

    def _cached_token(self, host: str, scope: str | None) -> str | None:
        """A live token for `scope`; a pull also accepts the push token of the same repository."""
        keys = [scope or ""] + ([f"{scope},push"] if scope and scope.endswith(":pull") else [])
        now = time.monotonic()
        with self._lock:
            for key in keys:
                token, expiry = self._tokens.get((host, key), (None, 0.0))
                if token and expiry > now:
                    return token
        return None

    def _authorise(self, request: httpx.Request) -> None:
        """Attach what worked before for this host, so the request needs no 401 round trip."""
        host = request.url.netloc.decode()
        scheme = self._schemes.get(host)
        if scheme == "basic":
            creds = self._credentials(request)
            if creds:
                request.headers["Authorization"] = creds.basic_header()
        elif scheme == "bearer":
            token = self._cached_token(host, scope_for(request))
            if token:
                request.headers["Authorization"] = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._authorise(request)
        response = yield request
        if response.status_code != 401 or "WWW-Authenticate" not in response.headers:
            return
        if not _same_origin(response.request.url, request.url):  # a redirect target challenged: not ours
            return
        scheme, params = parse_challenge(response.headers["WWW-Authenticate"])
        host = request.url.netloc.decode()
        creds = self._credentials(request)
        if scheme == "basic":
            if creds is None:
                return
            with self._lock:
                self._schemes[host] = "basic"
            request.headers["Authorization"] = creds.basic_header()
        elif scheme == "bearer" and params.get("realm"):
            scope = params.get("scope") or scope_for(request)
            if creds is not None and not _realm_may_have_credentials(params["realm"], request.url):
                raise RegistryError(f"registry {host} names the token realm {params['realm'][:100]!r}, which is "
                                    "neither https nor on the registry's host: its credentials are not sent there")
            token_response = yield self._token_request(params, scope, creds)
            token = self._store_token(host, scope_for(request) or scope or "", token_response)
            if token is None:
                return
            request.headers["Authorization"] = f"Bearer {token}"
        else:
            return
        yield request

    def _token_request(self, params: dict[str, str], scope: str | None, creds: Credentials | None) -> httpx.Request:
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
        headers = {"Authorization": creds.basic_header()} if creds else {}
        request = httpx.Request("GET", params["realm"], params=query, headers=headers)
        request.extensions["timeout"] = httpx.Timeout(self.token_timeout).as_dict()
        return request

    def _store_token(self, host: str, scope: str, response: httpx.Response) -> str | None:
        """Remember the token until shortly before it expires (the default lifetime is 60 s)."""
        response.stream = CappedBody(response.stream, MAX_TOKEN_BYTES,  # type: ignore[arg-type]
                                     f"the token answer for registry {host}")
        raw = response.read()
        if response.status_code != 200:
            return None
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not token or not isinstance(token, str):
            return None
        expires = body.get("expires_in")
        lifetime = max(10, expires if isinstance(expires, int) and not isinstance(expires, bool) else 60) - 5
        with self._lock:
            self._schemes[host] = "bearer"
            self._tokens[(host, scope)] = (token, time.monotonic() + lifetime)
        return token
