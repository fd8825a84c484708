"""operator-registry v1.73.0 alpha/declcfg/load_test.go: the invalid files of `invalidFS` (lines 383-404).

TestLoadReader / TestLoadFile / TestLoadFS / TestWalkMetasFS expect each of these files to fail the
load; written alone into a catalog directory, each must fail `fbc validate`. Where the failure is a
Go decode of a typed field, the message is encoding/json's (checked whole).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from indexflow.catalog.validate import validate_report

CASES = [
    # (peer line of the file, peer case name, file name, content, message or None = any error)
    (383, "Error/InvalidBundleJSON", "invalid-bundle.json", '{"schema": "olm.bundle","relatedImages": {}}',
     "parse bundle: json: cannot unmarshal object into Go struct field Bundle.relatedImages of type "
     "[]declcfg.RelatedImage"),
    (386, "Error/InvalidPackageJSON", "invalid-package.json", '{"schema": "olm.package","name": {}}',
     "parse package: json: cannot unmarshal object into Go struct field Package.name of type string"),
    (389, "Error/NoSchema", "no-schema.yaml", "hello: world", None),
    (392, "Error/NotYAMLOrJSON", "invalid-format.txt", "[This is not yaml or json.}", None),
    (395, "Error/NotJSONObject", "not-object.json", "[]", None),
]


@pytest.mark.parametrize(("line", "name", "filename", "content", "message"), CASES,
                         ids=[f"L{c[0]}-{c[1]}" for c in CASES])
def test_invalid_file_fails_the_load(tmp_path: Path, line: int, name: str, filename: str, content: str,
                                     message: str | None) -> None:
    """Peer: load_test.go:LINE (the file the case NAME loads); require.Error there."""
    root = tmp_path / "catalog"
    root.mkdir()
    (root / filename).write_text(content)
    report = validate_report(root)
    assert not report.passed
    if message is not None:
        assert report.message == message


@pytest.mark.parametrize(("field", "value", "message"), [
    ("entries", {}, "parse channel: json: cannot unmarshal object into Go struct field Channel.entries of type "
                    "[]declcfg.ChannelEntry"),
    ("entries", [{"name": "a", "skips": "b"}],
     "parse channel: json: cannot unmarshal string into Go struct field ChannelEntry.entries.skips of type []string"),
    ("name", 5, "parse channel: json: cannot unmarshal number into Go struct field Channel.name of type string"),
])
def test_typed_channel_fields(tmp_path: Path, field: str, value: object, message: str) -> None:
    """The same rule (load_test.go:383-388, typed fields) for olm.channel: Go names the struct and path."""
    import json
    root = tmp_path / "catalog"
    root.mkdir()
    (root / "c.json").write_text(json.dumps({"schema": "olm.channel", "package": "p", "name": "c"} | {field: value}))
    assert validate_report(root).message == message
