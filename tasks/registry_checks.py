"""Bundle pullspec validation and label reads (merge.md A2 steps 4-5), mapped over tens of chunks.

Prefect's API cannot take thousands of tiny task runs, so each task run checks one chunk with many
concurrent requests on the shared pooled client; the flow reports progress as chunks complete.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from indexflow.catalog.db import BundleRecord
from indexflow.merge.diff import chunks, unique
from indexflow.merge.ocp import OCP_LABEL
from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef
from indexflow.registry.validation import answered_locally, raise_for_missing, read_bundle_labels, validate_pullspecs
from tasks.report import MergeStory
from tasks.retry import transient_only


@task(name="validate pullspecs chunk", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=transient_only)
def validate_chunk(client: RegistryClient, pullspecs: list[str], concurrency: int) -> dict[str, str]:
    """pullspec -> reason for the ones that do not exist (empty when all do)."""
    return validate_pullspecs(client, pullspecs, concurrency=concurrency)


@task(name="read bundle labels chunk", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=transient_only)
def labels_chunk(client: RegistryClient, pullspecs: list[str], concurrency: int) -> dict[str, dict]:
    return read_bundle_labels(client, pullspecs, concurrency=concurrency)


@task(name="resolve deprecation list", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=transient_only)
def resolve_deprecations(client: RegistryClient, pullspecs: list[str]) -> list[str]:
    """Each entry as `repository@digest` (a manifest list counts by its first manifest, like IIB)."""
    out = []
    for text in pullspecs:
        ref = ImageRef.parse(text)
        manifest = client.manifest(ref)
        digest = manifest.digest
        if manifest.json.get("manifests"):
            digest = manifest.json["manifests"][0]["digest"]
        out.append(str(ref.pinned(digest)))
    return out


CHUNKS_IN_FLIGHT = 8  # the flow's ThreadPoolTaskRunner workers


def per_chunk(concurrency: int) -> int:
    """Requests in flight per chunk, so that all chunks running at once share `concurrency`
    (32 threads per chunk times 8 chunks thrashed a 2-core box: cold validation 35% slower)."""
    return max(2, concurrency // CHUNKS_IN_FLIGHT)


def _split(items: Sequence[str], parts: int) -> list[list[str]]:
    size = max(1, -(-len(items) // max(1, parts)))
    return chunks(list(items), size)


def validate_all(client: RegistryClient, pullspecs: Sequence[str], parts: int, concurrency: int,
                 story: MergeStory) -> None:
    """Every unique pullspec checked; ALL missing ones reported in one error."""
    items = unique(pullspecs)
    local = answered_locally(items)
    missing = {p: reason for p, reason in local.items() if reason}
    remote = [p for p in items if p not in local]
    futures = [validate_chunk.submit(client, c, per_chunk(concurrency)) for c in _split(remote, parts)]
    done = 0
    for future in as_completed(futures):
        missing.update(future.result())
        done += 1
        story.progress_within(done / len(futures), f"validated {done}/{len(futures)} chunks of {len(remote)} pullspecs "
                                                   f"({len(local)} known)")
    if missing:
        raise_for_missing(missing)


def labels_and_deprecations(client: RegistryClient, source: list[BundleRecord], target: list[BundleRecord],
                            deprecation_list: Sequence[str], parts: int,
                            concurrency: int) -> tuple[dict[str, str | None], list[str]]:
    """OCP labels of source + target bundles (cached by digest) and the resolved deprecation list."""
    items = unique(b.bundlePath for b in [*target, *source])
    local = answered_locally(items, labels=True)
    remote = [p for p in items if p not in local or isinstance(local[p], str)]  # a failure is the chunk's to report
    futures = [labels_chunk.submit(client, c, per_chunk(concurrency)) for c in _split(remote, parts)]
    resolved = resolve_deprecations(client, list(deprecation_list)) if deprecation_list else []
    labels: dict[str, str | None] = {p: ls.get(OCP_LABEL) for p, ls in local.items() if isinstance(ls, dict)}
    for future in futures:
        labels.update({p: ls.get(OCP_LABEL) for p, ls in future.result().items()})
    return {p: labels[p] for p in items if p in labels}, resolved
