"""`opm validate <dir>`: load a File-Based Catalog the way opm v1.73 does and check it.

Loading errors and declarative-config errors stop at the first one (a single message);
model errors are all collected into opm's error tree. Both end up in a Report so callers can
compare the tree as a set of leaf paths (its child order is Go-map order in opm).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexflow.catalog import fbcload, fbcmodel, gotypes
from indexflow.catalog.gotypes import field_list, field_str, go_field
from indexflow.catalog.fbcmodel import goq as _goq
from indexflow.catalog.gojson import go_json
from indexflow.catalog.limits import excerpt
from indexflow.catalog.semver_go import SemverError
from indexflow.errors import CatalogError

_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PLAIN_VERSION = re.compile(r"(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)")
_DNS1123_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


class _Invalid(fbcload.Invalid):
    """A loading or declarative-config error: opm reports the first one alone."""


@dataclass
class Report:
    """Outcome of a validation: `leaves` are the error tree's root-to-leaf message paths."""

    passed: bool
    message: str = ""
    leaves: list[list[str]] = field(default_factory=list)

    def as_json(self) -> dict:
        """What `opm validate -o json` prints."""
        return {"passed": True} if self.passed else {"passed": False, "error": {"message": self.message}}


def validate_report(directory: Path | str) -> Report:
    """Validate an FBC directory; never raises for catalog problems (they are in the report)."""
    directory = Path(directory)
    if not directory.exists():
        raise CatalogError(f"stat {directory}: no such file or directory")
    if not directory.is_dir():
        raise CatalogError(f'"{directory}" is not a directory')
    try:
        with fbcload.paused_gc():
            tree = _validate_tree(directory)
    except CatalogError as exc:  # opm's first loading error; also an unsafe entry or an oversized file
        message = str(exc) if len(str(exc)) <= _MESSAGE_LIMIT else excerpt(str(exc), _MESSAGE_LIMIT)
        return Report(False, message, [[message]])
    if tree is None:
        return Report(True)
    return Report(False, tree.render(), [[m.rstrip(":") for m in leaf] for leaf in tree.leaves()])


def _validate_tree(directory: Path) -> fbcmodel.Node | None:
    """Load and check, in a function of its own so the model is freed (by reference counting)
    before the cyclic collector resumes: its first pass would otherwise walk all of it."""
    return fbcmodel.validate_model(_to_model(_load(directory)))


def validate_fbc(directory: Path | str) -> None:
    """Raise CatalogError with opm's message when the directory is not a valid catalog."""
    report = validate_report(directory)
    if not report.passed:
        raise CatalogError(report.message)


# --- loading (fbcload.py: the tree walk, .indexignore, bounded parsing) ------------------------


def _load(root: Path) -> dict[str, list]:
    """Every blob of the tree by schema, in file order; a well-formed bundle blob is kept only as
    its `_PlainBundle` summary (anything else whole, for the general path).

    Each document is summarised as soon as it is decoded, so its hundred-odd dicts and strings are
    freed while still in the processor's cache (and their memory reused by the next document):
    decoding and freeing a 7,000-bundle catalog this way costs two thirds of decoding it all first.
    opm's order of errors is kept: a loading error anywhere wins over a typed-field error, so the
    first typed error is only raised once every file has loaded."""
    by_schema: dict[str, list] = {"olm.bundle": [], "olm.channel": []}
    typed_error = None
    for rel, path in fbcload.catalog_files(root):
        for doc in fbcload.documents(fbcload.read_text(path, f"{root.name}/{rel}")):
            if type(doc) is dict and (schema := doc.get("schema")) in ("olm.bundle", "olm.channel"):
                # (a summary needs exact key names: nothing for _meta or _typed_error to refuse)
                summary = _plain_bundle(doc) if schema == "olm.bundle" else _plain_channel(doc)
                if summary is not None:
                    by_schema[schema].append(summary)
                    continue
            # the general path (a bundle or channel here is not plain: its exact "schema" was tried above)
            blob = _meta(doc)
            schema = blob["schema"] if "schema" in blob else go_field(blob, "schema")
            if typed_error is None:
                typed_error = _typed_error(schema, blob)
            by_schema.setdefault(schema, []).append(blob)
    if typed_error is not None:
        raise _Invalid(typed_error)
    return by_schema


