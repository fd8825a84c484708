"""Names and choices a merge derives from its inputs (merge.md B §2, §6.7, §7, §9).

Pure functions: the flow resolves images and reads labels, then asks this module what binary
image, arches, scope, branch, artifact tags and output pullspecs follow from them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from indexflow.catalog.limits import excerpt
from indexflow.errors import ValidationError
from indexflow.merge.ocp import invalid_index_version

VERSION_LABEL = "com.redhat.index.delivery.version"
SCOPE_LABEL = "com.redhat.index.delivery.distribution_scope"
DEFAULT_OCP = "v4.5"  # IIB: a missing delivery label means v4.5, whatever the index
_SCOPE_ORDER = {"dev": 0, "stage": 1, "prod": 2}
MAX_LABEL = 128  # a delivery label is a short token ("v4.17", "prod"); it names a Git branch
_LAST_SEGMENT = re.compile(r"^(?P<name>[^:@/]+):(?P<tag>[^@/]*)(@.*)?$")


@dataclass(frozen=True)
class IndexInfo:
    """One resolved index image: what preparation learns from the registry."""

    pullspec: str
    resolved: str  # repository@sha256:...
    ocp_version: str
    distribution_scope: str
    arches: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_labels(cls, pullspec: str, resolved: str, labels: Mapping[str, str],
                    arches: Iterable[str]) -> "IndexInfo":
        """The delivery labels become a Git branch, lock keys, build metadata and error messages:
        a value that is not a short printable token is refused here, before any of them."""
        ocp, scope = labels.get(VERSION_LABEL) or DEFAULT_OCP, labels.get(SCOPE_LABEL) or "prod"
        if not _token(ocp):
            raise invalid_index_version(ocp)
        if not _token(scope):
            raise ValidationError(f'Invalid distribution scope, "{excerpt(scope)}", specified in Index Image '
                                  f"{pullspec}")
        return cls(pullspec, resolved, ocp, scope, frozenset(arches))

    @property
    def digest(self) -> str:
        return self.resolved.rsplit("@", 1)[1]


def _token(label: str) -> bool:
    return len(label) <= MAX_LABEL and label.isprintable() and not any(c.isspace() for c in label)


def narrow_scope(requested: str | None, resolved: str) -> str:
    """A request may narrow the index's distribution scope (prod -> stage -> dev), never widen it."""
    if requested is None:
        return resolved
    if _SCOPE_ORDER[requested] > _SCOPE_ORDER.get(resolved, 2):
        raise ValidationError(f'Cannot set "distribution_scope" to {requested} because from index is '
                              f"already set to {resolved}")
    return requested


def binary_image_for(requested: str | None, config: Mapping[str, Mapping[str, str]], scope: str,
                     ocp_version: str) -> str:
    """The binary image from the request or from the operator's `{scope: {ocp: image}}` map."""
    configured = (config.get(scope) or {}).get(ocp_version)
    if not requested:
        if not configured:
            raise ValidationError(
                f"IIB does not have a configured binary_image for distribution_scope : {scope} and "
                f"ocp_version: {ocp_version}. Please specify a binary_image value in the request.")
        return configured
    if configured == "scratch" and requested != "scratch":
        raise ValidationError(f"The index image must be built as a binaryless for {ocp_version}.")
    if requested == "scratch" and configured != "scratch":  # IIB: also when nothing is configured
        raise ValidationError(f"The index image should not be binaryless for {ocp_version}.")
    return requested


def build_arches(index_arches: Iterable[str], binary_arches: Iterable[str] | None, binary_image: str,
                 less_arches_allowed: Sequence[str] = ()) -> list[str]:
    """Arches of the build: union over the indexes, limited to what the binary image offers."""
    if binary_image == "scratch" or binary_arches is None:
        return ["amd64"] if binary_image == "scratch" else sorted(set(index_arches))
    wanted, have = set(index_arches), set(binary_arches)
    if not wanted:
        raise ValidationError("No arches were provided to build the index image")
    if wanted <= have:
        return sorted(wanted)
    if less_arches_allowed and binary_image not in less_arches_allowed:
        raise ValidationError("The binary image is not available for the following arches: "
                              f"{', '.join(sorted(wanted - have))}")
    both = wanted & have
    if not both:
        raise ValidationError("The binary image is not available for any of the following arches: "
                              f"{', '.join(sorted(wanted))}")
    return sorted(both)


