"""operator-registry v1.73.0 pkg/registry/populator_test.go:2333 TestSubstitutesFor, through `db add --enable-alpha`.

The peer adds the prometheus test bundles of its repository (bundles/prometheus.*) in replaces mode:
first `bundles` in one add, then each of `rebuilds` in its own add. Here synthetic bundles carry the
same graph facts (CSV name, version, channels, default channel, replaces, olm.substitutesFor).
Checked as the peer checks: which bundle replaces each (bundle, channel) entry, each bundle's
substitutesfor, and the package's default channel.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from indexflow.catalog.db import create_db
from indexflow.errors import CatalogError
from tests.peers.bundles import add, write_bundle

P = "prometheusoperator."
# bundle dir name -> (csv name, version, channels, replaces, substitutesFor), all with default channel preview
FACTS = {
    "prometheus.0.22.2": (P + "0.22.2", "0.22.2", ["preview"], P + "0.15.0", ""),
    "prometheus.0.14.0": (P + "0.14.0", "0.14.0", ["preview"], "", ""),
    "prometheus.0.15.0": (P + "0.15.0", "0.15.0", ["preview", "stable"], P + "0.14.0", ""),
    "prometheus.0.14.0.substitutesfor": (P + "0.14.0+0.1234-rebuild", "0.14.0+0.1234", ["preview"], "", P + "0.14.0"),
    "prometheus.0.14.0.substitutesfor2": (P + "0.14.0+2-rebuild", "0.14.0+2", ["preview"], "", P + "0.14.0"),
    "prometheus.0.14.0.substitutesfor3": (P + "0.14.0+3-rebuild", "0.14.0+3", ["preview"], "", P + "0.14.0"),
    "prometheus.0.15.0.substitutesfor": (P + "0.15.0+1-freshmaker-rebuild", "0.15.0+1", ["preview", "stable"],
                                         P + "0.14.0", P + "0.15.0"),
    "prometheus.0.15.0.substitutesfor2": (P + "0.15.0+2-freshmaker-rebuild", "0.15.0+2", ["preview", "stable"],
                                          P + "0.14.0", P + "0.15.0+1-freshmaker-rebuild"),
}
R14, R15, R15B = P + "0.14.0+0.1234-rebuild", P + "0.15.0+1-freshmaker-rebuild", P + "0.15.0+2-freshmaker-rebuild"
A, B, C, D = P + "0.22.2", P + "0.14.0", P + "0.15.0", ""
BOTH = ("preview", "stable")


def _both(who: str) -> dict[str, str]:
    return {ch: who for ch in BOTH}


# (peer line, case, initial bundles, rebuilds added one at a time, substitutions, what replaces each entry)
CASES = [
    (2350, "FirstSubstitutionReplaces", ["prometheus.0.22.2", "prometheus.0.14.0", "prometheus.0.15.0"],
     ["prometheus.0.15.0.substitutesfor"], {R15: C},
     {A: {"preview": ""}, B: _both(R15), C: _both(R15), R15: {"preview": A, "stable": ""}}),
    (2393, "FirstSubstitutionReplacesNonHead", ["prometheus.0.22.2", "prometheus.0.14.0", "prometheus.0.15.0"],
     ["prometheus.0.14.0.substitutesfor"], {R14: B},
     {A: {"preview": ""}, B: _both(R14), C: {"preview": A, "stable": ""}, R14: _both(C)}),
    (2436, "SecondSubstitutionReplaces", ["prometheus.0.22.2", "prometheus.0.14.0", "prometheus.0.15.0"],
     ["prometheus.0.15.0.substitutesfor", "prometheus.0.15.0.substitutesfor2"], {R15: C, R15B: R15},
     {A: {"preview": ""}, B: _both(R15B), C: _both(R15B), R15B: {"preview": A, "stable": ""}, R15: _both(R15B)}),
    (2487, "SecondSubstitutionReplacesWithNonHead", ["prometheus.0.22.2", "prometheus.0.14.0", "prometheus.0.15.0"],
     ["prometheus.0.14.0.substitutesfor", "prometheus.0.15.0.substitutesfor", "prometheus.0.15.0.substitutesfor2"],
     {R14: B, R15: C, R15B: R15},
     {A: {"preview": ""}, C: _both(R15B), R15B: {"preview": A, "stable": ""}, R15: _both(R15B), B: _both(R14),
      R14: _both(R15B)}),
    (2566, "CanBatchAddSubstitutesFor", ["prometheus.0.14.0", "prometheus.0.15.0.substitutesfor",
                                         "prometheus.0.15.0.substitutesfor2", "prometheus.0.15.0"], [],
     {R15: C, R15B: R15}, {C: _both(R15B), R15B: _both(D), R15: _both(R15B), B: _both(R15B)}),
    (2616, "CanBatchAddSubstitutesForWithNonHead", ["prometheus.0.14.0", "prometheus.0.14.0.substitutesfor",
                                                    "prometheus.0.15.0.substitutesfor",
                                                    "prometheus.0.15.0.substitutesfor2", "prometheus.0.15.0"], [],
     {R14: B, R15: C, R15B: R15},
     {C: _both(R15B), R15B: _both(D), R15: _both(R15B), B: _both(R14), R14: _both(R15B)}),
    (2673, "CanAddABundleThatReplacesSubstitutedOne", ["prometheus.0.14.0", "prometheus.0.15.0",
                                                       "prometheus.0.15.0.substitutesfor",
                                                       "prometheus.0.15.0.substitutesfor2"], ["prometheus.0.22.2"],
     {R15: C, R15B: R15},
     {A: {"preview": ""}, B: _both(R15B), C: _both(R15B), R15B: {"preview": A, "stable": ""}, R15: _both(R15B)}),
    (2729, "CanAddABundleThatReplacesSubstitutedOneWithNonHead",
     ["prometheus.0.14.0", "prometheus.0.15.0", "prometheus.0.15.0.substitutesfor",
      "prometheus.0.15.0.substitutesfor2", "prometheus.0.14.0.substitutesfor"], ["prometheus.0.22.2"],
     {R14: B, R15: C, R15B: R15},
     {A: {"preview": ""}, C: _both(R15B), R15B: {"preview": A, "stable": ""}, R15: _both(R15B), B: _both(R14),
      R14: _both(R15B)}),
    (2793, "MultipleBundlesSubstitutingForTheSameBundleAddedInWrongOrder", ["prometheus.0.14.0"],
     ["prometheus.0.14.0.substitutesfor", "prometheus.0.14.0.substitutesfor3", "prometheus.0.14.0.substitutesfor2"],
     {R14: B, P + "0.14.0+2-rebuild": R14, P + "0.14.0+3-rebuild": P + "0.14.0+2-rebuild"},
     {B: {"preview": P + "0.14.0+3-rebuild"}, R14: {"preview": P + "0.14.0+3-rebuild"},
      P + "0.14.0+2-rebuild": {"preview": P + "0.14.0+3-rebuild"}, P + "0.14.0+3-rebuild": {"preview": ""}}),
    (2835, "BatchAddWithMultipleBundlesSubstitutingForTheSameBundle",
     ["prometheus.0.14.0", "prometheus.0.14.0.substitutesfor", "prometheus.0.14.0.substitutesfor3",
      "prometheus.0.14.0.substitutesfor2"], [],
     {R14: B, P + "0.14.0+2-rebuild": R14, P + "0.14.0+3-rebuild": P + "0.14.0+2-rebuild"},
     {B: {"preview": P + "0.14.0+3-rebuild"}, R14: {"preview": P + "0.14.0+3-rebuild"},
      P + "0.14.0+2-rebuild": {"preview": P + "0.14.0+3-rebuild"}, P + "0.14.0+3-rebuild": {"preview": ""}}),
]


def _bundle(root: Path, key: str) -> Path:
    name, version, channels, replaces, subst = FACTS[key]
    return write_bundle(root / key, name, "prometheus", channels, default="preview", version=version,
                        replaces=replaces, annotations={"olm.substitutesFor": subst} if subst else None)


def _graph(db: Path) -> tuple[dict[str, dict[str, str]], dict[str, str], str]:
    """(bundle -> channel -> the bundle whose entry replaces it, or ""), substitutesfor per bundle, default."""
    con = sqlite3.connect(db)
    try:
        pairs = con.execute("SELECT DISTINCT operatorbundle_name, channel_name FROM channel_entry WHERE "
                            "operatorbundle_name IN (SELECT name FROM operatorbundle)").fetchall()
        graph: dict[str, dict[str, str]] = {}
        for name, channel in pairs:
            replacers = sorted({r for (r,) in con.execute(
                "SELECT DISTINCT r.operatorbundle_name FROM channel_entry e JOIN channel_entry r ON r.replaces = "
                "e.entry_id WHERE e.operatorbundle_name = ? AND e.channel_name = ?", (name, channel))})
            graph.setdefault(name, {})[channel] = ",".join(replacers)
        subs = {n: s or "" for n, s in con.execute("SELECT name, substitutesfor FROM operatorbundle")}
        row = con.execute("SELECT default_channel FROM package WHERE name = 'prometheus'").fetchone()
        default = row[0] if row else ""
    finally:
        con.close()
    return graph, subs, default


@pytest.mark.parametrize(("line", "case", "initial", "rebuilds", "substitutions", "replaced_by"), CASES,
                         ids=[c[1] for c in CASES])
def test_substitutes_for(tmp_path: Path, line: int, case: str, initial: list[str], rebuilds: list[str],
                         substitutions: dict[str, str], replaced_by: dict) -> None:
    """Peer: populator_test.go:LINE (TestSubstitutesFor case CASE)."""
    db = tmp_path / "index.db"
    create_db(db)
    add(db, [_bundle(tmp_path, k) for k in initial], enable_alpha=True, images=[f"quay.io/test/{k}" for k in initial])
    for key in rebuilds:
        add(db, [_bundle(tmp_path, key)], enable_alpha=True, images=[f"quay.io/test/{key}"])
    graph, subs, default = _graph(db)
    assert graph == replaced_by
    assert subs == {n: substitutions.get(n, "") for n in subs}
    assert set(subs) == set(replaced_by)
    assert default == "preview"


def _one(tmp_path: Path, name: str, target: str) -> Path:
    return write_bundle(tmp_path / name, name, "pkg", ["stable"], default="stable", version="1.0.0",
                        annotations={"olm.substitutesFor": target})


def test_self_substitution_is_refused(tmp_path: Path) -> None:
    """Peer: pkg/sqlite/substitutesfor_cycle_test.go:41 TestSubstitutesForSelfReference (OCPBUGS-37284)."""
    db = tmp_path / "index.db"
    create_db(db)
    with pytest.raises(CatalogError, match='cyclic substitutesFor chain detected involving "csv-self"'):
        add(db, [_one(tmp_path, "csv-self", "csv-self")], enable_alpha=True)
    assert _graph(db)[1] == {}


def test_indirect_substitution_cycle_is_refused(tmp_path: Path) -> None:
    """Peer: substitutesfor_cycle_test.go:54 TestSubstitutesForIndirectCycle: a->b is legal while b is
    absent; adding b->a closes a cycle and fails."""
    db = tmp_path / "index.db"
    create_db(db)
    add(db, [_one(tmp_path, "csv-a", "csv-b")], enable_alpha=True)
    with pytest.raises(CatalogError, match="cyclic substitutesFor"):
        add(db, [_one(tmp_path, "csv-b", "csv-a")], enable_alpha=True)
    assert _graph(db)[1] == {"csv-a": "csv-b"}


@pytest.mark.parametrize("enable_alpha", [True, False])
def test_enable_alpha(tmp_path: Path, enable_alpha: bool) -> None:
    """Peer: populator_test.go:2956 TestEnableAlpha: a substitutesFor bundle needs --enable-alpha."""
    db = tmp_path / "index.db"
    create_db(db)
    keys = ["prometheus.0.22.2", "prometheus.0.14.0", "prometheus.0.15.0", "prometheus.0.15.0.substitutesfor"]
    dirs, images = [_bundle(tmp_path, k) for k in keys], [f"quay.io/test/{k}" for k in keys]
    if enable_alpha:
        add(db, dirs, enable_alpha=True, images=images)
        assert _graph(db)[1][R15] == C
        return
    with pytest.raises(CatalogError) as err:
        add(db, dirs, images=images)
    assert str(err.value) == ("SubstitutesFor is an alpha-only feature. You must enable alpha features with the flag "
                              "--enable-alpha in order to use this feature.")
