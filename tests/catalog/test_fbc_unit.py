"""FBC engine on local fixtures (opm v1.73 golden outputs copied into tests/fixtures/fbc)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from indexflow.catalog import fbcmodel
from indexflow.catalog.merge import enforce_json, merge_catalog_dirs, remove_packages
from indexflow.catalog.migrate import migrate
from indexflow.catalog.validate import validate_fbc, validate_report
from indexflow.errors import CatalogError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "fbc"


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def etcd_db(tmp_path: Path) -> Path:
    db = tmp_path / "index.db"
    shutil.copyfile(FIX / "etcd-full.db", db)
    return db


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_migrate_is_byte_identical_to_opm(etcd_db: Path, tmp_path: Path, fmt: str) -> None:
    migrate(etcd_db, tmp_path / "out", fmt=fmt)
    assert _tree(tmp_path / "out") == _tree(FIX / f"etcd-expected-{fmt}")


def test_migrate_leaves_the_db_untouched(etcd_db: Path, tmp_path: Path) -> None:
    before = hashlib.sha256(etcd_db.read_bytes()).hexdigest()
    migrate(etcd_db, tmp_path / "out", level="bundle-object-to-csv-metadata")
    assert hashlib.sha256(etcd_db.read_bytes()).hexdigest() == before
    text = (tmp_path / "out" / "etcd" / "catalog.json").read_text()
    assert '"olm.csv.metadata"' in text and '"olm.bundle.object"' not in text


def test_migrated_catalog_validates(etcd_db: Path, tmp_path: Path) -> None:
    migrate(etcd_db, tmp_path / "out")
    assert validate_report(tmp_path / "out").passed
    validate_fbc(tmp_path / "out")


def test_migrate_refuses_non_empty_output(etcd_db: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    with pytest.raises(CatalogError, match='output dir ".*out" must be empty'):
        migrate(etcd_db, tmp_path / "out")


def test_migrate_rejects_unknown_level(etcd_db: Path, tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match='unknown migration level "all"'):
        migrate(etcd_db, tmp_path / "out", level="all")


def test_migrate_bad_skiprange_fails_with_opm_tree(tmp_path: Path) -> None:
    shutil.copyfile(FIX / "nmo-bad-skiprange.db", tmp_path / "index.db")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(CatalogError) as exc:
            migrate("index.db", "out")
    finally:
        os.chdir(cwd)
    assert str(exc.value) == (
        'render catalog image: render reference "index.db": invalid index:\n'
        '└── invalid package "node-maintenance-operator":\n'
        '    └── invalid channel "stable":\n'
        '        └── invalid bundle "node-maintenance-operator.v0.21.0":\n'
        '            └── invalid skipRange ">=0.12.0 <<0.19": Could not parse Range "<<0.19": '
        'Could not parse comparator "<<" in "<<0.19"')
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["ok-simple", "multi-error-tree", "ok-yaml-multifile-indexignore",
                                  "comment-only-file"])
def test_validate_matches_recorded_leaves(name: str) -> None:
    case = json.loads((FIX / "validate" / f"{name}.case.json").read_text())
    report = validate_report(FIX / "validate" / name)
    assert report.passed is (case["expect"]["exit_code"] == 0)
    assert sorted(report.leaves) == sorted(case["expect"]["validate_errors"])
    assert report.as_json()["passed"] is report.passed


def test_validate_fbc_raises_with_the_message() -> None:
    with pytest.raises(CatalogError, match="^object '' is missing root schema field$"):
        validate_fbc(FIX / "validate" / "comment-only-file")


def test_validate_rejects_a_file_path() -> None:
    with pytest.raises(CatalogError, match="is not a directory"):
        validate_report(FIX / "etcd-full.db")


@pytest.mark.parametrize("text, error", [
    (">=1.0.0 <2.0.0", None), ("<1.2.x", None), (">1.0.0 || <0.5.0", None), ("< 0.6.0", None),
    ("bad", 'Could not get version from string: "bad"'),
    ("<<0.19", 'Could not parse Range "<<0.19": Could not parse comparator "<<" in "<<0.19"'),
    ("<=v0.10.1", 'Could not parse Range "<=v0.10.1": Could not parse comparator "<=v" in "<=v0.10.1"'),
    (">=1.0", 'Could not parse Range ">=1.0": Could not parse version "1.0" in ">=1.0": '
              "No Major.Minor.Patch elements found"),
])
def test_skip_range_parsing_follows_blang(text: str, error: str | None) -> None:
    if error is None:
        fbcmodel.check_range(text)
    else:
        with pytest.raises(fbcmodel.SemverError) as exc:
            fbcmodel.check_range(text)
        assert str(exc.value) == error


def test_error_tree_rendering() -> None:
    tree = fbcmodel.Node("invalid index", [fbcmodel.Node('invalid package "foo"', [
        fbcmodel.Node('invalid channel "stable"', [fbcmodel.Node("multiple channel heads found in graph: a, b")]),
        fbcmodel.Node("duplicate versions found in bundles: [{2.0.0: [a, b]}]")])])
    assert tree.render() == (
        'invalid index:\n└── invalid package "foo":\n    ├── invalid channel "stable":\n'
        "    │   └── multiple channel heads found in graph: a, b\n"
        "    └── duplicate versions found in bundles: [{2.0.0: [a, b]}]")
    assert tree.leaves()[1] == ["invalid index", 'invalid package "foo"',
                                "duplicate versions found in bundles: [{2.0.0: [a, b]}]"]


def _git_configs(root: Path) -> Path:
    configs = root / "configs"
    for pkg, content in (("etcd", "old"), ("git-only", "kept"), ("deprecated-pkg", "gone")):
        (configs / pkg).mkdir(parents=True)
        (configs / pkg / "catalog.json").write_text(content)
    (configs / "etcd" / "extra.json").write_text("git extra")
    return configs


def test_merge_index_db_wins_per_file_and_git_only_packages_survive(etcd_db: Path, tmp_path: Path) -> None:
    configs = _git_configs(tmp_path)
    migrate(etcd_db, tmp_path / "from_db")
    assert remove_packages(configs, ["deprecated-pkg", "../escape", "Bad_Name"]) == ["../escape", "Bad_Name"]
    merge_catalog_dirs(tmp_path / "from_db", configs)
    assert sorted(p.name for p in configs.iterdir()) == ["etcd", "git-only"]
    assert (configs / "etcd" / "catalog.json").read_bytes() == (FIX / "etcd-expected-json/etcd/catalog.json").read_bytes()
    assert (configs / "etcd" / "extra.json").read_text() == "git extra"
    assert (configs / "git-only" / "catalog.json").read_text() == "kept"


def test_merge_leaves_a_file_that_already_holds_the_bytes_untouched(etcd_db: Path, tmp_path: Path) -> None:
    """An unchanged catalog file keeps its inode and times (so `git add` does not hash it again); one
    that differs in bytes or mode is replaced (links in the checkout are refused before: check_tree)."""
    migrate(etcd_db, tmp_path / "from_db")
    want = (tmp_path / "from_db" / "etcd" / "catalog.json").read_bytes()
    configs = tmp_path / "configs"
    (configs / "etcd").mkdir(parents=True)
    same = configs / "etcd" / "catalog.json"
    same.write_bytes(want)
    same.chmod(0o644)
    os.utime(same, ns=(1, 1))
    before = same.stat()
    merge_catalog_dirs(tmp_path / "from_db", configs)
    after = same.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, 1) and same.read_bytes() == want
    same.chmod(0o600)
    merge_catalog_dirs(tmp_path / "from_db", configs)
    assert same.stat().st_ino != before.st_ino and same.stat().st_mode & 0o777 == 0o644
    same.write_bytes(want[:-1] + b" ")
    merge_catalog_dirs(tmp_path / "from_db", configs)
    assert same.read_bytes() == want


def test_merge_requires_both_dirs(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=f"config directory does not exist: {tmp_path / 'nope'}"):
        merge_catalog_dirs(tmp_path / "nope", tmp_path)


def test_enforce_json_converts_yaml_and_yml(tmp_path: Path) -> None:
    shutil.copytree(FIX / "validate" / "ok-yaml-multifile-indexignore", tmp_path / "c")
    (tmp_path / "c" / "bar" / "package.yaml").rename(tmp_path / "c" / "bar" / "package.yml")
    written = enforce_json(tmp_path / "c")
    assert sorted(p.name for p in written) == ["channels.json", "package.json"]
    assert not list((tmp_path / "c").rglob("*.y*ml"))
    channels = (tmp_path / "c" / "bar" / "channels.json").read_text()
    assert channels.count('"schema": "olm.channel"') == 2 and channels.startswith('{\n    "schema"')
    assert validate_report(tmp_path / "c").passed


@pytest.mark.parametrize("files, message", [
    ({"p/catalog.yaml": "  \n"}, "is empty"),
    ({"p/catalog.yaml": "schema: olm.package\nname: p\n", "p/catalog.json": "{}"}, "would both become"),
    ({"p/catalog.yaml": "schema: a\n", "p/catalog.yml": "schema: b\n"}, "would both become"),
])
def test_enforce_json_refuses_before_changing_anything(tmp_path: Path, files: dict, message: str) -> None:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    before = _tree(tmp_path)
    with pytest.raises(CatalogError, match=message):
        enforce_json(tmp_path)
    assert _tree(tmp_path) == before


def test_case_folded_duplicate_meta_keys_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "catalog.json").write_text('{"schema": "olm.package", "Schema": "x", "name": "p"}')
    report = validate_report(tmp_path)
    assert not report.passed and 'duplicate keys for key "schema": [schema Schema]' in report.message


def _one_bundle_catalog(root: Path, bundle: dict) -> Path:
    """package p (channel stable) with one bundle blob as given: the bundle's own keys are the variable."""
    blobs = [{"schema": "olm.package", "name": "p", "defaultChannel": "stable"},
             {"schema": "olm.channel", "name": "stable", "package": "p", "entries": [{"name": "p.v1.0.0"}]},
             {"schema": "olm.bundle", **bundle}]
    (root / "p").mkdir(parents=True)
    (root / "p" / "catalog.json").write_text("".join(json.dumps(b, indent=4) + "\n" for b in blobs))
    return root


