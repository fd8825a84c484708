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
    raise CatalogError(f"graph mode of package {package!r} must be one of {', '.join(MODES)} "
                       f"(or {', '.join(CI_MODES)}), not {value!r}")


def normalise_mode_map(data: Any, source: str = "the mode map") -> dict[str, str]:
    """`{package: mode}` with opm's mode names; packages whose entry leaves the mode unset are left out."""
    if not isinstance(data, Mapping) or not all(isinstance(k, str) and k for k in data):
        raise CatalogError(f"{source} must map package names to graph modes")
    out = {}
    for package, value in data.items():
        mode = mode_of(package, value)
        if mode is not None:
            out[package] = mode
    return out


def load_mode_map(path: Path) -> dict[str, str]:
    """A mode map file: JSON or YAML, `{package: mode}` or the corpus's `ci_meta.json` shape."""
    try:
        if path.stat().st_size > MAX_MAP_BYTES:
            raise CatalogError(f"mode map {path} is larger than {MAX_MAP_BYTES >> 20} MiB")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read mode map {path}: {exc.__class__.__name__}") from None
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError):
        raise CatalogError(f"mode map {path} is neither JSON nor YAML") from None
    return normalise_mode_map(data, f"mode map {path}")
