"""operator-registry v1.73.0 alpha/model/model_test.go, as FBC directories through `fbc validate`.

The peer validates in-memory models (TestChannelHead, TestValidReplacesChain, TestValidators); its
`hasError` passes when the expected text is the message of any node of the error tree. Here each
model becomes a one-package catalog (package anakin, default channel light) and the expected text
must be a node of indexflow's tree. Model-only cases (map keys that differ from names, broken
parent links, a nil package or channel) cannot be written as files and are not translated.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.peers.fbcdata import bundle, channel, entry, package, prop_package, validate_blobs

V = "anakin.v"


def _anakin(tmp_path: Path, entries: list[dict], versions: dict[str, str] | None = None, default: str = "light",
            **bundle_fields: Any) -> Any:
    """A catalog whose channel `light` has `entries`; each entry gets a bundle with its version."""
    versions = versions or {}
    blobs: list[dict] = [package("anakin", default), channel("anakin", "light", *entries)]
    for e in entries:
        version = versions.get(e["name"], e["name"].removeprefix(V))
        b = bundle("anakin", version)
        b["name"] = e["name"]
        for key, value in bundle_fields.items():
            b[key] = value
        blobs.append(b)
    return validate_blobs(tmp_path, blobs)


def _has(report: Any, message: str | None) -> None:
    if message is None:
        assert report.passed, report.message
        return
    assert not report.passed
    assert any(message in leaf for leaf in report.leaves), report.message


HEAD = entry(V + "0.0.3", replaces=V + "0.0.1", skips=[V + "0.0.2"])
CHAIN_CASES = [
    (88, "TestChannelHead Success/Valid", [entry(V + "0.0.1"), entry(V + "0.0.2"), HEAD], None),
    (98, "TestChannelHead Error/NoChannelHead", [entry(V + "0.0.1", replaces=V + "0.0.3"), HEAD],
     "no channel head found in graph"),
    (106, "TestChannelHead Error/MultipleChannelHeads",
     [entry(V + "0.0.1"), HEAD, entry(V + "0.0.4", replaces=V + "0.0.1")],
     "multiple channel heads found in graph: anakin.v0.0.3, anakin.v0.0.4"),
    (132, "TestValidReplacesChain Success/Valid",
     [entry(V + "0.0.1"), entry(V + "0.0.2", skips=[V + "0.0.1"]), entry(V + "0.0.3", skips=[V + "0.0.2"]),
      entry(V + "0.0.4", replaces=V + "0.0.3")], None),
    (142, "TestValidReplacesChain Error/CycleNoHops",
     [entry(V + "0.0.4", replaces=V + "0.0.4"), entry(V + "0.0.5", replaces=V + "0.0.4")],
     "detected cycle in replaces chain of upgrade graph: anakin.v0.0.4 -> anakin.v0.0.4"),
    (150, "TestValidReplacesChain Error/CycleMultipleHops",
     [entry(V + "0.0.1", replaces=V + "0.0.3"), entry(V + "0.0.2", replaces=V + "0.0.1"),
      entry(V + "0.0.3", replaces=V + "0.0.2"), entry(V + "0.0.4", replaces=V + "0.0.3")],
     "detected cycle in replaces chain of upgrade graph: anakin.v0.0.3 -> anakin.v0.0.2 -> anakin.v0.0.1 -> "
     "anakin.v0.0.3"),
    (160, "TestValidReplacesChain Error/Stranded",
     [entry(V + "0.0.1"), entry(V + "0.0.2", replaces=V + "0.0.1"), entry(V + "0.0.3", skips=[V + "0.0.2"])],
     "channel contains one or more stranded bundles: anakin.v0.0.1"),
    (169, "TestValidReplacesChain Error/SkippedReplacesStranded",
     [entry(V + "0.0.1"), entry(V + "0.0.2", replaces=V + "0.0.1"),
      entry(V + "0.0.3", replaces=V + "0.0.2", skips=[V + "0.0.2"])],
     "channel contains one or more stranded bundles: anakin.v0.0.1"),
    (458, "TestValidators Channel/Error/InvalidHead", [entry(V + "0.0.0"), entry(V + "0.0.1")],
     "multiple channel heads found in graph: anakin.v0.0.0, anakin.v0.0.1"),
]


@pytest.mark.parametrize(("line", "case", "entries", "message"), CHAIN_CASES, ids=[c[1] for c in CHAIN_CASES])
def test_graph(tmp_path: Path, line: int, case: str, entries: list[dict], message: str | None) -> None:
    """Peer: model_test.go:LINE (CASE)."""
    _has(_anakin(tmp_path, entries), message)


ONE = [entry(V + "0.1.0", replaces=V + "0.0.1", skips=[V + "0.0.2"])]
GVK = {"type": "olm.gvk", "value": {"group": "skywalker.me", "kind": "PodRacer", "version": "v1alpha1"}}
OBJECT = {"type": "olm.bundle.object", "value": {"data": base64.b64encode(b"testdata").decode()}}
BUNDLE_CASES: list[tuple[int, str, list[dict], dict, str | None]] = [
    (508, "Bundle/Success/Valid", ONE,
     {"image": "registry.io/image", "properties": [prop_package("anakin", "0.1.0"), GVK]}, None),
    (524, "Bundle/Success/ReplacesNotInChannel", [entry(V + "0.1.0", replaces=V + "0.0.0")],
     {"image": "registry.io/image", "properties": [prop_package("anakin", "0.1.0")]}, None),
    (538, "Bundle/Success/NoBundleImage/HaveBundleData", ONE,
     {"image": "", "properties": [prop_package("anakin", "0.1.0"), GVK, OBJECT]}, None),
    (555, "Bundle/Error/NoBundleImage", ONE,
     {"image": "", "properties": [prop_package("anakin", "0.1.0"), GVK]}, "bundle image must be set"),
    (609, "Bundle/Error/EmptySkipsValue", [entry(V + "0.1.0", replaces=V + "0.0.1", skips=[""])],
     {"properties": [prop_package("anakin", "0.1.0"), {"type": "custom", "value": {}}]}, "skip[0] is empty"),
    (621, "Bundle/Success/EmptySkipRange", [entry(V + "0.1.0", replaces=V + "0.0.1")],
     {"image": "registry.io/image", "properties": [prop_package("anakin", "0.1.0")]}, None),
    (635, "Bundle/Success/ValidSkipRange", [entry(V + "0.1.0", replaces=V + "0.0.1", skip_range=">=1.0.0 <2.0.0")],
     {"image": "registry.io/image", "properties": [prop_package("anakin", "0.1.0")]}, None),
    (650, "Bundle/Error/InvalidSkipRange/LeadingV", [entry(V + "0.1.0", replaces=V + "0.0.1", skip_range=">v0.1.0")],
     {"image": "registry.io/image", "properties": [prop_package("anakin", "0.1.0")]},
     'invalid skipRange ">v0.1.0": Could not parse Range ">v0.1.0": Could not parse comparator ">v" in ">v0.1.0"'),
    (665, "Bundle/Error/InvalidSkipRange/LeadingZero",
     [entry(V + "0.1.0", replaces=V + "0.0.1", skip_range=">1.00.1")],
     {"image": "registry.io/image", "properties": [prop_package("anakin", "0.1.0")]},
     'invalid skipRange ">1.00.1": Could not parse Range ">1.00.1": Could not parse version "1.00.1" in ">1.00.1": '
     'Minor number must not contain leading zeroes "00"'),
]


@pytest.mark.parametrize(("line", "case", "entries", "fields", "message"), BUNDLE_CASES,
                         ids=[c[1] for c in BUNDLE_CASES])
def test_bundle(tmp_path: Path, line: int, case: str, entries: list[dict], fields: dict, message: str | None) -> None:
    """Peer: model_test.go:LINE (TestValidators CASE)."""
    _has(_anakin(tmp_path, entries, **fields), message)


def test_channel_without_bundles(tmp_path: Path) -> None:
    """Peer: model_test.go:450 TestValidators Channel/Error/NoBundles."""
    _has(validate_blobs(tmp_path, [package("anakin", "light"), channel("anakin", "light")]),
         "channel must contain at least one bundle")


def test_package_without_channels_or_default(tmp_path: Path) -> None:
    """Peer: model_test.go:266 Package/Error/NoChannels and :328 Package/Error/NoDefaultChannel."""
    report = validate_blobs(tmp_path, [package("anakin", "")])
    _has(report, "package must contain at least one channel")
    _has(report, "default channel must be set")


def test_duplicate_bundle_versions(tmp_path: Path) -> None:
    """Peer: model_test.go:274 Package/Error/DuplicateBundleVersions (strings sorted as opm sorts them)."""
    entries = [entry(V + "0.0.1"), entry(V + "0.0.2", replaces=V + "0.0.1"), entry(V + "1.0.1", replaces=V + "0.0.2"),
               entry(V + "1.0.2", replaces=V + "1.0.1")]
    report = _anakin(tmp_path, entries, versions={V + "0.0.2": "0.0.1", V + "1.0.2": "1.0.1"})
    _has(report, "duplicate versions found in bundles: [{0.0.1: [anakin.v0.0.1, anakin.v0.0.2]} "
                 "{1.0.1: [anakin.v1.0.1, anakin.v1.0.2]}]")


def test_release_needs_the_normalized_name(tmp_path: Path) -> None:
    """Peer: model_test.go:312 Package/Error/BundleReleaseNormalizedName."""
    report = _anakin(tmp_path, [entry("anakin.v0.0.1.alpha1")], versions={"anakin.v0.0.1.alpha1": "0.0.1"},
                     properties=[prop_package("anakin", "0.0.1", "alpha1")])
    _has(report, 'name "anakin.v0.0.1.alpha1" does not match normalized name "anakin-v0.0.1-alpha1"')


@pytest.mark.parametrize(("line", "case", "icon"), [
    (372, "Icon/Success/ValidSVG", {"base64data": base64.b64encode(b"<svg/>").decode(), "mediatype": "image/svg+xml"}),
    (380, "Icon/Success/ValidPNG", {"base64data": base64.b64encode(b"\x89PNG\r\n\x1a\n").decode(),
                                    "mediatype": "image/png"}),
    (388, "Icon/Success/ValidJPEG", {"base64data": base64.b64encode(b"\xff\xd8\xff\xe0").decode(),
                                     "mediatype": "image/jpeg"}),
    (396, "Icon/Success/Nil", None),
])
def test_icons(tmp_path: Path, line: int, case: str, icon: dict | None) -> None:
    """Peer: model_test.go:LINE (TestValidators CASE): icons are decoded, not inspected."""
    pkg = package("anakin", "light")
    pkg["icon"] = icon
    _has(validate_blobs(tmp_path, [pkg, channel("anakin", "light", entry(V + "0.1.0")), bundle("anakin", "0.1.0")]),
         None)