_PACKAGE_PROP = {"type": "olm.package", "value": {"packageName": "p", "version": "1.0.0"}}
_PLAIN_BUNDLE = {"name": "p.v1.0.0", "package": "p", "image": "quay.io/p/b:1", "properties": [_PACKAGE_PROP]}


@pytest.mark.parametrize(("bundle", "message"), [
    # Go's encoding/json matches field names case-insensitively: these are the same bundle
    ({**_PLAIN_BUNDLE, "properties": [{"Type": "olm.package", "Value": {"PackageName": "p", "VERSION": "1.0.0"}}]},
     None),
    ({"name": "p.v1.0.0", "Package": "p", "Image": "quay.io/p/b:1", "Properties": [_PACKAGE_PROP]}, None),
    # ...and folded names are read, not skipped: a folded package name that differs is opm's mismatch
    ({**_PLAIN_BUNDLE, "properties": [{"type": "olm.package", "value": {"PackageName": "q", "version": "1.0.0"}}]},
     'package "p" does not match "olm.package" property "q"'),
    ({**_PLAIN_BUNDLE, "Image": "Not A Ref"}, None),  # exact "image" wins over the folded one
    ({"name": "p.v1.0.0", "package": "p", "Image": "Not A Ref", "properties": [_PACKAGE_PROP]},
     'package "p" bundle "p.v1.0.0" image: invalid image pull spec "Not A Ref": invalid reference format'),
    ({**_PLAIN_BUNDLE, "properties": [_PACKAGE_PROP, _PACKAGE_PROP]},
     'package "p" bundle "p.v1.0.0" must have exactly 1 "olm.package" property, found 2'),
    ({**_PLAIN_BUNDLE, "properties": [_PACKAGE_PROP, {"type": "olm.gvk", "value": {"group": "g", "kind": 7}}]},
     'parse property[1] of type "olm.gvk": json: cannot unmarshal number into Go struct field GVK.kind of type string'),
    ({**_PLAIN_BUNDLE, "relatedImages": [{"name": "x", "Image": "Bad Ref"}]},
     'relatedImages[0].image: invalid image pull spec "Bad Ref"'),
    ({**_PLAIN_BUNDLE, "properties": [_PACKAGE_PROP, {"type": "olm.bundle.object", "value": {"data": "e30"}}]},
     "parse property at index 1 as bundle object: illegal base64 data at input byte 0"),
])
def test_bundle_blobs_beyond_the_plain_shape_are_read_the_go_way(tmp_path: Path, bundle: dict,
                                                                  message: str | None) -> None:
    """validate reads usual bundle blobs in one pass; anything else (folded key names, duplicates, wrong
    types) must still be decoded and refused exactly as opm's Go structs do."""
    report = validate_report(_one_bundle_catalog(tmp_path / "c", bundle))
    assert report.passed is (message is None), report.message
    if message:
        assert message in report.message


