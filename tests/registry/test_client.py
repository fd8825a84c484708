"""RegistryClient against a real docker-registry on loopback: reads, indexes, pushes, copies, deletes."""

from __future__ import annotations

import json
import uuid

import pytest

from indexflow.errors import RegistryError
from indexflow.registry.client import DOCKER_LIST, OCI_INDEX, RegistryClient, RegistryStatusError
from indexflow.registry.refs import ImageRef
from sandbox.images import build_image, build_index, tar_gz
from sandbox.registry import LocalRegistry

LAYER = tar_gz({"manifests/csv.yaml": b"kind: ClusterServiceVersion\n", "metadata/annotations.yaml": b"a: b\n"})


@pytest.fixture
def repo(local_registry) -> str:  # noqa: ANN001
    """A fresh repository name per test on the session registry."""
    return f"{local_registry.host}/t{uuid.uuid4().hex[:8]}"


def test_image_labels_arches_exists(registry_client: RegistryClient, repo: str) -> None:
    ref = ImageRef.parse(f"{repo}/bundle:v1")
    digest = build_image(registry_client, ref, [LAYER], {"com.redhat.openshift.versions": "v4.12-v4.17"}, "arm64")
    assert registry_client.resolve(ref) == digest
    assert registry_client.resolve(ref.with_digest(digest)) == digest
    manifest = registry_client.manifest(ref)
    assert manifest.digest == digest and not manifest.is_index and json.loads(manifest.raw) == manifest.json
    assert registry_client.labels(ref) == {"com.redhat.openshift.versions": "v4.12-v4.17"}
    assert registry_client.arches(ref) == ["arm64"]
    assert registry_client.exists(ref) and registry_client.exists(str(ref.with_digest(digest)))
    assert not registry_client.exists(ref.with_tag("missing"))
    assert registry_client.find_digest(ref.with_tag("missing")) is None
    with pytest.raises(RegistryStatusError, match="not found") as info:
        registry_client.manifest(ref.with_tag("missing"))
    assert info.value.status == 404 and str(ref.with_tag("missing")) in str(info.value)


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_manifest_list_and_oci_index(registry_client: RegistryClient, repo: str, media_type: str) -> None:
    ref = ImageRef.parse(f"{repo}/index:v4.17")
    digest = build_index(registry_client, ref, [LAYER], {"l": "1"}, ["amd64", "arm64", "ppc64le", "s390x"], media_type)
    manifest = registry_client.manifest(ref)
    assert manifest.is_index and manifest.media_type == media_type and manifest.digest == digest
    assert registry_client.arches(ref) == ["amd64", "arm64", "ppc64le", "s390x"]
    assert registry_client.config(ref)["architecture"] == "amd64"
    assert registry_client.config(ref, arch="s390x")["architecture"] == "s390x"
    assert registry_client.labels(ref) == {"l": "1"}
    with pytest.raises(RegistryError, match="no manifest for architecture riscv64"):
        registry_client.config(ref, arch="riscv64")


def test_copy_within_registry_mounts_and_keeps_digest(registry_client: RegistryClient, repo: str) -> None:
    src = ImageRef.parse(f"{repo}/src:v1")
    digest = build_image(registry_client, src, [LAYER, tar_gz({"big": b"x" * 100_000})], {"a": "b"})
    dst = ImageRef.parse(f"{repo}/dst:copied")
    registry_client.stats.reset()
    assert registry_client.copy(src, dst) == digest
    methods = registry_client.stats.by_method()
    assert methods.get("PUT") == 1, methods  # only the manifest: blobs were mounted, not uploaded
    assert registry_client.resolve(dst) == digest and registry_client.labels(dst) == {"a": "b"}
    registry_client.stats.reset()
    assert registry_client.copy(src, dst) == digest  # already there: nothing written
    assert "PUT" not in registry_client.stats.by_method()


def test_copy_blob_mounts_or_streams(registry_client: RegistryClient, repo: str) -> None:
    src = ImageRef.parse(f"{repo}/blobsrc")
    digest = registry_client.push_blob(src, b"layer bytes")
    registry_client.copy_blob(src, ImageRef.parse(f"{repo}/blobdst:any"), digest)
    assert registry_client.blob_exists(ImageRef.parse(f"{repo}/blobdst"), digest)
    with LocalRegistry() as other, RegistryClient(insecure=(other.host, src.registry)) as client:
        client.copy_blob(src, ImageRef.parse(f"{other.host}/far/away"), digest)
        assert client.blob(ImageRef.parse(f"{other.host}/far/away"), digest) == b"layer bytes"


