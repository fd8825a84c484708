"""Catalog steps of the merge (merge.md A2 steps 3, 6-8) as Prefect tasks over the pure engine.

Retries only where a retry can help: adding bundles pulls them from the registry (a registry error
may be transient); a graph, deprecation, migration or validation error is not, so those never retry.
Each step's output is kept by the digest of its inputs (indexflow/catalog/stepcache.py): a re-run
of the same merge copies the db / FBC it made before instead of parsing and migrating again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from indexflow.catalog import merge as fbc_merge
from indexflow.catalog.add import add_bundles, confirm_added, fetch_bundle_images
from indexflow.catalog.bundlecache import cached_image_files
from indexflow.catalog.db import BundleRecord, list_bundles, vouch
from indexflow.catalog.fbcload import write_fresh
from indexflow.catalog.deprecate import deprecate_truncate
from indexflow.catalog.migrate import migrate
from indexflow.catalog.stepcache import StepCache, file_digest, remember_digest, step_key, tree_digest
from indexflow.catalog.validate import validate_fbc
from indexflow.errors import CatalogError, IndexflowError
from indexflow.registry import cache as slots
from indexflow.registry.artifacts import cache_root
from indexflow.registry.client import RegistryClient
from tasks.retry import transient_only


@task(name="read bundles", cache_policy=NO_CACHE)
def read_bundles(db_path: Path, artifact: str | None = None, deprecated: bool = False) -> list[BundleRecord]:
    """`opm render <db>` equivalent in SQL: deprecated bundles excluded (or, with `deprecated`, only those).

    A pulled db that cannot be read is named by its `artifact` ref, not by the local cache path the
    user never saw."""
    try:
        return list_bundles(db_path, deprecated)
    except CatalogError as exc:
        if artifact is None:
            raise
        reason = str(exc).replace(str(db_path), "the file")
        raise CatalogError(f"The index.db artifact {artifact} is not a usable index database: {reason}") from None


@task(name="copy source index.db", cache_policy=NO_CACHE)
def working_copy(db_path: Path, dest: Path) -> Path:
    """The cached download stays pristine; all edits happen on a per-run copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db_path, dest)
    vouch(dest, copy_of=db_path)
    remember_digest(dest, file_digest(db_path))  # the add step's key
    return dest


@task(name="add missing bundles", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=transient_only)
def add_missing_bundles(db_path: Path, refs: list[str], mode: str, client: RegistryClient, concurrency: int,
                        modes: dict[str, str] | None = None, release_order: bool = False) -> int:
    """Pull (or reuse) and parse the missing bundles concurrently, then add them in one transaction,
    each package in its own graph mode (`modes`, package -> mode; the others in `mode`), optionally
    one release at a time (`release_order`, see add_bundles)."""
    if not refs:
        return 0
    pinned = all("@sha256:" in ref for ref in refs)  # tag refs may point elsewhere next time
    key = step_key("add", file_digest(db_path), refs, mode, modes or {}, release_order, True)
    if pinned and steps().get(key, db_path) is not None:
        vouch(db_path)  # the engine's own output, copied back
        return len(refs)
    cache = cache_root() / "bundles"
    try:
        bundles = fetch_bundle_images(client, refs, concurrency,
                                      files=lambda c, ref: cached_image_files(c, ref, cache))
        # IIB adds with `opm registry add --enable-alpha`
        add_bundles(db_path, bundles, mode, enable_alpha=True, modes=modes, release_order=release_order)
        if not release_order:  # released one by one, a later release may leave an earlier one off its channel
            confirm_added(db_path, refs)
        vouch(db_path)
    except IndexflowError as exc:
        raise prefixed(exc, "Failed to add the bundles to the index image") from exc
    if pinned:
        steps().put(key, db_path)
    slots.evict([cache, cache_root() / "index-db"], client.limits.cache_max_bytes)
    return len(bundles)


def prefixed(exc: IndexflowError, prefix: str) -> IndexflowError:
    """The same error (class and facts such as `transient` kept, so retries judge it alike) under IIB's prefix."""
    if str(exc).startswith(prefix):
        return exc
    wrapped = type(exc).__new__(type(exc))
    wrapped.__dict__.update(exc.__dict__)
    Exception.__init__(wrapped, f"{prefix}: {exc}")
    return wrapped


@task(name="deprecatetruncate chunk", cache_policy=NO_CACHE)
def deprecate_chunk(db_path: Path, refs: list[str], remove_package_of: list[str] | None = None,
                    db_name: str | None = None) -> list[str]:
    """One chunk of `opm registry deprecatetruncate --allow-package-removal`.

    `remove_package_of`: the chunk's refs whose package is removed when they head its default channel
    (the "remove-package" policy for OCP-incompatible heads); returns the packages so removed. `db_name`
    is how an error names the index.db (its artifact ref: the local copy's path means nothing to a user)."""
    key = step_key("deprecatetruncate", file_digest(db_path), refs, remove_package_of or [])
    hit = steps().get(key, db_path)
    if hit is not None:
        vouch(db_path)  # the engine's own output, copied back
        return hit["removed"]
    try:
        removed = deprecate_truncate(db_path, refs, allow_package_removal=True,
                                     remove_package_of=remove_package_of or ())
    except IndexflowError as exc:
        raise prefixed(exc, f"Failed to deprecate the bundles on {db_name or db_path}") from exc
    vouch(db_path)
    steps().put(key, db_path, {"removed": removed})
    return removed


@task(name="migrate to FBC", cache_policy=NO_CACHE)
def migrate_to_fbc(db_path: Path, out_dir: Path, level: str | None) -> Path:
    key = step_key("migrate", file_digest(db_path), level)
    if steps().get(key, out_dir) is not None:
        return out_dir
    shutil.rmtree(out_dir, ignore_errors=True)
    migrate(db_path, out_dir, level=level)
    steps().put(key, out_dir)
    return out_dir


@task(name="merge FBC into Git configs", cache_policy=NO_CACHE)
def merge_into_configs(from_db: Path, configs: Path, deprecated_packages: list[str]) -> list[str]:
    """Remove deprecated packages from Git, copy the db's packages over (db wins per file), JSON only."""
    skipped = fbc_merge.remove_packages(configs, deprecated_packages) if deprecated_packages else []
    fbc_merge.merge_catalog_dirs(from_db, configs)
    fbc_merge.enforce_json(configs)
    return [p for p in dict.fromkeys(deprecated_packages) if p not in skipped]


@task(name="validate FBC", cache_policy=NO_CACHE)
def validate_catalog(configs: Path) -> None:
    """`opm validate` of the merged catalog; a catalog that passed once (same bytes) passes again."""
    key = step_key("validate", tree_digest(configs))
    if steps().get(key, None) is not None:
        return
    validate_fbc(configs)
    steps().put(key, None)


def steps() -> StepCache:
    """The step cache under $INDEXFLOW_CACHE_DIR (see indexflow/catalog/stepcache.py)."""
    return StepCache(cache_root() / "catalog-steps")


@task(name="write build metadata", cache_policy=NO_CACHE)
def write_build_metadata(repo_dir: Path, metadata: dict) -> Path:
    """`.iib-build-metadata.json` at the repo root: what the Konflux pipeline builds from."""
    path = repo_dir / ".iib-build-metadata.json"
    write_fresh(path, (json.dumps(metadata, indent=2) + "\n").encode())  # never through a committed link
    return path
