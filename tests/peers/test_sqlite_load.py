"""operator-registry v1.73.0 pkg/sqlite/load_test.go and directory_test.go cases, through `db add`.

TestAddBundlePropertiesFromAnnotations (load_test.go:895) calls addBundleProperties on one bundle;
here the same CSV annotations go through a whole add: opm fails the add, so must indexflow, and a
failed add leaves the db as it was. TestDirectoryLoaderWithBadBundleData (directory_test.go:63)
loads a CSV whose deployment env value is a number.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from indexflow.catalog.db import list_bundles
from indexflow.errors import CatalogError
from tests.peers.bundles import add, write_bundle


def _props(*entries: dict) -> dict[str, str]:
    return {"olm.properties": json.dumps(list(entries))}


@pytest.mark.parametrize(("line", "name", "annotations", "fails"), [
    (914, "Invalid/Properties", {"olm.properties": "bad_properties"}, True),
    (925, "Invalid/KnownType/Label", _props({"type": "olm.label", "value": "bad_value"}), True),
    (936, "Invalid/KnownType/Package", _props({"type": "olm.package", "value": "bad_value"}), True),
    (947, "Invalid/KnownType/GVK", _props({"type": "olm.gvk", "value": "bad_value"}), True),
    (958, "Valid/KnownTypes", _props({"type": "olm.label", "value": {"label": "sulaco"}},
                                     {"type": "olm.package", "value": {"packageName": "lv-426", "version": "1.0.0"}},
                                     {"type": "olm.gvk", "value": {"group": "weyland.io", "kind": "Dropship",
                                                                   "version": "v1"}},
                                     {"type": "olm.deprecated", "value": {}}), False),
    (983, "Valid/UnknownType", _props({"type": "anything", "value": "anything_value"}), False),
], ids=lambda v: str(v) if isinstance(v, (int, str)) else "")
def test_properties_from_annotations(tmp_path: Path, db: Path, line: int, name: str, annotations: dict,
                                     fails: bool) -> None:
    """Peer: load_test.go:LINE (TestAddBundlePropertiesFromAnnotations case NAME)."""
    bundle = write_bundle(tmp_path / "b", "ripley", "lv-426", ["stable"], default="stable", annotations=annotations)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    if fails:
        with pytest.raises(CatalogError):
            add(db, [bundle])
        assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    else:
        add(db, [bundle])
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT name FROM operatorbundle").fetchall() == [("ripley",)]


def test_known_type_message_is_gos(tmp_path: Path, db: Path) -> None:
    """Peer: load_test.go:925: the label case's failure is Go's decode error of registry.LabelProperty."""
    bundle = write_bundle(tmp_path / "b", "ripley", "lv-426", ["stable"], default="stable",
                          annotations=_props({"type": "olm.label", "value": "bad_value"}))
    with pytest.raises(CatalogError) as err:
        add(db, [bundle])
    assert str(err.value) == ("error adding operator bundle ripley: json: cannot unmarshal string into Go value of "
                              "type registry.LabelProperty")


def test_env_value_number_fails_the_add(tmp_path: Path, db: Path) -> None:
    """Peer: directory_test.go:63-77 TestDirectoryLoaderWithBadBundleData (testdata/incorrectbundle: the
    3scale CSV's container env value is a number where Kubernetes' EnvVar has a string)."""
    deployment = {"name": "op", "spec": {"template": {"spec": {"containers": [
        {"name": "op", "image": "quay.io/3scale/op:v0.3.0", "env": [{"name": "WATCH_NAMESPACE", "value": 5}]}]}}}}
    spec = {"install": {"strategy": "deployment", "spec": {"deployments": [deployment]}}}
    bundle = write_bundle(tmp_path / "b", "3scale-community-operator.v0.3.0", "3scale-community-operator",
                          ["alpha"], default="alpha", version="0.3.0", spec=spec)
    with pytest.raises(CatalogError, match="cannot unmarshal number into Go struct field EnvVar.*value of type string"):
        add(db, [bundle])
    assert list_bundles(db) == []
    deployment["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "5"
    fixed = write_bundle(tmp_path / "c", "3scale-community-operator.v0.3.0", "3scale-community-operator",
                         ["alpha"], default="alpha", version="0.3.0", spec=spec)
    add(db, [fixed])
    assert [r.csvName for r in list_bundles(db)] == ["3scale-community-operator.v0.3.0"]