def branch_name(environment: str | None, request_id: str, ocp_version: str) -> str:
    """The MR's feature branch, prefixed with the environment so tenants do not fire on each other."""
    prefix = f"iib-{environment}-" if environment else "iib-"
    return f"{prefix}request-{request_id}-{ocp_version}"


def image_name_tag(pullspec: str) -> tuple[str, str]:
    """`name`, `tag` of the last path segment (`.../iib-pub-pending:v4.17` -> iib-pub-pending, v4.17)."""
    last = pullspec.rsplit("/", 1)[-1]
    if ":" not in last:
        raise ValidationError(f"Invalid pullspec format: '{pullspec}'. Missing tag (':') delimiter.")
    m = _LAST_SEGMENT.match(last)
    if not m or not m.group("tag"):
        raise ValidationError(f"Invalid pullspec format: '{pullspec}'. Could not parse name:tag structure.")
    return m.group("name"), m.group("tag")


@dataclass(frozen=True)
class ArtifactRefs:
    canonical: str
    per_request: str


def artifact_refs(index_pullspec: str, registry: str, request_id: str,
                  template: str = "{registry}/index-db:{tag}",
                  tag_template: str = "{image_name}-{tag}") -> ArtifactRefs:
    """Where an index's index.db lives: the canonical tag and this request's own tag."""
    name, tag = image_name_tag(index_pullspec)
    combined = tag_template.format(image_name=name, tag=tag)
    return ArtifactRefs(template.format(registry=registry, tag=combined),
                        template.format(registry=registry, tag=f"{combined}-{request_id}"))


def lock_parts(git_url: str, ocp_version: str, index: str, canonical_artifact: str) -> tuple[str, str, str]:
    """What two merges must not share, one lock each: the Git repo + OCP branch (the MR merge), the
    index image written (its overwrite) and its canonical index.db artifact. The request's own artifact
    tag is not among them: two tags of one index share the branch, and that is what must wait."""
    return f"git {git_url} {ocp_version}", f"image {index}", f"index.db {canonical_artifact}"


def output_pullspecs(registry: str, request_id: str, build_tags: Sequence[str],
                     template: str = "{registry}/iib-build:{request_id}") -> list[str]:
    """Primary output (the request id tag) first, then one per build tag."""
    return [template.format(registry=registry, request_id=t) for t in [request_id, *build_tags]]


def build_metadata(opm_version: str, ocp_version: str, scope: str, binary_image: str, request_id: str,
                   arches: Iterable[str]) -> dict:
    """`.iib-build-metadata.json`: what the Konflux pipeline needs to build the image."""
    rid: int | str = int(request_id) if request_id.isdigit() else request_id
    return {"opm_version": opm_version,
            "labels": {VERSION_LABEL: ocp_version, SCOPE_LABEL: scope},
            "binary_image": binary_image, "request_id": rid, "arches": sorted(arches)}


def commit_message(request_id: str, missing: Sequence[str]) -> str:
    return f"IIB: Merge operators for request {request_id}\n\nMissing bundles: {', '.join(missing)}"


def migrate_level(ocp_version: str) -> str | None:
    """OCP >= 4.17 catalogs carry csv metadata instead of bundle objects (opm >= v1.46 default in IIB)."""
    m = re.match(r"^v?(\d+)\.(\d+)", ocp_version)
    if m and (int(m.group(1)), int(m.group(2))) >= (4, 17):
        return "bundle-object-to-csv-metadata"
    return None


def opm_version_for(ocp_version: str, mapping: Mapping[str, str], default: str = "opm") -> str:
    """The opm release IIB would have used (recorded in the metadata; we run our own engine)."""
    return mapping.get(ocp_version, default)
