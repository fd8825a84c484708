"""operator-registry v1.73.0 deprecation cases through `db deprecatetruncate`.

pkg/sqlite/load_test.go:343 TestDeprecationAwareLoader adds bundles, deprecates some, then removes a
package (opm's RemovePackage); indexflow removes packages only inside deprecatetruncate (with
package removal allowed: every channel head of the package deprecated), so each case is run as
"deprecatetruncate the listed bundles, then deprecatetruncate the package's remaining heads with
package removal". The oracle is the peer's expected `deprecated` table and the bundles left with
their channels. pkg/lib/registry/registry_test.go:111 TestCheckForBundlePaths gives the empty-db rule.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from indexflow.catalog.deprecate import deprecate_truncate
from indexflow.errors import CatalogError
from tests.peers.bundles import add, image_of, write_bundle


def _state(db: Path) -> tuple[set[str], set[str]]:
    """(deprecated bundle names, "name:channels" of every bundle) as the peer's checkForBundles reads them."""
    con = sqlite3.connect(db)
    try:
        deprecated = {n for (n,) in con.execute("SELECT operatorbundle_name FROM deprecated")}
        rows = {r for (r,) in con.execute(
            "SELECT name || ':' || coalesce(group_concat(DISTINCT channel_name), '') FROM (SELECT name, channel_name "
            "FROM operatorbundle LEFT OUTER JOIN channel_entry ON name = operatorbundle_name ORDER BY channel_name) "
            "GROUP BY name")}
    finally:
        con.close()
    return deprecated, rows


def _heads(db: Path, pkg: str) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [image_of(h) for (h,) in con.execute(
            "SELECT DISTINCT head_operatorbundle_name FROM channel WHERE package_name = ?", (pkg,))]
    finally:
        con.close()


# The peer sets channel heads with package manifests; an add from bundle images picks them by
# version, so each CSV gets a version that makes the peer's CurrentCSVName the head.
VERSIONS = {"csv-a": "0.1.0", "csv-aa": "0.2.0", "csv-aaa": "0.3.0", "csv-b": "0.1.5", "csv-bb": "0.2.5",
            "csv-c": "0.0.1", "csv-cc": "0.0.2"}


def _bundle(tmp_path: Path, name: str, pkg: str, chans: list[str], default: str, replaces: str,
            skips: list[str] | None = None) -> Path:
    return write_bundle(tmp_path / "bundles", name, pkg, chans, default=default, version=VERSIONS[name],
                        replaces=replaces, skips=skips)


def _build(tmp_path: Path, db: Path, spec: list[tuple[str, str, list[str], str, str]]) -> None:
    """spec rows: (csv, package, channels, default channel, replaces); one add of all of them."""
    add(db, [_bundle(tmp_path, *row) for row in spec])


def test_remove_package_without_deprecations(tmp_path: Path, db: Path) -> None:
    """Peer: load_test.go:368 NoDeprecation: removing the package leaves no bundle and no deprecation."""
    _build(tmp_path, db, [("csv-a", "pkg-0", ["stable"], "stable", "")])
    deprecate_truncate(db, _heads(db, "pkg-0"), allow_package_removal=True)
    assert _state(db) == (set(), set())


def test_remove_package_drops_deprecated(tmp_path: Path, db: Path) -> None:
    """Peer: load_test.go:397 RemovePackage/DropsDeprecated: nothing of pkg-0 stays, not even in `deprecated`."""
    _build(tmp_path, db, [("csv-a", "pkg-0", ["stable"], "stable", ""), ("csv-aa", "pkg-0", ["stable"], "stable", "csv-a")])
    deprecate_truncate(db, [image_of("csv-a")])
    deprecate_truncate(db, _heads(db, "pkg-0"), allow_package_removal=True)
    assert _state(db) == (set(), set())


