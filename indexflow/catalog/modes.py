"""Per-package graph update modes: the package -> mode map `add_bundles(modes=...)` takes.

A real catalog is not built in one mode: the community pipeline adds each package in the mode its
`ci.yaml` names (`updateGraph: semver-mode`, `replaces-mode`; unset means replaces). A mode map
file lets `indexflow db add --mode-map FILE` (and the merge) do the same in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from indexflow.catalog.fastyaml import YamlLimitError, check_limits
from indexflow.catalog.limits import excerpt
from indexflow.errors import CatalogError

MODES = ("replaces", "semver", "semver-skippatch")
# the community pipeline's ci.yaml `updateGraph` values
CI_MODES = {f"{m}-mode": m for m in MODES}
MAX_MAP_BYTES = 4 << 20


def mode_of(package: str, value: Any) -> str | None:
    """opm's mode name for one map value: an opm name, a ci.yaml `updateGraph` value, or a ci.yaml-like
    object holding one (`{"updateGraph": "semver-mode", ...}`); None when the object leaves it unset."""
    if isinstance(value, Mapping):
        value = value.get("updateGraph")
        if value is None:
            return None
    if isinstance(value, str) and value in MODES:
        return value
    if isinstance(value, str) and value in CI_MODES:
        return CI_MODES[value]
    raise CatalogError(f"graph mode of package {excerpt(package)!r} must be one of {', '.join(MODES)} "
                       f"(or {', '.join(CI_MODES)}), not {_shown(value)}")


def _shown(value: Any) -> str:
    """A map value for an error message: a scalar as written (cut short), a list or mapping by its kind
    (its repr could be megabytes, or endless through YAML aliases)."""
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return excerpt(repr(value), 60)


def normalise_mode_map(data: Any, source: str = "the mode map") -> dict[str, str]:
    """`{package: mode}` with opm's mode names; packages whose entry leaves the mode unset are left out."""
    if not isinstance(data, Mapping) or not all(isinstance(k, str) and k for k in data):
        raise CatalogError(f"{source} must map package names to graph modes")
    out = {}
    for package, value in data.items():
        try:
            mode = mode_of(package, value)
        except CatalogError as exc:
            raise CatalogError(f"{source}: {exc}") from None
        if mode is not None:
            out[package] = mode
    return out


def load_mode_map(path: Path) -> dict[str, str]:
    """A mode map file: JSON or YAML, `{package: mode}` or the corpus's `ci_meta.json` shape.

    The file is the user's, or whoever wrote it: YAML is held to the bundle manifests' budget
    (aliasing, nesting), and a key given twice is refused, since a parser would silently keep the last."""
    where = f"mode map {path}"
    try:
        if path.stat().st_size > MAX_MAP_BYTES:
            raise CatalogError(f"{where} is larger than {MAX_MAP_BYTES >> 20} MiB")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read {where}: {exc.__class__.__name__}") from None
    try:
        if text.lstrip().startswith("{"):
            data = json.loads(text, object_pairs_hook=_unique_pairs)
        else:
            check_limits(text)
            _no_repeated_keys(yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
            data = yaml.safe_load(text)
    except _RepeatedKey as exc:
        raise CatalogError(f"{where} gives {excerpt(str(exc.args[0]))!r} more than once") from None
    except YamlLimitError as exc:
        raise CatalogError(f"{where}: {exc}") from None
    except RecursionError:
        raise CatalogError(f"{where} nests too deeply") from None
    except (ValueError, yaml.YAMLError):
        raise CatalogError(f"{where} is neither JSON nor YAML") from None
    return normalise_mode_map(data, where)


class _RepeatedKey(Exception):
    """A mapping of the mode map file holds this key twice."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _RepeatedKey(key)
        seen[key] = value
    return seen


def _no_repeated_keys(root: yaml.Node | None) -> None:
    """Raise _RepeatedKey for a scalar key given twice in any mapping of a composed YAML document
    (each node once: an alias makes the node graph share nodes, or even loop back)."""
    todo, seen = ([root] if root is not None else []), set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
            repeated = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
            if repeated is not None:
                raise _RepeatedKey(repeated)
            todo += [v for _, v in node.value]
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value