_META_KEYS = ("schema", "package", "name")
# the keys of opm's blobs: none folds onto a meta key other than itself
_BLOB_KEYS = frozenset(("schema", "package", "name", "image", "properties", "relatedImages", "defaultChannel",
                        "icon", "description", "entries"))


def _meta(doc: Any) -> dict:
    """Every document needs a string `schema` (matched case-insensitively, like opm's Meta)."""
    if doc is None:
        raise _Invalid("object '' is missing root schema field")
    if not isinstance(doc, dict):
        raise _Invalid(f"json: cannot unmarshal {type(doc).__name__} into Go value of type map[string]interface {{}}")
    if not doc.keys() <= _BLOB_KEYS and any(
            k not in _META_KEYS and isinstance(k, str) and k.lower() in _META_KEYS for k in doc):  # "Schema"...
        for key in _META_KEYS:
            folded = [k for k in doc if isinstance(k, str) and k.lower() == key]
            if len(folded) > 1:
                raise _Invalid(f'duplicate keys for key "{key}": [{" ".join(folded)}]')
    schema = go_field(doc, "schema")
    if not isinstance(schema, str) or not schema:
        raise _Invalid(f"object '{_quoted(doc)}' is missing root schema field")
    return doc


def _quoted(doc: Any) -> str:
    """opm quotes the whole object (and its encoder's newline); a long one only as a short excerpt
    on one line, so a file's content never fills a message."""
    text = go_json(doc)
    return text + "\n" if len(text) <= _QUOTE_LIMIT else excerpt(text, _QUOTE_LIMIT)


_QUOTE_LIMIT = 200
_MESSAGE_LIMIT = 1000  # a loading error quotes names from the file: a 100 KB name is shown cut


# --- declarative config -> model ----------------------------------------------------------


def _to_model(by_schema: dict[str, list]) -> list[fbcmodel.Package]:
    """opm's ConvertToModel: packages, then channels, then bundles, then deprecations."""
    packages = _packages(by_schema.get("olm.package", []))
    entries = _channels(packages, by_schema.get("olm.channel", []))
    _bundles(packages, entries, by_schema.get("olm.bundle", []))
    by_package: dict[str, list[dict[str, dict]]] = {}
    for (p, _), chan in entries.items():
        by_package.setdefault(p, []).append(chan)
    for name, pkg in packages.items():
        # (an entry is in some channel's bundles exactly when the package has a bundle of its name)
        missing = sorted(e for chan in by_package.get(name, []) for e in chan if e not in pkg.bundle_names)
        if missing:
            raise _Invalid(f'no olm.bundle blobs found in package "{name}" for olm.channel entries '
                           f"[{' '.join(dict.fromkeys(missing))}]")
        if pkg.default_channel and pkg.default_channel not in pkg.channels:
            pkg.channels[pkg.default_channel] = fbcmodel.Channel(pkg.default_channel)
    _deprecations(packages, by_schema.get("olm.deprecations", []))
    return list(packages.values())


# (name, package, image, version, release, has bundle objects, related images)
_PlainBundle = tuple[str, str, str, str, str, bool, list[str]]
_BUNDLE_KEYS = frozenset(("schema", "name", "package", "image", "properties", "relatedImages"))
_RELATED_KEYS = frozenset(("name", "image"))
_OBJECT_KEYS = frozenset(("data",))
_STRING_PROPERTIES = {  # property types whose value is a struct of strings: their exact keys
    "olm.package": frozenset(("packageName", "version", "release")),
    "olm.package.required": frozenset(("packageName", "versionRange")),
    "olm.gvk": frozenset(("group", "kind", "version")),
    "olm.gvk.required": frozenset(("group", "kind", "version"))}
_GVK_KEYS = _STRING_PROPERTIES["olm.gvk"]


