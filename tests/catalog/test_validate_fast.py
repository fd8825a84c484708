"""validate's fast paths (documents summarised as they are decoded, the plain-bundle shortcut, the
cache of good image references) must give the verdicts and messages of the general path."""

from __future__ import annotations

import copy
import itertools
import json
import random
from pathlib import Path
from typing import Callable

import pytest

from indexflow.catalog import fbcmodel, gotypes
from indexflow.catalog import validate as fbc_validate
from indexflow.catalog.validate import validate_report

_PACKAGE_PROP = {"type": "olm.package", "value": {"packageName": "p", "version": "1.0.0"}}


def _write(root: Path, files: dict[str, list[dict] | str]) -> Path:
    """Each file is a list of blobs (written as concatenated JSON) or raw text."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else "".join(json.dumps(b, indent=4) + "\n"
                                                                         for b in content))
    return root


def _package(name: str, bundles: list[dict]) -> list[dict]:
    """Package `name`, one channel holding every bundle (a replaces chain), and the bundles."""
    entries = [{"name": b["name"], **({"replaces": bundles[i - 1]["name"]} if i else {})}
               for i, b in enumerate(bundles)]
    return [{"schema": "olm.package", "name": name, "defaultChannel": "stable"},
            {"schema": "olm.channel", "name": "stable", "package": name, "entries": entries},
            *({"schema": "olm.bundle", **b} for b in bundles)]


def _bundle(version: str, **fields: object) -> dict:
    return {"name": f"p.v{version}", "package": "p", "image": f"quay.io/p/b:{version}",
            "properties": [{"type": "olm.package", "value": {"packageName": "p", "version": version}}], **fields}


def test_a_decoding_error_in_a_later_file_wins_over_an_earlier_typed_error(tmp_path: Path) -> None:
    """Every file is decoded before any typed-field error is raised (the order the general loader
    always had): summarising documents as they are decoded must not raise the typed one early."""
    root = _write(tmp_path / "c", {"a/catalog.json": _package("p", [_bundle("1.0.0", image=7)]),
                                   "b/catalog.json": '{"schema": "olm.package", "name": "q"'})
    report = validate_report(root)
    assert not report.passed and report.message == "unexpected EOF"


def test_the_first_typed_error_in_file_order_is_reported(tmp_path: Path) -> None:
    root = _write(tmp_path / "c", {"a/catalog.json": _package("p", [_bundle("1.0.0", image=7)]),
                                   "b/catalog.json": [{"schema": "olm.package", "name": "q", "defaultChannel": 5}]})
    report = validate_report(root)
    assert report.message == ("parse bundle: json: cannot unmarshal number into Go struct field Bundle.image "
                              "of type string")


def test_a_bad_related_image_after_cached_good_ones_is_refused_every_time(tmp_path: Path) -> None:
    """References found good are remembered (catalogs repeat them); a bad one beside remembered ones,
    in a later bundle, must still be named with its index, in this validation and the next one."""
    good = "quay.io/p/operand@sha256:" + "a" * 64
    bundles = [_bundle("1.0.0", relatedImages=[{"name": "operand", "image": good}]),
               _bundle("1.0.1", relatedImages=[{"name": "operand", "image": good}, {"name": "x", "image": "Bad Ref"}])]
    root = _write(tmp_path / "c", {"p/catalog.json": _package("p", bundles)})
    expected = ('package "p" bundle "p.v1.0.1" relatedImages[1].image: invalid image pull spec "Bad Ref": '
                "invalid reference format")
    assert [validate_report(root).message for _ in range(2)] == [expected, expected]


def _general(blob: dict) -> tuple | None:
    """The general path's reading of a bundle blob (the oracle), or None where it refuses it."""
    if fbc_validate._typed_error("olm.bundle", blob):
        return None
    name, pkg = fbc_validate.field_str(blob, "name"), fbc_validate.field_str(blob, "package")
    try:
        version, release, has_objects = fbc_validate._bundle_properties(blob, name, pkg)
    except fbc_validate.CatalogError:
        return None
    images = [fbc_validate.field_str(rel, "image") for rel in fbc_validate.field_list(blob, "relatedImages")]
    return name, pkg, fbc_validate.field_str(blob, "image"), version, release, has_objects, images


