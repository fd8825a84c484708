"""Merging the migrated index.db catalog into the Git `configs/` directory (IIB merge, B §6).

Copy-merge never deletes, so packages being deprecated are removed from Git first; then the
index.db's files replace Git's file by file (Git-only packages survive); finally every YAML file
becomes JSON so the catalog has one format.

Both trees are read through fbcload.py: each step first refuses a tree holding a link, device or
FIFO (a link committed to Git would otherwise be written through), and files are written fresh and
renamed into place, never through an existing entry.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from indexflow.catalog import fbcload
from indexflow.catalog.fbcwrite import blob_json
from indexflow.errors import CatalogError

_SAFE_PACKAGE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


def is_safe_package_name(name: str) -> bool:
    """Lowercase alphanumerics with inner `.`/`-`, no `..`: a name that cannot leave configs/."""
    return bool(_SAFE_PACKAGE.match(name)) and ".." not in name


def remove_packages(configs_dir: Path | str, packages: list[str]) -> list[str]:
    """Delete `configs/<package>/` for each safe name; returns the names skipped as unsafe."""
    fbcload.check_tree(Path(configs_dir))
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
    fbcload.check_tree(dest)
    for rel, path in list(fbcload.walk(src)):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            raise CatalogError(f"cannot copy {src.name}/{rel} over the directory {dest.name}/{rel}")
        data = fbcload.read_bytes(path, f"{src.name}/{rel}")
        if not fbcload.holds(target, data):  # an unchanged file keeps its stat: `git add` need not hash it
            fbcload.write_fresh(target, data)


def enforce_json(directory: Path | str) -> list[Path]:
    """Turn every `*.yaml`/`*.yml` opm would read into `<stem>.json` (all documents, in order) and
    delete it; files `.indexignore` hides are left alone (the validator never reads them).

    Refuses, before changing anything, empty YAML files and a YAML file whose JSON name is taken.
    Returns the JSON files written.
    """
    root = Path(directory)
    files = fbcload.catalog_files(root)
    existing = {rel for rel, _ in fbcload.walk(root)}
    targets: dict[str, tuple[str, Path]] = {}  # json rel -> (yaml rel, yaml path)
    texts: dict[str, str] = {}
    for rel, src in files:
        if src.suffix not in (".yaml", ".yml"):
            continue
        target = rel[: -len(src.suffix)] + ".json"
        texts[rel] = fbcload.read_text(src, f"{root.name}/{rel}")
        if not texts[rel].strip():
            raise CatalogError(f"catalog file {root.name}/{rel} is empty")
        if target in existing or target in targets:
            other = targets[target][0] if target in targets else target
            raise CatalogError(f"catalog files {root.name}/{rel} and {root.name}/{other} would both become "
                               f"{root.name}/{target}")
        targets[target] = (rel, src)
    written = []
    for target, (rel, src) in targets.items():
        try:
            docs = [d for d in fbcload.documents(texts[rel]) if d is not None]
        except fbcload.Invalid as exc:
            raise CatalogError(f"catalog file {root.name}/{rel} is not valid YAML: {exc}") from None
        text = "".join(blob_json(json.loads(json.dumps(doc, default=str))) for doc in docs)
        fbcload.write_fresh(root / target, text.encode("utf-8"))
        src.unlink()
        written.append(root / target)
    return written
