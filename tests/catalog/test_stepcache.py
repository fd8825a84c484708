"""The catalog step cache: same inputs give back the same bytes; other inputs never do."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from indexflow.catalog.add import add_bundle_refs
from indexflow.catalog.migrate import migrate
from indexflow.catalog.stepcache import StepCache, file_digest, step_key, tree_digest
from tests.catalog.fixtures import FIX


def test_a_migrated_tree_comes_back_byte_for_byte(tmp_path: Path) -> None:
    db = tmp_path / "etcd.db"
    shutil.copyfile(FIX / "etcd-full.db", db)
    made = tmp_path / "made"
    migrate(db, made)
    cache = StepCache(tmp_path / "cache")
    key = step_key("migrate", file_digest(db), None)
    assert cache.get(key, tmp_path / "x") is None
    cache.put(key, made, {"n": 1})
    back = tmp_path / "back"
    (back / "stale").mkdir(parents=True)  # whatever was there is replaced
    assert cache.get(key, back) == {"n": 1}
    assert tree_digest(back) == tree_digest(made)
    assert step_key("migrate", file_digest(db), "bundle-object-to-csv-metadata") != key


def test_a_changed_db_is_a_different_key(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    shutil.copyfile(FIX / "etcd-full.db", db)
    before = file_digest(db)
    ref = "quay.io/conformance/dotvirt-operator-bundle:0.0.27"
    add_bundle_refs(db, [ref], {ref: FIX / "bundles" / "dotvirt-operator" / "0.0.27"})
    assert file_digest(db) != before


def test_only_the_most_recent_entries_stay(tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_text("x")
    keys = [step_key("s", i) for i in range(3)]
    for age, key in enumerate(keys):
        StepCache(tmp_path / "cache").put(key, src)
        os.utime(StepCache(tmp_path / "cache")._slot(key), (1000 + age, 1000 + age))
    cache = StepCache(tmp_path / "cache", keep=2)
    cache.get(keys[0], tmp_path / "g")  # used again: now the most recent
    cache.put(step_key("s", 3), src)
    assert cache.get(keys[0], None) is not None and cache.get(step_key("s", 3), None) is not None
    assert cache.get(keys[1], None) is None and cache.get(keys[2], None) is None


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_db_copied_from_an_entry_is_keyed_by_the_digest_put_recorded(tmp_path: Path) -> None:
    """The next step's key comes from the entry's note, not from reading the copy again: shown by an
    entry whose bytes were changed behind the cache's back (the copy no longer hashes to the note)."""
    db = tmp_path / "index.db"
    shutil.copyfile(FIX / "etcd-full.db", db)
    cache = StepCache(tmp_path / "cache")
    cache.put("k" * 64, db)
    (stored,) = (tmp_path / "cache").glob("*/*/out")
    stored.write_bytes(stored.read_bytes()[:-1] + b"\x01")
    dest = tmp_path / "copy.db"
    note = cache.get("k" * 64, dest)
    assert note == {"out_sha256": _sha256(db)}
    assert file_digest(dest) == _sha256(db) != _sha256(dest)


def test_a_known_digest_is_forgotten_when_the_db_changes(tmp_path: Path) -> None:
    """A same-size sqlite write right after hashing: the digest follows the bytes (the file's identity
    holds its times and the sqlite header, whose change counter moves even within one clock tick)."""
    import sqlite3

    db = tmp_path / "index.db"
    shutil.copyfile(FIX / "etcd-full.db", db)
    size = db.stat().st_size
    before = file_digest(db)
    assert before == _sha256(db)
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE operatorbundle SET version = version || '' WHERE rowid = 1")
        con.execute("UPDATE package SET default_channel = default_channel")
    con.close()
    assert db.stat().st_size == size and _sha256(db) != before
    assert file_digest(db) == _sha256(db)
    (tmp_path / "other.db").write_bytes(db.read_bytes() + b"x")
    assert file_digest(tmp_path / "other.db") == _sha256(tmp_path / "other.db")


def test_prune_removes_entries_a_killed_writer_left_half_written(tmp_path: Path) -> None:
    import time

    from indexflow.registry.cache import GRACE

    cache = StepCache(tmp_path / "cache")
    dead = tmp_path / "cache" / "ab" / ".part-dead"
    live = tmp_path / "cache" / "ab" / ".part-live"
    for part in (dead, live):
        part.mkdir(parents=True)
        (part / "out").write_bytes(b"half")
    for path in (dead / "out", dead):  # the writer died long ago: nothing in its part was written since
        os.utime(path, (time.time() - GRACE - 60,) * 2)
    db = tmp_path / "x.db"
    db.write_bytes(b"x")
    cache.put("ab" + "0" * 62, db)  # every put prunes
    assert not dead.exists() and live.is_dir()
    assert cache.get("ab" + "0" * 62, tmp_path / "back.db") is not None


def test_prune_skips_an_entry_that_vanishes_while_it_runs(tmp_path: Path) -> None:
    """Two runs prune one cache at once: an entry the other removed between listing and stat must not
    fail this run's step (it raised FileNotFoundError). A dangling link is such an entry, frozen."""
    cache = StepCache(tmp_path / "cache", keep=1)
    (tmp_path / "cache" / "cd").mkdir(parents=True)
    (tmp_path / "cache" / "cd" / ("cd" + "1" * 62)).symlink_to(tmp_path / "removed-by-the-other-run")
    db = tmp_path / "x.db"
    db.write_bytes(b"x")
    cache.put("ab" + "0" * 62, db)
    cache.put("ef" + "0" * 62, db)  # keep=1: the older real entry goes
    assert cache.get("ef" + "0" * 62, tmp_path / "back.db") is not None
    assert cache.get("ab" + "0" * 62, tmp_path / "gone.db") is None
