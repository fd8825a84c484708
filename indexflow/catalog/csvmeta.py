"""The `olm.csv.metadata` property opm builds from a CSV (migration level bundle-object-to-csv-metadata).

opm decodes the CSV into Go structs (field names matched case-insensitively, unknown fields
dropped) and marshals a fixed struct back, so the field order and the omitted-when-empty rules
below are what make the output byte-identical.
"""

from __future__ import annotations

from typing import Any

from indexflow.catalog.fbcwrite import compact


def go_field(obj: Any, key: str) -> Any:
    """Go's json field matching: exact name first, then a case-insensitive one."""
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    low = key.lower()
    return next((v for k, v in obj.items() if isinstance(k, str) and k.lower() == low), None)


def _str(obj: Any, key: str) -> str:
    value = go_field(obj, key)
    return value if isinstance(value, str) else ""


def _list(obj: Any, key: str) -> list:
    value = go_field(obj, key)
    return value if isinstance(value, list) else []


def _pick(pairs: list[tuple[str, Any, bool]]) -> dict:
    """Ordered struct fields; those flagged omitempty are dropped when empty."""
    return {k: v for k, v, omit in pairs if not (omit and v in ("", 0, None, [], {}) and v is not False)}


def _descriptor(d: Any) -> dict:
    return _pick([("path", _str(d, "path"), False), ("displayName", _str(d, "displayName"), True),
                  ("description", _str(d, "description"), True),
                  ("x-descriptors", [x for x in _list(d, "x-descriptors") if isinstance(x, str)], True),
                  ("value", go_field(d, "value"), True)])


def _resources(d: Any) -> list[dict]:
    return [{"name": _str(r, "name"), "kind": _str(r, "kind"), "version": _str(r, "version")}
            for r in _list(d, "resources")]


def _described(d: Any) -> list[tuple[str, Any, bool]]:
    return [("displayName", _str(d, "displayName"), True), ("description", _str(d, "description"), True),
            ("resources", _resources(d), True)] + [
        (k, [_descriptor(x) for x in _list(d, k)], True)
        for k in ("statusDescriptors", "specDescriptors", "actionDescriptors")]


def _crd(d: Any) -> dict:
    return _pick([("name", _str(d, "name"), False), ("version", _str(d, "version"), False),
                  ("kind", _str(d, "kind"), False)] + _described(d))


def _apiservice(d: Any) -> dict:
    port = go_field(d, "containerPort")
    return _pick([("name", _str(d, "name"), False), ("group", _str(d, "group"), False),
                  ("version", _str(d, "version"), False), ("kind", _str(d, "kind"), False),
                  ("deploymentName", _str(d, "deploymentName"), True),
                  ("containerPort", port if isinstance(port, int) else 0, True)] + _described(d))


def _owned_required(d: Any, conv) -> dict:
    return _pick([("owned", [conv(x) for x in _list(d, "owned")], True),
                  ("required", [conv(x) for x in _list(d, "required")], True)])


def _string_map(value: Any) -> dict:
    return {k: value[k] for k in sorted(value) if isinstance(value[k], str)} if isinstance(value, dict) else {}


def csv_metadata(csv: dict) -> str:
    """The property value: compact JSON, not HTML-escaped (unlike the values stored in the db)."""
    meta, spec = go_field(csv, "metadata") or {}, go_field(csv, "spec") or {}
    provider = go_field(spec, "provider")
    value = _pick([
        ("annotations", _string_map(go_field(meta, "annotations")), True),
        ("apiServiceDefinitions", _owned_required(go_field(spec, "apiservicedefinitions"), _apiservice), False),
        ("crdDescriptions", _owned_required(go_field(spec, "customresourcedefinitions"), _crd), False),
        ("description", _str(spec, "description"), True),
        ("displayName", _str(spec, "displayName"), True),
        ("installModes", [{"type": _str(m, "type"), "supported": go_field(m, "supported") is True}
                          for m in _list(spec, "installModes")], True),
        ("keywords", [k for k in _list(spec, "keywords") if isinstance(k, str)], True),
        ("labels", _string_map(go_field(meta, "labels")), True),
        ("links", [_pick([("name", _str(x, "name"), True), ("url", _str(x, "url"), True)])
                   for x in _list(spec, "links")], True),
        ("maintainers", [_pick([("name", _str(x, "name"), True), ("email", _str(x, "email"), True)])
                         for x in _list(spec, "maintainers")], True),
        ("maturity", _str(spec, "maturity"), True),
        ("minKubeVersion", _str(spec, "minKubeVersion"), True),
        ("nativeAPIs", [{"group": _str(x, "group"), "version": _str(x, "version"), "kind": _str(x, "kind")}
                        for x in _list(spec, "nativeAPIs")], True),
        ("provider", _pick([("name", _str(provider, "name"), True), ("url", _str(provider, "url"), True)]), False),
    ])
    return compact(value)
