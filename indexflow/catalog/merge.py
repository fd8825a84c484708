"""Merging the migrated index.db catalog into the Git `configs/` directory (IIB merge, B §6).

Copy-merge never deletes, so packages being deprecated are removed from Git first; then the
index.db's files replace Git's file by file (Git-only packages survive); finally every YAML file
becomes JSON so the catalog has one format.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import yaml

from indexflow.catalog.fbcwrite import blob_json
from indexflow.errors import CatalogError

_SAFE_PACKAGE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


def is_safe_package_name(name: str) -> bool:
    """Lowercase alphanumerics with inner `.`/`-`, no `..`: a name that cannot leave configs/."""
    return bool(_SAFE_PACKAGE.match(name)) and ".." not in name


def remove_packages(configs_dir: Path | str, packages: list[str]) -> list[str]:
    """Delete `configs/<package>/` for each safe name; returns the names skipped as unsafe."""
    configs = Path(configs_dir).resolve()
    skipped = []
    for name in dict.fromkeys(packages):
        target = (configs / name).resolve() if is_safe_package_name(name) else None
        if target is None or target.parent != configs:
            skipped.append(name)
            continue
        if target.is_dir():
            shutil.rmtree(target)
    return skipped


def merge_catalog_dirs(from_dir: Path | str, into_dir: Path | str) -> None:
    """Copy every file of `from_dir` over `into_dir` (the index.db wins per file)."""
    src, dest = Path(from_dir), Path(into_dir)
    for d in (src, dest):
        if not d.is_dir():
            raise CatalogError(f"config directory does not exist: {d}")
    shutil.copytree(src, dest, dirs_exist_ok=True)


def enforce_json(directory: Path | str) -> list[Path]:
    """Turn every `*.yaml`/`*.yml` into `<stem>.json` (all documents, in order) and delete it.

    Refuses, before changing anything, empty YAML files and a YAML file whose JSON name is taken.
    Returns the JSON files written.
    """
    root = Path(directory)
    sources = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml"))
    targets: dict[Path, Path] = {}
    for src in sources:
        target = src.with_suffix(".json")
        if not src.read_text(encoding="utf-8", errors="replace").strip():
            raise CatalogError(f"catalog file {src} is empty")
        if target.exists() or target in targets:
            other = targets.get(target, target)
            raise CatalogError(f"catalog files {src} and {other} would both become {target}")
        targets[target] = src
    written = []
    for target, src in targets.items():
        try:
            docs = [d for d in yaml.safe_load_all(src.read_text(encoding="utf-8")) if d is not None]
        except yaml.YAMLError as exc:
            raise CatalogError(f"catalog file {src} is not valid YAML: {str(exc).splitlines()[0]}") from None
        with open(target, "w", encoding="utf-8") as fh:
            for doc in docs:
                fh.write(blob_json(json.loads(json.dumps(doc, default=str))))
        src.unlink()
        written.append(target)
    return written
