"""Preparation (merge.md A2 step 1, B §2): resolve the indexes and decide binary image, scope, arches.

Manifest lists and OCI image indexes are both accepted (IIB rejects OCI indexes). The effective
index (target if given, else source) supplies the OCP version and the scope IIB would take from
the target's defaults; that IIB quirk (§13) is deliberately not kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from indexflow.merge import plan
from indexflow.merge.params import MergeRequest
from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef
from tasks.retry import transient_only


@dataclass(frozen=True)
class Prepared:
    source: plan.IndexInfo
    target: plan.IndexInfo | None
    scope: str
    binary_image: str
    binary_image_resolved: str
    arches: list[str]

    @property
    def effective(self) -> plan.IndexInfo:
        return self.target or self.source

    @property
    def ocp_version(self) -> str:
        return self.effective.ocp_version


def _index_info(client: RegistryClient, pullspec: str) -> plan.IndexInfo:
    ref = ImageRef.parse(pullspec)
    resolved = ref.pinned(client.resolve(ref))
    return plan.IndexInfo.from_labels(pullspec, str(resolved), client.labels(resolved), client.arches(resolved))


@task(name="resolve index images", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=transient_only)
def resolve_indexes(client: RegistryClient, target_client: RegistryClient, req: MergeRequest,
                    binary_image_config: dict, less_arches_allowed: list[str]) -> Prepared:
    """Digests, delivery labels and arches of source and target; then binary image and arches."""
    source = _index_info(client, req.source_from_index)
    target = _index_info(target_client, req.target_index) if req.target_index else None
    effective = target or source
    scope = plan.narrow_scope(req.distribution_scope, effective.distribution_scope)
    binary = plan.binary_image_for(req.binary_image, binary_image_config, scope, effective.ocp_version)
    index_arches = source.arches | (target.arches if target else frozenset())
    if binary == "scratch":
        return Prepared(source, target, scope, binary, "scratch", ["amd64"])
    bref = ImageRef.parse(binary)
    bresolved = str(bref.pinned(client.resolve(bref)))
    arches = plan.build_arches(index_arches, client.arches(ImageRef.parse(bresolved)), binary,
                               less_arches_allowed)
    return Prepared(source, target, scope, binary, bresolved, arches)
