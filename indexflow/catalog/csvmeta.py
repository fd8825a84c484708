"""The `olm.csv.metadata` property opm builds from a CSV (migration level bundle-object-to-csv-metadata).

opm decodes the CSV into Go structs (field names matched case-insensitively, unknown fields
dropped) and marshals a fixed struct back, so the field order and the omitted-when-empty rules
below are what make the output byte-identical.
"""

from __future__ import annotations

from typing import Any

from indexflow.catalog.fbcwrite import compact
from indexflow.catalog.gotypes import field_list, field_str, go_field


def _pick(pairs: list[tuple[str, Any, bool]]) -> dict:
    """Ordered struct fields; those flagged omitempty are dropped when empty."""
    return {k: v for k, v, omit in pairs if not (omit and v in ("", 0, None, [], {}) and v is not False)}


def _descriptor(d: Any) -> dict:
    return _pick([("path", field_str(d, "path"), False), ("displayName", field_str(d, "displayName"), True),
                  ("description", field_str(d, "description"), True),
                  ("x-descriptors", [x for x in field_list(d, "x-descriptors") if isinstance(x, str)], True),
                  ("value", go_field(d, "value"), True)])


def _resources(d: Any) -> list[dict]:
    return [{"name": field_str(r, "name"), "kind": field_str(r, "kind"), "version": field_str(r, "version")}
            for r in field_list(d, "resources")]


def _described(d: Any) -> list[tuple[str, Any, bool]]:
    return [("displayName", field_str(d, "displayName"), True), ("description", field_str(d, "description"), True),
            ("resources", _resources(d), True)] + [
        (k, [_descriptor(x) for x in field_list(d, k)], True)
        for k in ("statusDescriptors", "specDescriptors", "actionDescriptors")]


def _crd(d: Any) -> dict:
    return _pick([("name", field_str(d, "name"), False), ("version", field_str(d, "version"), False),
                  ("kind", field_str(d, "kind"), False)] + _described(d))


def _apiservice(d: Any) -> dict:
    port = go_field(d, "containerPort")
    return _pick([("name", field_str(d, "name"), False), ("group", field_str(d, "group"), False),
                  ("version", field_str(d, "version"), False), ("kind", field_str(d, "kind"), False),
                  ("deploymentName", field_str(d, "deploymentName"), True),
                  ("containerPort", port if isinstance(port, int) else 0, True)] + _described(d))


def _owned_required(d: Any, conv) -> dict:
    return _pick([("owned", [conv(x) for x in field_list(d, "owned")], True),
                  ("required", [conv(x) for x in field_list(d, "required")], True)])


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
        ("description", field_str(spec, "description"), True),
        ("displayName", field_str(spec, "displayName"), True),
        ("installModes", [{"type": field_str(m, "type"), "supported": go_field(m, "supported") is True}
                          for m in field_list(spec, "installModes")], True),
        ("keywords", [k for k in field_list(spec, "keywords") if isinstance(k, str)], True),
        ("labels", _string_map(go_field(meta, "labels")), True),
        ("links", [_pick([("name", field_str(x, "name"), True), ("url", field_str(x, "url"), True)])
                   for x in field_list(spec, "links")], True),
        ("maintainers", [_pick([("name", field_str(x, "name"), True), ("email", field_str(x, "email"), True)])
                         for x in field_list(spec, "maintainers")], True),
        ("maturity", field_str(spec, "maturity"), True),
        ("minKubeVersion", field_str(spec, "minKubeVersion"), True),
        ("nativeAPIs", [{"group": field_str(x, "group"), "version": field_str(x, "version"), "kind": field_str(x, "kind")}
                        for x in field_list(spec, "nativeAPIs")], True),
        ("provider", _pick([("name", field_str(provider, "name"), True), ("url", field_str(provider, "url"), True)]), False),
    ])
    return compact(value)
