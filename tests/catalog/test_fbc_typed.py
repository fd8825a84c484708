"""Typed FBC fields decoded as opm decodes them: package icons and bundle objects are Go `[]byte` (base64).

The community catalogs in ../shared/corpus/fbc carry the placeholder `<stripped>` where icon and
bundle-object data were removed to save space; opm refuses that text (it is not base64), so a test
that validates those catalogs substitutes valid base64 first. The oracle for "valid" is that these
catalogs are what the community pipeline published (opm validated them before the stripping).
"""

from __future__ import annotations

import base64
import random
import re
import shutil
from pathlib import Path

import pytest

from indexflow.catalog import gotypes
from indexflow.catalog.gotypes import GoDecodeError, go_base64_decode
from indexflow.catalog.validate import validate_report

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "fbc" / "community-operators-prod"
PLACEHOLDER = '"<stripped>"'


def corpus_copy(ocp: str, dest: Path, substitute: bool) -> Path:
    """A copy of one OCP version's catalog; with `substitute`, placeholders become base64 of `{}`."""
    src = CORPUS / ocp
    for path in sorted(src.rglob("*")):
        if path.is_file():
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text()
            if substitute:
                text = text.replace(PLACEHOLDER, '"' + base64.b64encode(b"{}").decode() + '"')
            target.write_text(text)
    return dest


@pytest.mark.parametrize("ocp", ["v4.12", "v4.16"])
def test_corpus_catalog_validates_once_placeholders_are_base64(tmp_path: Path, ocp: str) -> None:
    report = validate_report(corpus_copy(ocp, tmp_path / ocp, substitute=True))
    assert report.passed, report.message


def test_placeholder_icon_is_not_base64(tmp_path: Path) -> None:
    root = corpus_copy("v4.16", tmp_path / "v4.16", substitute=False)
    icon_pkg = next(p for p in sorted(root.iterdir()) if '"base64data":"<stripped>"' in (p / "catalog.json").read_text())
    for other in root.iterdir():
        if other != icon_pkg:
            shutil.rmtree(other)
    report = validate_report(root)
    assert report.message == "parse package: illegal base64 data at input byte 0"


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"abc", b"\x00\xff" * 40, "ünïcode".encode()])
def test_go_base64_decodes_what_python_encodes(data: bytes) -> None:
    text = base64.b64encode(data).decode()
    assert go_base64_decode(text) == data
    assert go_base64_decode("\n".join(text[i:i + 4] for i in range(0, len(text), 4))) == data  # CR/LF skipped


@pytest.mark.parametrize(("text", "offset"), [
    ("<stripped>", 0),  # not in the alphabet
    ("YQ", 0),          # a short final quantum without padding: Go reports where the quantum began
    ("YQ=", 3),         # "==" expected, input ended
    ("YQ=x", 2),        # second padding character is not '='
    ("YWJj=", 4),       # padding after a full quantum
    ("YQ==YQ==", 4),    # data after the padding
    ("Y===", 1),        # padding after one symbol
])
def test_go_base64_error_offsets(text: str, offset: int) -> None:
    with pytest.raises(GoDecodeError) as err:
        go_base64_decode(text)
    assert str(err.value) == f"illegal base64 data at input byte {offset}"


def test_base64_fast_path_agrees_with_gos_decoder_symbol_by_symbol() -> None:
    """Well-formed text takes binascii; the result must be what the Go-exact decoder gives, and
    malformed text must still fail with Go's offsets (the fast path must never accept it)."""
    def exact(text: str) -> object:
        try:
            return gotypes._decode_symbols(text)
        except gotypes.GoDecodeError as exc:
            return str(exc)

    def product(text: str) -> object:
        try:
            return gotypes.go_base64_decode(text)
        except gotypes.GoDecodeError as exc:
            return str(exc)

    rnd = random.Random(14)
    texts = ["".join(rnd.choice("AB+/=\n\r9z") for _ in range(rnd.randint(0, 9))) for _ in range(20000)]
    texts += [base64.b64encode(bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 40)))).decode()
              for _ in range(500)]
    assert [product(t) for t in texts] == [exact(t) for t in texts]
    assert re.fullmatch(r"illegal base64 data at input byte \d+", str(product("QQ=QQ")))


@pytest.mark.parametrize(("entry", "message"), [
    ({"reference": {"schema": "olm.channel", "name": "beta"}, "message": "gone"},
     'cannot deprecate channel "beta" for package "foo": channel not found'),
    ({"reference": {"schema": "olm.package", "name": "foo"}, "message": "gone"},
     'package name must be empty for deprecated package "foo" (specified "foo")'),
    ({"reference": {"name": "foo.v0.1.0"}, "message": "gone"},
     'schema must be set for deprecation entry [0] for package "foo"'),
    ({"reference": {"schema": "olm.bundle", "name": "foo.v0.1.0"}, "message": ""},
     'invalid index:\n└── invalid package "foo":\n    └── invalid channel "alpha":\n'
     '        └── invalid bundle "foo.v0.1.0":\n            └── invalid deprecation: message must be set'),
])
def test_deprecation_entries_checked_as_opm_does(tmp_path: Path, entry: dict, message: str) -> None:
    """opm v1.73.0 declcfg_to_model.go's deprecation rules beyond the peer table (channel, package,
    schema) and model.go's Deprecation.Validate (a message is required)."""
    from tests.peers.fbcdata import bundle, channel, package, validate_blobs

    blobs = [package("foo", "alpha"), channel("foo", "alpha", {"name": "foo.v0.1.0"}), bundle("foo", "0.1.0"),
             {"schema": "olm.deprecations", "package": "foo", "entries": [entry]}]
    assert validate_blobs(tmp_path, blobs).message == message
