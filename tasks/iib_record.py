"""The IIB request fields a merge learns while it runs, kept where the IIB endpoint can read them.

IIB stores `*_resolved`, `arches` and `distribution_scope` on the request as soon as the worker
resolves the images. The flow writes them once, right after resolving (on the story's background
thread: the merge does not wait for the API), as a small table artifact
(key `iib-build-<request id>`, rows of field/value); `indexflow iib-api` reads it back over the REST
API. The run's result itself is not readable through the API, hence an artifact.
"""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from tasks.prepare import Prepared
from tasks.report import artifact_key

IIB_FIELDS_PREFIX = "iib-build"


def record_resolved(request_id: str, prep: Prepared) -> None:
    """One row per IIB field resolved by preparation."""
    fields = {"source_from_index_resolved": prep.source.resolved,
              "target_index_resolved": prep.target.resolved if prep.target else None,
              "binary_image": prep.binary_image, "binary_image_resolved": prep.binary_image_resolved,
              "distribution_scope": prep.scope, "arches": ",".join(sorted(prep.arches))}
    create_table_artifact([{"field": k, "value": v} for k, v in fields.items() if v is not None],
                          key=artifact_key(IIB_FIELDS_PREFIX, request_id),
                          description="IIB request fields (resolved pullspecs, arches, scope)")
