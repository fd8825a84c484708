"""TLS + htpasswd and bearer-token registries (real docker-registry, real token server).

Also proves secrecy: passwords and tokens appear in no log record (httpx/httpcore at DEBUG
included) and in no exception text.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest

from indexflow.errors import RegistryError
from indexflow.registry.auth import DockerAuth
from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef
from indexflow.registry.validation import DigestCache, validate_pullspecs
from sandbox.images import build_image, tar_gz
from sandbox.registry import LocalRegistry

PASSWORD = "s3cr3t-Pa55word"
USERS = {"alice": PASSWORD}
LAYER = tar_gz({"manifests/x.yaml": b"x"})


@pytest.fixture(scope="module")
def tls_registry() -> Iterator[LocalRegistry]:
    with LocalRegistry(tls=True, htpasswd_users=USERS) as registry:
        yield registry


@pytest.fixture(scope="module")
def bearer_registry() -> Iterator[LocalRegistry]:
    with LocalRegistry(bearer_users=USERS) as registry:
        yield registry


def _secrets() -> list[str]:
    return [PASSWORD, base64.b64encode(f"alice:{PASSWORD}".encode()).decode()]


def test_tls_htpasswd_with_ca_file_and_credentials(tls_registry: LocalRegistry) -> None:
    auth = DockerAuth.from_config(tls_registry.auth_config_path)
    with RegistryClient(auth=auth, ca_files={tls_registry.host: tls_registry.ca_file}) as client:
        ref = ImageRef.parse(f"{tls_registry.host}/secure/app:v1")
        digest = build_image(client, ref, [LAYER], {"k": "v"})
        assert client.resolve(ref) == digest and client.labels(ref) == {"k": "v"}
        client.stats.reset()
        assert client.find_digest(ref) == client.find_digest(ref.with_tag("v1")) == digest
        assert client.stats.requests == 2  # basic auth sent up front after the first challenge: no 401s


def test_a_ca_file_that_cannot_be_used_is_one_sentence(tls_registry: LocalRegistry, tmp_path) -> None:  # noqa: ANN001
    """opm's --ca-file (or the settings' CA file) pointing at the wrong file: was an ssl.SSLError or a
    FileNotFoundError traceback, raised where the registry's first connection pool is made."""
    (tmp_path / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a certificate\n-----END PRIVATE KEY-----\n")
    ref = ImageRef.parse(f"{tls_registry.host}/secure/app:v1")
    for path, message in [(tmp_path / "key.pem", f"the CA file {tmp_path / 'key.pem'} holds no PEM certificate"),
                          (tmp_path / "none.pem", f"cannot read the CA file {tmp_path / 'none.pem'} (No such file or directory)")]:
        with RegistryClient(ca_files={tls_registry.host: path}, retries=1) as client:
            with pytest.raises(RegistryError) as err:
                client.resolve(ref)
        assert str(err.value) == message


def test_tls_is_verified_by_default(tls_registry: LocalRegistry) -> None:
    auth = DockerAuth.from_config(tls_registry.auth_config_path)
    with RegistryClient(auth=auth, retries=1, backoff=0.01) as client:
        with pytest.raises(RegistryError, match="unreachable"):
            client.resolve(ImageRef.parse(f"{tls_registry.host}/secure/app:v1"))
    with RegistryClient(auth=auth, insecure=(tls_registry.host,)) as client:  # explicit per-registry opt-out
        assert client.find_digest(ImageRef.parse(f"{tls_registry.host}/secure/none:v1")) is None


def test_wrong_or_missing_credentials_are_reported_not_leaked(tls_registry: LocalRegistry, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)
    good_auth = DockerAuth.from_config(tls_registry.auth_config_path)
    ref = ImageRef.parse(f"{tls_registry.host}/secure/leak:v1")
    with RegistryClient(auth=good_auth, ca_files={tls_registry.host: tls_registry.ca_file}) as client:
        build_image(client, ref, [LAYER], {})
    bad_auth = good_auth.with_token(ref, f"alice:{PASSWORD}-wrong")
    texts = [repr(good_auth), repr(bad_auth)]
    for auth in (DockerAuth(), bad_auth):
        with RegistryClient(auth=auth, ca_files={tls_registry.host: tls_registry.ca_file}) as client:
            texts.append(repr(client))
            missing = validate_pullspecs(client, [str(ref)], cache=DigestCache.memory())
            assert missing == {str(ref): "unauthorized (check the registry credentials)"}
            with pytest.raises(RegistryError) as info:
                client.labels(ref)
            texts.append(str(info.value))
    texts += [record.getMessage() for record in caplog.records]
    assert any("401" in t or "Unauthorized" in t for t in texts)  # the logs did see the exchange
    for text in texts:
        for secret in _secrets() + [f"{PASSWORD}-wrong"]:
            assert secret not in text


def test_bearer_token_flow(bearer_registry: LocalRegistry, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)
    auth = DockerAuth.from_config(bearer_registry.auth_config_path)
    with RegistryClient(auth=auth, insecure=(bearer_registry.host,)) as client:
        ref = ImageRef.parse(f"{bearer_registry.host}/tok/app:v1")
        digest = build_image(client, ref, [LAYER], {"a": "1"})
        assert client.labels(ref) == {"a": "1"}
        assert client.copy(ref, ImageRef.parse(f"{bearer_registry.host}/tok/copy:v1")) == digest  # mount: 2 scopes
        issued = bearer_registry.token_server.issued
        client.stats.reset()
        for _ in range(3):
            client.find_digest(ref)
        assert client.stats.requests == 3 and bearer_registry.token_server.issued == issued  # token reused
    with RegistryClient(insecure=(bearer_registry.host,)) as anonymous:
        with pytest.raises(RegistryError, match="unauthorized"):
            anonymous.labels(ref)
    for record in caplog.records:
        assert PASSWORD not in record.getMessage() and "eyJ" not in record.getMessage()  # no JWT either
