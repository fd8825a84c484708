"""Normal behaviour around the hostile-input limits: the limits' configuration, digests, the caches'
size bound (least recently used out first, recent slots kept), and credentials read from memory."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from indexflow.errors import RegistryError
from indexflow.registry import cache, digests
from indexflow.registry.artifacts import IndexDbArtifacts
from indexflow.registry.auth import DockerAuth
from indexflow.registry.client import RegistryClient
from indexflow.registry.limits import Limits

SECRET = "pw-in-memory-only"


def test_limits_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Limits.from_env() == Limits()
    assert (Limits().manifest_bytes, Limits().unpacked_bytes, Limits().layer_entries) == (4 << 20, 256 << 20, 10_000)
    monkeypatch.setenv("INDEXFLOW_CACHE_MAX_BYTES", "12345")
    monkeypatch.setenv("INDEXFLOW_REGISTRY_DEADLINE", "2.5")
    assert (Limits.from_env().cache_max_bytes, Limits.from_env().request_deadline) == (12345, 2.5)
    monkeypatch.setenv("INDEXFLOW_MAX_LAYER_ENTRIES", "lots")
    with pytest.raises(RegistryError, match="INDEXFLOW_MAX_LAYER_ENTRIES='lots' is not a positive int"):
        Limits.from_env()
    monkeypatch.delenv("INDEXFLOW_MAX_LAYER_ENTRIES")
    monkeypatch.setenv("INDEXFLOW_REGISTRY_DEADLINE", "nan")  # compares false both ways: no deadline at all
    with pytest.raises(RegistryError, match="INDEXFLOW_REGISTRY_DEADLINE='nan' is not a positive float"):
        Limits.from_env()


def test_digests_of_both_algorithms_are_checked() -> None:
    data = b"content"
    for algorithm in ("sha256", "sha512"):
        import hashlib

        good = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
        assert digests.of(good, data, "x") and not digests.of(good, data + b"!", "x")
    with pytest.raises(RegistryError, match="not supported"):
        digests.check("sha1:" + "a" * 40, "x")
    with pytest.raises(RegistryError, match="not a valid sha256 digest"):
        digests.check("sha256:" + "A" * 64, "x")


def test_docker_auth_from_a_parsed_secret_and_from_its_text() -> None:
    entry = {"auth": base64.b64encode(f"bob:{SECRET}".encode()).decode()}
    config = {"auths": {"https://quay.io/v1/": entry, "reg.example:5000": {"username": "u", "password": "p"}}}
    for data in (config, json.dumps(config)):
        auth = DockerAuth.from_dict(data, "the Secret block 'x'")
        assert auth.credentials("quay.io").password == SECRET
        assert auth.credentials("reg.example:5000").username == "u"


@pytest.mark.parametrize("data", [f"not json {SECRET}", [SECRET], {"auths": SECRET}])
def test_docker_auth_from_dict_errors_name_the_source_not_the_content(data: object) -> None:
    with pytest.raises(RegistryError, match="the Secret block 'x'") as exc:
        DockerAuth.from_dict(data, "the Secret block 'x'")
    assert SECRET not in str(exc.value)


def test_from_config_reads_files_through_from_dict(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"quay.io": {"username": "u", "password": SECRET}}}))
    assert DockerAuth.from_config(path).credentials("quay.io").password == SECRET
    path.write_text("[]")
    with pytest.raises(RegistryError, match=f"the registry auth file {path} is not a docker config.json"):
        DockerAuth.from_config(path)


def _slot(folder: Path, name: str, size: int, age: float) -> Path:
    slot = folder / name
    slot.mkdir(parents=True)
    (slot / "data").write_bytes(bytes(size))
    stamp = time.time() - age
    os.utime(slot / "data", (stamp, stamp))
    os.utime(slot, (stamp, stamp))
    return slot


def test_eviction_removes_least_recently_used_slots_first(tmp_path: Path) -> None:
    bundles, dbs = tmp_path / "bundles", tmp_path / "index-db"
    oldest = _slot(bundles, "sha256-a", 4000, age=9000)
    older_db = _slot(dbs, "sha256-b", 4000, age=8000)
    old = _slot(bundles, "sha256-c", 4000, age=7000)
    recent = _slot(bundles, "sha256-d", 4000, age=10)
    (bundles / ".part-x").mkdir()  # unfinished slots are never counted nor removed
    removed = cache.evict([bundles, dbs], max_bytes=9000)
    assert removed == [oldest, older_db]
    assert old.is_dir() and recent.is_dir() and (bundles / ".part-x").is_dir()


def test_eviction_removes_what_writers_killed_mid_write_left_behind(tmp_path: Path) -> None:
    """A `.part-` entry untouched for longer than GRACE is a dead writer's, even under the size bound;
    a younger one may be a live writer's and stays."""
    bundles = tmp_path / "bundles"
    abandoned = _slot(bundles, ".part-dead", 4000, age=cache.GRACE + 60)
    (bundles / ".part-file").write_bytes(b"x")
    os.utime(bundles / ".part-file", (time.time() - 2 * cache.GRACE,) * 2)
    live = _slot(bundles, ".part-live", 4000, age=5)
    kept = _slot(bundles, "sha256-a", 4000, age=9000)
    hidden = _slot(bundles, ".other", 10, age=9000)  # not ours to judge
    assert sorted(cache.evict([bundles], max_bytes=10**9)) == sorted([abandoned, bundles / ".part-file"])
    assert live.is_dir() and kept.is_dir() and hidden.is_dir() and not abandoned.exists()


