"""The event-based manifest reader must give exactly what PyYAML (+ Go's number rules) gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from indexflow.catalog import bundle
from indexflow.catalog.add import add_bundle_refs
from indexflow.catalog.fastyaml import FALLBACK, load_first
from indexflow.catalog.gojson import go_json
from indexflow.errors import CatalogError

FIX = Path(__file__).resolve().parents[1] / "fixtures"

TRICKY = {
    "scalars": "a: yes\nb: No\nc: ~\nd: 0x1F\ne: 1_000\nf: 1.0\ng: 1.5\nh: -.5\ni: 2024-01-01\nj: '1'\nk: 0o17\n",
    "sexagesimal": "a: 1:30\nb: 1:30.5\n",
    "anchors": "base: &b {x: 1, y: [1, 2]}\ncopy: *b\n",
    "merge_key": "base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n",
    "explicit_tag": "a: !!str 12\nb: !!binary aGVsbG8=\n",
    "custom_tag": "a: !Thing 12\n",
    "non_string_keys": "1: one\ntrue: t\n1.5: f\n",
    "complex_key": "? [a, b]\n: c\n",
    "undefined_alias": "a: *nope\n",
    "duplicate_anchor": "a: &x 1\nb: &x 2\n",
    "multi_doc_error_later": "a: 1\n---\n: : [\n",
    "syntax_error": "a: [1, 2\n",
    "empty": "",
    "comment_only": "# nothing\n",
    "scalar_doc": "just text\n",
    "html_and_unicode": "a: \"<b>&\u2028\u00e9\\x01\"\n",
    "big_int": "a: 123456789012345678901234567890\nb: 1e300\n",
    "null_key": "~: x\n",
}


def _reference(path: Path):
    """The reader this replaces: PyYAML's first document, then Go's number normalisation."""
    return bundle._normalise_numbers(bundle._decode(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_fast_reader_matches_pyyaml(name: str, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(TRICKY[name], encoding="utf-8")
    want = _reference(path)
    got, plain = bundle._decode_manifest(path.read_text(encoding="utf-8"))
    assert repr(got) == repr(want)
    if isinstance(want, dict):
        assert go_json(got, plain=plain) == go_json(want)


def test_unusual_documents_fall_back() -> None:
    assert load_first(TRICKY["merge_key"])[0] is FALLBACK
    assert load_first(TRICKY["custom_tag"])[0] is FALLBACK
    assert load_first("a: 1.0\nb: x\n") == ({"a": 1, "b": "x"}, True)  # Go: integral floats are ints
    doc, plain = load_first("a: 1.5\n")
    assert doc == {"a": 1.5} and plain is False


def test_fast_reader_matches_on_every_fixture_manifest() -> None:
    files = [p for p in FIX.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file()]
    assert len(files) > 20
    for path in files:
        want = _reference(path)
        got, plain = bundle._decode_manifest(path.read_text(encoding="utf-8"))
        assert repr(got) == repr(want), path
        if isinstance(want, dict):
            assert go_json(got, plain=plain) == go_json(want), path


def test_unencodable_number_is_a_catalog_error(tmp_path: Path) -> None:
    dest = tmp_path / "b"
    shutil.copytree(FIX / "catalog" / "bundles" / "etcd" / "0.9.0", dest)
    (dest / "manifests" / "extra.yaml").write_text("kind: ConfigMap\ndata:\n  ratio: .inf\n")
    with pytest.raises(CatalogError, match="error loading bundle r/etcd:1: bundle manifests cannot be stored"):
        add_bundle_refs(tmp_path / "x.db", ["r/etcd:1"], {"r/etcd:1": dest})