_TRICKY_REFS = ["host:5000", "host:5000/repo:tag", "a:b:c", "x\n@sha256:" + "a" * 64, "x@sha256:" + "a" * 64 + "\n",
                "a" * 256, "a" * 255 + ":t", "Up/x", "up/X", "q.io/a/b:v1@sha256:" + "a" * 64,
                "q.io/a@sha256:" + "a" * 63,
                "q.io/a@sha512:" + "a" * 128, "q.io/a:-t", "q.io//a", "q.io/a:t/b", "[::1]:5000/a:t", "a__b", "a---b:t"]


def test_image_reference_shortcut_never_accepts_what_the_grammar_refuses() -> None:
    """validate accepts `name[:tag][@sha256:...]` references by checking the name part once; the
    full distribution/reference grammar is the oracle, on crafted edge cases and random strings."""
    import random

    from indexflow.catalog import validate as fbc_validate

    rng = random.Random(14)
    refs = _TRICKY_REFS + ["".join(rng.choice("ab0_-.:/@Z\n") for _ in range(rng.randint(1, 14)))
                           + rng.choice(["", "@sha256:" + "b" * 64]) for _ in range(20000)]
    shortcut = [ref for ref in refs if fbc_validate._pinned_ref_ok(ref)]
    assert [ref for ref in shortcut if fbc_validate.reference_error(ref) is not None] == []
    assert len(shortcut) > 500 and "q.io/a/b:v1@sha256:" + "a" * 64 in shortcut  # it is taken, not bypassed