_ODD_VALUES = [None, 7, 1.5, True, "", "x", [], ["a"], {}, {"a": "b"}, {"data": "e30="}]
_ODD_KEYS = ["type", "value", "Type", "VALUE", "data", "packageName", "PackageName", "version", "release",
             "group", "kind", "name", "image", "Image", "extra"]
_TYPES = ["olm.package", "olm.gvk", "olm.gvk.required", "olm.package.required", "olm.bundle.object",
          "olm.csv.metadata", "olm.maxOpenShiftVersion", "Olm.Gvk", 7, None, ["olm.gvk"]]


def _mutate(rng: random.Random, blob: dict) -> None:
    """One random change somewhere in a bundle blob: a value, a key, a property, a related image."""
    props, related = blob.get("properties"), blob.get("relatedImages")
    props, related = props if isinstance(props, list) else [], related if isinstance(related, list) else []
    dicts = [d for d in props if isinstance(d, dict)]
    target = rng.choice([blob, *dicts, *(d["value"] for d in dicts if isinstance(d.get("value"), dict)),
                         *(r for r in related if isinstance(r, dict))])
    action = rng.randrange(5)
    if action == 0 and target:
        target[rng.choice(list(target))] = rng.choice(_ODD_VALUES)
    elif action == 1 and target:
        key = rng.choice(list(target))
        target[rng.choice(_ODD_KEYS)] = target.pop(key)
    elif action == 2 and props:
        props.append(copy.deepcopy(rng.choice(props)) if rng.random() < 0.5 else
                     {"type": rng.choice(_TYPES), "value": rng.choice(_ODD_VALUES)})
    elif action == 3 and dicts:
        rng.choice(dicts)["type"] = rng.choice(_TYPES)
    elif related:
        related.append(rng.choice([{"name": rng.choice(_ODD_VALUES), "image": rng.choice(_ODD_VALUES)},
                                   {"image": "quay.io/p/x:2"}, rng.choice(_ODD_VALUES)]))


def test_plain_bundle_shortcut_agrees_with_the_general_path() -> None:
    """The shortcut either declines (None: the general path runs) or returns exactly what the
    general path reads; checked on thousands of randomly damaged bundle blobs."""
    base = _bundle("1.0.0-rc.1", relatedImages=[{"name": "op", "image": "quay.io/p/op:1"}, {"image": ""}])
    base["properties"] += [{"type": "olm.gvk", "value": {"group": "g", "kind": "K", "version": "v1"}},
                           {"type": "olm.bundle.object", "value": {"data": "e30="}},
                           {"type": "olm.csv.metadata", "value": {"anything": [1, 2]}}]
    rng = random.Random(14)
    taken = 0
    for _ in range(4000):
        blob = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            _mutate(rng, blob)
        fast = fbc_validate._plain_bundle(blob)
        if fast is not None:
            taken += 1
            assert fast == _general(blob), blob
    assert fbc_validate._plain_bundle(base) == _general(base) != None  # noqa: E711 (the plain case is taken)
    assert taken > 400  # mutations the shortcut still reads (a value of an unchecked type, an added gvk...)


@pytest.mark.parametrize(("prop", "message"), [
    ({"type": "olm.gvk", "value": {"group": "g", "kind": ["K"]}},
     "json: cannot unmarshal array into Go struct field GVK.kind of type string"),
    ({"type": "olm.bundle.object", "value": {"data": "e30"}}, "illegal base64 data at input byte 0"),
    ({"type": "olm.package", "value": {"packageName": "p", "version": "2.0.0"}},
     'must have exactly 1 "olm.package" property, found 2'),
])
def test_a_damaged_property_among_plain_ones_is_refused(tmp_path: Path, prop: dict, message: str) -> None:
    """The last of many well-formed properties is the damaged one: the shortcut must see it."""
    bundle = _bundle("1.0.0")
    bundle["properties"] += [{"type": "olm.gvk", "value": {"group": "g", "kind": f"K{i}", "version": "v1"}}
                             for i in range(20)] + [prop]
    report = validate_report(_write(tmp_path / "c", {"p/catalog.json": _package("p", [bundle])}))
    assert not report.passed and message in report.message, report.message


