"""Bundle content that opm's `registry add` decodes with Go types and refuses, checked before writing.

opm reads a CSV mostly as untyped JSON, but two places decode into Go structs and fail the add:
the `olm.properties` annotation (a list of {type, value}; values of the known types `olm.label`,
`olm.package` and `olm.gvk` are decoded into their structs) and the deployment install strategy
(`spec.install.spec`, decoded into Kubernetes types: an env value that is a number fails).
Only CSVs that could fail are parsed (a byte search finds them), so the add stays fast.
"""

from __future__ import annotations

import json
import re
from typing import Any

from indexflow.catalog.bundle import Bundle
from indexflow.catalog.gotypes import GoDecodeError, check_go_shape

# registry.LabelProperty / PackageProperty / GVKProperty, as opm's addBundleProperties decodes them
_KNOWN_PROPERTIES: dict[str, tuple] = {
    "olm.label": ("struct", "registry.LabelProperty", {"label": "string"}),
    "olm.package": ("struct", "registry.PackageProperty", {"packageName": "string", "version": "string"}),
    "olm.gvk": ("struct", "registry.GVKProperty", {"group": "string", "kind": "string", "version": "string"}),
}
_PROPERTY_LIST = ("list", ("struct", "registry.Property", {"type": "string", "value": "raw"}), "[]registry.Property")
# an env entry whose value is not a JSON string (or null): `"value": 5`, `true`, `[`, `{`
_ENV_SUSPECT = re.compile(rb'"value":\s*[-0-9tf\[{]')


def bundle_errors(b: Bundle) -> list[str]:
    """Why opm's add would refuse this bundle's CSV (empty when it would not)."""
    if b'"olm.properties"' not in b.csv_json and not _ENV_SUSPECT.search(b.csv_json):
        return []
    csv = json.loads(b.csv_json)
    errors = []
    raw = ((csv.get("metadata") or {}).get("annotations") or {}).get("olm.properties")
    if raw is not None:
        err = _properties_error(raw)
        if err:
            errors.append(f"error adding operator bundle {b.name}: {err}")
    err = _env_error(csv)
    if err:
        errors.append(f"error adding operator bundle {b.name}: {err}")
    return errors


def _properties_error(raw: Any) -> str | None:
    try:
        entries = json.loads(raw) if isinstance(raw, str) else raw
        check_go_shape(entries, _PROPERTY_LIST)
        for entry in entries or []:
            shape = _KNOWN_PROPERTIES.get((entry or {}).get("type"))
            if shape is not None:
                if "value" not in entry:
                    raise GoDecodeError("unexpected end of JSON input")
                check_go_shape(entry["value"], shape)
    except ValueError as exc:  # json.JSONDecodeError and GoDecodeError
        return str(exc) if isinstance(exc, GoDecodeError) else f"invalid olm.properties annotation: {exc}"
    return None


def _env_error(csv: dict) -> str | None:
    """Go decodes `spec.install` into NamedInstallStrategy: container env values must be strings."""
    install = (csv.get("spec") or {}).get("install") or {}
    if not isinstance(install, dict):
        return None
    for dep in ((install.get("spec") or {}).get("deployments") or []):
        pod = (((dep or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
            for env in (container or {}).get("env") or []:
                value = (env or {}).get("value")
                if value is not None and not isinstance(value, str):
                    kind = "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else \
                        {bool: "bool", list: "array", dict: "object"}[type(value)]
                    return (f"json: cannot unmarshal {kind} into Go struct field EnvVar.spec.deployments.spec."
                            f"template.spec.containers.env.value of type string")
    return None
