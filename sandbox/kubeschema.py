"""Check an object sent to the Kubernetes stand-in the way a real API server does, before storing it.

The schema is the official one: the OpenAPI models generated into the `kubernetes_asyncio` client
(`V1Job`, `V1Pod`, ...). Decoding is strict (what `kubectl` asks with `fieldValidation=Strict`): an
unknown field, a wrong JSON type, a missing required field or an enum value outside the model's list
is refused. On top of the schema come the validation rules of the API server that the models cannot
express and a Job's pod relies on (names, labels, quantities, restart policy, containers and their
images, volumes referenced by mounts). Every problem is reported, with its field path, like
the API server's `Invalid` status: `Job.batch "x" is invalid: spec.template.spec.containers[0].image:
Required value`.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.client import models as k8s_models

STRICT = Configuration()
STRICT.client_side_validation = True
LIST_TYPE = re.compile(r"^list\[(.+)\]$")
DICT_TYPE = re.compile(r"^dict\((\w+), (.+)\)$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
SCALARS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
VOLUME_SOURCES = ("emptyDir", "persistentVolumeClaim", "secret", "configMap", "hostPath", "projected",
                  "downwardAPI", "ephemeral", "csi", "nfs", "image")


class Invalid(ValueError):
    """The object is refused; `causes` are (field path, message) pairs."""

    def __init__(self, causes: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {message}" if path else message for path, message in causes))
        self.causes = causes


def decode(data: Any, model: str) -> list[tuple[str, str]]:
    """Strictly decode `data` as the OpenAPI model `model` (e.g. "V1Job"); returns the problems."""
    problems: list[tuple[str, str]] = []
    _decode(data, model, "", problems)
    return problems


def _decode(value: Any, type_name: str, path: str, problems: list[tuple[str, str]]) -> None:
    if value is None:
        return  # JSON null: the field is unset (required-ness is checked by the enclosing model)
    if m := LIST_TYPE.match(type_name):
        if not isinstance(value, list):
            problems.append((path, f"expected an array, got {type(value).__name__}"))
            return
        for i, item in enumerate(value):
            _decode(item, m[1], f"{path}[{i}]", problems)
    elif m := DICT_TYPE.match(type_name):
        if not isinstance(value, dict):
            problems.append((path, f"expected an object, got {type(value).__name__}"))
            return
        for key, item in value.items():
            inner = "quantity" if m[2] == "str" and path.endswith(("limits", "requests", "capacity")) else m[2]
            _decode(item, inner, f"{path}.{key}", problems)
    elif type_name == "quantity":  # resource quantities arrive as strings or JSON numbers
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not QUANTITY.match(str(value)):
            problems.append((path, f'quantities must match the regular expression {QUANTITY.pattern!r}'))
    elif type_name in SCALARS:
        if isinstance(value, bool) and type_name != "bool" or not isinstance(value, SCALARS[type_name]):
            problems.append((path, f"expected {type_name}, got {type(value).__name__}"))
    elif type_name in ("object", "datetime", "date"):
        return  # IntOrString / RawExtension / timestamps: any JSON value the field allows
    else:
        _decode_model(value, type_name, path, problems)


def _decode_model(value: Any, model: str, path: str, problems: list[tuple[str, str]]) -> None:
    cls = getattr(k8s_models, model)
    if not isinstance(value, dict):
        problems.append((path, f"expected an object ({model}), got {type(value).__name__}"))
        return
    by_json = {json_name: py for py, json_name in cls.attribute_map.items()}
    for key in value:
        if key not in by_json:
            problems.append((_join(path, key), f'unknown field "{_join(path, key)}"'))
    known = {by_json[k]: v for k, v in value.items() if k in by_json}
    try:  # the generated setters check required fields and enums
        cls(local_vars_configuration=STRICT, **known)
    except (ValueError, TypeError) as exc:
        problems.append((path, str(exc)))
    for py, item in known.items():
        _decode(item, cls.openapi_types[py], _join(path, cls.attribute_map[py]), problems)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- API server rules the schema cannot express -------------------------------------------------------
def check_metadata(meta: dict, path: str = "metadata", dns_label: bool = False) -> list[tuple[str, str]]:
    problems = []
    name = meta.get("name") or ""
    pattern = DNS_LABEL if dns_label else DNS_SUBDOMAIN
    if name and (len(name) > (63 if dns_label else 253) or not pattern.match(name)):
        problems.append((f"{path}.name", f'Invalid value: "{name}": a lowercase RFC 1123 '
                         f'{"label" if dns_label else "subdomain"} is required'))
    for key, value in (meta.get("labels") or {}).items():
        problems += _label(f"{path}.labels", key, value)
    for key in meta.get("annotations") or {}:
        problems += _label_key(f"{path}.annotations", key)
    return problems


def _label_key(path: str, key: str) -> list[tuple[str, str]]:
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix))) or len(name) > 63 \
            or not LABEL_NAME.match(name):
        return [(path, f'Invalid value: "{key}": name part must consist of alphanumeric characters, '
                 "'-', '_' or '.', and must start and end with an alphanumeric character")]
    return []


def _label(path: str, key: str, value: object) -> list[tuple[str, str]]:
    problems = _label_key(path, key)
    if not isinstance(value, str) or len(value) > 63 or (value and not LABEL_NAME.match(value)):
        problems.append((path, f'Invalid value: "{value}": a valid label must be an empty string or '
                         "consist of alphanumeric characters, '-', '_' or '.' (at most 63)"))
    return problems


def check_pod_spec(spec: dict, path: str, in_job: bool) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    policy = spec.get("restartPolicy") or "Always"
    if in_job and policy not in ("Never", "OnFailure"):
        problems.append((f"{path}.restartPolicy", f'Unsupported value: "{policy}": supported values: '
                         '"OnFailure", "Never"'))
    volumes = spec.get("volumes") or []
    names = [v.get("name") for v in volumes]
    for i, volume in enumerate(volumes):
        sources = [s for s in VOLUME_SOURCES if volume.get(s) is not None]
        if len(sources) != 1:
            problems.append((f"{path}.volumes[{i}]", "must specify exactly one volume source"))
        if names.count(volume.get("name")) > 1:
            problems.append((f"{path}.volumes[{i}].name", f'Duplicate value: "{volume.get("name")}"'))
    containers = spec.get("containers") or []
    if not containers:
        problems.append((f"{path}.containers", "Required value"))
    seen: set[str] = set()
    for i, container in enumerate(containers):
        problems += _check_container(container, f"{path}.containers[{i}]", set(names), seen)
    return problems


def _check_container(container: dict, path: str, volumes: set[str], seen: set[str]) -> list[tuple[str, str]]:
    problems = []
    name = container.get("name") or ""
    if not DNS_LABEL.match(name) or len(name) > 63:
        problems.append((f"{path}.name", f'Invalid value: "{name}": a lowercase RFC 1123 label is required'))
    if name in seen:
        problems.append((f"{path}.name", f'Duplicate value: "{name}"'))
    seen.add(name)
    if not container.get("image"):
        problems.append((f"{path}.image", "Required value"))
    for j, mount in enumerate(container.get("volumeMounts") or []):
        if mount.get("name") not in volumes:
            problems.append((f"{path}.volumeMounts[{j}].name", f'Not found: "{mount.get("name")}"'))
    for j, env in enumerate(container.get("env") or []):
        if not ENV_NAME.match(env.get("name") or ""):
            problems.append((f"{path}.env[{j}].name", f'Invalid value: "{env.get("name")}": a valid '
                             "environment variable name is required"))
    resources = container.get("resources") or {}
    for kind in ("limits", "requests"):
        for resource in (resources.get(kind) or {}):
            if resource not in ("cpu", "memory", "ephemeral-storage") and "/" not in resource:
                problems.append((f"{path}.resources.{kind}[{resource}]", "must be a standard resource type"))
    return problems


def validate(kind: str, obj: dict, namespace: str | None) -> None:
    """Raise `Invalid` unless `obj` is a valid `kind` for a create in `namespace`."""
    model = MODELS[kind]
    problems = decode(obj, model)
    if problems:
        raise Invalid(problems)
    meta = obj.get("metadata") or {}
    if not meta.get("name") and not meta.get("generateName"):
        problems.append(("metadata.name", "Required value: name or generateName is required"))
    if namespace and meta.get("namespace") not in (None, namespace):
        problems.append(("metadata.namespace", "the namespace of the provided object does not match "
                         "the namespace sent on the request"))
    problems += check_metadata(meta, dns_label=kind in ("jobs", "namespaces"))
    if kind == "jobs":
        spec = obj.get("spec") or {}
        template = spec.get("template") or {}
        problems += check_metadata(template.get("metadata") or {}, "spec.template.metadata")
        problems += check_pod_spec(template.get("spec") or {}, "spec.template.spec", in_job=True)
        for field in ("backoffLimit", "completions", "parallelism", "activeDeadlineSeconds",
                      "ttlSecondsAfterFinished"):
            if (spec.get(field) or 0) < 0:
                problems.append((f"spec.{field}", "must be greater than or equal to 0"))
    elif kind == "pods":
        problems += check_pod_spec(obj.get("spec") or {}, "spec", in_job=False)
    if problems:
        raise Invalid(problems)


# resource plural -> the OpenAPI model objects of that resource decode as
MODELS = {"jobs": "V1Job", "pods": "V1Pod", "secrets": "V1Secret", "namespaces": "V1Namespace",
          "events": "CoreV1Event", "persistentvolumeclaims": "V1PersistentVolumeClaim",
          "serviceaccounts": "V1ServiceAccount"}