def test_a_part_whose_file_is_still_being_written_is_not_swept(tmp_path: Path) -> None:
    """A download appends to a file inside its part: the dir's own mtime stays at its creation, so
    only the file shows the writer is alive (a slow index.db download can outlast GRACE)."""
    part = _slot(tmp_path / "index-db", ".part-download", 4000, age=cache.GRACE + 60)
    with (part / "data").open("ab") as f:
        f.write(b"more")  # the writer's latest chunk
    assert cache.sweep_parts(tmp_path / "index-db") == [] and part.is_dir()
    later = time.time() + cache.GRACE + 1  # the writer died right after that chunk
    assert cache.sweep_parts(tmp_path / "index-db", now=later) == [part] and not part.exists()


def test_eviction_keeps_slots_in_use_even_over_the_bound(tmp_path: Path) -> None:
    slots = [_slot(tmp_path / "bundles", f"sha256-{i}", 4000, age=5) for i in range(3)]
    assert cache.evict([tmp_path / "bundles"], max_bytes=1) == []
    assert all(slot.is_dir() for slot in slots)


def test_a_cache_hit_counts_as_a_use(tmp_path: Path) -> None:
    used = _slot(tmp_path / "bundles", "sha256-used", 4000, age=9000)
    idle = _slot(tmp_path / "bundles", "sha256-idle", 4000, age=8000)
    cache.touch(used)
    assert cache.evict([tmp_path / "bundles"], max_bytes=5000) == [idle]


def test_an_index_db_pull_evicts_old_bundles_past_the_bound(registry_client: RegistryClient, local_registry,  # noqa: ANN001
                                                            tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    sqlite3.connect(db).close()
    db.write_bytes(db.read_bytes() + bytes(20_000))
    cache_root = tmp_path / "cache"
    stale = _slot(cache_root / "bundles", "sha256-stale", 50_000, age=3600)
    pusher = IndexDbArtifacts(registry_client, local_registry.host, cache_dir=tmp_path / "elsewhere")
    ref = f"{local_registry.host}/index-db/lru:v1"
    pusher.push(ref, db, {})
    small = RegistryClient(insecure=(local_registry.host,), limits=Limits(cache_max_bytes=30_000))
    with small:
        pulled = IndexDbArtifacts(small, local_registry.host, cache_dir=cache_root / "index-db").pull(ref)
    assert pulled.downloaded and pulled.path.read_bytes() == db.read_bytes()
    assert not stale.exists()
