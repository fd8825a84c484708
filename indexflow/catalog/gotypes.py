"""The shapes opm's Go structs give FBC blobs, and Go's texts when a value does not fit.

opm decodes each `olm.package` / `olm.channel` / `olm.bundle` / `olm.deprecations` blob into a
typed struct with `encoding/json`: a field of the wrong JSON type (`"relatedImages": {}`) or a
`[]byte` field that is not standard base64 (a package icon) fails the load. This module checks a
parsed blob against the same shapes and returns Go's message, so `fbc validate` fails where opm does.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Callable

# A shape is a Go type: "string", "bytes" ([]uint8, base64 text), "raw" (json.RawMessage: anything),
# ("list", shape, go type name), or ("struct", go type name, {json key: shape}).
_STR = "string"
_PROPERTY = ("struct", "property.Property", {"type": _STR, "value": "raw"})
_PROPERTIES = ("list", _PROPERTY, "[]property.Property")
_ICON = ("struct", "declcfg.Icon", {"base64data": "bytes", "mediatype": _STR})
_ENTRY = ("struct", "declcfg.ChannelEntry", {"name": _STR, "replaces": _STR, "skips": ("list", _STR, "[]string"),
                                     "skipRange": _STR})
_RELATED = ("struct", "declcfg.RelatedImage", {"name": _STR, "image": _STR})
_REFERENCE = ("struct", "declcfg.PackageScopedReference", {"schema": _STR, "name": _STR})
_DEPRECATION_ENTRY = ("struct", "declcfg.DeprecationEntry", {"reference": _REFERENCE, "message": _STR})

SHAPES: dict[str, tuple[str, tuple]] = {
    "olm.package": ("package", ("struct", "declcfg.Package", {
        "schema": _STR, "name": _STR, "defaultChannel": _STR, "icon": _ICON, "description": _STR,
        "properties": _PROPERTIES})),
    "olm.channel": ("channel", ("struct", "declcfg.Channel", {
        "schema": _STR, "name": _STR, "package": _STR, "entries": ("list", _ENTRY, "[]declcfg.ChannelEntry"),
        "properties": _PROPERTIES})),
    "olm.bundle": ("bundle", ("struct", "declcfg.Bundle", {
        "schema": _STR, "name": _STR, "package": _STR, "image": _STR, "properties": _PROPERTIES,
        "relatedImages": ("list", _RELATED, "[]declcfg.RelatedImage")})),
    "olm.deprecations": ("deprecation", ("struct", "declcfg.Deprecation", {
        "schema": _STR, "package": _STR, "entries": ("list", _DEPRECATION_ENTRY, "[]declcfg.DeprecationEntry")})),
}

PROPERTY_SHAPES: dict[str, tuple] = {
    "olm.package": ("struct", "property.Package", {"packageName": _STR, "version": _STR, "release": _STR}),
    "olm.package.required": ("struct", "property.PackageRequired", {"packageName": _STR, "versionRange": _STR}),
    "olm.gvk": ("struct", "property.GVK", {"group": _STR, "kind": _STR, "version": _STR}),
    "olm.gvk.required": ("struct", "property.GVKRequired", {"group": _STR, "kind": _STR, "version": _STR}),
    "olm.bundle.object": ("struct", "property.BundleObject", {"data": "bytes"}),
}

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_SET = frozenset(_B64.encode())
# a well-formed padded text, where Go's StdEncoding and binascii decode the same bytes
_CLEAN_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_BYTES = _B64.encode()
_NO_NEWLINES = str.maketrans("", "", "\r\n")


class GoDecodeError(ValueError):
    """A value that Go's encoding/json refuses for the struct field it lands in."""


def go_field(obj: Any, key: str) -> Any:
    """Go's json field matching: exact name first, then a case-insensitive one."""
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    low = key.lower()
    for k, v in obj.items():  # a plain loop: absent keys are the common case in entries
        if isinstance(k, str) and k.lower() == low:
            return v
    return None


def field_str(obj: Any, key: str) -> str:
    """A string field, "" when absent or not a string (Go leaves the zero value)."""
    value = go_field(obj, key)
    return value if isinstance(value, str) else ""