def test_copy_whole_index_across_registries(registry_client: RegistryClient, repo: str) -> None:
    src = ImageRef.parse(f"{repo}/multi:v1")
    digest = build_index(registry_client, src, [LAYER], {"k": "v"}, ["amd64", "arm64"])
    with LocalRegistry() as other, RegistryClient(insecure=(other.host,) + tuple(registry_client.insecure)) as client:
        dst = ImageRef.parse(f"{other.host}/copies/multi:v1")
        assert client.copy(src, dst) == digest
        assert client.resolve(dst) == digest
        assert client.arches(dst) == ["amd64", "arm64"]
        assert client.config(dst, "arm64")["config"]["Labels"] == {"k": "v"}
        for entry in client.manifest(dst).json["manifests"]:
            assert client.exists(dst.with_tag(None).with_digest(entry["digest"]))


def test_copy_by_digest_restores_a_tag(registry_client: RegistryClient, repo: str) -> None:
    ref = ImageRef.parse(f"{repo}/app:latest")
    old = build_image(registry_client, ref, [LAYER], {"v": "1"})
    new = build_image(registry_client, ref, [LAYER], {"v": "2"})
    assert registry_client.resolve(ref) == new
    registry_client.copy(ref.with_tag(None).with_digest(old), ref)
    assert registry_client.resolve(ref) == old


def test_delete_tag_keeps_sibling_tags(registry_client: RegistryClient, repo: str) -> None:
    ref = ImageRef.parse(f"{repo}/out:1234")
    digest = build_image(registry_client, ref, [LAYER], {})
    registry_client.copy(ref, ref.with_tag("extra"))
    other = build_image(registry_client, ref.with_tag("unrelated"), [LAYER], {"x": "y"})
    registry_client.delete_tag(ref)
    assert not registry_client.exists(ref)
    assert registry_client.resolve(ref.with_tag("extra")) == digest
    assert registry_client.resolve(ref.with_tag("unrelated")) == other
    assert sorted(registry_client.tags(ref)) == ["extra", "unrelated"]
    with pytest.raises(RegistryError, match="give a tag"):
        registry_client.delete_tag(ref.with_tag(None).with_digest(digest))


def test_push_blob_skips_existing_and_appends_digest(registry_client: RegistryClient, repo: str) -> None:
    ref = ImageRef.parse(f"{repo}/blobs")
    digest = registry_client.push_blob(ref, b"hello blob")
    assert registry_client.blob(ref, digest) == b"hello blob"
    registry_client.stats.reset()
    assert registry_client.push_blob(ref, b"hello blob") == digest
    assert registry_client.stats.by_method() == {"HEAD": 1}


def test_tags_paginate(registry_client: RegistryClient, repo: str) -> None:
    ref = ImageRef.parse(f"{repo}/many:t0")
    build_image(registry_client, ref, [LAYER], {})
    for i in range(1, 5):
        registry_client.copy(ref, ref.with_tag(f"t{i}"))
    assert sorted(registry_client.tags(ref)) == [f"t{i}" for i in range(5)]
    assert registry_client.tags(ImageRef.parse(f"{repo}/never-pushed")) == []


def test_pull_bundle_unpacks_layers_in_order(registry_client: RegistryClient, repo: str, tmp_path) -> None:  # noqa: ANN001
    ref = ImageRef.parse(f"{repo}/bundle:v2")
    upper = tar_gz({"manifests/csv.yaml": b"kind: v2\n", "manifests/.wh.crd.yaml": b"", "extra/file": b"1"})
    build_image(registry_client, ref, [tar_gz({"manifests/csv.yaml": b"kind: v1\n", "manifests/crd.yaml": b"c"}),
                                       upper], {})
    out = registry_client.pull_bundle(str(ref), tmp_path / "bundle")
    assert (out / "manifests" / "csv.yaml").read_text() == "kind: v2\n"
    assert not (out / "manifests" / "crd.yaml").exists()
    assert (out / "extra" / "file").read_bytes() == b"1"


def test_pull_bundle_size_limit(registry_client: RegistryClient, repo: str, tmp_path) -> None:  # noqa: ANN001
    ref = ImageRef.parse(f"{repo}/huge:v1")
    build_image(registry_client, ref, [tar_gz({"blob": bytes(300_000)})], {})
    with pytest.raises(RegistryError, match="limit"):
        registry_client.pull_bundle(ref, tmp_path / "x", max_bytes=100_000)
