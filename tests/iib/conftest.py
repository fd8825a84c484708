"""A Kerberos realm on loopback, a TLS certificate, and `indexflow iib-api` serving with both.

The realm is Debian's MIT KDC (`krb5kdc`), created per test session in a temp dir; principals:
HTTP/localhost (the service's keytab), alice (privileged for overwrites) and bob (not). The Prefect
server is the session's; worker, sandbox and deployment are tests/deploy's fixtures, imported here.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import (BIN, PrefectServer, Service, deployed, free_port, prefect_api,  # noqa: F401
                                   process_worker, sandbox, start)

# tests/deploy's fixtures, re-exported so this suite uses them (the Prefect server itself is the
# session's one, `prefect_server` in tests/conftest.py)
__all__ = ["deployed", "prefect_api", "process_worker", "sandbox"]

REALM = "IIB.TEST"
SERVICE = "HTTP/localhost"
USERS = ("alice", "bob")


def sbin(name: str) -> str:
    """KDC tools live in /usr/sbin, which a normal user's PATH may lack."""
    return shutil.which(name) or f"/usr/sbin/{name}"


@dataclass
class Realm:
    folder: Path
    env: dict[str, str]  # KRB5_CONFIG & co. for clients and the service

    def keytab(self, who: str) -> Path:
        return self.folder / f"{who.split('/')[0].lower()}.keytab"


def _write_configs(folder: Path, port: int) -> None:
    (folder / "krb5.conf").write_text(f"""[libdefaults]
  default_realm = {REALM}
  dns_lookup_realm = false
  dns_lookup_kdc = false
  rdns = false
  dns_canonicalize_hostname = false
  udp_preference_limit = 1
[realms]
  {REALM} = {{
    kdc = 127.0.0.1:{port}
  }}
[domain_realm]
  localhost = {REALM}
""")
    (folder / "kdc.conf").write_text(f"""[kdcdefaults]
  kdc_listen = 127.0.0.1:{port}
  kdc_tcp_listen = 127.0.0.1:{port}
[realms]
  {REALM} = {{
    database_name = {folder}/principal
    key_stash_file = {folder}/stash
    acl_file = {folder}/kadm5.acl
  }}
[logging]
  kdc = FILE:{folder}/kdc.log
""")


@pytest.fixture(scope="session")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    """kdb5_util + kadmin.local make the realm and keytabs; `krb5kdc -n` serves it on a free port."""
    folder = tmp_path_factory.mktemp("krb5")
    port = free_port()
    _write_configs(folder, port)
    env = {**os.environ, "KRB5_CONFIG": str(folder / "krb5.conf"), "KRB5_KDC_PROFILE": str(folder / "kdc.conf"),
           "KRB5RCACHEDIR": str(folder), "KRB5CCNAME": f"FILE:{folder}/ccache"}

    def admin(*args: str) -> None:
        subprocess.run([sbin(args[0]), *args[1:]], env=env, check=True, capture_output=True, timeout=60)

    admin("kdb5_util", "create", "-s", "-r", REALM, "-P", "master-key-for-tests")
    for principal in (SERVICE, *USERS):
        admin("kadmin.local", "-r", REALM, "-q", f"addprinc -randkey {principal}")
        admin("kadmin.local", "-r", REALM, "-q", f"ktadd -k {folder}/{principal.split('/')[0].lower()}.keytab "
                                                 f"{principal}")
    kdc = start([sbin("krb5kdc"), "-n", "-r", REALM], env, folder / "krb5kdc.out")
    saved = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5CCNAME", "KRB5RCACHEDIR")}
    os.environ.update({k: env[k] for k in saved})  # iiblib (in this process) runs kinit and GSSAPI
    try:
        yield Realm(folder, {k: env[k] for k in ("KRB5_CONFIG", "KRB5RCACHEDIR")})
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        kdc.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1 (also the clients' CA bundle)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


KRB_SETTINGS = "iib-kerberos"


@pytest.fixture(scope="session")
def kerberized_settings(deployed: PrefectServer, realm: Realm) -> str:  # noqa: F811
    """A copy of the sandbox MergeSettings whose iib_api section asks for Kerberos (alice privileged)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from blocks.settings import MergeSettings

    with temporary_settings(updates={PREFECT_API_URL: deployed.url}):
        values = MergeSettings.load("indexflow").model_dump(exclude={"block_type_slug"})
        values["iib_api"] = {"auth": "kerberos", "keytab": str(realm.keytab(SERVICE)),
                             "service_principal": f"{SERVICE}@{REALM}", "request_id_offset": 5000,
                             "privileged_users": {f"alice@{REALM}": ["127.0.0.1:*/*"]},
                             "max_body_bytes": 65536, "max_per_page": 2}
        MergeSettings(**values).save(KRB_SETTINGS, overwrite=True)
    return KRB_SETTINGS


@pytest.fixture(scope="session")
def krb_api(deployed: PrefectServer, realm: Realm, tls_files: tuple[Path, Path],  # noqa: F811
            kerberized_settings: str) -> Iterator[str]:
    """`indexflow iib-api --tls-cert --tls-key` with Kerberos; yields its host:port (iiblib's hostname)."""
    port = free_port()
    cert, key = tls_files
    service: Service = start([str(BIN / "indexflow"), "iib-api", "--port", str(port), "--settings", kerberized_settings,
                              "--tls-cert", str(cert), "--tls-key", str(key)],
                             {**deployed.env, **realm.env, "INDEXFLOW_API_LOG_LEVEL": "warning"},
                             deployed.logs / "iib-api-krb.log")
    saved = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)  # iiblib verifies TLS against the test's own CA
    try:
        _wait_tls(f"https://localhost:{port}/api/v1/healthcheck", str(cert), service)
        yield f"localhost:{port}"
    finally:
        os.environ.pop("REQUESTS_CA_BUNDLE") if saved is None else os.environ.__setitem__("REQUESTS_CA_BUNDLE", saved)
        service.stop()


def _wait_tls(url: str, ca: str, service: Service) -> None:
    import ssl
    import time

    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and service.proc.poll() is None:
        try:
            if httpx.get(url, verify=ssl.create_default_context(cafile=ca), timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not come up\n{service.log.read_text()[-3000:]}")