def test_remove_package_ignores_other_packages(tmp_path: Path, db: Path) -> None:
    """Peer: load_test.go:429 RemovePackage/IgnoresOtherPackages: pkg-1's deprecation and bundles stay."""
    _build(tmp_path, db, [("csv-a", "pkg-0", ["stable"], "stable", ""), ("csv-aa", "pkg-0", ["stable"], "stable", "csv-a"),
                          ("csv-b", "pkg-1", ["stable"], "stable", ""), ("csv-bb", "pkg-1", ["stable"], "stable", "csv-b")])
    deprecate_truncate(db, [image_of("csv-a"), image_of("csv-b")])
    deprecate_truncate(db, _heads(db, "pkg-0"), allow_package_removal=True)
    assert _state(db) == ({"csv-b"}, {"csv-b:stable", "csv-bb:stable"})


def test_deprecate_truncate_drops_truncated(tmp_path: Path, db: Path) -> None:
    """Peer: load_test.go:479 DeprecateTruncate/DropsTruncated: aa's deprecation truncates a (gone from both)."""
    _build(tmp_path, db, [("csv-a", "pkg-0", ["stable"], "stable", ""), ("csv-aa", "pkg-0", ["stable"], "stable", "csv-a"),
                          ("csv-aaa", "pkg-0", ["stable"], "stable", "csv-aa")])
    deprecate_truncate(db, [image_of("csv-a"), image_of("csv-aa")])
    assert _state(db) == ({"csv-aa"}, {"csv-aa:stable", "csv-aaa:stable"})


def test_deprecated_channel_head_goes_with_its_package(tmp_path: Path, db: Path) -> None:
    """Peer: load_test.go:515 DeprecateTruncateRemoveDeprecatedChannelHeadOnPackageRemoval."""
    _build(tmp_path, db, [("csv-a", "pkg-0", ["a"], "b", ""), ("csv-aa", "pkg-0", ["a"], "b", "csv-a"),
                          ("csv-b", "pkg-0", ["b"], "b", "csv-a")])
    deprecate_truncate(db, [image_of("csv-aa")])
    deprecate_truncate(db, _heads(db, "pkg-0"), allow_package_removal=True)
    assert _state(db) == (set(), set())


def test_deprecate_channel_head(tmp_path: Path, db: Path) -> None:
    """Peer: load_test.go:551 DeprecateChannelHead: the head of non-default channel a is deprecated."""
    con_rows = [("csv-a", "pkg-0", ["a"], "b", ""), ("csv-b", "pkg-0", ["b"], "b", "csv-a"),
                ("csv-aa", "pkg-0", ["a"], "b", "csv-a"), ("csv-cc", "pkg-0", ["c"], "b", "csv-c"),
                ("csv-c", "pkg-0", ["c"], "b", "")]
    add(db, [_bundle(tmp_path, *row) for row in con_rows]
        + [_bundle(tmp_path, "csv-aaa", "pkg-0", ["a"], "b", "csv-aa", skips=["csv-cc"])])
    deprecate_truncate(db, [image_of("csv-aaa")])
    assert _state(db) == ({"csv-aaa"}, {"csv-a:b", "csv-aaa:", "csv-b:b", "csv-c:c", "csv-cc:c"})


def test_deprecating_on_an_empty_db_succeeds(db: Path) -> None:
    """Peer: registry_test.go:176 EmptyRegistry: checkForBundlePaths reports the paths missing without an
    error, so DeprecateFromRegistry deprecates nothing and succeeds."""
    deprecate_truncate(db, ["quay.io/my/bundle-missing:latest"])
    assert _state(db) == (set(), set())


def test_missing_paths_in_a_non_empty_db_fail(tmp_path: Path, db: Path) -> None:
    """Peer: registry_test.go:150 BundleListPartiallyMissing: the message lists the missing paths."""
    _build(tmp_path, db, [("csv-a", "pkg-0", ["stable"], "stable", "")])
    with pytest.raises(CatalogError) as err:
        deprecate_truncate(db, [image_of("csv-a"), "quay.io/my/missing:latest"])
    assert str(err.value) == "target bundlepaths for deprecation missing from registry: [quay.io/my/missing:latest]"
