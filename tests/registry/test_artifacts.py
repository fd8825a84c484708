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


def _parts_and_files(cache_dir: Path) -> tuple[list[str], list[str]]:
    """(`.part-` entries at the top of the cache, every file under the digest slots), as names."""
    parts = sorted(p.name for p in cache_dir.iterdir() if p.name.startswith(".part-"))
    files = sorted(str(f.relative_to(cache_dir)) for slot in cache_dir.glob("sha256-*") for f in slot.rglob("*"))
    return parts, files


def test_a_download_killed_midway_leaves_only_a_part_that_eviction_sweeps(artifacts: IndexDbArtifacts,
                                                                          local_registry, tmp_path: Path) -> None:  # noqa: ANN001
    """kill -9 of a process while its index.db download hangs: what is left is one `.part-` dir beside the
    slots (no slot holds anything), and the eviction of a later run removes it once GRACE old."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from indexflow.registry import cache
    from sandbox.faultproxy import FaultProxy

    ref = artifacts.canonical_ref("registry.example/rh-osbs/iib-pub-pending:v4.19")
    artifacts.push(ref, _db(tmp_path / "one.db", 4), {"request_id": "1"})
    cache_dir = tmp_path / "killed-cache"
    with FaultProxy(local_registry.host) as proxy:
        proxy.add_fault("hang", path=r"/blobs/sha256:", method="GET", times=100)
        via_proxy = ref.replace(local_registry.host, proxy.host, 1)
        code = ("import sys; from pathlib import Path; from indexflow.registry.client import RegistryClient; "
                "from indexflow.registry.artifacts import IndexDbArtifacts; "
                f"c = RegistryClient(insecure=({proxy.host!r},), timeout=60); "
                f"IndexDbArtifacts(c, 'unused', cache_dir=Path({str(cache_dir)!r})).pull({via_proxy!r})")
        root = Path(__file__).resolve().parents[2]
        child = subprocess.Popen([sys.executable, "-c", code], cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        try:
            deadline = time.monotonic() + 30
            while not proxy.stats()["injected"]:  # the download's GET is held: the pull is mid-download
                assert child.poll() is None and time.monotonic() < deadline, "the pull never reached its download"
                time.sleep(0.05)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    parts, files = _parts_and_files(cache_dir)
    assert len(parts) == 1 and files == []  # nothing half-written inside a slot
    assert cache.evict([cache_dir], max_bytes=10**12) == []  # a live writer's part may be this young
    assert [p.name for p in cache.evict([cache_dir], max_bytes=10**12, now=time.time() + cache.GRACE + 1)] == parts
    assert _parts_and_files(cache_dir) == ([], [])


def test_a_push_lands_even_when_the_local_cache_cannot_take_a_copy(artifacts: IndexDbArtifacts,
                                                                   registry_client: RegistryClient,
                                                                   tmp_path: Path) -> None:
    """Seeding the pull cache with what was pushed is an optimisation: a cache dir that cannot be made
    (here its parent is a file; root ignores permission bits) must not turn a landed push into a failure."""
    (tmp_path / "not-a-dir").write_text("x")
    blocked = IndexDbArtifacts(registry_client, artifacts.registry, cache_dir=tmp_path / "not-a-dir" / "cache")
    ref = blocked.canonical_ref("registry.example/rh-osbs/iib-pub-pending:v4.20")
    digest = blocked.push(ref, _db(tmp_path / "one.db", 2), {"request_id": "1"})
    assert registry_client.resolve(ref) == digest
    with pytest.raises(RegistryError, match=r"^cannot write under .*not-a-dir/cache: Not a directory$"):
        blocked.pull(ref)
