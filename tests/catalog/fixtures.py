"""Shared helpers of the catalog tests: the local opm golden fixtures and the db normaliser."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from types import ModuleType

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "catalog"


@functools.cache
def normalizer() -> ModuleType:
    """The corpus' stdlib-only normalize_db.py (copied into tests/fixtures/catalog)."""
    spec = importlib.util.spec_from_file_location("normalize_db", FIX / "normalize_db.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gvk_only(data: dict) -> dict:
    """`api` compared by group/version/kind: opm's plural choice follows Go-map order."""
    data["api"] = sorted({(a["group"], a["version"], a["kind"]) for a in data["api"]})
    return data


def dump(db: Path, rewrite: list[tuple[str, str]] | None = None) -> dict:
    return _gvk_only(normalizer().dump(str(db), rewrite))


def golden(case: str) -> dict:
    """What opm v1.73.0 wrote for a conformance case (normalised)."""
    return _gvk_only(json.loads((FIX / "expected" / f"{case}.json").read_text()))