def _plain_bundle(blob: dict) -> _PlainBundle | None:
    """What `_typed_error` and `_bundle_properties` would accept and return for a bundle blob
    written the usual way (exact key names, string fields, one olm.package property naming its
    package): one pass of dict lookups instead of Go's case-folding field matching per field.

    None means "not that simple": the general path then runs and reports what opm reports."""
    if not _BUNDLE_KEYS.issuperset(blob):
        return None
    name, pkg, image = blob.get("name"), blob.get("package"), blob.get("image", "")
    props, related = blob.get("properties"), blob.get("relatedImages", [])
    if type(name) is not str or type(pkg) is not str or type(image) is not str or type(props) is not list \
            or type(related) is not list:
        return None
    package, has_objects = None, False
    try:  # a TypeError (a non-string joined, an unhashable type) also means "not that simple"
        for prop in props:
            if type(prop) is not dict or len(prop) != 2:
                return None
            typ, value = prop["type"], prop["value"]  # (two keys, both found: exactly type and value)
            if typ == "olm.gvk":  # most properties (checked first: the same test as below, fewer steps)
                if type(value) is not dict or not _GVK_KEYS.issuperset(value):
                    return None
                "".join(value.values())
                continue
            shape = _STRING_PROPERTIES.get(typ)
            if shape is not None:
                if type(value) is not dict or not shape.issuperset(value):
                    return None
                "".join(value.values())  # every value a string (join, in C, refuses anything else)
                if typ == "olm.package":
                    if package is not None:
                        return None
                    package = value
            elif typ == "olm.bundle.object":
                if type(value) is not dict or value.keys() != _OBJECT_KEYS or type(value["data"]) is not str \
                        or gotypes.property_error(typ, value):
                    return None
                has_objects = has_objects or bool(value["data"].strip("\r\n"))
            elif type(typ) is not str or typ in gotypes.PROPERTY_SHAPES:
                return None
    except (TypeError, KeyError):  # KeyError: a property of two keys that are not type and value
        return None
    if package is None or package.get("packageName", "") != pkg:
        return None
    images = []
    for rel in related:
        if type(rel) is not dict or not _RELATED_KEYS.issuperset(rel) or type(rel.get("name", "")) is not str \
                or type(rel.get("image", "")) is not str:
            return None
        images.append(rel.get("image", ""))
    return name, pkg, image, package.get("version", ""), package.get("release", ""), has_objects, images


def _typed_error(schema: str, blob: dict) -> str | None:
    """What opm's loader refuses before building the model: a field of the wrong JSON type, bad base64."""
    err = gotypes.blob_error(schema, blob)
    if err or schema != "olm.bundle":
        return err
    for i, prop in enumerate(field_list(blob, "properties")):
        if field_str(prop, "type") == "olm.bundle.object":
            err = gotypes.property_error("olm.bundle.object", go_field(prop, "value"))
            if err:
                return (f'read bundle objects: package "{field_str(blob, "package")}", bundle '
                        f'"{field_str(blob, "name")}": parse property at index {i} as bundle object: {err}')
    return None


def _deprecations(packages: dict[str, fbcmodel.Package], blobs: list[dict]) -> None:
    """opm's rules for `olm.deprecations`: one per known package, each entry naming something that exists."""
    seen: set[str] = set()
    for i, blob in enumerate(blobs):
        name = field_str(blob, "package")
        if not name:
            raise _Invalid(f"package name must be set for deprecation item {i}")
        pkg = packages.get(name)
        if pkg is None:
            raise _Invalid(f"cannot apply deprecations to an unknown package {_goq(name)}")
        if name in seen:
            raise _Invalid(f"expected a maximum of one deprecation per package: {_goq(name)}")
        seen.add(name)
        refs: set[tuple[str, str]] = set()
        for j, entry in enumerate(field_list(blob, "entries")):
            _deprecation_entry(pkg, j, entry, refs)


def _deprecation_entry(pkg: fbcmodel.Package, j: int, entry: dict, refs: set[tuple[str, str]]) -> None:
    ref = go_field(entry, "reference")
    schema, name = field_str(ref, "schema"), field_str(ref, "name")
    message = field_str(entry, "message")
    go_ref = f"declcfg.PackageScopedReference{{Schema:{_goq(schema)}, Name:{_goq(name)}}}"
    if not schema:
        raise _Invalid(f"schema must be set for deprecation entry [{j}] for package {_goq(pkg.name)}")
    if (schema, name) in refs:
        raise _Invalid(f"duplicate deprecation entry {go_ref} for package {_goq(pkg.name)}")
    refs.add((schema, name))
    if schema == "olm.bundle":
        if name not in pkg.bundle_names:
            raise _Invalid(f"cannot deprecate bundle {_goq(name)} for package {_goq(pkg.name)}: bundle not found")
        for ch in pkg.channels.values():
            if name in ch.bundles:
                ch.bundles[name].deprecation = message
    elif schema == "olm.channel":
        if name not in pkg.channels:
            raise _Invalid(f"cannot deprecate channel {_goq(name)} for package {_goq(pkg.name)}: channel not found")
        pkg.channels[name].deprecation = message
    elif schema == "olm.package":
        if name:
            raise _Invalid(f"package name must be empty for deprecated package {_goq(pkg.name)} "
                           f"(specified {_goq(name)})")
        pkg.deprecation = message
    else:
        raise _Invalid(f"cannot deprecate object {go_ref} referenced by entry {j} for package {_goq(pkg.name)}: "
                       "object schema unknown")


