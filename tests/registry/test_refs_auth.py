"""Reference parsing and docker config.json reading (pure: no registry needed)."""

from __future__ import annotations

import base64
import json

import pytest

from indexflow.errors import RegistryError
from indexflow.registry.auth import Credentials, DockerAuth, parse_challenge
from indexflow.registry.refs import ImageRef

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("quay.io/ns/repo:v1", "quay.io", "ns/repo", "v1", None),
    ("busybox", "docker.io", "library/busybox", None, None),
    ("docker.io/foo/bar:1.0", "docker.io", "foo/bar", "1.0", None),
    ("index.docker.io/ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None),
    ("localhost:5000/a/b/c@" + DIGEST, "localhost:5000", "a/b/c", None, DIGEST),
    ("127.0.0.1:5000/x:y@" + DIGEST, "127.0.0.1:5000", "x", "y", DIGEST),
    ("registry.redhat.io/openshift4/ose-operator-registry:v4.17", "registry.redhat.io",
     "openshift4/ose-operator-registry", "v4.17", None),
])
def test_parse(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ImageRef.parse(str(ref)) == ref


def test_reference_helpers() -> None:
    ref = ImageRef.parse("quay.io/ns/repo:v1")
    assert ref.name == "quay.io/ns/repo"
    assert ref.reference == "v1"
    pinned = ref.with_tag(None).with_digest(DIGEST)
    assert str(pinned) == f"quay.io/ns/repo@{DIGEST}" and pinned.reference == DIGEST
    assert ImageRef.parse("busybox").reference == "latest"
    assert ImageRef.parse("busybox").api_host == "registry-1.docker.io"


@pytest.mark.parametrize("text", ["", " quay.io/a:b", "Quay.io/UPPER/x", "quay.io/a b", "quay.io/x@sha256:zz",
                                  "quay.io/x:" + "t" * 200])
def test_parse_rejects_with_the_input_named(text: str) -> None:
    with pytest.raises(RegistryError, match="invalid image reference"):
        ImageRef.parse(text)


def test_docker_config_entries(tmp_path) -> None:  # noqa: ANN001
    config = {"auths": {
        "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:hubpw").decode()},
        "quay.io": {"auth": base64.b64encode(b"quser:qpw").decode()},
        "quay.io/special": {"username": "suser", "password": "spw"},
        "empty.example.com": {}}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    auth = DockerAuth.from_config(path)
    assert auth.credentials("docker.io", "library/busybox").username == "hubuser"
    assert auth.credentials("registry-1.docker.io", "library/busybox").username == "hubuser"
    assert auth.credentials("quay.io", "other/repo").username == "quser"
    assert auth.credentials("quay.io", "special/repo").username == "suser"
    assert auth.credentials("empty.example.com") is None
    assert auth.credentials("nowhere.example.com") is None


def test_with_token_overrides_one_registry_and_hides_it() -> None:
    auth = DockerAuth().with_token(ImageRef.parse("quay.io/ns/index:v4.17"), "robot:t0psecret")
    assert auth.credentials("quay.io", "ns/index").password == "t0psecret"
    assert "t0psecret" not in repr(auth) and "t0psecret" not in repr(auth.credentials("quay.io"))
    # IIB accepts a token without ':' and skopeo then skips that auth entry: anonymous, even over a broader entry
    broad = DockerAuth({"quay.io": Credentials("quser", "qpass")})
    anonymous = broad.with_token(ImageRef.parse("quay.io/ns/index:v1"), "no-colon-secret")
    assert anonymous.credentials("quay.io", "ns/index") is None
    assert "no-colon-secret" not in repr(anonymous)
    assert broad.with_token(ImageRef.parse("quay.io/ns/index:v1"), ":pw").credentials("quay.io").password == "pw"


def test_bad_config_files(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(RegistryError, match="cannot read the registry auth file"):
        DockerAuth.from_config(tmp_path / "garbage.json")
    (tmp_path / "bad.json").write_text(json.dumps({"auths": {"quay.io": {"auth": "%%%secret%%%"}}}))
    with pytest.raises(RegistryError, match="not base64") as info:
        DockerAuth.from_config(tmp_path / "bad.json")
    assert "secret" not in str(info.value)
    for entry, reason in [({"auth": 5}, "an auth value that is not base64 'user:password'"),
                          ({"auth": ["dXNlcjpwdw=="]}, "an auth value that is not base64 'user:password'"),
                          ({"username": "u", "password": 12345}, "a username or password that is not a string")]:
        (tmp_path / "typed.json").write_text(json.dumps({"auths": {"quay.io": entry}}))
        with pytest.raises(RegistryError) as info:  # was a TypeError out of base64 or, later, out of httpx
            DockerAuth.from_config(tmp_path / "typed.json")
        assert str(info.value) == f"the docker config entry for quay.io has {reason}"


def test_parse_challenge() -> None:
    scheme, params = parse_challenge('Bearer realm="https://auth.example/token",service="reg",'
                                     'scope="repository:a/b:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})
