"""A real OCI registry on loopback: Debian's `docker-registry` (distribution 2.8) with our own config.

The packaged /etc/docker/registry/config.yml turns on htpasswd auth and a system-wide storage
directory, so it is never used: every instance writes its config, storage, certificate and
htpasswd file into its own temp dir and listens on 127.0.0.1 at a free port. The TLS variant
serves a self-signed certificate (its CA file is `.ca_file`) and requires htpasswd users.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from types import TracebackType

import httpx
import yaml

from indexflow.errors import IndexflowError

BINARY = "docker-registry"
INSTALL_HINT = ("the docker-registry binary is not installed; install it with "
                "`sudo apt-get install docker-registry` (Debian/Ubuntu)")
# Go runtime settings for the registry process (a caller's own GOGC / GOMEMLIMIT win). distribution 2.8
# allocates a large buffer for every blob it serves, so with Go's default GC a 2 KB config-blob GET cost it
# 2.5-3.4 ms of CPU here; collecting only near a 256 MiB heap cuts that to ~1.3 ms (whole-corpus config
# reads: 22.4 s -> 9.5 s of registry CPU, peak RSS 0.27 GiB). On this 2-core box the registry shares the
# cores with the merge it serves; a production registry runs elsewhere.
GO_RUNTIME = {"GOGC": "off", "GOMEMLIMIT": "256MiB"}


def free_port() -> int:
    """A port the kernel just handed out (tiny race accepted: loopback, tests only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fast_tmp() -> str | None:
    """Where a throw-away registry keeps its storage: $INDEXFLOW_REGISTRY_TMPDIR, else /dev/shm when
    writable (measured here: blob uploads 6x faster than on the disk behind /tmp), else the default."""
    chosen = os.environ.get("INDEXFLOW_REGISTRY_TMPDIR")
    if chosen:
        return chosen
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _self_signed(directory: Path, stem: str = "registry") -> tuple[Path, Path]:
    """A CA-less self-signed certificate for 127.0.0.1/localhost; the cert doubles as CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "indexflow sandbox registry")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def _htpasswd(path: Path, users: dict[str, str]) -> None:
    """bcrypt entries, the only hash docker-registry's htpasswd auth accepts."""
    import bcrypt

    lines = [f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}" for user, pw in users.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)

def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _libtrust_kid(public_der: bytes) -> str:
    """The key id docker-registry derives from a certificate in its `rootcertbundle`."""
    digest = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode()
    return ":".join(digest[i:i + 4] for i in range(0, 48, 4))


Grants = dict[str, dict[str, set[str]]]  # user -> repository glob -> actions ("pull", "push", ...)


class TokenServer:
    """A loopback Docker token server (the `auth.token` realm): checks basic credentials and
    returns an ES256 JWT granting the requested repository actions to known users (only those in
    their `grants`, when given), nothing to anyone else. Real wire protocol, so the client's bearer
    challenge flow is tested for real; `issued_to` records (user, granted scopes) per token."""

    service, issuer = "indexflow-sandbox", "indexflow-sandbox-token"

    def __init__(self, directory: Path, users: dict[str, str], grants: Grants | None = None) -> None:
        from cryptography.hazmat.primitives import serialization

        self.users = dict(users)
        self.grants = grants
        self.issued_to: list[tuple[str, list[str]]] = []
        self.cert_file, key_file = _self_signed(directory, "token")
        self._key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self._kid = _libtrust_kid(cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.issued = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def start(self) -> "TokenServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def token(self, user: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        now = int(time.time())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = [a for a in actions.split(",") if self._allowed(user, name, a)]
            access.append({"type": kind, "name": name, "actions": allowed})
        self.issued_to.append((user, [f"{a['name']}:{','.join(a['actions'])}" for a in access]))
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": secrets.token_hex(8), "access": access}
        header = {"typ": "JWT", "alg": "ES256", "kid": self._kid, "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        self.issued += 1
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _allowed(self, user: str, repository: str, action: str) -> bool:
        if self.grants is None:
            return True
        import fnmatch

        return any(fnmatch.fnmatchcase(repository, pattern) and action in actions
                   for pattern, actions in self.grants.get(user, {}).items())

    def _user(self, header: str) -> str | None:
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode(errors="replace").partition(":")
        known = self.users.get(user)
        return user if known is not None and secrets.compare_digest(known, password) else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet: tests read output
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                query = parse_qs(urlparse(self.path).query)
                user = server._user(self.headers.get("Authorization", ""))
                if self.headers.get("Authorization") and user is None:
                    self.send_response(401)
                    self.end_headers()
                    return
                scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
                body = json.dumps({"token": server.token(user or "", scopes if user else []),
                                   "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _die_with_parent() -> list[str]:
    """A command prefix that has Linux SIGTERM the registry when the process that started it dies,
    even by SIGKILL, so a crashed test or bench leaves no orphaned docker-registry. The kernel ties
    the signal to the starting *thread*, so it is only asked for from the main thread."""
    if threading.current_thread() is threading.main_thread() and shutil.which("setpriv"):
        return ["setpriv", "--pdeathsig", "TERM"]
    return []


class LocalRegistry:
    """`with LocalRegistry() as reg:` -> a running registry at `reg.host`; stopped and wiped on exit."""

    def __init__(self, tls: bool = False, htpasswd_users: dict[str, str] | None = None,
                 root: Path | None = None, bearer_users: dict[str, str] | None = None,
                 bearer_grants: Grants | None = None) -> None:
        self.tls = tls or bool(htpasswd_users)
        self.users = dict(htpasswd_users or bearer_users or {})
        self.bearer = bool(bearer_users)
        self.grants = bearer_grants
        self.token_server: TokenServer | None = None
        self._owned_root = root is None
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="indexflow-registry-", dir=fast_tmp()))
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.ca_file: Path | None = None
        self.auth_config_path: Path | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def _config(self) -> dict:
        http: dict = {"addr": self.host, "headers": {"X-Content-Type-Options": ["nosniff"]}}
        config: dict = {"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
                        "storage": {"filesystem": {"rootdirectory": str(self.root / "storage")},
                                    "delete": {"enabled": True}, "cache": {"blobdescriptor": "inmemory"}},
                        "http": http}
        if self.tls:
            cert, key = _self_signed(self.root)
            http["tls"] = {"certificate": str(cert), "key": str(key)}
            self.ca_file = cert
        if self.bearer:
            self.token_server = TokenServer(self.root, self.users, self.grants).start()
            config["auth"] = {"token": {"realm": self.token_server.realm, "service": TokenServer.service,
                                        "issuer": TokenServer.issuer,
                                        "rootcertbundle": str(self.token_server.cert_file)}}
        elif self.users:
            _htpasswd(self.root / "htpasswd", self.users)
            config["auth"] = {"htpasswd": {"realm": "indexflow-sandbox", "path": str(self.root / "htpasswd")}}
        if self.users:
            self.auth_config_path = self._docker_config()
        return config

    def _docker_config(self) -> Path:
        """A docker `config.json` holding every htpasswd user's basic auth (first user wins the host)."""
        user, password = next(iter(self.users.items()))
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        path = self.root / "docker-config.json"
        path.write_text(json.dumps({"auths": {self.host: {"auth": token}}}))
        path.chmod(0o600)
        return path

    def start(self) -> "LocalRegistry":
        if shutil.which(BINARY) is None:
            raise IndexflowError(INSTALL_HINT)
        self.port = free_port()
        config_path = self.root / "config.yml"
        config_path.write_text(yaml.safe_dump(self._config()))
        log = open(self.root / "registry.log", "wb")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen([*_die_with_parent(), BINARY, "serve", str(config_path)], stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env={**GO_RUNTIME, **os.environ})
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        verify = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True
        with httpx.Client(verify=verify, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self._proc is not None and self._proc.poll() is not None:
                    break
                try:
                    if http.get(f"{self.url}/v2/").status_code in (200, 401):
                        return
                except httpx.TransportError:
                    time.sleep(0.05)
        tail = (self.root / "registry.log").read_text(errors="replace")[-500:]
        self.stop()
        raise IndexflowError(f"docker-registry did not start on {self.host}: {tail.strip() or 'no output'}")

    def stop(self) -> None:
        """Terminate the process (kill after 5 s) and remove the temp dir we created."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None
        if self.token_server is not None:
            self.token_server.stop()
            self.token_server = None
        if self._owned_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalRegistry":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