def _packages(blobs: list[dict]) -> dict[str, fbcmodel.Package]:
    packages: dict[str, fbcmodel.Package] = {}
    for blob in blobs:
        name = field_str(blob, "name")
        if not name:
            raise _Invalid("config contains package with no name")
        if name in packages:
            raise _Invalid(f'duplicate package "{name}"')
        errs = _dns1123_label_errors(name)
        if errs:
            raise _Invalid(f'invalid package name "{name}": [{" ".join(errs)}]')
        packages[name] = fbcmodel.Package(name, field_str(blob, "defaultChannel"))
    return packages


def _dns1123_label_errors(name: str) -> list[str]:
    """k8s IsDNS1123Label: the length, then "must not contain dots" when it is a valid subdomain."""
    errs = ["must be no more than 63 characters"] if len(name) > 63 else []
    if not _DNS1123.match(name):
        errs.append("must not contain dots" if _DNS1123_SUBDOMAIN.match(name) else _DNS1123_MSG)
    return errs


def _channels(packages: dict[str, fbcmodel.Package],
              blobs: list[dict | _PlainChannel]) -> dict[tuple[str, str], dict[str, _Edges]]:
    """(package, channel) -> entry name -> its edges; the model channels start empty."""
    entries: dict[tuple[str, str], dict[str, _Edges]] = {}
    for blob in blobs:
        if type(blob) is tuple:
            pkg, name, edges = blob
        else:
            pkg, name = field_str(blob, "package"), field_str(blob, "name")
            edges = [(field_str(e, "name"), _entry_edges(e)) for e in field_list(blob, "entries")]
        if pkg not in packages:
            raise _Invalid(f'unknown package "{pkg}" for channel "{name}"')
        if not name:
            raise _Invalid(f'package "{pkg}" contains channel with no name')
        if name in packages[pkg].channels:
            raise _Invalid(f'package "{pkg}" has duplicate channel "{name}"')
        packages[pkg].channels[name] = fbcmodel.Channel(name)
        seen: dict[str, _Edges] = {}
        for ename, entry_edges in edges:
            if ename in seen:
                raise _Invalid(f'invalid package "{pkg}", channel "{name}": duplicate entry "{ename}"')
            seen[ename] = entry_edges
        entries[(pkg, name)] = seen
    return entries


_Edges = tuple[str, list[str], str]  # a channel entry's (replaces, skips, skipRange)
_PlainChannel = tuple[str, str, list[tuple[str, _Edges]]]  # (package, name, [(entry name, edges)])
_CHANNEL_KEYS = frozenset(("schema", "name", "package", "entries"))


def _plain_channel(blob: dict) -> _PlainChannel | None:
    """What `_typed_error` accepts and `_channels` reads of a channel blob written the usual way
    (exact key names, string fields, no properties), in one pass: a 7,000-bundle catalog has as many
    channel entries, each otherwise checked against Go's struct shape and then read field by field.

    None means "not that simple": the general path then runs and reports what opm reports."""
    if not _CHANNEL_KEYS.issuperset(blob):
        return None
    pkg, name, entries = blob.get("package", ""), blob.get("name", ""), blob.get("entries", [])
    if type(pkg) is not str or type(name) is not str or type(entries) is not list:
        return None
    found = []
    for entry in entries:
        edges = _plain_edges(entry) if type(entry) is dict else None
        ename = entry.get("name", "") if edges is not None else None
        if type(ename) is not str:
            return None
        found.append((ename, edges))
    return pkg, name, found


