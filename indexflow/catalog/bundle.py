"""Parse an unpacked operator bundle (manifests/ + metadata/) into the rows opm writes.

All JSON text is produced here, once, in Go's encoding so that `add` only has to insert it.
Bundle content is untrusted: files are read under the size caps of limits.py, YAML aliasing and
nesting are bounded (fastyaml.py), and a file that breaks a limit is named in one sentence.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from indexflow.catalog.fastyaml import FALLBACK, YamlLimitError, check_limits, load_first
from indexflow.catalog.limits import max_bundle_bytes, max_file_bytes
from indexflow.catalog.gojson import compact_raw, go_json, is_plain
from indexflow.catalog.k8syaml import SeparatorError, first_chunk
from indexflow.errors import CatalogError

PKG_KEY = "operators.operatorframework.io.bundle.package.v1"
CHANNELS_KEY = "operators.operatorframework.io.bundle.channels.v1"
DEFAULT_KEY = "operators.operatorframework.io.bundle.channel.default.v1"

GVK = tuple[str, str, str, str]  # group, version, kind, plural
T = TypeVar("T")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present: 10x faster
    """YAML 1.1 like go-yaml v2, except timestamps stay strings (as they do when Go decodes to interface{})."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class Bundle:
    """One bundle as opm stores it (texts already Go-encoded)."""

    name: str
    package: str
    channels: list[str]
    default_channel: str
    version: str
    replaces: str
    skips: list[str]
    skiprange: str
    substitutesfor: str
    bundlepath: str
    csv_json: bytes
    bundle_json: bytes
    related_images: list[str] = field(default_factory=list)
    properties: list[tuple[str, str]] = field(default_factory=list)
    dependencies: list[tuple[str, str]] = field(default_factory=list)
    provided: list[GVK] = field(default_factory=list)
    required: list[GVK] = field(default_factory=list)


BundleFiles = dict[str, bytes]  # "manifests/<file>" / "metadata/<file>" -> content (direct children only)


