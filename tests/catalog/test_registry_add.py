"""`add` from bundle images in a real local docker-registry (session fixtures in tests/conftest.py).

The bundles are pushed as images, then `indexflow db add` pulls them through the RegistryClient;
the db must equal what opm v1.73.0 wrote for the same bundles (refs rewritten to this registry).
Layer handling (several layers, whiteouts, links, hostile names) is checked on hand-built images.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml

from indexflow.catalog.add import fetch_bundle_images
from indexflow.catalog.bundle import load_bundle_dir, load_bundle_files
from indexflow.catalog.db import list_bundles
from indexflow.catalog.image import image_files
from indexflow.cli import main
from indexflow.errors import CatalogError
from indexflow.registry.refs import ImageRef
from sandbox.images import build_image, bundle_layer, push_bundle_image
from tests.catalog.fixtures import FIX, dump
from tests.catalog.fixtures import golden as _golden

ETCD = ["0.6.1", "0.9.0", "0.9.2", "0.9.2-clusterwide", "0.9.4", "0.9.4-clusterwide"]
CANONICAL = "quay.io/conformance/"


def _dump(db: Path, host: str) -> dict:
    return dump(db, [(f"{host}/conformance/", CANONICAL)])


@pytest.fixture(scope="module")
def etcd_images(local_registry, registry_client) -> dict[str, Path]:  # noqa: ANN001
    """The six etcd bundles pushed as images: ref -> the directory they were built from."""
    refs = {}
    for version in ETCD:
        ref = f"{local_registry.host}/conformance/etcd-bundle:{version}"
        src = FIX / "bundles" / "etcd" / version
        push_bundle_image(registry_client, ImageRef.parse(ref), src, {})
        refs[ref] = src
    return refs


def _cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(list(argv))
    return rc, err.getvalue()


def test_cli_add_pulls_images_and_matches_opm(etcd_images: dict[str, Path], local_registry,  # noqa: ANN001
                                              tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    rc, err = _cli("db", "add", str(db), "-b", ",".join(etcd_images))
    assert rc == 0, err
    assert _dump(db, local_registry.host) == _golden("add-replaces-etcd-full")
    assert {r.bundlePath for r in list_bundles(db)} == set(etcd_images)


def test_pulled_bundle_equals_the_directory_it_was_built_from(etcd_images: dict[str, Path],
                                                             registry_client) -> None:  # noqa: ANN001
    refs = list(etcd_images)
    pulled = fetch_bundle_images(registry_client, refs, concurrency=4)
    assert pulled == [load_bundle_dir(etcd_images[r], r) for r in refs]


OPERATOR_IMAGE = "quay.io/coreos/etcd-operator@sha256:db563baa8194fcfe39d1df744ed70024b0f1f9e9b55b5923c2f3a413c44dc6b8"
RELATED = ["quay.io/coreos/etcd@sha256:" + "1" * 64, "quay.io/coreos/etcd-backup@sha256:" + "2" * 64]


def test_pulled_bundle_matches_what_its_files_say(local_registry, registry_client, tmp_path: Path) -> None:  # noqa: ANN001
    """Expectations written by hand from the bundle's files (read with PyYAML's full loader), not by
    the product's parser: a bundle whose CSV lists relatedImages keeps them, with its deployment's
    image and its own pullspec; its owned CRDs become its GVK properties."""
    src = tmp_path / "etcd"
    shutil.copytree(FIX / "bundles" / "etcd" / "0.9.0", src)
    csv_file = src / "manifests" / "etcdoperator.v0.9.0.clusterserviceversion.yaml"
    csv = yaml.load(csv_file.read_text(), Loader=yaml.FullLoader)
    csv["spec"]["relatedImages"] = [{"name": "etcd", "image": RELATED[0]}, {"name": "backup", "image": RELATED[1]},
                                    {"name": "operator", "image": OPERATOR_IMAGE}]
    csv_file.write_text(yaml.dump(csv))
    ref = f"{local_registry.host}/oracle/etcd-bundle:0.9.0-related"
    push_bundle_image(registry_client, ImageRef.parse(ref), src, {})

    (pulled,) = fetch_bundle_images(registry_client, [ref], concurrency=1)

    crds = [yaml.load(p.read_text(), Loader=yaml.FullLoader) for p in sorted((src / "manifests").glob("*.crd.yaml"))]
    gvks = {(c["spec"]["group"], v["name"], c["spec"]["names"]["kind"]) for c in crds for v in c["spec"]["versions"]}
    assert gvks == {("etcd.database.coreos.com", "v1beta2", k) for k in ("EtcdBackup", "EtcdCluster", "EtcdRestore")}
    assert (pulled.name, pulled.package, pulled.version) == ("etcdoperator.v0.9.0", "etcd", "0.9.0")
    assert set(pulled.related_images) == {ref, OPERATOR_IMAGE, *RELATED}
    assert len(pulled.related_images) == 4  # the operator image listed twice is stored once
    assert {(t, tuple(sorted(json.loads(v).items()))) for t, v in pulled.properties} == {
        ("olm.package", (("packageName", "etcd"), ("version", "0.9.0"))),
        *{("olm.gvk", (("group", g), ("kind", k), ("version", v))) for g, v, k in gvks}}
    assert {(g, v, k) for g, v, k, _plural in pulled.provided} == gvks
    assert json.loads(pulled.csv_json)["spec"]["relatedImages"][0] == {"name": "etcd", "image": RELATED[0]}


def test_mixed_local_dir_and_image_refs(etcd_images: dict[str, Path], local_registry,  # noqa: ANN001
                                        tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    refs = list(etcd_images)
    args = [a for r in refs[:3] for a in ("-b", r)] + [a for r in refs[3:] for a in ("-b", f"{r}={etcd_images[r]}")]
    assert _cli("db", "add", str(db), *args) == (0, "")
    assert _dump(db, local_registry.host) == _golden("add-replaces-etcd-full")


def test_missing_image_is_one_error_and_changes_nothing(etcd_images: dict[str, Path], local_registry,  # noqa: ANN001
                                                        tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    missing = f"{local_registry.host}/conformance/etcd-bundle:9.9.9"
    rc, err = _cli("db", "add", str(db), "-b", ",".join([*etcd_images, missing]))
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and missing in lines[0]
    assert not db.exists() or list_bundles(db) == []


# --- layer semantics -------------------------------------------------------------------------

def _layer(entries: list[tuple[str, bytes | str | None]]) -> bytes:
    """A gzipped tar: (name, bytes) file, (name, "->target") symlink, (name, "=>target") hard link,
    (name, None) directory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in entries:
            info = tarfile.TarInfo(name)
            if body is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(body, str):
                info.type = tarfile.SYMTYPE if body.startswith("->") else tarfile.LNKTYPE
                info.linkname = body[2:]
                tar.addfile(info)
            else:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def test_layers_whiteouts_and_links(registry_client, local_registry) -> None:  # noqa: ANN001
    src = FIX / "bundles" / "etcd" / "0.9.2"
    csv = "manifests/etcdoperator.v0.9.2.clusterserviceversion.yaml"
    crds = sorted(p.name for p in (src / "manifests").iterdir() if "clusterserviceversion" not in p.name)
    lower = bundle_layer(src)
    upper = _layer([
        ("manifests/.wh." + crds[0], b""),                       # whiteout of one CRD
        ("shared", None), ("shared/" + crds[0], (src / "manifests" / crds[0]).read_bytes()),
        ("manifests/linked-crd.yaml", "->../shared/" + crds[0]),  # relative symlink back in
        ("metadata/.wh..wh..opq", b""),                          # opaque: old metadata gone
        ("real-annotations.yaml", (src / "metadata" / "annotations.yaml").read_bytes()),
        ("metadata/annotations.yaml", "=>real-annotations.yaml"),  # hard link
        ("../../etc/escape.yaml", b"kind: Secret\n"),           # climbs out: stays inside the root
        ("manifests/dangling.yaml", "->/nowhere.yaml"),
    ])
    ref = f"{local_registry.host}/layers/etcd-bundle:0.9.2"
    build_image(registry_client, ImageRef.parse(ref), [lower, upper], {})
    files = image_files(registry_client, ref)
    assert sorted(files) == sorted([csv, "manifests/linked-crd.yaml", "metadata/annotations.yaml",
                                    *[f"manifests/{c}" for c in crds[1:]]])
    assert files["manifests/linked-crd.yaml"] == (src / "manifests" / crds[0]).read_bytes()
    assert files["metadata/annotations.yaml"] == (src / "metadata" / "annotations.yaml").read_bytes()


