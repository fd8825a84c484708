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
