"""The merge's catalog tasks with per-package modes, the head policy and the step cache, on real
bundle images in the session's local registry (the tasks' own code paths, Prefect not started)."""

from __future__ import annotations

import shutil
from pathlib import Path

from indexflow.catalog.db import list_bundles
from indexflow.registry.refs import ImageRef
from sandbox.images import push_bundle_image
from tasks.catalog import add_missing_bundles, deprecate_chunk, migrate_to_fbc
from tests.catalog.fixtures import FIX, dump, golden

DOTVIRT = ["0.0.27", "0.0.28", "0.0.29", "0.0.32"]
LABELS = {"operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
          "operators.operatorframework.io.bundle.manifests.v1": "manifests/",
          "operators.operatorframework.io.bundle.metadata.v1": "metadata/"}


def _push(registry, client, versions: list[str]) -> list[str]:  # noqa: ANN001
    """dotvirt bundles as images, pinned by digest (what a merge adds)."""
    refs = []
    for v in versions:
        tag = ImageRef.parse(f"{registry.host}/steps/dotvirt-operator-bundle:{v}")
        digest = push_bundle_image(client, tag, FIX / "bundles" / "dotvirt-operator" / v, LABELS)
        refs.append(f"{registry.host}/steps/dotvirt-operator-bundle@{digest}")
    return refs


def test_added_in_the_packages_mode_and_again_from_the_cache(tmp_path: Path, local_registry,  # noqa: ANN001
                                                             registry_client) -> None:  # noqa: ANN001
    """The etcd source gets dotvirt in semver mode (the map) though the request's mode is replaces;
    the same add again (a warm re-run) gives the same bytes without touching the registry."""
    refs = _push(local_registry, registry_client, DOTVIRT)
    source = tmp_path / "source.db"
    shutil.copyfile(FIX / "etcd-full.db", source)
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    for db in (first, second):
        shutil.copyfile(source, db)
    assert add_missing_bundles.fn(first, refs, "replaces", registry_client, 2,
                                  modes={"dotvirt-operator": "semver"}) == 4
    entries = [e for e in dump(first)["channel_entries"] if e["package"] == "dotvirt-operator"]
    want = golden("add-semver-dotvirt")["channel_entries"]
    assert [(e["bundle"], e["replaces"], e["depth"]) for e in entries] == \
        [(e["bundle"], e["replaces"], e["depth"]) for e in want]
    assert add_missing_bundles.fn(second, refs, "replaces", None, 2,  # no client: no pulls
                                  modes={"dotvirt-operator": "semver"}) == 4
    assert second.read_bytes() == first.read_bytes()
    fbc_a, fbc_b = migrate_to_fbc.fn(first, tmp_path / "fbc-a", None), migrate_to_fbc.fn(second, tmp_path / "fbc-b", None)
    assert (fbc_a / "dotvirt-operator" / "catalog.json").read_bytes() == \
        (fbc_b / "dotvirt-operator" / "catalog.json").read_bytes()


def test_remove_package_policy_through_the_deprecate_task(tmp_path: Path) -> None:
    head = "quay.io/conformance/etcd-bundle:0.9.4"  # heads etcd's default channel; two other channels
    db = tmp_path / "index.db"
    shutil.copyfile(FIX / "etcd-full.db", db)
    assert deprecate_chunk.fn(db, [head], [head]) == ["etcd"]
    assert list_bundles(db) == []
    again = tmp_path / "again.db"
    shutil.copyfile(FIX / "etcd-full.db", again)
    assert deprecate_chunk.fn(again, [head], [head]) == ["etcd"]  # a cache hit reports the same packages
    assert again.read_bytes() == db.read_bytes()
