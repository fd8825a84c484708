"""IIB's merge adds the missing bundles with `opm registry add --enable-alpha` (iib main
iib/workers/tasks/opm_operations.py:781, "enables substitutes-for functionality for rebuilds"), so a
missing bundle that declares `olm.substitutesFor` merges. The merge's add step must do the same.
Real images on the session's local registry, pulled by the task's own code path.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from indexflow.catalog.db import create_db
from indexflow.registry.refs import ImageRef
from sandbox.images import push_bundle_image
from tasks.catalog import add_missing_bundles
from tests.peers.bundles import add, write_bundle

LABELS = {"operators.operatorframework.io.bundle.mediatype.v1": "registry+v1",
          "operators.operatorframework.io.bundle.manifests.v1": "manifests/",
          "operators.operatorframework.io.bundle.metadata.v1": "metadata/",
          "operators.operatorframework.io.bundle.package.v1": "prometheus",
          "operators.operatorframework.io.bundle.channels.v1": "preview",
          "operators.operatorframework.io.bundle.channel.default.v1": "preview"}


def test_merge_adds_a_substitute_bundle(tmp_path: Path, local_registry, registry_client) -> None:  # noqa: ANN001
    """Peer: iib main tests/test_workers/test_tasks/test_opm_operations.py:456 (opm registry add is called
    with --enable-alpha); the graph facts are operator-registry's TestSubstitutesFor (populator_test.go:2350)."""
    db = tmp_path / "index.db"
    create_db(db)
    old = write_bundle(tmp_path / "src", "prometheusoperator.0.14.0", "prometheus", ["preview"], default="preview",
                       version="0.14.0")
    add(db, [old])  # the source index holds the original
    rebuild = write_bundle(tmp_path / "missing", "prometheusoperator.0.14.0+1-rebuild", "prometheus", ["preview"],
                           default="preview", version="0.14.0+1",
                           annotations={"olm.substitutesFor": "prometheusoperator.0.14.0"})
    ref = f"{local_registry.host}/peers/prometheus-bundle:rebuild"
    push_bundle_image(registry_client, ImageRef.parse(ref), rebuild, LABELS)
    assert add_missing_bundles.fn(db, [ref], "replaces", registry_client, 2) == 1
    con = sqlite3.connect(db)
    try:
        head = con.execute("SELECT head_operatorbundle_name FROM channel WHERE name = 'preview'").fetchone()[0]
        subst = con.execute("SELECT substitutesfor, skips FROM operatorbundle WHERE name = ?", (head,)).fetchone()
    finally:
        con.close()
    assert head == "prometheusoperator.0.14.0+1-rebuild"
    assert subst == ("prometheusoperator.0.14.0", "prometheusoperator.0.14.0")
