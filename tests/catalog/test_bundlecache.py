"""The per-machine cache of pulled bundle files (catalog/bundlecache.py), on images in the session's
local docker-registry: what comes back from the cache is what the image holds, a damaged pack is
pulled again, and nothing but a digest names a slot."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexflow.catalog.bundlecache import PACK, cached_image_files, pack, unpack
from indexflow.catalog.image import image_files
from indexflow.errors import RegistryError
from indexflow.registry.refs import ImageRef
from sandbox.images import push_bundle_image
from tests.catalog.fixtures import FIX


@pytest.fixture(scope="module")
def etcd_ref(local_registry, registry_client) -> str:  # noqa: ANN001
    """etcd 0.9.0 pushed as an image and named by its digest, as a merge names the bundles it adds."""
    tag = ImageRef.parse(f"{local_registry.host}/bundlecache/etcd-bundle:0.9.0")
    digest = push_bundle_image(registry_client, tag, FIX / "bundles" / "etcd" / "0.9.0", {})
    return f"{local_registry.host}/bundlecache/etcd-bundle@{digest}"


def test_a_pinned_bundle_is_pulled_once_then_read_from_the_cache(etcd_ref: str, registry_client,  # noqa: ANN001
                                                                 tmp_path: Path) -> None:
    want = image_files(registry_client, etcd_ref)
    assert any(name.startswith("manifests/") for name in want) and "metadata/annotations.yaml" in want
    assert cached_image_files(registry_client, etcd_ref, tmp_path) == want
    assert [p.name for p in tmp_path.iterdir()] == [etcd_ref.rsplit("@", 1)[1].replace(":", "-")]
    assert cached_image_files(None, etcd_ref, tmp_path) == want  # no client: a request would fail


def test_a_damaged_pack_is_pulled_again_and_replaced(etcd_ref: str, registry_client, tmp_path: Path) -> None:  # noqa: ANN001
    want = cached_image_files(registry_client, etcd_ref, tmp_path)
    (packed,) = tmp_path.glob(f"*/{PACK}")
    packed.write_bytes(packed.read_bytes()[:-10])  # cut short, as a full disk or a kill mid-write leaves it
    with pytest.raises(AttributeError):  # it is not trusted: the image is asked again
        cached_image_files(None, etcd_ref, tmp_path)
    assert cached_image_files(registry_client, etcd_ref, tmp_path) == want
    assert unpack(packed.read_bytes()) == want


def test_a_tag_is_never_kept(local_registry, registry_client, tmp_path: Path) -> None:  # noqa: ANN001
    tag = f"{local_registry.host}/bundlecache/etcd-bundle:0.9.0"
    push_bundle_image(registry_client, ImageRef.parse(tag), FIX / "bundles" / "etcd" / "0.9.0", {})
    assert cached_image_files(registry_client, tag, tmp_path) == image_files(registry_client, tag)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("digest", ["sha256:../../escape", "sha256:" + "A" * 64, "md5:" + "0" * 32])
def test_only_a_well_formed_digest_names_a_slot(digest: str, tmp_path: Path) -> None:
    with pytest.raises(RegistryError):
        cached_image_files(None, f"registry.example/ns/bundle@{digest}", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_packs_round_trip_and_refuse_what_they_did_not_write() -> None:
    files = {"manifests/csv.yaml": b"kind: ClusterServiceVersion\n", "metadata/annotations.yaml": b"",
             "manifests/\u00e9t\u00e9\nline.yaml": b"\x00\xff\n"}
    packed = pack(files)
    assert unpack(packed) == files and list(unpack(packed)) == list(files)
    for damaged in (packed[:-1], packed + b"x", b"", b"\n", b"not json\nabc", b'{"a": 1}\n', b'[["x", -1]]\n',
                    b'[["x", 1.0]]\nx', b'[["x", true]]\nx', b'[[1, 1]]\nx', b'[["x", 1, 2]]\nx'):
        assert unpack(damaged) is None, damaged
