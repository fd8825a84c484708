"""FBC blobs shaped like operator-registry's declcfg test helpers, written as a catalog directory.

The helpers in alpha/declcfg/helpers_test.go build in-memory structs; here the same catalogs are
files, so `fbc validate` runs its whole path (load, typed decoding, model, validation) on them.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Callable

from indexflow.catalog.validate import Report, validate_report

OR_TAG = "operator-registry v1.73.0"
SVG_SMALL_CIRCLE = '<svg viewBox="0 0 100 100"><circle cx="25" cy="25" r="25"/></svg>'
CRD_JSON = '{"kind": "CustomResourceDefinition", "apiVersion": "apiextensions.k8s.io/v1"}'


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def bundle_name(pkg: str, version: str) -> str:
    return f"{pkg}.v{version}"


def package(name: str, default_channel: str, svg: str = SVG_SMALL_CIRCLE, **extra: Any) -> dict:
    blob = {"schema": "olm.package", "name": name, "defaultChannel": default_channel,
            "icon": {"base64data": b64(svg), "mediatype": "image/svg+xml"}, "description": f"{name} operator"}
    return blob | extra


def channel(pkg: str, name: str, *entries: dict, **extra: Any) -> dict:
    return {"schema": "olm.channel", "name": name, "package": pkg, "entries": list(entries)} | extra


def entry(name: str, replaces: str = "", skips: list[str] | None = None, skip_range: str = "") -> dict:
    out: dict[str, Any] = {"name": name}
    if replaces:
        out["replaces"] = replaces
    if skips:
        out["skips"] = skips
    if skip_range:
        out["skipRange"] = skip_range
    return out


def prop_package(pkg: str, version: str, release: str = "") -> dict:
    value = {"packageName": pkg, "version": version} | ({"release": release} if release else {})
    return {"type": "olm.package", "value": value}


def bundle(pkg: str, version: str, *opts: Callable[[dict], None]) -> dict:
    """newTestBundle: package property, CSV and CRD bundle objects, the image as its one related image."""
    csv = json.dumps({"kind": "ClusterServiceVersion", "apiVersion": "operators.coreos.com/v1alpha1",
                      "metadata": {"name": bundle_name(pkg, version)}})
    image = f"{pkg}-bundle:v{version}"
    blob = {"schema": "olm.bundle", "name": bundle_name(pkg, version), "package": pkg, "image": image,
            "properties": [prop_package(pkg, version), {"type": "olm.bundle.object", "value": {"data": b64(csv)}},
                           {"type": "olm.bundle.object", "value": {"data": b64(CRD_JSON)}}],
            "relatedImages": [{"name": "bundle", "image": image}]}
    for opt in opts:
        opt(blob)
    blob["properties"].sort(key=lambda p: (p["type"], json.dumps(p.get("value", ""), sort_keys=True)))
    return blob


def write_catalog(root: Path, blobs: list[dict], name: str = "catalog.json") -> Path:
    """All blobs in one JSON stream file (opm reads concatenated JSON objects)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("\n".join(json.dumps(b, indent=2) for b in blobs) + "\n")
    return root


def validate_blobs(tmp_path: Path, blobs: list[dict]) -> Report:
    return validate_report(write_catalog(tmp_path / "catalog", blobs))


def assert_outcome(report: Report, expected: str | None, contains: bool = False) -> None:
    """None = valid; else opm's whole message (or a part of it when the peer only checks a part)."""
    if expected is None:
        assert report.passed, report.message
        return
    assert not report.passed, f"passed, but opm fails with: {expected}"
    if contains:
        assert expected in report.message, report.message
    else:
        assert report.message == expected, report.message