def test_symlinked_folders_are_followed_and_loops_end(registry_client, local_registry) -> None:  # noqa: ANN001
    src = FIX / "bundles" / "etcd" / "0.9.0"
    content = [(f"bundle/{p.relative_to(src)}", p.read_bytes()) for p in sorted(src.rglob("*")) if p.is_file()]
    ref = f"{local_registry.host}/layers/linked-folders:1"
    build_image(registry_client, ImageRef.parse(ref),
                [_layer([*content, ("manifests", "->bundle/manifests"), ("metadata", "->/bundle/metadata/")])], {})
    assert load_bundle_files(image_files(registry_client, ref), ref) == load_bundle_dir(src, ref)

    loop = f"{local_registry.host}/layers/loop:1"
    build_image(registry_client, ImageRef.parse(loop),
                [_layer([*content, ("manifests", "->m2"), ("m2", "->manifests"), ("metadata", "->bundle/metadata")])],
                {})
    with pytest.raises(CatalogError, match="no bundle objects found"):
        load_bundle_files(image_files(registry_client, loop), loop)


def test_not_a_tar_layer_is_a_clear_error(registry_client, local_registry) -> None:  # noqa: ANN001
    ref = f"{local_registry.host}/layers/garbage:1"
    build_image(registry_client, ImageRef.parse(ref), [b"this is not a tar archive" * 40], {})
    with pytest.raises(CatalogError, match=rf"{ref} layer 1: not a readable tar layer"):
        image_files(registry_client, ref)


