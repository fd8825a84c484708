"""operator-registry v1.73.0 pkg/registry/populator_test.go:756 TestDeprecateBundle and :971
TestDeprecatePackage, through `db deprecatetruncate` (with package removal for the latter).

The peer's db (createAndPopulateDB, line 56) holds its etcd 0.9.0/0.9.2 and prometheus 0.14.0/0.15.0/
0.22.2 test bundles, added in replaces mode; here synthetic bundles carry the same graph facts. The
oracle: the (bundle path, channel) pairs left, those carrying olm.deprecated, and each package's channels.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from indexflow.catalog.deprecate import deprecate_truncate
from indexflow.errors import CatalogError
from tests.peers.bundles import add, write_bundle

# image -> (csv, package, channels, default channel, version, replaces, skips)
PEER_DB = {
    "etcd.0.9.0": ("etcdoperator.v0.9.0", "etcd", ["alpha", "stable", "beta"], "stable", "0.9.0", "", []),
    "etcd.0.9.2": ("etcdoperator.v0.9.2", "etcd", ["alpha", "stable"], "alpha", "0.9.2", "etcdoperator.v0.9.0",
                   ["etcdoperator.v0.9.1"]),
    "prometheus.0.22.2": ("prometheusoperator.0.22.2", "prometheus", ["preview"], "preview", "0.22.2",
                          "prometheusoperator.0.15.0", []),
    "prometheus.0.14.0": ("prometheusoperator.0.14.0", "prometheus", ["preview"], "preview", "0.14.0", "", []),
    "prometheus.0.15.0": ("prometheusoperator.0.15.0", "prometheus", ["preview", "stable"], "preview", "0.15.0",
                          "prometheusoperator.0.14.0", []),
}
Q = "quay.io/test/"
PROMETHEUS_LEFT = {Q + "prometheus.0.22.2/preview", Q + "prometheus.0.15.0/preview", Q + "prometheus.0.15.0/stable",
                   Q + "prometheus.0.14.0/preview", Q + "prometheus.0.14.0/stable"}


@pytest.fixture
def peer_db(tmp_path: Path, db: Path) -> Path:
    dirs = [write_bundle(tmp_path / key, csv, pkg, chans, default=default, version=version, replaces=replaces,
                         skips=skips) for key, (csv, pkg, chans, default, version, replaces, skips) in PEER_DB.items()]
    add(db, dirs, images=[Q + key for key in PEER_DB])
    return db


def _state(db: Path) -> tuple[set[str], set[str], dict[str, set[str]]]:
    con = sqlite3.connect(db)
    try:
        left = {f"{p}/{c}" for p, c in con.execute(
            "SELECT DISTINCT ob.bundlepath, ce.channel_name FROM channel_entry ce JOIN operatorbundle ob "
            "ON ob.name = ce.operatorbundle_name")}
        deprecated = {f"{p}/{c}" for p, c in con.execute(
            "SELECT DISTINCT ob.bundlepath, ce.channel_name FROM channel_entry ce JOIN operatorbundle ob ON ob.name "
            "= ce.operatorbundle_name JOIN properties pr ON pr.operatorbundle_name = ob.name "
            "WHERE pr.type = 'olm.deprecated'")}
        channels: dict[str, set[str]] = {}
        for pkg, ch in con.execute("SELECT DISTINCT package_name, channel_name FROM channel_entry"):
            channels.setdefault(pkg, set()).add(ch)
    finally:
        con.close()
    return left, deprecated, channels


def test_remove_entire_package(peer_db: Path) -> None:
    """Peer: populator_test.go:988 RemoveEntirePackage/BundlesAreAllHeadsOfChannels."""
    deprecate_truncate(peer_db, [Q + "etcd.0.9.2", Q + "etcd.0.9.0"], allow_package_removal=True)
    assert _state(peer_db) == (PROMETHEUS_LEFT, set(), {"prometheus": {"preview", "stable"}})


def test_default_head_without_every_channel_head_fails(peer_db: Path) -> None:
    """Peer: populator_test.go:1014 RemoveHeadOfDefaultChannelWithoutAllChannelHeads/Error."""
    before = _state(peer_db)
    with pytest.raises(CatalogError) as err:
        deprecate_truncate(peer_db, [Q + "etcd.0.9.2"], allow_package_removal=True)
    assert str(err.value) == ("cannot deprecate default channel head from package without removing all other channel "
                              "heads in package etcd: must deprecate quay.io/test/etcd.0.9.0, head of channel beta")
    assert _state(peer_db) == before
    assert before[0] >= {Q + "etcd.0.9.0/alpha", Q + "etcd.0.9.0/beta", Q + "etcd.0.9.0/stable",
                         Q + "etcd.0.9.2/stable", Q + "etcd.0.9.2/alpha"}


def test_remove_entire_package_and_deprecate_another_bundle(peer_db: Path) -> None:
    """Peer: populator_test.go:1092 RemoveEntirePackage/AndDeprecateAdditionalBundle."""
    deprecate_truncate(peer_db, [Q + "etcd.0.9.2", Q + "etcd.0.9.0", Q + "prometheus.0.14.0"],
                       allow_package_removal=True)
    assert _state(peer_db) == (PROMETHEUS_LEFT, {Q + "prometheus.0.14.0/preview", Q + "prometheus.0.14.0/stable"},
                               {"prometheus": {"preview", "stable"}})


ETCD_LEFT = {Q + "etcd.0.9.0/alpha", Q + "etcd.0.9.0/beta", Q + "etcd.0.9.0/stable", Q + "etcd.0.9.2/stable",
             Q + "etcd.0.9.2/alpha"}
ETCD_CHANNELS = {"etcd": {"alpha", "beta", "stable"}}


@pytest.mark.parametrize(("line", "case", "refs"), [
    (808, "ChannelRemoved", ["prometheus.0.15.0"]),
    (876, "OutOfOrderDeprecate", ["prometheus.0.15.0", "prometheus.0.14.0"]),
])
def test_deprecate_bundle_removes_the_channel_it_heads(peer_db: Path, line: int, case: str, refs: list[str]) -> None:
    """Peer: populator_test.go:LINE TestDeprecateBundle CASE: 0.15.0 heads stable, which goes; 0.14.0 is
    truncated (and, named after it, ignored); 0.15.0 stays deprecated in preview."""
    deprecate_truncate(peer_db, [Q + r for r in refs])
    assert _state(peer_db) == (ETCD_LEFT | {Q + "prometheus.0.22.2/preview", Q + "prometheus.0.15.0/preview"},
                               {Q + "prometheus.0.15.0/preview"}, ETCD_CHANNELS | {"prometheus": {"preview"}})


def test_deprecating_the_default_channel_head_fails(peer_db: Path) -> None:
    """Peer: populator_test.go:841 TestDeprecateBundle ChannelRemoved/ErrorOnDefault."""
    before = _state(peer_db)
    with pytest.raises(CatalogError) as err:
        deprecate_truncate(peer_db, [Q + "prometheus.0.22.2"])
    assert str(err.value) == ("error deprecating bundle quay.io/test/prometheus.0.22.2: Bundle deprecation causing "
                              "default channel removal")
    assert _state(peer_db) == before == (ETCD_LEFT | PROMETHEUS_LEFT, set(),
                                         ETCD_CHANNELS | {"prometheus": {"preview", "stable"}})


# TestAddAfterDeprecate's testpkg tree (populator_test.go:1190-1281): csv -> (channel, replaces); default 0.1
TESTPKG = {"0.1.0": ("0.1", ""), "0.1.1": ("0.1", "0.1.0"), "0.1.2": ("0.1", "0.1.1"), "0.2.0": ("0.2", "0.1.0"),
           "0.2.1": ("0.2", "0.2.0"), "0.2.2": ("0.2", "0.2.1"), "0.3.0": ("0.3", "0.2.1"), "0.3.1": ("0.3", "0.3.0"),
           "0.3.2": ("0.3", "0.3.1")}


def _testpkg(tmp_path: Path, db: Path, versions: list[str]) -> None:
    add(db, [write_bundle(tmp_path / f"testpkg.v{v}", f"testpkg.v{v}", "testpkg", [TESTPKG[v][0]], default="0.1",
                          version=v, replaces=f"testpkg.v{TESTPKG[v][1]}" if TESTPKG[v][1] else "") for v in versions],
        images=[f"{Q}testpkg.v{v}" for v in versions])


def _left(*pairs: str) -> set[str]:
    return {f"{Q}testpkg.v{p}" for p in pairs}


ALL_TESTPKG_CHANNELS = {"testpkg": {"0.1", "0.2", "0.3"}}
BRANCHES = ["0.1.0/0.1", "0.1.0/0.2", "0.1.1/0.1", "0.2.0/0.2", "0.2.1/0.2", "0.2.2/0.2"]


@pytest.mark.parametrize(("line", "case", "existing", "deprecated", "added", "left"), [
    (1380, "TruncateTillBranchPoint", ["0.1.0", "0.1.1", "0.2.0", "0.2.1", "0.2.2", "0.3.0", "0.3.1", "0.3.2"], "0.3.1",
     ["0.1.2"], BRANCHES + ["0.1.2/0.1", "0.3.1/0.3", "0.3.2/0.3"]),
    (1423, "DeprecateAboveBranchPoint", ["0.1.0", "0.1.1", "0.2.0", "0.2.1", "0.2.2", "0.3.0", "0.3.1"], "0.3.0",
     ["0.1.2"], BRANCHES + ["0.1.2/0.1", "0.3.0/0.3", "0.3.1/0.3"]),
    (1465, "ReplaceDeprecatedChannelHead", ["0.1.0", "0.1.1", "0.2.0", "0.2.1", "0.2.2", "0.3.0"], "0.3.0",
     ["0.3.1", "0.3.2"], BRANCHES + ["0.3.0/0.3", "0.3.1/0.3", "0.3.2/0.3"]),
])
def test_add_after_deprecate(tmp_path: Path, db: Path, line: int, case: str, existing: list[str], deprecated: str,
                             added: list[str], left: list[str]) -> None:
    """Peer: populator_test.go:LINE TestAddAfterDeprecate CASE: add, deprecate one bundle, add more."""
    _testpkg(tmp_path, db, existing)
    deprecate_truncate(db, [f"{Q}testpkg.v{deprecated}"])
    _testpkg(tmp_path, db, added)
    assert _state(db) == (_left(*left), _left(f"{deprecated}/0.3"), ALL_TESTPKG_CHANNELS)


def test_add_after_deprecate_simple_add(tmp_path: Path, db: Path) -> None:
    """Peer: populator_test.go:1309 TestAddAfterDeprecate SimpleAdd (the prometheus bundles)."""
    def bundles(keys: list[str]) -> None:
        add(db, [write_bundle(tmp_path / k, csv, pkg, chans, default=default, version=version, replaces=replaces)
                 for k in keys for csv, pkg, chans, default, version, replaces, _ in [PEER_DB[k]]],
            images=[Q + k for k in keys])
    bundles(["prometheus.0.14.0", "prometheus.0.15.0"])
    deprecate_truncate(db, [Q + "prometheus.0.14.0"])
    bundles(["prometheus.0.22.2"])
    assert _state(db) == (PROMETHEUS_LEFT, {Q + "prometheus.0.14.0/preview", Q + "prometheus.0.14.0/stable"},
                          {"prometheus": {"preview", "stable"}})
