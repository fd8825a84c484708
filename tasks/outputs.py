"""Registry writes of the publish step (merge.md A2 step 10) and their exact undo.

A tag that existed is put back on its old digest; a tag that did not exist is removed (the
registry deletes by digest only, which also drops every other tag of that repository on the same
digest, so those are re-pointed afterwards). That keeps `tag -> digest` exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from indexflow.errors import PublishError, RegistryError


def current_digest(client, pullspec: str) -> str | None:  # noqa: ANN001 - RegistryClient
    from indexflow.registry.refs import ImageRef

    ref = ImageRef.parse(pullspec)
    return client.resolve(ref) if client.exists(ref) else None


def undo_tag_write(client, pullspec: str, old_digest: str | None) -> Callable[[], None]:  # noqa: ANN001
    """The action that puts `pullspec` back where it was before our write."""
    from indexflow.registry.refs import ImageRef

    ref = ImageRef.parse(pullspec)

    def undo() -> None:
        if old_digest:
            client.copy(ref.with_tag(None).with_digest(old_digest) if hasattr(ref, "with_tag") else ref, ref)
            return
        if client.exists(ref):
            client.delete_tag(ref)

    return undo


@task(name="copy built index to output", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[2, 5, 10])
def copy_image(client, source: str, destination: str) -> str:  # noqa: ANN001
    from indexflow.registry.refs import ImageRef

    try:
        return client.copy(ImageRef.parse(source), ImageRef.parse(destination))
    except RegistryError as exc:
        raise PublishError(f"Failed to copy built index from Konflux to {destination}: {exc}") from exc


@task(name="check target unchanged", cache_policy=NO_CACHE)
def check_target_unchanged(client, target_index: str, digest_at_start: str) -> None:  # noqa: ANN001
    if current_digest(client, target_index) != digest_at_start:
        raise PublishError("The supplied from_index image changed during the IIB request. "
                           "Please resubmit the request.")
