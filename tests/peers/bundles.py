"""Small synthetic bundle directories, shaped like operator-registry's sqlite test helpers.

pkg/sqlite/load_test.go builds bundles with `newBundle(t, csvName, pkg, channels, csv)` from a CSV
that has a name, a replaces and maybe skips; these helpers write the same as a bundle directory
(manifests/csv.yaml + metadata/annotations.yaml) and add it with `db add`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from indexflow.catalog.add import add_bundle_refs


def write_bundle(root: Path, name: str, pkg: str, channels: list[str], default: str = "", version: str = "",
                 replaces: str = "", skips: list[str] | None = None, annotations: dict[str, str] | None = None,
                 spec: dict[str, Any] | None = None) -> Path:
    """A bundle directory for CSV `name`; returns it."""
    d = root / name
    (d / "manifests").mkdir(parents=True)
    (d / "metadata").mkdir()
    csv: dict[str, Any] = {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "ClusterServiceVersion",
                           "metadata": {"name": name}, "spec": dict(spec or {})}
    if annotations:
        csv["metadata"]["annotations"] = annotations
    for key, value in (("version", version), ("replaces", replaces), ("skips", skips)):
        if value:
            csv["spec"][key] = value
    (d / "manifests" / "csv.yaml").write_text(yaml.safe_dump(csv))
    ann = {"operators.operatorframework.io.bundle.package.v1": pkg,
           "operators.operatorframework.io.bundle.channels.v1": ",".join(channels)}
    if default:
        ann["operators.operatorframework.io.bundle.channel.default.v1"] = default
    (d / "metadata" / "annotations.yaml").write_text(yaml.safe_dump({"annotations": ann}))
    return d


def image_of(name: str) -> str:
    return f"quay.io/my/{name.lower()}:latest"


def add(db: Path, dirs: list[Path], mode: str = "replaces", enable_alpha: bool = False,
        images: list[str] | None = None) -> None:
    """`db add` of bundle directories (stored under `images`, default `quay.io/my/<csv>:latest`)."""
    refs = dict(zip(images or [image_of(d.name) for d in dirs], dirs))
    add_bundle_refs(db, list(refs), local_dirs=refs, mode=mode, enable_alpha=enable_alpha)
