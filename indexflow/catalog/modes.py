"""Per-package graph update modes: the package -> mode map `add_bundles(modes=...)` takes.

A real catalog is not built in one mode: the community pipeline adds each package in the mode its
`ci.yaml` names (`updateGraph: semver-mode`, `replaces-mode`; unset means replaces). A mode map
file lets `indexflow db add --mode-map FILE` (and the merge) do the same in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from indexflow import datafile
from indexflow.catalog.limits import excerpt
from indexflow.errors import CatalogError

MODES = ("replaces", "semver", "semver-skippatch")
# the community pipeline's ci.yaml `updateGraph` values
CI_MODES = {f"{m}-mode": m for m in MODES}


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
    """A mode map file: JSON or YAML, `{package: mode}` or the corpus's `ci_meta.json` shape (read as
    untrusted: indexflow/datafile.py)."""
    return normalise_mode_map(datafile.load(path, "mode map", CatalogError), f"mode map {path}")
