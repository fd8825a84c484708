"""index.db artifacts (merge.md A2 steps 2 and 10): pulls cached by manifest digest, pushes undone
on rollback.

The pull task's cache key is the artifact's manifest digest, so a second merge that needs the same
index.db skips the task (state Cached) and downloads nothing.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext

from indexflow.catalog.stepcache import file_digest, remember_digest
from indexflow.errors import RegistryError
from indexflow.registry.artifacts import IndexDbArtifacts
from tasks.retry import transient_only


def _by_digest(context: TaskRunContext, parameters: dict) -> str:
    return f"indexflow-index-db-{parameters['digest']}"


@task(name="pull index.db", cache_key_fn=_by_digest, persist_result=True, retries=2,
      retry_delay_seconds=[2, 10], retry_condition_fn=transient_only)
def pull_index_db(artifacts: IndexDbArtifacts, ref: str, digest: str) -> str:
    """Download the artifact once per digest; the path is the (persisted) result."""
    pulled = artifacts.pull(ref)
    if pulled.digest != digest:
        raise RegistryError(f"index.db artifact {ref} changed while it was pulled; retry the merge")
    return str(pulled.path)


def cached_index_db(artifacts: IndexDbArtifacts, ref: str) -> tuple[Path, str]:
    """Resolve the artifact digest, then pull through the digest-keyed cache.

    Returns the path and the pull task's state name ("Cached" when nothing was downloaded), taken
    in process: the run reports it without depending on events reaching the API."""
    digest = artifacts.digest(ref)
    if digest is None:
        raise RegistryError(f"index.db artifact {ref} does not exist")
    state = pull_index_db(artifacts, ref, digest, return_state=True)
    path = Path(state.result())
    if not path.is_file():  # local cache was cleared while the Prefect result survived
        state = pull_index_db.with_options(refresh_cache=True)(artifacts, ref, digest, return_state=True)
        path = Path(state.result())
    layer = artifacts.layer_digest(path)
    if layer and layer.startswith("sha256:"):  # checked when downloaded: the step keys need not read it
        remember_digest(path, layer.removeprefix("sha256:"))
    return path, state.name


@task(name="push index.db", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=transient_only)
def push_index_db(artifacts: IndexDbArtifacts, ref: str, db_path: Path, annotations: dict[str, str]) -> str:
    return artifacts.push(ref, db_path, annotations, layer_digest=f"sha256:{file_digest(db_path)}")