def _bundles(packages: dict[str, fbcmodel.Package], entries: dict, blobs: list[dict | _PlainBundle]) -> None:
    """Each bundle (a `_PlainBundle` summary, or a blob for the general path) into its channels."""
    channels_of: dict[str, list[tuple[fbcmodel.Channel, dict[str, _Edges]]]] = {}  # built once per package
    for blob in blobs:
        quick = blob if type(blob) is tuple else None
        if quick is None:
            name, pkg = field_str(blob, "name"), field_str(blob, "package")
        else:
            name, pkg, image, version, release, has_objects, images = quick
        if not pkg:
            raise _Invalid(f'package name must be set for bundle "{name}"')
        if pkg not in packages:
            raise _Invalid(f'unknown package "{pkg}" for bundle "{name}"')
        names = packages[pkg].bundle_names  # (filled here, bundle by bundle)
        if name in names:
            raise _Invalid(f'package "{pkg}" has duplicate bundle "{name}"')
        names.add(name)
        if quick is None:
            version, release, has_objects = _bundle_properties(blob, name, pkg)
            image = field_str(blob, "image")
            images = [field_str(rel, "image") for rel in field_list(blob, "relatedImages")]
        _check_images(pkg, name, image, images)
        try:
            if not _PLAIN_VERSION.fullmatch(version):  # (a plain X.Y.Z always parses)
                fbcmodel.parse_version(version)
        except SemverError as exc:
            raise _Invalid(f'error parsing bundle "{name}" version "{version}": {exc}') from None
        try:
            if release:
                fbcmodel.parse_release(release)
        except SemverError as exc:
            raise _Invalid(f'error parsing bundle "{name}" release version "{release}": {exc}') from None
        found = False
        if pkg not in channels_of:
            channels_of[pkg] = [(ch, entries.get((pkg, n), {})) for n, ch in packages[pkg].channels.items()]
        for channel, channel_entries in channels_of[pkg]:
            edges = channel_entries.get(name)
            if edges is None:
                continue
            found = True
            replaces, skips, skip_range = edges
            channel.bundles[name] = fbcmodel.Bundle(
                name=name, version=version, replaces=replaces, skips=skips, skip_range=skip_range, image=image,
                has_objects=has_objects, package=pkg, release=release)
        if not found:
            raise _Invalid(f'package "{pkg}", bundle "{name}" not found in any channel entries')


_ENTRY_KEYS = frozenset(("name", "replaces", "skips", "skipRange"))


def _entry_edges(entry: dict) -> _Edges:
    """A channel entry's (replaces, skips, skipRange); exact key names (the usual case) are
    read directly, anything else through Go's case-folding field matching."""
    edges = _plain_edges(entry) if isinstance(entry, dict) else None
    if edges is not None:
        return edges
    return (field_str(entry, "replaces"), [s if isinstance(s, str) else "" for s in field_list(entry, "skips")],
            field_str(entry, "skipRange"))


def _plain_edges(entry: dict) -> _Edges | None:
    """The edges of an entry with exact key names and string fields, or None."""
    if _ENTRY_KEYS.issuperset(entry):
        replaces, skips, skip_range = entry.get("replaces", ""), entry.get("skips", []), entry.get("skipRange", "")
        if type(replaces) is str and type(skip_range) is str and type(skips) is list \
                and all(type(s) is str for s in skips):
            return replaces, skips, skip_range
    return None


def _bundle_properties(blob: dict, name: str, pkg: str) -> tuple[str, str, bool]:
    """(version, release, has bundle objects) with opm's checks (property.Parse, then the package rules)."""
    package_props, has_objects = [], False
    for i, prop in enumerate(field_list(blob, "properties")):
        typ, value = field_str(prop, "type"), go_field(prop, "value")
        if not _has_field(prop, "value"):
            err: str | None = "unexpected end of JSON input"
        else:  # bundle objects (megabytes of base64) were checked once already, at load
            err = None if typ == "olm.bundle.object" else gotypes.property_error(typ, value)
        if err:
            raise _Invalid(f'parse properties for bundle "{name}": parse property[{i}] of type "{typ}": {err}')
        if typ == "olm.package":
            package_props.append(value or {})
        elif typ == "olm.bundle.object" and isinstance(value, dict):  # (checked as base64 at load)
            has_objects = has_objects or bool(field_str(value, "data").strip("\r\n"))
    if len(package_props) != 1:
        raise _Invalid(f'package "{pkg}" bundle "{name}" must have exactly 1 "olm.package" property, '
                       f"found {len(package_props)}")
    prop_pkg = field_str(package_props[0], "packageName")
    if prop_pkg != pkg:
        raise _Invalid(f'package "{pkg}" does not match "olm.package" property "{prop_pkg}"')
    return field_str(package_props[0], "version"), field_str(package_props[0], "release"), has_objects