def field_list(obj: Any, key: str) -> list:
    """A list field, [] when absent or not a list."""
    value = go_field(obj, key)
    return value if isinstance(value, list) else []


def blob_error(schema: str, blob: dict) -> str | None:
    """opm's load error for a typed blob whose fields do not fit its struct (`parse bundle: ...`), or None."""
    if schema not in SHAPES:
        return None
    what, shape = SHAPES[schema]
    if _fits(shape)(blob):  # the common case, without building field paths
        return None
    try:
        _check(blob, shape, "", "")
    except GoDecodeError as exc:
        return f"parse {what}: {exc}"
    return None


def property_error(typ: str, value: Any) -> str | None:
    """Go's decode error for a property value of a known type that does not fit its struct, or None."""
    shape = PROPERTY_SHAPES.get(typ)
    if shape is None or _fits(shape)(value):  # the common case, without building field paths
        return None
    try:
        _check(value, shape, "", "")
    except GoDecodeError as exc:
        return str(exc)
    return None


_FITS: dict[int, Callable[[Any], bool]] = {}


def _fits(shape: Any) -> Callable[[Any], bool]:
    """A fast yes/no checker for `shape`, built once (the message, when needed, comes from `_check`)."""
    if id(shape) not in _FITS:
        _FITS[id(shape)] = _build_fits(shape)
    return _FITS[id(shape)]


def _build_fits(shape: Any) -> Callable[[Any], bool]:
    if shape == "raw":
        return lambda v: True
    if shape in ("string", "bytes"):
        if shape == "string":
            return lambda v: v is None or type(v) is str
        return lambda v: v is None or (type(v) is str and _base64_ok(v))
    if shape[0] == "list":
        item = _fits(shape[1])
        return lambda v: v is None or (type(v) is list and all(map(item, v)))
    # string and raw fields (most of them) are checked inline: a call per field is the cost here
    strings = {k for k, sub in shape[2].items() if sub == "string"}
    free = {k for k, sub in shape[2].items() if sub == "raw"}
    fields = {k: _fits(sub) for k, sub in shape[2].items() if k not in strings and k not in free}
    lower = {k.lower(): _fits(sub) for k, sub in shape[2].items()}

    def fits_struct(v: Any) -> bool:
        if v is None:
            return True
        if type(v) is not dict:
            return False
        for key, item in v.items():
            if key in strings:
                if item is not None and type(item) is not str:
                    return False
            elif key in fields:
                if not fields[key](item):
                    return False
            elif key not in free and isinstance(key, str):
                check = lower.get(key.lower())
                if check is not None and not check(item):
                    return False
        return True
    return fits_struct


def _base64_ok(text: str) -> bool:
    try:
        check_go_base64(text)
    except GoDecodeError:
        return False
    return True


def check_go_shape(value: Any, shape: Any) -> None:
    """Raise GoDecodeError when `value` does not decode into the Go type `shape` describes."""
    _check(value, shape, "", "")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "value")


def _go_type(shape: Any) -> str:
    if shape == "bytes":
        return "[]uint8"
    if isinstance(shape, tuple) and shape[0] == "list":
        return shape[2]
    if isinstance(shape, tuple):
        return shape[1]
    return shape


def _check(value: Any, shape: Any, struct: str, path: str) -> None:
    """Raise GoDecodeError like Go's first UnmarshalTypeError (null always fits)."""
    if value is None or shape == "raw":
        return
    kind = _json_kind(value)
    want = {"string": "string", "bytes": "string"}.get(shape) if isinstance(shape, str) else (
        "array" if shape[0] == "list" else "object")
    if kind != want:
        where = f"Go struct field {struct}.{path}" if path else "Go value"
        raise GoDecodeError(f"json: cannot unmarshal {kind} into {where} of type {_go_type(shape)}")
    if shape == "bytes":
        check_go_base64(value)
    elif isinstance(shape, tuple) and shape[0] == "list":
        for item in value:
            _check(item, shape[1], struct, path)
    elif isinstance(shape, tuple):
        fields = shape[2]
        for key, item in value.items():
            match = _field(fields, key)
            if match is not None:
                _check(item, fields[match], shape[1].split(".")[-1], f"{path}.{match}" if path else match)


