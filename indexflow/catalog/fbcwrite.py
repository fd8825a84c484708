"""FBC text exactly as opm writes it: Go's JSON encoder (4-space indent, no HTML escaping) or YAML.

Property values reach opm's writer as raw JSON (json.RawMessage): they are compacted and
re-indented but never decoded, so escapes already in them (`\\u003c` from the db) survive while
typed fields (names, images) are written with literal `<`. Everything is therefore produced as
compact JSON first, with raw values spliced in verbatim, and then indented token by token.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from indexflow.catalog.gojson import go_float

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\],:]|[^\s"{}\[\],:]+')
_BRACKETS = frozenset("{}[]")
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\\u2028\u2029]')


class Raw(str):
    """JSON text that must be emitted verbatim (only whitespace between tokens changes)."""


class Properties(list):
    """A blob's `properties` as (type, raw JSON value) pairs: rendered without a dict per property
    (a catalog has tens of thousands), each block cached (gvk and package values repeat)."""


class BundleBlob(dict):
    """An olm.bundle blob as migrate builds it: string schema, name, package and image, then
    `properties` (Properties), then optionally `relatedImages` ({"name", "image"} string dicts).
    blob_json writes this fixed shape from a template (what _pretty writes, without a call per level)."""


class ChannelBlob(dict):
    """An olm.channel blob as migrate builds it: string schema, name and package, then `entries`,
    dicts of a string `name` and optional `replaces`, `skips` (strings) and `skipRange`, in that order."""


@functools.lru_cache(maxsize=65536)
def compact_raw(text: str) -> str:
    """Go json.Compact without HTML escaping: drop whitespace outside strings."""
    return "".join(_TOKEN.findall(text))


@functools.lru_cache(maxsize=65536)  # keys and property types repeat in every blob
def go_string(text: str) -> str:
    """A JSON string as Go's encoder writes it with SetEscapeHTML(false)."""
    if not _NEEDS_ESCAPE.search(text):
        return '"' + text + '"'
    return json.dumps(text, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def compact(obj: Any) -> str:
    """Compact JSON of dicts (insertion order), lists, strings, ints, bools and Raw values."""
    if isinstance(obj, Raw):
        return compact_raw(obj)
    if isinstance(obj, Properties):
        return "[" + ",".join('{"type":' + go_string(t) + ',"value":' + compact_raw(v) + "}" for t, v in obj) + "]"
    if isinstance(obj, str):
        return go_string(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(go_string(k) + ":" + compact(v) for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(compact(v) for v in obj) + "]"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if obj is None:
        return "null"
    if isinstance(obj, float):
        return go_float(obj)
    return str(obj)


@functools.lru_cache(maxsize=65536)  # gvk/package values repeat across a package's bundles
def indent(text: str, depth: int = 0, unit: str = "    ") -> str:
    """Go json.Indent of JSON text starting at `depth`: empty objects/arrays stay `{}` / `[]`."""
    tokens = _TOKEN.findall(text)
    if len(tokens) > 2 and tokens[0] == "{" and tokens[-1] == "}" and _BRACKETS.isdisjoint(tokens[1:-1]):
        pad = "\n" + unit * (depth + 1)  # a flat object (most property values): no depth to track
        body = ["," + pad if tok == "," else ": " if tok == ":" else tok for tok in tokens[1:-1]]
        return "{" + pad + "".join(body) + "\n" + unit * depth + "}"
    out: list[str] = []
    for i, tok in enumerate(tokens):
        if tok == "{" or tok == "[":
            if tokens[i + 1] in ("}", "]"):
                out.append(tok)
            else:
                depth += 1
                out.append(tok + "\n" + unit * depth)
        elif tok == "}" or tok == "]":
            if tokens[i - 1] in ("{", "["):
                out.append(tok)
            else:
                depth -= 1
                out.append("\n" + unit * depth + tok)
        elif tok == ",":
            out.append(",\n" + unit * depth)
        elif tok == ":":
            out.append(": ")
        else:
            out.append(tok)
    return "".join(out)


def _raw_pretty(raw: str, depth: int) -> str:
    """Indent a raw value; the common `{"data":"<base64>"}` bundle object and flat objects of plain
    strings (olm.package: one per bundle, never a cache hit) skip tokenising."""
    if raw.startswith('{"data":"') and raw.endswith('"}') and raw.count('"') == 4:
        pad = "    " * depth
        return '{\n' + pad + '    "data": ' + raw[8:-1] + "\n" + pad + "}"
    if _FLAT_OBJECT.fullmatch(raw):  # no `"`, `:` or `,` inside strings: `":"`, `","` only between them
        pad = "\n" + "    " * (depth + 1)
        body = raw[1:-1].replace('":"', '": "').replace('","', '",' + pad + '"')
        return "{" + pad + body + "\n" + "    " * depth + "}"
    return indent(raw, depth)


_PLAIN_STR = r'"[^"\\\x00-\x1f:,]*"'
_FLAT_OBJECT = re.compile(rf"\{{{_PLAIN_STR}:{_PLAIN_STR}(?:,{_PLAIN_STR}:{_PLAIN_STR})*\}}")


def _property(typ: str, value: str, depth: int) -> str:
    """One property object at `depth`; big values (bundle objects) are unique: never cached."""
    return (_small_property if len(value) < 1024 else _property_text)(typ, value, depth)


def _property_text(typ: str, value: str, depth: int) -> str:
    pad = "\n" + "    " * (depth + 1)
    return ("{" + pad + '"type": ' + go_string(typ) + "," + pad + '"value": ' + _raw_pretty(value, depth + 1)
            + "\n" + "    " * depth + "}")


_small_property = functools.lru_cache(maxsize=65536)(_property_text)


def _pretty(obj: Any, depth: int) -> str:
    """Indented JSON text (what indent(compact(obj)) gives, without re-tokenising).

    Plain dicts and lists (nearly every container of a blob) are joined here with their string
    members written in place: a call per leaf string was most of a catalog's rendering time."""
    kind = type(obj)
    if kind is str:
        return go_string(obj)
    if (kind is dict or kind is list) and obj:
        sub = depth + 1
        pad = "\n" + "    " * sub
        if kind is dict:
            items = [go_string(k) + ": " + (go_string(v) if type(v) is str else _pretty(v, sub))
                     for k, v in obj.items()]
            return "{" + pad + ("," + pad).join(items) + "\n" + "    " * depth + "}"
        items = [go_string(v) if type(v) is str else _pretty(v, sub) for v in obj]
        return "[" + pad + ("," + pad).join(items) + "\n" + "    " * depth + "]"
    return _pretty_other(obj, depth)


def _pretty_other(obj: Any, depth: int) -> str:
    """_pretty of everything but a non-empty plain dict or list (Raw, Properties, tuples, scalars)."""
    if isinstance(obj, Raw):
        return _raw_pretty(obj, depth)
    if not obj or not isinstance(obj, (dict, list, tuple)):
        return compact(obj)
    pad = "\n" + "    " * (depth + 1)
    if isinstance(obj, Properties):
        items = [_property(t, v, depth + 1) for t, v in obj]
    elif isinstance(obj, dict):
        items = [go_string(k) + ": " + _pretty(v, depth + 1) for k, v in obj.items()]
    else:
        items = [_pretty(v, depth + 1) for v in obj]
    ends = "{}" if isinstance(obj, dict) else "[]"
    return ends[0] + pad + ("," + pad).join(items) + "\n" + "    " * depth + ends[1]


def blob_json(obj: dict) -> str:
    """One blob of a streamable catalog.json (Go Encoder.Encode: value plus newline)."""
    kind = type(obj)
    if kind is BundleBlob:
        return _bundle_text(obj)
    if kind is ChannelBlob:
        return _channel_text(obj)
    return _pretty(obj, 0) + "\n"


def _head_text(blob: dict, keys: tuple[str, ...]) -> str:
    """`{` and the leading string members at depth 1, up to the key of the list that follows (names
    and images are unique: with nothing to escape in any, they are quoted in place, not cached)."""
    values = [blob[k] for k in keys[:-1]]
    quoted = [go_string(v) for v in values] if _NEEDS_ESCAPE.search("".join(values)) else \
        ['"' + v + '"' for v in values]
    return "{" + "".join(["\n    " + _KEY_TEXT[k] + q + "," for k, q in zip(keys, quoted)]) \
        + "\n    " + _KEY_TEXT[keys[-1]]


_BUNDLE_HEAD = ("schema", "name", "package", "image", "properties")
_CHANNEL_HEAD = ("schema", "name", "package", "entries")
_KEY_TEXT = {k: go_string(k) + ": " for k in _BUNDLE_HEAD + _CHANNEL_HEAD + ("relatedImages",)}


def _bundle_text(blob: BundleBlob) -> str:
    """(Parts joined once: a blob is kilobytes, and each `+=` would copy it again.)"""
    props = blob["properties"]
    parts = [_head_text(blob, _BUNDLE_HEAD)]
    if props:
        texts = [_small_property(t, v, 2) if len(v) < 1024 else _property_text(t, v, 2) for t, v in props]
        parts += ("[\n        ", ",\n        ".join(texts), "\n    ]")
    else:
        parts.append("[]")
    if "relatedImages" in blob:
        related = blob["relatedImages"]
        if not related:
            parts.append(',\n    "relatedImages": []')
        elif _NEEDS_ESCAPE.search("".join([r["name"] + r["image"] for r in related])):
            parts += (',\n    "relatedImages": ' + _RELATED_OPEN, _RELATED_SEP.join(
                [go_string(r["name"]) + _IMAGE_KEY + go_string(r["image"]) for r in related]), "\n        }\n    ]")
        else:  # (the usual case: nothing to escape, each reference unique: quoted in place, not cached)
            parts += (',\n    "relatedImages": ' + _RELATED_OPEN + '"', _PLAIN_RELATED_SEP.join(
                [r["name"] + _PLAIN_IMAGE_KEY + r["image"] for r in related]), '"\n        }\n    ]')
    parts.append("\n}\n")
    return "".join(parts)


_RELATED_OPEN = '[\n        {\n            "name": '
_RELATED_SEP = '\n        },\n        {\n            "name": '
_IMAGE_KEY = ',\n            "image": '
_PLAIN_RELATED_SEP = '"' + _RELATED_SEP + '"'
_PLAIN_IMAGE_KEY = '"' + _IMAGE_KEY + '"'
_ENTRY_SEP = ",\n            "


def _channel_text(blob: ChannelBlob) -> str:
    entries = blob["entries"]
    out = _head_text(blob, _CHANNEL_HEAD)
    if not entries:
        return out + "[]\n}\n"
    texts = []
    for entry in entries:
        text = '{\n            "name": ' + go_string(entry["name"])
        if "replaces" in entry:
            text += _ENTRY_SEP + '"replaces": ' + go_string(entry["replaces"])
        if "skips" in entry:
            skips = entry["skips"]
            text += _ENTRY_SEP + '"skips": ' + ("[\n                " + ",\n                ".join(
                [go_string(s) for s in skips]) + "\n            ]" if skips else "[]")
        if "skipRange" in entry:
            text += _ENTRY_SEP + '"skipRange": ' + go_string(entry["skipRange"])
        texts.append(text + "\n        }")
    return out + "[\n        " + ",\n        ".join(texts) + "\n    ]\n}\n"


@functools.cache
def _go_yaml_dumper() -> type:
    """PyYAML's block style matches go-yaml v2 except that go-yaml quotes with double quotes.

    Built on first use so JSON-only callers never import PyYAML."""
    import yaml

    class GoYamlDumper(yaml.SafeDumper):
        def choose_scalar_style(self) -> str:
            style = super().choose_scalar_style()
            return '"' if style == "'" else style

    return GoYamlDumper


def blob_yaml(obj: dict) -> str:
    """One YAML document (`---` first), keys sorted at every level like sigs.k8s.io/yaml."""
    import yaml

    data = json.loads(compact(obj))
    return "---\n" + yaml.dump(data, Dumper=_go_yaml_dumper(), sort_keys=True, default_flow_style=False,
                               allow_unicode=True, width=80)