def _has_field(obj: dict, key: str) -> bool:
    if isinstance(obj, dict) and key in obj:  # the common case: no key-by-key folding
        return True
    return any(isinstance(k, str) and k.lower() == key for k in obj) if isinstance(obj, dict) else False


# distribution/reference grammar (docker image references)
_COMP = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN = (r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*"
           r"[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_REFERENCE = re.compile(rf"^((?:{_DOMAIN}/)?{_COMP}(?:/{_COMP})*)(?::[\w][\w.-]{{0,127}})?"
                        r"(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):([0-9a-fA-F]{32,}))?$")


def _check_images(pkg: str, bundle: str, image: str, related: list[str]) -> None:
    """The bundle's image, then each related image, in opm's order (known-good ones skipped:
    catalogs repeat related images across a package's bundles, 40% of them in the community one)."""
    if image not in _GOOD_REFS:
        _check_ref(pkg, bundle, "image", image)
    if not _GOOD_REFS.issuperset(related):
        for i, ref in enumerate(related):
            if ref not in _GOOD_REFS:
                _check_ref(pkg, bundle, f"relatedImages[{i}].image", ref)


def _check_ref(pkg: str, bundle: str, what: str, ref: str) -> None:
    """Refuse `ref` with opm's message, or remember it as good."""
    if not _pinned_ref_ok(ref):
        _check_image(pkg, bundle, what, ref)
    if len(_GOOD_REFS) < _GOOD_REFS_MAX:
        _GOOD_REFS.add(ref)


_SHA256_DIGEST = re.compile(r"sha256:[0-9a-fA-F]{64}")
_TAG = re.compile(r"[\w][\w.-]{0,127}")


def _pinned_ref_ok(ref: str) -> bool:
    """True for a `name[:tag][@sha256:<64 hex>]` reference that is valid (False: ask reference_error).

    Each bundle has its own tag or digest, but the name part repeats across bundles: it is
    checked once. The split is the grammar's own: a tag has no `:` or `/`, a digest no `@`."""
    rest, at, digest = ref.partition("@")
    if at and _SHA256_DIGEST.fullmatch(digest) is None:
        return False
    name, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:
        name = rest
    elif _TAG.fullmatch(tag) is None:
        return False
    return _name_ok(name)


_NAME = re.compile(rf"(?:{_DOMAIN}/)?{_COMP}(?:/{_COMP})*")


@functools.lru_cache(maxsize=65536)
def _name_ok(name: str) -> bool:
    """A repository name alone (no tag, no digest) that reference_error would accept."""
    return len(name) <= 255 and _NAME.fullmatch(name) is not None


_GOOD_REFS: set[str] = {""}  # references already found valid (catalogs repeat them across bundles)
_GOOD_REFS_MAX = 65536  # (a long-running worker validates many catalogs: the set stays bounded)


def _check_image(pkg: str, bundle: str, what: str, ref: str) -> None:
    """opm >= 1.64 rejects image references that do not parse (empty is allowed)."""
    if not ref:
        return
    reason = reference_error(ref)
    if reason:
        raise _Invalid(f'package "{pkg}" bundle "{bundle}" {what}: invalid image pull spec "{ref}": {reason}')


@functools.lru_cache(maxsize=65536)  # catalogs repeat the same related images across bundles
def reference_error(ref: str) -> str | None:
    """Why `ref` is not a valid image pull spec (distribution/reference grammar), or None."""
    match = _REFERENCE.match(ref)
    if match is None:
        if _REFERENCE.match(ref.lower()):
            return "invalid reference format: repository name must be lowercase"
        return "invalid reference format"
    if len(match.group(1)) > 255:
        return "repository name must not be more than 255 characters"
    algo, hexpart = match.group(2), match.group(3)
    if algo is not None:
        sizes = {"sha256": 64, "sha384": 96, "sha512": 128}
        if algo not in sizes:
            return "unsupported digest algorithm"
        if len(hexpart) != sizes[algo]:
            return "invalid checksum digest length"
    return None
