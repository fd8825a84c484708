"""operator-registry v1.73.0 alpha/declcfg/declcfg_to_model_test.go, TestConvertToModel, as FBC directories.

Every case of the table: the same packages, channels, bundles and deprecations written as a catalog
directory and validated with `fbc validate`; opm's expected error text must come out whole.
One case is adapted (BundleInvalidProperties: its property value `{` cannot be written in a JSON
file; a property with no value fails the same decode with the same message).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.peers.fbcdata import (assert_outcome, bundle, bundle_name, channel, entry, package, prop_package,
                                 validate_blobs)

PEER = "operator-registry v1.73.0 alpha/declcfg/declcfg_to_model_test.go"
TREE = "invalid index:\n└── invalid package \"foo\":\n"
OWNER = [{"type": "owner", "value": {"group": "abc.com", "name": "admin"}}]


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda b: b.__setitem__(key, value)


def _foo_base(**deprecation: object) -> list[dict]:
    """The package-with-properties catalog the deprecation cases share (plus one olm.deprecations blob)."""
    return [package("foo", "alpha", properties=OWNER), channel("foo", "alpha", entry("foo.v0.1.0")),
            bundle("foo", "0.1.0")]


def _dep(pkg: str, *entries: tuple[str, str, str]) -> dict:
    blob: dict = {"schema": "olm.deprecations", "package": pkg}
    if entries:
        blob["entries"] = [{"reference": {"schema": s} | ({"name": n} if n else {}), "message": m}
                           for s, n, m in entries]
    return blob


SSHA = "abcd1234" * 9
CASES: list[tuple[int, str, Callable[[], list[dict]], str | None]] = [
    (24, "Error/PackageNoName", lambda: [package("", "alpha"), {"schema": "olm.bundle", "name": "foo.v0.1.0"}],
     "config contains package with no name"),
    (32, "Error/BundleMissingPackageName", lambda: [package("foo", "alpha"),
                                                    {"schema": "olm.bundle", "name": "foo.v0.1.0"}],
     'package name must be set for bundle "foo.v0.1.0"'),
    (40, "Error/BundleUnknownPackage", lambda: [package("foo", "alpha"), bundle("bar", "0.1.0")],
     'unknown package "bar" for bundle "bar.v0.1.0"'),
    (48, "Error/BundleMissingChannel", lambda: [package("foo", "alpha"), bundle("foo", "0.1.0")],
     'package "foo", bundle "foo.v0.1.0" not found in any channel entries'),
    (56, "Error/BundleInvalidProperties (adapted: a property without a value)",
     lambda: [package("foo", "alpha"), bundle("foo", "0.1.0", lambda b: b["properties"].append({"type": "olm.foo"}))],
     'parse properties for bundle "foo.v0.1.0": parse property[2] of type "olm.foo": unexpected end of JSON input'),
    (69, "Error/BundlePackageMismatch",
     lambda: [package("foo", "alpha"), bundle("foo", "0.1.0", _set("properties", [prop_package("foooperator", "0.1.0")]))],
     'package "foo" does not match "olm.package" property "foooperator"'),
    (81, "Error/BundleInvalidVersion",
     lambda: [package("foo", "alpha"), bundle("foo", "0.1.0", _set("properties", [prop_package("foo", "0.1.0.1")]))],
     'error parsing bundle "foo.v0.1.0" version "0.1.0.1": Invalid character(s) found in patch number "0.1"'),
    (93, "Error/BundleMissingVersion", lambda: [package("foo", "alpha"), bundle("foo", "")],
     'error parsing bundle "foo.v" version "": Version string empty'),
    (101, "Error/PackageMissingDefaultChannel",
     lambda: [package("foo", ""), channel("foo", "bar", entry("foo.v0.1.0")), bundle("foo", "0.1.0")],
     TREE + "    └── default channel must be set"),
    (112, "Error/PackageNonExistentDefaultChannel", lambda: [package("foo", "bar"), channel("foo", "bar")],
     TREE + "    └── invalid channel \"bar\":\n        └── channel must contain at least one bundle"),
    (123, "Error/BundleMissingPackageProperty",
     lambda: [package("foo", "alpha"), bundle("foo", "0.1.0", _set("properties", []))],
     'package "foo" bundle "foo.v0.1.0" must have exactly 1 "olm.package" property, found 0'),
    (131, "Error/BundleMultiplePackageProperty",
     lambda: [package("foo", "alpha"),
              bundle("foo", "0.1.0", _set("properties", [prop_package("foo", "0.1.0"), prop_package("foo", "0.1.0")]))],
     'package "foo" bundle "foo.v0.1.0" must have exactly 1 "olm.package" property, found 2'),
    (144, "Success/BundleWithDataButMissingImage",
     lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0")), bundle("foo", "0.1.0", _set("image", ""))],
     None),
    (153, "Error/ChannelEntryWithoutBundle", lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0"))],
     'no olm.bundle blobs found in package "foo" for olm.channel entries [foo.v0.1.0]'),
    (161, "Error/BundleWithoutChannelEntry",
     lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0")), bundle("foo", "0.2.0")],
     'package "foo", bundle "foo.v0.2.0" not found in any channel entries'),
    (170, "Error/ChannelMissingName",
     lambda: [package("foo", "alpha"), channel("foo", "", entry("foo.v0.1.0")), bundle("foo", "0.2.0")],
     'package "foo" contains channel with no name'),
    (179, "Error/ChannelMissingPackageName",
     lambda: [package("foo", "alpha"), channel("", "alpha", entry("foo.v0.1.0")), bundle("foo", "0.2.0")],
     'unknown package "" for channel "alpha"'),
    (188, "Error/ChannelNonExistentPackage",
     lambda: [package("foo", "alpha"), channel("non-existent", "alpha", entry("foo.v0.1.0")), bundle("foo", "0.1.0")],
     'unknown package "non-existent" for channel "alpha"'),
    (197, "Error/ChannelDuplicateEntry",
     lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0"), entry("foo.v0.1.0")),
              bundle("foo", "0.1.0")],
     'invalid package "foo", channel "alpha": duplicate entry "foo.v0.1.0"'),
    (209, "Error/DuplicatePackage",
     lambda: [package("foo", "alpha"), package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0")),
              bundle("foo", "0.1.0")],
     'duplicate package "foo"'),
    (221, "Error/PackageBreaksRFC1123",
     lambda: [package("foo.bar", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0")), bundle("foo", "0.1.0")],
     'invalid package name "foo.bar": [must not contain dots]'),
    (232, "Error/DuplicateChannel",
     lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0")),
              channel("foo", "alpha", entry("foo.v0.1.0")), bundle("foo", "0.1.0")],
     'package "foo" has duplicate channel "alpha"'),
    (244, "Error/DuplicateBundle",
     lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0")), bundle("foo", "0.1.0"),
              bundle("foo", "0.1.0")],
     'package "foo" has duplicate bundle "foo.v0.1.0"'),
    (256, "Success/ValidModel",
     lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0")), bundle("foo", "0.1.0")], None),
    (265, "Success/ValidModelWithChannelProperties",
     lambda: [package("foo", "alpha"),
              channel("foo", "alpha", entry("foo.v0.1.0"),
                      properties=[{"type": "user", "value": {"group": "xyz.com", "name": "account"}}]),
              bundle("foo", "0.1.0")], None),
    (281, "Success/ValidModelWithPackageProperties", _foo_base, None),
    (297, "Error/Deprecation/UnspecifiedPackage", lambda: _foo_base() + [{"schema": "olm.deprecations"}],
     "package name must be set for deprecation item 0"),
    (316, "Error/Deprecation/OutOfBoundsBundle",
     lambda: _foo_base() + [_dep("foo", ("olm.bundle", "foo.v2.0.0", "foo.v2.0.0 doesn't exist in the first place"))],
     'cannot deprecate bundle "foo.v2.0.0" for package "foo": bundle not found'),
    (341, "Error/Deprecation/OutOfBoundsPackage", lambda: _foo_base() + [_dep("nyarl")],
     'cannot apply deprecations to an unknown package "nyarl"'),
    (363, "Error/Deprecation/MultiplePerPackage",
     lambda: _foo_base() + [_dep("foo", ("olm.channel", "alpha", "no more alpha channel")),
                            _dep("foo", ("olm.bundle", "foo.v0.1.0", "foo.v0.1.0 is dead.  do another thing"))],
     'expected a maximum of one deprecation per package: "foo"'),
    (395, "Error/Deprecation/BadRefSchema",
     lambda: _foo_base() + [_dep("foo", ("badschema", "foo.v2.0.0", "foo.v2.0.0 doesn't exist in the first place"))],
     'cannot deprecate object declcfg.PackageScopedReference{Schema:"badschema", Name:"foo.v2.0.0"} '
     'referenced by entry 0 for package "foo": object schema unknown'),
    (420, "Error/Deprecation/DuplicateRef",
     lambda: _foo_base() + [_dep("foo", ("olm.bundle", "foo.v0.1.0", "foo.v0.1.0 is bad"),
                                 ("olm.bundle", "foo.v0.1.0", "foo.v0.1.0 is bad"))],
     'duplicate deprecation entry declcfg.PackageScopedReference{Schema:"olm.bundle", Name:"foo.v0.1.0"} '
     'for package "foo"'),
    (446, "Error/InvalidReleaseVersion",
     lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0")),
              bundle("foo", "0.1.0", _set("properties", [prop_package("foo", "0.1.0", "!!!")]))],
     'error parsing bundle "foo.v0.1.0" release version "!!!": invalid release "!!!": segment 0: '
     'Invalid character(s) found in prerelease "!!!"'),
    (459, "Error/InvalidBundleNormalizedName",
     lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0-alpha.1.0.0")),
              bundle("foo", "0.1.0", _set("properties", [prop_package("foo", "0.1.0", "alpha.1.0.0")]),
                     _set("name", "foo.v0.1.0-alpha.1.0.0"))],
     TREE + '    └── invalid channel "alpha":\n        └── invalid bundle "foo.v0.1.0-alpha.1.0.0":\n'
            '            └── name "foo.v0.1.0-alpha.1.0.0" does not match normalized name "foo-v0.1.0-alpha.1.0.0"'),
    (477, "Success/ValidBundleReleaseVersion",
     lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo-v0.1.0-alpha.1.0.0")),
              bundle("foo", "0.1.0", _set("properties", [prop_package("foo", "0.1.0", "alpha.1.0.0")]),
                     _set("name", "foo-v0.1.0-alpha.1.0.0"))], None),
    (491, "Error/BundleReleaseWithBuildMetadata",
     lambda: [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0+alpha.1.0.0-0.0.1")),
              bundle("foo", "0.1.0", _set("properties", [prop_package("foo", "0.1.0+alpha.1.0.0", "0.0.1")]),
                     _set("name", "foo.v0.1.0+alpha.1.0.0-0.0.1"))],
     TREE + '    └── invalid channel "alpha":\n        └── invalid bundle "foo.v0.1.0+alpha.1.0.0-0.0.1":\n'
            '            ├── name "foo.v0.1.0+alpha.1.0.0-0.0.1" does not match normalized name '
            '"foo-v0.1.0+alpha.1.0.0-0.0.1"\n'
            '            └── cannot use build metadata in version with a release version'),
]

# hasErrorContaining("invalid image pull spec") cases and the two digest successes (lines 510-573)
IMAGE_CASES: list[tuple[int, str, dict, str | None]] = [
    (510, "Error/BundleImageInvalidPullSpecUnsupportedDigestSsha256",
     {"image": f"quay.io/operator-framework/foo-bundle@ssha256:{SSHA}"}, "invalid image pull spec"),
    (522, "Error/BundleImageInvalidPullSpecUnsupportedDigestMd5",
     {"image": "quay.io/operator-framework/foo-bundle@md5:" + "abcd1234" * 4}, "invalid image pull spec"),
    (533, "Error/BundleRelatedImageInvalidPullSpecSsha256",
     {"relatedImages": [{"name": "bundle", "image": "foo-bundle:v0.1.0"},
                        {"name": "operator", "image": f"quay.io/operator-framework/my-operator@ssha256:{SSHA}"}]},
     "invalid image pull spec"),
    (547, "Success/BundleImageValidSha256Digest",
     {"image": "quay.io/operator-framework/foo-bundle@sha256:" + "abcd1234" * 8,
      "relatedImages": [{"name": "bundle", "image": "quay.io/operator-framework/foo-bundle@sha256:" + "abcd1234" * 8}]},
     None),
    (561, "Success/BundleImageValidTagWithDigest",
     {"image": "quay.io/operator-framework/foo-bundle:v0.1.0@sha256:" + "abcd1234" * 8,
      "relatedImages": [{"name": "bundle",
                         "image": "quay.io/operator-framework/foo-bundle:v0.1.0@sha256:" + "abcd1234" * 8}]},
     None),
]


@pytest.mark.parametrize(("line", "name", "blobs", "expected"), CASES, ids=[f"L{c[0]}-{c[1]}" for c in CASES])
def test_convert_to_model(tmp_path: Path, line: int, name: str, blobs: Callable[[], list[dict]],
                          expected: str | None) -> None:
    """Peer: declcfg_to_model_test.go:LINE (TestConvertToModel case NAME, see CASES)."""
    assert_outcome(validate_blobs(tmp_path, blobs()), expected)


@pytest.mark.parametrize(("line", "name", "fields", "expected"), IMAGE_CASES,
                         ids=[f"L{c[0]}-{c[1]}" for c in IMAGE_CASES])
def test_convert_to_model_image_pull_specs(tmp_path: Path, line: int, name: str, fields: dict,
                                           expected: str | None) -> None:
    """Peer: declcfg_to_model_test.go:510-573: image references that do not parse fail (valid digests pass)."""
    blobs = [package("foo", "alpha"), channel("foo", "alpha", entry(bundle_name("foo", "0.1.0"))),
             bundle("foo", "0.1.0", *(_set(k, v) for k, v in fields.items()))]
    assert_outcome(validate_blobs(tmp_path, blobs), expected, contains=True)


def test_convert_to_model_bundle_keeps_its_deprecation_free_shape(tmp_path: Path) -> None:
    """Peer: declcfg_to_model_test.go:584 TestConvertToModelBundle: the one-bundle catalog converts cleanly."""
    blobs = [package("foo", "alpha"), channel("foo", "alpha", entry("foo.v0.1.0")), bundle("foo", "0.1.0")]
    assert_outcome(validate_blobs(tmp_path, blobs), None)
