"""Per-package graph modes, release-order adds and the OCP-incompatible default-head policy.

Oracles: opm v1.73.0's golden dumps of single-mode adds (tests/fixtures/catalog/expected), and
successive single-bundle adds (each one opm's `registry add` of one bundle).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from indexflow.catalog.add import add_bundle_refs, add_bundles
from indexflow.catalog.bundle import load_bundle_dir
from indexflow.catalog.db import list_bundles
from indexflow.catalog.deprecate import DefaultChannelRemoval, DefaultHeadRemoval, deprecate_truncate
from indexflow.catalog.modes import load_mode_map
from indexflow.cli import main
from indexflow.errors import CatalogError
from tests.catalog.fixtures import FIX, dump, golden

ETCD = ["0.6.1", "0.9.0", "0.9.2", "0.9.2-clusterwide", "0.9.4", "0.9.4-clusterwide"]
DOTVIRT = ["0.0.27", "0.0.28", "0.0.29", "0.0.32"]


def _dirs(pkg: str, versions: list[str]) -> dict[str, Path]:
    return {f"quay.io/conformance/{pkg}-bundle:{v}": FIX / "bundles" / pkg / v for v in versions}


def _of_package(data: dict, pkg: str) -> dict:
    """The graph rows of one package (channels, entries, package row) of a dump."""
    return {"channels": [c for c in data["channels"] if c["package"] == pkg],
            "channel_entries": [e for e in data["channel_entries"] if e["package"] == pkg],
            "packages": [p for p in data["packages"] if p["name"] == pkg]}


def test_each_package_is_added_in_its_own_mode_in_one_call(tmp_path: Path) -> None:
    """etcd (replaces) and dotvirt (semver) in one transaction give each package opm's single-mode graph."""
    db = tmp_path / "index.db"
    dirs = {**_dirs("etcd", ETCD), **_dirs("dotvirt-operator", DOTVIRT)}
    add_bundle_refs(db, list(dirs), dirs, mode="replaces", modes={"dotvirt-operator": "semver"})
    got = dump(db)
    for pkg, case in (("etcd", "add-replaces-etcd-full"), ("dotvirt-operator", "add-semver-dotvirt")):
        assert _of_package(got, pkg) == _of_package(golden(case), pkg)
    # opm's ClearNonHeadBundles ends a semver-mode add db-wide: etcd's non-head bundles lose their blobs too
    heads = {c["head"] for c in got["channels"]}
    etcd = {b["name"]: b for b in golden("add-replaces-etcd-full")["bundles"]}
    for row in (b for b in got["bundles"] if b["name"] in etcd):
        kept = row["name"] in heads
        assert row["csv_sha256"] == (etcd[row["name"]]["csv_sha256"] if kept else None)


def test_mode_map_file_takes_ci_yaml_values(tmp_path: Path) -> None:
    """`db add --mode-map` reads the corpus's ci_meta shape: updateGraph values, unset entries left out."""
    meta = {"dotvirt-operator": {"updateGraph": "semver-mode", "fbc_enabled": False},
            "etcd": {"updateGraph": None, "fbc_enabled": False}}
    path = tmp_path / "modes.json"
    path.write_text(json.dumps(meta))
    assert load_mode_map(path) == {"dotvirt-operator": "semver"}
    db = tmp_path / "index.db"
    dirs = _dirs("dotvirt-operator", DOTVIRT)
    assert main(["db", "add", str(db), "--mode-map", str(path), *[f"-b{r}={d}" for r, d in dirs.items()]]) == 0
    assert _of_package(dump(db), "dotvirt-operator") == _of_package(golden("add-semver-dotvirt"), "dotvirt-operator")
    path.write_text('{"etcd": "sideways"}')
    with pytest.raises(CatalogError, match="graph mode of package 'etcd' must be one of"):
        load_mode_map(path)


def test_release_order_adds_one_release_at_a_time(tmp_path: Path) -> None:
    """dotvirt's CSVs replace nothing: in replaces mode one opm add of all four prunes the older ones,
    while adding them as they were released (each its own add, in version order) keeps every one."""
    dirs = _dirs("dotvirt-operator", DOTVIRT)
    with pytest.raises(CatalogError, match="add prunes bundle dotvirt-operator.v0.0.27"):
        add_bundle_refs(tmp_path / "batch.db", list(dirs), dirs, mode="replaces")
    one_by_one = tmp_path / "successive.db"
    for ref in dirs:
        add_bundle_refs(one_by_one, [ref], {ref: dirs[ref]}, mode="replaces")
    refs = list(dirs)
    random.Random(7).shuffle(refs)
    db = tmp_path / "release.db"
    add_bundles(db, [load_bundle_dir(dirs[r], r) for r in refs], "replaces", release_order=True)
    assert dump(db) == dump(one_by_one)
    assert [c["head"] for c in dump(db)["channels"]] == ["dotvirt-operator.v0.0.32"]


@pytest.fixture
def etcd_db(tmp_path: Path) -> Path:
    db = tmp_path / "index.db"
    shutil.copyfile(FIX / "etcd-full.db", db)
    return db


HEAD = "quay.io/conformance/etcd-bundle:0.9.4"  # head of etcd's default channel singlenamespace-alpha


def test_default_channel_removal_goes_on_with_the_next_bundle(etcd_db: Path) -> None:
    """opm's sentinel error is collected and the next bundle still tried (caught by type, not by text)."""
    before = dump(etcd_db)
    with pytest.raises(CatalogError) as err:
        deprecate_truncate(etcd_db, [HEAD, HEAD])
    assert str(err.value) == (f"[error deprecating bundle {HEAD}: Bundle deprecation causing default channel "
                              f"removal, error deprecating bundle {HEAD}: Bundle deprecation causing default "
                              "channel removal]")
    with pytest.raises(DefaultHeadRemoval, match="must deprecate quay.io/conformance/etcd-bundle:0.6.1, head of "
                                                 "channel alpha") as head_err:
        deprecate_truncate(etcd_db, [HEAD], allow_package_removal=True)
    assert head_err.value.package == "etcd"
    assert dump(etcd_db) == before


def test_sentinel_class_carries_opms_text() -> None:
    assert str(DefaultChannelRemoval()) == "Bundle deprecation causing default channel removal"


def test_remove_package_policy_removes_the_package_and_says_so(etcd_db: Path) -> None:
    removed = deprecate_truncate(etcd_db, [HEAD], allow_package_removal=True, remove_package_of=[HEAD])
    assert removed == ["etcd"]
    assert list_bundles(etcd_db) == []
    assert dump(etcd_db)["packages"] == []


def test_policy_does_not_touch_a_head_that_is_not_the_default(etcd_db: Path) -> None:
    """A listed head of another channel is deprecated as opm does; nothing is removed by the policy."""
    ref = "quay.io/conformance/etcd-bundle:0.9.4-clusterwide"
    assert deprecate_truncate(etcd_db, [ref], allow_package_removal=True, remove_package_of=[ref]) == []
    assert "etcdoperator.v0.9.4" in {r.csvName for r in list_bundles(etcd_db)}