@pytest.mark.parametrize(("extra", "message"), [
    ({"Package": "q"}, 'duplicate keys for key "package": [package Package]'),
    ({"NAME": "x"}, 'duplicate keys for key "name": [name NAME]'),
    ({"Schema": "olm.bundle"}, 'duplicate keys for key "schema": [schema Schema]'),
])
def test_a_bundle_document_with_folded_duplicate_meta_keys_is_refused(tmp_path: Path, extra: dict,
                                                                        message: str) -> None:
    """Bundle documents skip the generic document check when the shortcut reads them: one whose
    keys fold onto another (Go's case-insensitive matching) must still be refused by that check."""
    report = validate_report(_write(tmp_path / "c", {"p/catalog.json": _package("p", [_bundle("1.0.0", **extra)])}))
    assert report.message == message


def _expected_bundle_errors(b: fbcmodel.Bundle) -> list[str]:
    """opm's bundle checks, written out from model.go's Bundle.Validate (the oracle)."""
    errs = [] if b.name else ["name must be set"]
    normalized = f"{b.package}-v{b.version}-{b.release}" if b.release else b.name
    if b.name != normalized:
        errs.append(f'name "{b.name}" does not match normalized name "{normalized}"')
    errs += [f"skip[{i}] is empty" for i, s in enumerate(b.skips) if not s]
    if b.skip_range == ">>1":
        errs.append('invalid skipRange ">>1": Could not parse Range ">>1": Could not parse comparator ">>" in ">>1"')
    if b.package_props != 1:
        errs.append('must be exactly one property with type "olm.package"')
    if not b.image and not b.has_objects:
        errs.append("bundle image must be set")
    if b.deprecation == "":
        errs.append("invalid deprecation: message must be set")
    if b.release and "+" in b.version:
        errs.append("cannot use build metadata in version with a release version")
    return errs


def test_bundle_checks_of_the_usual_bundle_shortcut_agree_with_opms_rules() -> None:
    """validate_bundle returns early for the usual bundle; every combination of the fields its checks
    read must still give exactly opm's messages (a condition left out of the shortcut fails here)."""
    checked = 0
    for name, release, version, props, image, objects, deprecation, skips, skip_range in itertools.product(
            ["", "p.v1.0.0", "p-v1.0.0-2"], ["", "2"], ["1.0.0", "1.0.0+b"], [0, 1, 2], ["", "q.io/p:1"],
            [False, True], [None, "", "old"], [[], ["a"], ["a", ""]], ["", ">=1.0.0", ">>1"]):
        b = fbcmodel.Bundle(name=name, version=version, skips=skips, skip_range=skip_range, image=image,
                            package_props=props, has_objects=objects, package="p", release=release,
                            deprecation=deprecation)
        assert [node.msg for node in fbcmodel.validate_bundle(b)] == _expected_bundle_errors(b), b
        checked += 1
    assert checked == 3 * 2 * 2 * 3 * 2 * 2 * 3 * 3 * 3


def _accepted(check: Callable[[str], object], text: str) -> bool:
    try:
        check(text)
    except gotypes.GoDecodeError:
        return False
    return True


def test_base64_check_accepts_exactly_what_gos_decoder_accepts() -> None:
    """check_go_base64 recognises well-formed text in one pass; Go's symbol-by-symbol decoder is the
    oracle (padding in the middle, three '=', a non-ASCII letter, line breaks, lengths off by one)."""
    rng = random.Random(14)
    texts = ["".join(rng.choice("QUJD+/=\n\ré9") for _ in range(rng.randint(0, 13))) for _ in range(30000)]
    texts += ["QUJD", "QUI=", "QQ==", "Q===", "QQ=Q", "=QUJ", "QUJDQUJD\n", "QUJ\nD", "QUJé", "QU\udc80D"]
    verdicts = [(t, _accepted(gotypes.check_go_base64, t)) for t in texts]
    assert verdicts == [(t, _accepted(gotypes._decode_symbols, t)) for t in texts]
    assert 1000 < sum(ok for _, ok in verdicts) < len(texts) - 1000  # both verdicts are exercised


