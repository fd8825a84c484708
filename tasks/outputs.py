"""Registry writes of the publish step (merge.md A2 step 10) and their exact undo.

Every write is preceded by recording its undo, computed from the tag's state before the write: a
tag that existed is put back on its old digest, a tag that did not exist is removed. Recording
first means a write whose outcome we never learned (a dropped connection after the registry acted)
is still undone. `RegistryClient.delete_tag` re-points the repository's other tags that shared the
digest, so `tag -> digest` ends exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from indexflow.errors import PublishError, RegistryError
from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef


def current_digest(client: RegistryClient, pullspec: str) -> str | None:
    """The digest a tag points at now, or None when the tag does not exist."""
    return client.find_digest(ImageRef.parse(pullspec))


def undo_tag_write(client: RegistryClient, pullspec: str, old_digest: str | None) -> Callable[[], bool]:
    """The action that puts `pullspec` back where it was; returns False when nothing had changed."""
    ref = ImageRef.parse(pullspec)

    def undo() -> bool:
        now = current_digest(client, pullspec)
        if now == old_digest:
            return False
        if old_digest:
            client.copy(ref.pinned(old_digest), ref)
        else:
            client.delete_tag(ref)
        return True

    return undo


@task(name="copy built index to output", cache_policy=NO_CACHE)
def copy_image(client: RegistryClient, source: str, destination: str) -> str:
    """One `copy --all` (the client already retries transient registry errors per request)."""
    try:
        return client.copy(ImageRef.parse(source), ImageRef.parse(destination))
    except RegistryError as exc:
        raise PublishError(f"Failed to copy built index from Konflux to {destination}: {exc}") from exc


@task(name="overwrite target index", cache_policy=NO_CACHE)
def overwrite_target(client: RegistryClient, output: str, target_index: str, digest_at_start: str) -> str:
    """Copy the output over the target, but only if nobody moved the target since step 1."""
    if current_digest(client, target_index) != digest_at_start:
        raise PublishError("The supplied from_index image changed during the IIB request. "
                           "Please resubmit the request.")
    try:
        return client.copy(ImageRef.parse(output), ImageRef.parse(target_index))
    except RegistryError as exc:
        raise PublishError(f"Failed to overwrite the input from_index container image of {target_index}: "
                           f"{exc}") from exc