def _field(fields: dict, key: str) -> str | None:
    """Go matches JSON keys to struct fields exactly first, then case-insensitively."""
    if key in fields:
        return key
    return next((f for f in fields if f.lower() == key.lower()), None)


def check_go_base64(text: str) -> None:
    """Raise GoDecodeError unless Go's StdEncoding decodes `text` (icons and bundle objects are
    large: well-formed text is recognised in one pass, only bad text is walked)."""
    plain = text.translate(_NO_NEWLINES) if ("\n" in text or "\r" in text) else text
    if _well_formed(plain):
        return
    go_base64_decode(text)


def _well_formed(plain: str) -> bool:
    """Padded standard base64 without line breaks: alphabet symbols, then at most two '=' that make
    the length a multiple of 4 (where Go's decoder and binascii agree). `bytes.translate` deletes the
    alphabet through a 256-entry table, a few instructions a byte; the regular expression it
    replaces took ~27, a twentieth of validating a 7,000-bundle catalog's 3 MB of bundle objects."""
    body = plain.rstrip("=")
    return (len(plain) % 4 == 0 and len(plain) - len(body) <= 2 and body.isascii()
            and not body.encode().translate(None, _B64_BYTES))


def go_base64_decode(text: str) -> bytes:
    """Decode like Go's base64.StdEncoding (padding required, CR/LF skipped), with its error offsets.

    Well-formed text (nearly all of it: every bundle object of a catalog) goes through binascii in C;
    the symbol-by-symbol decoder below only runs to find where Go says malformed text goes wrong
    (7,000 bundle objects: 70 s of a validate run otherwise)."""
    clean = text.replace("\n", "").replace("\r", "") if ("\n" in text or "\r" in text) else text
    if len(clean) % 4 == 0 and _CLEAN_B64.fullmatch(clean):
        try:
            return base64.b64decode(clean, validate=True)
        except (binascii.Error, ValueError):
            pass
    return _decode_symbols(text)


def _decode_symbols(text: str) -> bytes:
    """Go's decoder one symbol at a time: the error offsets Go reports."""
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate: 3 bytes, as the U+FFFD Go's JSON makes of it
    out = bytearray()
    si = 0
    while si < len(data):
        quantum: list[int] = []
        while len(quantum) < 4:
            if si == len(data):
                if not quantum:
                    return bytes(out)
                raise GoDecodeError(f"illegal base64 data at input byte {si - len(quantum)}")
            ch = data[si]
            si += 1
            if ch in _B64_SET:
                quantum.append(_B64.index(chr(ch)))
            elif ch in (10, 13):
                continue
            elif ch != ord("="):
                raise GoDecodeError(f"illegal base64 data at input byte {si - 1}")
            else:
                si = _padding(data, si, len(quantum))
                out += _bits(quantum)
                return bytes(out)
        out += _bits(quantum)
    return bytes(out)


def _padding(data: bytes, si: int, have: int) -> int:
    """After a '=' at data[si-1] with `have` symbols in the quantum: check the rest is valid padding."""
    if have < 2:
        raise GoDecodeError(f"illegal base64 data at input byte {si - 1}")
    if have == 2:
        while si < len(data) and data[si] in (10, 13):
            si += 1
        if si == len(data):
            raise GoDecodeError(f"illegal base64 data at input byte {len(data)}")
        if data[si] != ord("="):
            raise GoDecodeError(f"illegal base64 data at input byte {si - 1}")
        si += 1
    while si < len(data) and data[si] in (10, 13):
        si += 1
    if si < len(data):
        raise GoDecodeError(f"illegal base64 data at input byte {si}")
    return si


def _bits(quantum: list[int]) -> bytes:
    """The bytes a (possibly short) quantum of 6-bit symbols carries."""
    n = 0
    for sym in quantum:
        n = (n << 6) | sym
    n <<= 6 * (4 - len(quantum))
    full = n.to_bytes(3, "big")
    return full[: {4: 3, 3: 2, 2: 1}.get(len(quantum), 0)]
