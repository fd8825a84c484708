"""The event-based manifest reader must give exactly what PyYAML (+ Go's number rules) gives."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

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


class _GoLikeLoader(yaml.CSafeLoader):
    """libyaml's YAML 1.1 (as go-yaml v2 reads it), timestamps kept as strings: written here, not
    taken from the product, so the product's own fallback path is not its own oracle."""


_GoLikeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()}


def _go_numbers(value: object) -> object:
    """Go decodes YAML to JSON numbers in float64 then prints integral ones as integers."""
    if isinstance(value, dict):
        return {key: _go_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_go_numbers(item) for item in value]
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 2**63 and value.is_integer():
        return int(value)
    return value


def _reference(path: Path):
    """What opm sees: the first document (JSON or YAML), undecodable files as None, Go's numbers."""
    text = path.read_text(encoding="utf-8")
    try:
        first = json.loads(text) if text.lstrip().startswith("{") else next(yaml.load_all(text, _GoLikeLoader), None)
    except (yaml.YAMLError, ValueError):
        return None
    return _go_numbers(first)


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