@pytest.fixture(scope="module")
def private_registry():  # noqa: ANN201
    """A TLS + htpasswd docker-registry, as a private production registry would be."""
    from sandbox.registry import LocalRegistry

    with LocalRegistry(htpasswd_users={"builder": "s3cret-pass"}) as registry:
        yield registry


def test_cli_add_uses_the_auth_file_for_private_registries(private_registry, tmp_path: Path) -> None:  # noqa: ANN001
    from indexflow.registry.auth import DockerAuth
    from indexflow.registry.client import RegistryClient

    ref = f"{private_registry.host}/private/etcd-bundle:0.9.0"
    auth = DockerAuth.from_config(private_registry.auth_config_path)
    with RegistryClient(auth=auth, ca_files={private_registry.host: private_registry.ca_file}) as client:
        push_bundle_image(client, ImageRef.parse(ref), FIX / "bundles" / "etcd" / "0.9.0", {})
    db = tmp_path / "index.db"
    rc, err = _cli("db", "add", str(db), "--mode", "semver", "-b", ref, "--auth-file", "/nonexistent/none.json")
    assert rc == 1 and "cannot read the registry auth file" in err
    no_creds = tmp_path / "empty.json"
    no_creds.write_text('{"auths": {}}')
    rc, err = _cli("db", "add", str(db), "--mode", "semver", "-b", ref, "--auth-file", str(no_creds))
    assert rc == 1 and ref in err and "s3cret" not in err
    rc, err = _cli("db", "add", str(db), "--mode", "semver", "-b", ref,
                   "--auth-file", str(private_registry.auth_config_path), "--ca-file", str(private_registry.ca_file))
    assert rc == 0, err
    assert [r.bundlePath for r in list_bundles(db)] == [ref]


def test_first_failure_stops_the_queued_pulls(etcd_images: dict[str, Path], local_registry,  # noqa: ANN001
                                              registry_client) -> None:  # noqa: ANN001
    from indexflow.errors import RegistryError

    missing = f"{local_registry.host}/conformance/etcd-bundle:0.0.0-missing"
    before = registry_client.stats.requests
    with pytest.raises(RegistryError, match="0.0.0-missing"):
        fetch_bundle_images(registry_client, [missing, *list(etcd_images) * 20], concurrency=2)
    assert registry_client.stats.requests - before < 30  # not the 240 the whole queue would need