def test_an_icon_with_a_lone_surrogate_is_one_sentence(tmp_path: Path) -> None:
    """JSON can escape a lone surrogate (Go's decoder makes it U+FFFD, 3 bytes); the Go-exact base64
    decoder used to raise UnicodeEncodeError on it (a traceback) instead of Go's message."""
    package = {"schema": "olm.package", "name": "p", "icon": {"base64data": "QU\udc80D", "mediatype": "image/png"}}
    root = tmp_path / "c" / "p"
    root.mkdir(parents=True)
    (root / "catalog.json").write_text(json.dumps(package))  # (ensure_ascii: written as \udc80)
    assert validate_report(root.parent).message == "parse package: illegal base64 data at input byte 2"


def _general_channel(blob: dict) -> tuple | None:
    """The general path's reading of a channel blob (the oracle), or None where it refuses it."""
    if fbc_validate._typed_error("olm.channel", blob):
        return None
    entries = fbc_validate.field_list(blob, "entries")
    return (fbc_validate.field_str(blob, "package"), fbc_validate.field_str(blob, "name"),
            [(fbc_validate.field_str(e, "name"), fbc_validate._entry_edges(e)) for e in entries])


_CHANNEL_ODD = [None, 7, "", "x", [], ["a"], ["a", 7], {}, {"name": "q"}]


def test_plain_channel_shortcut_agrees_with_the_general_path() -> None:
    """As for bundles: the channel shortcut declines or reads exactly what the general path reads."""
    base = {"schema": "olm.channel", "name": "stable", "package": "p",
            "entries": [{"name": "p.v1"}, {"name": "p.v2", "replaces": "p.v1", "skips": ["p.v0"], "skipRange": "<2"}]}
    rng = random.Random(14)
    taken = 0
    for _ in range(4000):
        blob = copy.deepcopy(base)
        for _ in range(rng.randint(1, 2)):
            entries = [e for e in blob.get("entries") or [] if isinstance(e, dict)] \
                if isinstance(blob.get("entries"), list) else []
            target = rng.choice([blob, *entries])
            key = rng.choice([*(k for k in target if k != "schema"),  # (the shortcut is only asked about olm.channel)
                              "Name", "REPLACES", "skips", "skipRange", "properties", "entries"])
            if rng.random() < 0.3 and key in target:
                target[key.upper() if rng.random() < 0.5 else key + "x"] = target.pop(key)
            else:
                target[key] = rng.choice(_CHANNEL_ODD)
        fast = fbc_validate._plain_channel(blob)
        if fast is not None:
            taken += 1
            assert fast == _general_channel(blob), blob
    assert fbc_validate._plain_channel(base) == _general_channel(base) != None  # noqa: E711
    assert taken > 100  # (damaged channels it still reads: a string where a string goes, an emptied list...)


@pytest.mark.parametrize(("entries", "message"), [
    ([{"name": "p.v1.0.0"}, {"name": "p.v1.0.1"}, {"name": "p.v1.0.0"}],
     'invalid package "p", channel "stable": duplicate entry "p.v1.0.0"'),
    ([{"name": "p.v1.0.0"}, {"name": "p.v1.0.1", "skips": ["a", 7]}],
     "parse channel: json: cannot unmarshal number into Go struct field ChannelEntry.entries.skips of type string"),
    # a folded key is read the Go way: ignored, p.v1.0.1 would be a second channel head
    ([{"name": "p.v1.0.0"}, {"name": "p.v1.0.1", "Replaces": "p.v1.0.0"}], None),
    ([{"name": "p.v1.0.0"}, {"name": "p.v1.0.1", "replaces": "p.v1.0.0"}, {"Name": "p.v1.0.0"}],
     'duplicate entry "p.v1.0.0"'),
])
def test_channel_entries_beyond_the_plain_shape(tmp_path: Path, entries: list, message: str | None) -> None:
    blobs = _package("p", [_bundle("1.0.0"), _bundle("1.0.1")])
    blobs[1]["entries"] = entries
    report = validate_report(_write(tmp_path / "c", {"p/catalog.json": blobs}))
    assert report.passed is (message is None) and (message or "") in report.message, report.message
