"""index.db ORAS artifacts on the real registry: naming, digest-keyed pull cache, push, restore, and
interoperability with the `oras` Python package (what it pushes we pull, and the other way round)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import oras.client
import pytest

from indexflow.errors import RegistryError, ValidationError
from indexflow.registry.artifacts import SQLITE_MEDIA_TYPE, TITLE, IndexDbArtifacts
from indexflow.registry.client import RegistryClient


def _db(path: Path, rows: int) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS package (name TEXT)")
    con.executemany("INSERT INTO package VALUES (?)", [(f"p{i}",) for i in range(rows)])
    con.commit()
    con.close()
    return path


@pytest.fixture
def artifacts(registry_client: RegistryClient, local_registry, tmp_path: Path) -> IndexDbArtifacts:  # noqa: ANN001
    return IndexDbArtifacts(registry_client, f"{local_registry.host}/a{uuid.uuid4().hex[:8]}",
                            cache_dir=tmp_path / "cache")


def test_naming_follows_iib_templates(registry_client: RegistryClient) -> None:
    art = IndexDbArtifacts(registry_client, "quay.io/org")
    index = "registry.example/rh-osbs/iib-pub-pending:v4.17"
    assert art.canonical_ref(index) == "quay.io/org/index-db:iib-pub-pending-v4.17"
    assert art.request_ref(index, "1234") == "quay.io/org/index-db:iib-pub-pending-v4.17-1234"
    with pytest.raises(ValidationError, match="Missing tag"):
        art.canonical_ref("registry.example/rh-osbs/iib-pub-pending")


def test_push_pull_cache_and_restore(artifacts: IndexDbArtifacts, registry_client: RegistryClient,
                                     tmp_path: Path) -> None:
    ref = artifacts.canonical_ref("registry.example/rh-osbs/iib-pub-pending:v4.17")
    assert artifacts.digest(ref) is None
    with pytest.raises(RegistryError, match="does not exist"):
        artifacts.pull(ref)
    first = artifacts.push(ref, _db(tmp_path / "one.db", 3), {"request_id": "1", "request_type": "merge",
                                                                "operators": "a,b"})
    manifest = registry_client.manifest(ref).json
    assert manifest["annotations"]["request_id"] == "1" and manifest["annotations"]["operators"] == "a,b"
    assert manifest["layers"][0]["mediaType"] == SQLITE_MEDIA_TYPE
    assert manifest["layers"][0]["annotations"] == {TITLE: "index.db"}

    other = IndexDbArtifacts(registry_client, artifacts.registry, cache_dir=tmp_path / "fresh-cache")
    pulled = other.pull(ref)
    assert pulled.downloaded and pulled.digest == first
    assert pulled.path.read_bytes() == (tmp_path / "one.db").read_bytes()
    registry_client.stats.reset()
    again = other.pull(ref)
    assert (again.downloaded, again.path, again.digest) == (False, pulled.path, first)
    assert registry_client.stats.by_method() == {"HEAD": 1}  # unchanged tag: one HEAD, no download

    pulled.path.write_bytes(b"tampered")  # a cached file changed in place is not trusted
    assert other.pull(ref).downloaded and pulled.path.read_bytes() == (tmp_path / "one.db").read_bytes()

    second = artifacts.push(ref, _db(tmp_path / "two.db", 7), {"request_id": "2", "request_type": "merge"})
    assert second != first and artifacts.digest(ref) == second
    assert not artifacts.pull(ref).downloaded  # what we pushed is already in our cache
    artifacts.restore(ref, first)
    assert artifacts.digest(ref) == first


def test_push_of_a_missing_file_names_the_ref(artifacts: IndexDbArtifacts, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="Failed to push OCI artifact to .*index-db:x-v1"):
        artifacts.push(artifacts.canonical_ref("r.example/x:v1"), tmp_path / "nope.db", {})


def test_oras_package_reads_ours_and_we_read_theirs(artifacts: IndexDbArtifacts, local_registry,  # noqa: ANN001
                                                    tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    ours = artifacts.canonical_ref("r.example/ns/index:v4.16")
    artifacts.push(ours, _db(tmp_path / "ours.db", 2), {"request_id": "7", "request_type": "merge"})
    oras_client = oras.client.OrasClient(hostname=local_registry.host, insecure=True)
    files = oras_client.pull(target=ours, outdir=str(tmp_path / "oras-out"))
    assert [Path(f).name for f in files] == ["index.db"]
    assert Path(files[0]).read_bytes() == (tmp_path / "ours.db").read_bytes()

    theirs = artifacts.canonical_ref("r.example/ns/index:v4.18")
    work = tmp_path / "oras-push"
    work.mkdir()
    _db(work / "index.db", 5)
    monkeypatch.chdir(work)  # oras pushes paths relative to the working directory, as IIB runs it
    oras_client.push(target=theirs, files=[f"index.db:{SQLITE_MEDIA_TYPE}"],
                     manifest_annotations={"request_id": "8", "request_type": "merge"})
    pulled = artifacts.pull(theirs)
    assert pulled.downloaded and pulled.path.read_bytes() == (work / "index.db").read_bytes()


def test_a_cached_db_is_known_by_its_verified_layer_digest_while_unchanged(artifacts: IndexDbArtifacts,
                                                                           registry_client: RegistryClient,
                                                                           tmp_path: Path) -> None:
    import hashlib

    ref = artifacts.canonical_ref("registry.example/rh-osbs/iib-pub-pending:v4.18")
    artifacts.push(ref, _db(tmp_path / "one.db", 5), {"request_id": "1"})
    pulled = IndexDbArtifacts(registry_client, artifacts.registry, cache_dir=tmp_path / "fresh").pull(ref)
    layer = registry_client.manifest(ref).json["layers"][0]["digest"]
    assert layer == "sha256:" + hashlib.sha256(pulled.path.read_bytes()).hexdigest()
    assert IndexDbArtifacts.layer_digest(pulled.path) == layer
    assert IndexDbArtifacts.layer_digest(tmp_path / "one.db") is None  # not a cached file
    with open(pulled.path, "ab") as f:
        f.write(b"x")  # changed in place: no longer what was checked
    assert IndexDbArtifacts.layer_digest(pulled.path) is None
