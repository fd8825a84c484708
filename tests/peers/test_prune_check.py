"""operator-registry v1.73.0 pkg/lib/registry/registry_test.go:375 TestCheckForBundles, through `db add`.

After an add opm checks that every bundle it was given is still in the graph; one that the new channel
head's replaces chain leaves out is "pruned", an error for a bundle of this add. Each step of a case is
one `db add` of its bundles (replaces mode, as the peer's populator runs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from indexflow.catalog.db import list_bundles
from indexflow.errors import CatalogError
from tests.peers.bundles import add, write_bundle


def _step(tmp_path: Path, db: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """rows: (csv name, version, replaces, channels); every bundle's default channel is stable."""
    add(db, [write_bundle(tmp_path / name, name, "testpkg", chans.split(","), default="stable", version=version,
                          replaces=replaces) for name, version, replaces, chans in rows],
        images=[name.lower() for name, *_ in rows])  # the peer's image is the name (refs must be lowercase)


def test_error_on_new_pruned_bundle(tmp_path: Path, db: Path) -> None:
    """Peer: registry_test.go:393 ErrorOnNewPrunedBundle: 1.2.0-1 sorts below the alpha head 1.2.0."""
    _step(tmp_path, db, [("newPruned-1.1.0", "1.1.0", "", "stable,alpha")])
    with pytest.raises(CatalogError) as err:
        _step(tmp_path, db, [("newPruned-1.2.0", "1.2.0", "newPruned-1.1.0", "alpha"),
                             ("newPruned-1.2.0-1", "1.2.0-1", "newPruned-1.2.0", "stable,alpha")])
    assert str(err.value) == (
        "add prunes bundle newPruned-1.2.0-1 (newpruned-1.2.0-1) from package testpkg, channel alpha: this may be "
        "due to incorrect channel head (newPruned-1.2.0, skips/replaces [newPruned-1.1.0]). Be aware that the head "
        "of the channel alpha where you are trying to add the newPruned-1.2.0-1 is newPruned-1.2.0. Upgrade graphs "
        "follows the Semantic Versioning 2.0.0 (https://semver.org/) which means that is not possible add new "
        "versions lower then the head of the channel")
    assert {r.csvName for r in list_bundles(db)} == {"newPruned-1.1.0"}  # (a failed add changes nothing)


def test_silent_prune_for_existing_bundle(tmp_path: Path, db: Path) -> None:
    """Peer: registry_test.go:438 silentPruneForExistingBundle: an earlier bundle dropped from alpha is
    not an error of this add."""
    _step(tmp_path, db, [("silentPrune-1.0.0", "1.0.0", "", "stable,alpha"),
                         ("silentPrune-1.1.0", "1.1.0", "silentPrune-1.0.0", "stable,alpha")])
    _step(tmp_path, db, [("silentPrune-1.2.0", "1.2.0", "silentPrune-1.0.0", "alpha")])
    assert "silentPrune-1.2.0" in {r.csvName for r in list_bundles(db)}


def test_allow_unordered_with_max_channel_head(tmp_path: Path, db: Path) -> None:
    """Peer: registry_test.go:486 allowUnorderedWithMaxChannelHead: 1.1.0 <- 1.1.0-1 <- 1.2.0 is out of
    version order in the middle but headed by the highest version: nothing is pruned."""
    _step(tmp_path, db, [("unorderedReplaces-1.0.0", "1.0.0", "", "stable,alpha"),
                         ("unorderedReplaces-1.1.0", "1.1.0", "unorderedReplaces-1.0.0", "stable,alpha")])
    _step(tmp_path, db, [("unorderedReplaces-1.1.0-1", "1.1.0-1", "unorderedReplaces-1.1.0", "alpha"),
                         ("unorderedReplaces-1.2.0", "1.2.0", "unorderedReplaces-1.1.0-1", "alpha")])
    assert len({r.csvName for r in list_bundles(db)}) == 4