@pytest.mark.parametrize("escape", ["", '<&>"\\\u2028\x01'])
def test_migrate_blob_templates_write_what_the_general_writer_writes(escape: str) -> None:
    """migrate's bundle and channel blobs are written from templates (and flat property values
    without tokenising); the general writer is the oracle, with and without characters to escape."""
    from indexflow.catalog import fbcwrite

    plain = escape.replace('"', "").replace("\\", "")  # (what a raw value can hold unescaped)
    props = [("olm.gvk", '{"group":"g","kind":"K","version":"v1"}'),
             ("olm.package", '{"packageName":"p' + plain + '","version":"1.0.0"}'),
             ("x", '{":":"a,b"}'), ("y", '{"a":"","":"b","c":"d"}'), ("z", '{"data":"e30="}')]
    for related in ([], [{"name": "", "image": "q.io/a" + escape}, {"name": "n" + escape, "image": "q.io/b"}]):
        bundle = fbcwrite.BundleBlob(schema="olm.bundle", name="p.v1" + escape, package="p", image="q.io/p" + escape,
                                     properties=fbcwrite.Properties(props))
        bundle["relatedImages"] = related
        assert fbcwrite.blob_json(bundle) == fbcwrite._pretty(dict(bundle), 0) + "\n"
    entries = [{"name": "a" + escape}, {"name": "b", "replaces": "a" + escape, "skips": ["x", "y" + escape]},
               {"name": "c", "skips": [], "skipRange": "<1.0.0"}]
    for listed in ([], entries):
        channel = fbcwrite.ChannelBlob(schema="olm.channel", name="stable" + escape, package="p", entries=listed)
        assert fbcwrite.blob_json(channel) == fbcwrite._pretty(dict(channel), 0) + "\n"
    for _, value in props:
        assert fbcwrite._raw_pretty(value, 3) == fbcwrite.indent(value, 3)
