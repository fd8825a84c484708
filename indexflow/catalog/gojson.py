"""JSON text exactly as Go's encoding/json writes it, because opm stores Go-encoded bytes.

Digests of the `csv`/`bundle` columns and raw property values are compared byte for byte with
what opm wrote, so key order, HTML escaping and float formatting must follow Go, not Python.
"""

from __future__ import annotations

import json
import math
from typing import Any

_HTML = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                       "\u2028": "\\u2028", "\u2029": "\\u2029"})


def go_float(value: float) -> str:
    """Format a float64 like Go's encoding/json ('f' unless the exponent is tiny or huge)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"unsupported float value {value}")
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    absval = abs(value)
    if absval < 1e-6 or absval >= 1e21:
        mantissa, _, exp = f"{value:e}".partition("e") if "e" not in text else text.partition("e")
        mantissa = repr(float(mantissa)).removesuffix(".0") if "e" not in text else mantissa
        sign = "-" if exp.startswith("-") else "+"
        return f"{mantissa}e{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
    if "e" in text:  # Python used exponent form where Go uses plain decimal
        return f"{value:.17f}".rstrip("0").rstrip(".")
    return text


def _encode(obj: Any, sort_keys: bool) -> str:
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, float):
        return go_float(obj)
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, dict):
        items = sorted(obj.items()) if sort_keys else obj.items()
        return "{" + ",".join(json.dumps(_key(k), ensure_ascii=False) + ":" + _encode(v, sort_keys)
                              for k, v in items) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(_encode(v, sort_keys) for v in obj) + "]"
    return json.dumps(str(obj), ensure_ascii=False)


def _key(key: Any) -> str:
    """YAML allows non-string keys; Go's YAML->JSON turns them into their text."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, float):
        return go_float(key)
    return str(key)


def go_json(obj: Any, sort_keys: bool = True, plain: bool = False) -> str:
    """Compact, HTML-escaped JSON (Go json.Marshal of a map-based value: keys sorted).

    `plain=True` promises only string keys and no floats; then Python's C encoder writes the same
    bytes as Go, several times faster than the general encoder (bundle manifests are plain).
    """
    if plain:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys).translate(_HTML)
    return _encode(obj, sort_keys).translate(_HTML)


def is_plain(obj: Any) -> bool:
    """True when `obj` has only string keys, strings, ints, bools and nulls (see go_json's `plain`)."""
    if isinstance(obj, dict):
        return all(isinstance(k, str) and is_plain(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(map(is_plain, obj))
    return obj is None or isinstance(obj, (str, int))


def compact_raw(raw: str) -> str:
    """Go json.Compact with HTML escaping: drop insignificant whitespace, keep everything else.

    Used for values that reach opm as json.RawMessage (CSV `olm.properties`), whose key order and
    number literals opm keeps verbatim.
    """
    out: list[str] = []
    in_str = escaped = False
    for ch in raw:
        if in_str:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            out.append(ch)
        elif ch not in " \t\r\n":
            out.append(ch)
    return "".join(out).translate(_HTML)