def _text(data: bytes) -> str | None:
    """The first document's text as opm cuts it (k8syaml.py), universal newlines; None when the file
    is not UTF-8 or its separator is malformed (opm skips such a file)."""
    try:
        return first_chunk(data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"))
    except (UnicodeDecodeError, SeparatorError):
        return None


def _decode(text: str | None) -> Any:
    """First YAML/JSON document of a file, or None when it does not decode (opm skips it).

    Raises YamlLimitError when the document aliases or nests beyond the budget."""
    if text is None:
        return None
    try:
        if text.lstrip().startswith("{"):
            return json.loads(text)
        check_limits(text, first_only=True)
        for doc in yaml.load_all(text, Loader=_Loader):
            return doc
    except (yaml.YAMLError, ValueError):
        return None
    except RecursionError:
        raise YamlLimitError("document nested too deeply") from None
    return None


def _decode_named(name: str, decode: Any, data: bytes) -> Any:
    """`decode(text)`, with a broken limit reported as one sentence naming the file."""
    try:
        return decode(_text(data))
    except YamlLimitError as exc:
        raise CatalogError(f"{name}: {exc}") from None


def _decode_manifest(text: str | None) -> tuple[Any, bool]:
    """(first document with Go's numbers, plain) — the fast reader, PyYAML when it declines."""
    if text is not None and not text.lstrip().startswith("{"):
        try:
            doc, plain = load_first(text)
        except yaml.YAMLError:
            return None, True
        except RecursionError:
            raise YamlLimitError("document nested too deeply") from None
        if doc is not FALLBACK:
            return doc, plain
    doc = _normalise_numbers(_decode(text))
    return doc, is_plain(doc)


def _normalise_numbers(obj: Any) -> Any:
    """Go round-trips YAML through JSON into int64/float64: integral floats become ints."""
    if isinstance(obj, dict):
        return {k: _normalise_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_normalise_numbers(v) for v in obj]
    if isinstance(obj, float) and obj == obj and abs(obj) < 2**63 and obj == int(obj):
        return int(obj)
    return obj


def _in(files: BundleFiles, folder: str) -> list[tuple[str, bytes]]:
    """(file name, content) of `folder`'s files, sorted by name."""
    prefix = folder + "/"
    return sorted((k[len(prefix):], v) for k, v in files.items() if k.startswith(prefix))


@dataclass(frozen=True)
class _Manifest:
    """What a bundle needs of one manifest that decodes to a map: its kind, the APIs it provides when
    it is a CRD, its stored JSON text (or why it cannot be stored), and the object itself for a CSV."""

    kind: Any
    crd_apis: tuple[GVK, ...]
    text: str | None
    error: str | None
    csv: dict | None = None


_NOT_A_MAP = _Manifest(None, (), None, None)  # a file opm skips: not a map, not UTF-8, no document


class ManifestMemo:
    """Manifests already decoded in one add, by their exact bytes, up to `budget` bytes (kept and
    stored text); `add` makes one per call, so nothing outlives it.

    Operators ship the same CRD files in version after version (45% of the corpus bundles' manifest
    files are repeats, 79% of the synthetic 2,000), and decoding them is most of add's CPU. A CSV is
    never kept: each is unique, and it is the one object held whole. When full, it starts over."""

    def __init__(self, budget: int = 64 << 20) -> None:
        self.budget = budget
        self._entries: dict[bytes, _Manifest] = {}
        self._size = 0
        self._lock = threading.Lock()

    def get(self, data: bytes) -> _Manifest | None:
        return self._entries.get(data)

    def put(self, data: bytes, manifest: _Manifest) -> None:
        size = len(data) + len(manifest.text or "")
        if manifest.csv is not None or size > self.budget // 8:
            return
        with self._lock:
            if self._size + size > self.budget:
                self._entries, self._size = {}, 0
            self._entries[data] = manifest
            self._size += size


def _stored_text(obj: dict, plain: bool) -> tuple[str | None, str | None]:
    """(Go's JSON of `obj` + newline, None) or (None, why it cannot be stored as JSON)."""
    try:
        return go_json(obj, plain=plain) + "\n", None
    except ValueError as exc:  # .inf / .nan: Go's JSON encoder refuses them too
        return None, f"bundle manifests cannot be stored as JSON: {exc}"
    except RecursionError:
        return None, "bundle manifests cannot be stored as JSON: nested too deeply"


def _read_manifest(name: str, data: bytes, memo: ManifestMemo) -> _Manifest:
    """One manifest file, from the memo when these exact bytes were decoded before."""
    known = memo.get(data)
    if known is not None:
        return known
    obj, plain = _decode_named(f"manifests/{name}", _decode_manifest, data)
    if not isinstance(obj, dict):
        manifest = _NOT_A_MAP
    else:
        kind = obj.get("kind")
        text, error = _stored_text(obj, plain)
        if kind == "ClusterServiceVersion":
            manifest = _Manifest(kind, (), text, error, csv=obj)
        else:
            apis = _shaped(f"manifests/{name}", _crd_apis, obj) if kind == "CustomResourceDefinition" else []
            manifest = _Manifest(kind, tuple(apis), text, error)
    memo.put(data, manifest)
    return manifest


def _read_manifests(files: BundleFiles, memo: ManifestMemo) -> list[_Manifest]:
    """Every manifest that decodes to a map, in file name order (dotfiles skipped)."""
    decoded = (_read_manifest(name, data, memo) for name, data in _in(files, "manifests")
               if not name.startswith("."))
    manifests = [m for m in decoded if m is not _NOT_A_MAP]
    if not manifests:
        raise CatalogError("no bundle objects found")
    return manifests


def _shaped(where: str, read: Callable[..., T], *args: Any) -> T:
    """`read(*args)`, with a field of the wrong type (a list where a map belongs, ...) reported as one
    sentence naming `where` instead of a traceback: opm refuses such a bundle too."""
    try:
        return read(*args)
    except (AttributeError, TypeError) as exc:
        raise CatalogError(f"{where}: a field has the wrong type ({exc})") from None


def _read_metadata(files: BundleFiles) -> tuple[dict, list, list]:
    """(annotations, dependencies, properties) — the first metadata file matching each role wins."""
    annotations: dict | None = None
    deps: list | None = None
    props: list | None = None
    for name, data in _in(files, "metadata"):
        doc = _decode_named(f"metadata/{name}", _decode, data)
        if not isinstance(doc, dict):
            continue
        ann = doc.get("annotations")
        if annotations is None and isinstance(ann, dict) and \
                any(k in ann for k in (PKG_KEY, CHANNELS_KEY, DEFAULT_KEY)):
            annotations = ann
        if deps is None and isinstance(doc.get("dependencies"), list) and doc["dependencies"]:
            deps = doc["dependencies"]
        if props is None and isinstance(doc.get("properties"), list) and doc["properties"]:
            props = doc["properties"]
    if annotations is None:
        raise CatalogError("Could not find annotations file")
    return annotations, deps or [], props or []


def dir_files(bundle_dir: Path) -> BundleFiles:
    """The files of an unpacked bundle that opm reads: direct children of manifests/ and metadata/.

    Links are followed only inside the bundle; a FIFO or device is refused (never read, so it
    cannot hang the read); each file and the whole bundle are read under the size caps."""
    if not bundle_dir.is_dir():
        raise CatalogError(f"bundle directory {bundle_dir} does not exist")
    root = bundle_dir.resolve()
    files: BundleFiles = {}
    budget = max_bundle_bytes()
    for folder in ("manifests", "metadata"):
        sub = bundle_dir / folder
        for path in sorted(sub.iterdir()) if sub.is_dir() else []:
            if path.is_dir() or not path.exists() and path.is_symlink():
                continue  # a dangling link is a file opm cannot open either: skipped
            name = f"{folder}/{path.name}"
            real = path.resolve()
            if real != root and root not in real.parents:
                raise CatalogError(f"bundle file {name} is a link to outside the bundle directory {bundle_dir}")
            data = _read_file(real, name, max_file_bytes(), budget)
            budget -= len(data)
            if budget < 0:  # _read_file read one byte more than was left
                raise CatalogError(f"bundle files pass the {max_bundle_bytes()}-byte limit of one bundle at {name} "
                                   f"(INDEXFLOW_MAX_BUNDLE_BYTES)")
            files[name] = data
    return files


def _read_file(path: Path, name: str, limit: int, left: int) -> bytes:
    """A regular file's bytes up to `limit` (and `left` of the bundle's budget, +1 byte to notice);
    FIFOs and devices refused without blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CatalogError(f"cannot read bundle file {name}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CatalogError(f"bundle file {name} is not a regular file (a FIFO or device)")
        try:
            data = fh.read(min(limit, left) + 1)
        except OSError as exc:
            raise CatalogError(f"cannot read bundle file {name}: {errno.errorcode.get(exc.errno, exc)}") from None
    if len(data) > limit:
        raise CatalogError(f"bundle file {name} is larger than the {limit}-byte limit of one manifest "
                           f"(INDEXFLOW_MAX_MANIFEST_BYTES)")
    return data


def _crd_apis(obj: dict) -> list[GVK]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v.get("name", "") for v in spec.get("versions") or [] if isinstance(v, dict)]
    if obj.get("apiVersion", "").endswith("/v1beta1") and spec.get("version"):
        versions.append(spec["version"])
    return [(spec.get("group", ""), v, names.get("kind", ""), names.get("plural", "")) for v in versions]


def _csv_apis(csv: dict, role: str) -> tuple[list[GVK], list[GVK]]:
    """(CRDs, APIServices) of `spec.*definitions.<role>` as (group, version, kind, plural)."""
    spec = csv.get("spec") or {}
    crds = []
    for d in (spec.get("customresourcedefinitions") or {}).get(role) or []:
        plural, _, group = str(d.get("name", "")).partition(".")
        crds.append((group, str(d.get("version", "")), str(d.get("kind", "")), plural))
    apis = [(str(d.get("group", "")), str(d.get("version", "")), str(d.get("kind", "")), str(d.get("name", "")))
            for d in (spec.get("apiservicedefinitions") or {}).get(role) or []]
    return crds, apis


def _go_map(keys: list[GVK]) -> str:
    """Go's %v of map[APIKey]struct{} (fmt sorts map keys)."""
    return "map[" + " ".join(f"{{{g} {v} {k} {p}}}:{{}}" for g, v, k, p in sorted(set(keys))) + "]"


def _provided(name: str, csv: dict, crds: list[GVK]) -> list[GVK]:
    """The CRDs' APIs (`crds`, in file order) and the CSV's owned APIServices; every owned CRD must be there."""
    provided = list(crds)
    owned_crds, owned_apis = _csv_apis(csv, "owned")
    have = {(g, v, k) for g, v, k, _ in provided}
    for g, v, k, p in owned_crds:
        if (g, v, k) not in have:
            raise CatalogError(f"error checking provided apis in bundle {name}: couldn't find "
                               f"{g}/{v}/{k} ({p}) in bundle. found: {_go_map(provided)}")
    return list(dict.fromkeys(provided + owned_apis))


def _images(csv: dict, bundlepath: str) -> list[str]:
    spec = csv.get("spec") or {}
    images = [bundlepath] if bundlepath else []
    install = spec.get("install") or {}
    if install.get("strategy") == "deployment":
        for dep in (install.get("spec") or {}).get("deployments") or []:
            pod = (((dep or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
            for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                images.append(str((c or {}).get("image") or ""))
    images += [str((r or {}).get("image") or "") for r in spec.get("relatedImages") or []]
    return list(dict.fromkeys(images))


def _gvk_value(g: str, v: str, k: str) -> str:
    return go_json({"group": g, "kind": k, "version": v})  # struct order happens to be sorted


def _properties(name: str, package: str, version: str, csv: dict, props_file: list,
                provided: list[GVK]) -> list[tuple[str, str]]:
    out = [(str(p.get("type", "")), go_json(p.get("value"))) for p in props_file if isinstance(p, dict)]
    out.append(("olm.package", go_json({"packageName": package, "version": version}, sort_keys=False)))
    raw = ((csv.get("metadata") or {}).get("annotations") or {}).get("olm.properties")
    if raw:
        try:
            entries = json.loads(raw)
        except ValueError as exc:
            raise CatalogError(f"error parsing olm.properties annotation of bundle {name}: {exc}") from exc
        for entry in entries if isinstance(entries, list) else []:
            value = json.dumps((entry or {}).get("value"), ensure_ascii=False)
            out.append((str((entry or {}).get("type", "")), compact_raw(value)))
    out += [("olm.gvk", _gvk_value(g, v, k)) for g, v, k, _ in provided]
    return list(dict.fromkeys(out))


def _dependencies(deps_file: list, required: list[GVK]) -> list[tuple[str, str]]:
    out = [(str(d.get("type", "")), go_json(d.get("value"))) for d in deps_file if isinstance(d, dict)]
    out += [("olm.gvk", _gvk_value(g, v, k)) for g, v, k, _ in required]
    return list(dict.fromkeys(out))


def load_bundle_dir(path: Path | str, bundle_path_ref: str, memo: ManifestMemo | None = None) -> Bundle:
    """Read an unpacked bundle directory; `bundle_path_ref` is the image ref stored as bundlepath."""
    return load_bundle_files(dir_files(Path(path)), bundle_path_ref, memo)


def load_bundle_files(files: BundleFiles, bundle_path_ref: str, memo: ManifestMemo | None = None) -> Bundle:
    """A bundle from its manifests/ and metadata/ files (from a directory or straight from an image).

    Loading many bundles, pass one `memo` to all: files seen before are not decoded again."""
    manifests = _read_manifests(files, memo or ManifestMemo(0))
    csv = next((m.csv for m in manifests if m.kind == "ClusterServiceVersion"), None)
    if csv is None:
        raise CatalogError("no csv in bundle")
    error = next((m.error for m in manifests if m.error), None)
    if error:
        raise CatalogError(error)
    annotations, deps_file, props_file = _read_metadata(files)
    crds = [api for m in manifests if m.kind == "CustomResourceDefinition" for api in m.crd_apis]
    return _shaped("the ClusterServiceVersion", _bundle, csv, manifests, crds, annotations, deps_file, props_file,
                   bundle_path_ref)


def _bundle(csv: dict, manifests: list[_Manifest], crds: list[GVK], annotations: dict, deps_file: list,
            props_file: list, bundle_path_ref: str) -> Bundle:
    meta = csv.get("metadata") or {}
    name = str(meta.get("name") or "")
    if not name:
        raise CatalogError("csv name not found")
    ann = meta.get("annotations") or {}
    spec = csv.get("spec") or {}
    version = "" if spec.get("version") is None else str(spec.get("version"))
    package = str(annotations.get(PKG_KEY) or "")
    provided = _provided(name, csv, crds)
    required_crds, required_apis = _csv_apis(csv, "required")
    return Bundle(
        name=name, package=package,
        channels=str(annotations.get(CHANNELS_KEY) or "").split(",") if annotations.get(CHANNELS_KEY) else [],
        default_channel=str(annotations.get(DEFAULT_KEY) or ""),
        version=version, replaces=str(spec.get("replaces") or ""),
        skips=[str(s) for s in spec.get("skips") or []],
        skiprange=str(ann.get("olm.skipRange") or ""), substitutesfor=str(ann.get("olm.substitutesFor") or ""),
        bundlepath=bundle_path_ref,
        csv_json=next(m.text for m in manifests if m.csv is csv).encode(),
        bundle_json="".join(m.text for m in manifests).encode(),
        related_images=_images(csv, bundle_path_ref),
        properties=_properties(name, package, version, csv, props_file, provided),
        dependencies=_dependencies(deps_file, required_crds + required_apis),
        provided=provided, required=list(dict.fromkeys(required_crds + required_apis)),
    )
