"""operator-registry v1.73.0 alpha/declcfg/load_test.go `validFS` (lines 406-932): a catalog tree whose
`.indexignore` is `*`, `!*.json`, `!*.yaml`, `*.clusterserviceversion.yaml` — everything ignored, then
JSON and YAML re-included, then CSV files ignored again (the last matching pattern decides).

TestWalkMetasFS Success/ValidDir (line 127) counts what the walk yields: 3 packages, 0 channels,
12 bundles, 1 deprecation, 1 other blob. The files here are our own with those counts (cockroachdb.json
as in the peer: a package and 5 bundles; etcd.yaml: a package and 6 bundles; the unrecognized-schema
file and the deprecations file as in the peer); an ignored CSV and README would fail the load if read.
TestLoadFile Success/ValidFile/Deprecations (line 1009) reads deprecations.yaml alone.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from indexflow.catalog import fbcload
from indexflow.catalog.csvmeta import go_field

DEPRECATIONS = """---
schema: olm.deprecations
package: kiali
entries:
- reference:
    schema: olm.bundle
    name: kiali-operator.v1.68.0
  message: |
     kiali-operator.v1.68.0 is deprecated. Uninstall and install kiali-operator.v1.72.0 for support.
- reference:
    schema: olm.package
  message: |
     package kiali is end of life.  Please use 'kiali-new' package for support.
- reference:
    schema: olm.channel
    name: alpha
  message: |
       channel alpha is no longer supported.  Please switch to channel 'stable'.
"""


def _valid_fs(root: Path) -> Path:
    root.mkdir()
    (root / ".indexignore").write_text("*\n!*.json\n!*.yaml\n\n*.clusterserviceversion.yaml")
    cockroach = [{"schema": "olm.package", "name": "cockroachdb", "defaultChannel": "stable-5.x"}] + [
        {"schema": "olm.bundle", "name": f"cockroachdb.v{v}", "package": "cockroachdb",
         "image": f"quay.io/openshift-community-operators/cockroachdb:v{v}",
         "properties": [{"type": "olm.package", "value": {"packageName": "cockroachdb", "version": v}}]}
        for v in ("2.0.9", "2.1.11", "2.1.1", "3.0.7", "5.0.3")]
    (root / "cockroachdb.json").write_text("\n".join(json.dumps(b, indent=4) for b in cockroach))
    etcd = ["schema: olm.package\nname: etcd\ndefaultChannel: singlenamespace-alpha\n"] + [
        f"schema: olm.bundle\nname: etcdoperator.v{v}\npackage: etcd\nimage: quay.io/operatorhubio/etcd:v{v}\n"
        for v in ("0.6.1", "0.9.0", "0.9.2", "0.9.2-clusterwide", "0.9.4", "0.9.4-clusterwide")]
    (root / "etcd.yaml").write_text("---\n" + "---\n".join(etcd))
    (root / "etcdoperator.v0.6.1.clusterserviceversion.yaml").write_text(
        "apiVersion: operators.coreos.com/v1alpha1\nkind: ClusterServiceVersion\nmetadata:\n  name: etcdoperator.v0.6.1\n")
    (root / "README.md").write_text("This is a README file; the .indexignore patterns hide it.\n")
    (root / "unrecognized-schema.json").write_text('{"schema":"olm.package"}{"schema":"unexpected"}{"schema":"olm.bundle"}')
    (root / "deprecations.yaml").write_text(DEPRECATIONS)
    return root


def test_walk_counts_what_indexignore_lets_through(tmp_path: Path) -> None:
    """Peer: load_test.go:127 TestWalkMetasFS Success/ValidDir (negated patterns re-include files)."""
    root = _valid_fs(tmp_path / "catalog")
    files = fbcload.catalog_files(root)
    assert sorted(rel for rel, _ in files) == ["cockroachdb.json", "deprecations.yaml", "etcd.yaml",
                                               "unrecognized-schema.json"]
    counts = Counter(go_field(doc, "schema") for _, path in files
                     for doc in fbcload.documents(fbcload.read_text(path, path.name)))
    known = ("olm.package", "olm.channel", "olm.bundle", "olm.deprecations")
    assert [counts[k] for k in known] == [3, 0, 12, 1]
    assert sum(n for k, n in counts.items() if k not in known) == 1


def test_deprecations_file_alone(tmp_path: Path) -> None:
    """Peer: load_test.go:1009 TestLoadFile Success/ValidFile/Deprecations: one olm.deprecations blob for
    kiali with bundle, package and channel entries, each message keeping its trailing newline."""
    path = _valid_fs(tmp_path / "catalog") / "deprecations.yaml"
    (blob,) = list(fbcload.documents(fbcload.read_text(path, path.name)))
    assert blob["package"] == "kiali"
    assert [(e["reference"]["schema"], e["reference"].get("name", "")) for e in blob["entries"]] == [
        ("olm.bundle", "kiali-operator.v1.68.0"), ("olm.package", ""), ("olm.channel", "alpha")]
    assert blob["entries"][0]["message"] == ("kiali-operator.v1.68.0 is deprecated. Uninstall and install "
                                             "kiali-operator.v1.72.0 for support.\n")
    assert all(e["message"].endswith("\n") for e in blob["entries"])
