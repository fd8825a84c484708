"""What a merge changes: bundles missing from the source, invalid bundles, what to deprecate.

Inputs are `BundleRecord`s (as `opm render <db>` lists them) and label/digest lookups already done
by the registry layer, so these rules stay pure and testable against IIB's examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from indexflow.catalog.db import BundleRecord
from indexflow.catalog.semver_go import SemverError, Version
from indexflow.errors import ValidationError
from indexflow.merge.ocp import is_bundle_version_valid


def digest_of(pullspec: str) -> str:
    """The hex part after `@sha256:` (the repository is not part of a bundle's identity)."""
    return pullspec.split("@sha256:", 1)[1]


def require_digests(bundles: Iterable[BundleRecord], which: str) -> None:
    """IIB refuses tag-addressed bundles: identity is by digest (PR #137/#181)."""
    for b in bundles:
        if "@sha256:" not in b.bundlePath:
            raise ValidationError(f"Bundle {b.bundlePath} in the {which} index image is not defined via digest")


def missing_bundles(source: Sequence[BundleRecord], target: Sequence[BundleRecord]) -> list[BundleRecord]:
    """Target bundles whose digest AND csv name are both absent from the source (target order kept)."""
    require_digests(source, "source")
    require_digests(target, "target")
    digests = {digest_of(b.bundlePath) for b in source}
    names = {b.csvName for b in source}
    return [b for b in target if digest_of(b.bundlePath) not in digests and b.csvName not in names]


def allow_no_ocp_version(ignore_bundle_ocp_version: bool, allow_list: Iterable[str], target: str | None,
                         source: str | None, user: str | None = None) -> bool:
    """`ignore_bundle_ocp_version` only counts for indexes (or users) on the operator's allow-list."""
    if not ignore_bundle_ocp_version:
        return False
    return any((target or "").startswith(e) or (source or "").startswith(e) or e == user
               for e in allow_list if e)


def invalid_bundles(candidates: Sequence[BundleRecord], ocp_labels: Mapping[str, str | None],
                    index_ocp_version: str, allow_missing_label: bool) -> list[BundleRecord]:
    """Bundles whose `com.redhat.openshift.versions` label excludes the index's OCP version."""
    return [b for b in candidates
            if not is_bundle_version_valid(ocp_labels.get(b.bundlePath), index_ocp_version, allow_missing_label)]


def match_deprecation_list(intermediate: Sequence[str], resolved: Iterable[str]) -> list[str]:
    """Intermediate bundle pullspecs equal (full string, repository included) to a resolved list entry."""
    wanted = set(resolved)
    return [p for p in intermediate if p in wanted]


def unique(items: Iterable[str]) -> list[str]:
    """De-duplicate preserving first occurrence (deprecation list ∪ invalid bundles)."""
    return list(dict.fromkeys(items))


def _version(b: BundleRecord) -> Version:
    try:
        return Version.parse(b.version)
    except SemverError:
        raise ValidationError(f"Bundle {b.bundlePath} has version {b.version!r}, which is not semver") from None


def latest_per_package(paths: Sequence[str], records: Iterable[BundleRecord]) -> list[str]:
    """Per package, the newest of `paths` (deprecating it truncates the older ones anyway).

    Unlike IIB, records are de-duplicated by pullspec first: a bundle present in both source and
    target is normal in a merge and must not look like a missing record.
    """
    by_path = {}
    for r in records:
        by_path[r.bundlePath] = r
    missing = sorted(set(paths) - by_path.keys())
    if missing:
        raise ValidationError(f"Failed to retrieve bundles by semver, missing bundle images: {missing}")
    best: dict[str, BundleRecord] = {}
    for p in unique(paths):
        r = by_path[p]
        cur = best.get(r.packageName)
        if cur is None or not _version(r) < _version(cur):
            best[r.packageName] = r
    return sorted(r.bundlePath for r in best.values())


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    """Fixed-size slices (deprecatetruncate per 200 bundles; registry checks per task chunk)."""
    size = max(1, size)
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


@dataclass(frozen=True)
class MergeDiff:
    """Everything the merge decided, for the catalog steps and for the report artifacts."""

    missing: list[BundleRecord]
    invalid: list[BundleRecord]
    deprecation_matches: list[str]
    to_deprecate: list[str]
    carried_tails: list[str] = field(default_factory=list)  # the target's deprecated tails, deprecated again

    def packages_touched(self) -> list[str]:
        """Packages that gain or lose bundles (sorted)."""
        pkgs = {b.packageName for b in self.missing} | {b.packageName for b in self.invalid}
        return sorted(pkgs)

    def invalid_paths(self) -> set[str]:
        """Pullspecs of the bundles invalid for the OCP version (the head policy applies to these)."""
        return {b.bundlePath for b in self.invalid}


def plan_diff(source: Sequence[BundleRecord], target: Sequence[BundleRecord], ocp_labels: Mapping[str, str | None],
              index_ocp_version: str, allow_missing_label: bool, resolved_deprecations: Iterable[str],
              target_deprecated: Sequence[BundleRecord] = ()) -> MergeDiff:
    """B §4 + §5 in one pure step: missing, invalid, and the latest-per-package list to deprecate.

    `target_deprecated` are the target's deprecated bundles (render hides them). Those the source lacks
    are carried over as missing and deprecated again: a target that already holds an earlier merge of
    the same source keeps, as the tail of a truncated channel, a deprecated bundle that its newer
    bundles replace; IIB lists only rendered bundles and fails there ("replaces nonexistent bundle").
    Carrying the tail makes a repeated merge give the same catalog as the first one."""
    missing = missing_bundles(source, [*target, *target_deprecated]) if target else []
    tails = {b.bundlePath for b in target_deprecated} & {b.bundlePath for b in missing}
    invalid = invalid_bundles([*missing, *source], ocp_labels, index_ocp_version, allow_missing_label)
    intermediate = [b.bundlePath for b in [*missing, *source]]
    matched = match_deprecation_list(intermediate, resolved_deprecations)
    wanted = unique([*matched, *(b.bundlePath for b in invalid), *sorted(tails)])
    to_deprecate = latest_per_package(wanted, [*source, *target, *target_deprecated]) if wanted else []
    return MergeDiff(missing, invalid, matched, to_deprecate, sorted(tails))


def listed_only(diff: MergeDiff, listed: Iterable[BundleRecord], records: Sequence[BundleRecord]) -> MergeDiff:
    """`diff` with the deprecation list recomputed over the bundles the db still lists after the add.

    Added one release at a time, a later release can leave an earlier bundle off every channel (as
    the catalog's pipeline did): such a bundle is not in the catalog, so it is not deprecated, and
    its package's newest listed wanted bundle stands in for it.
    """
    present = {b.bundlePath for b in listed}
    wanted = [p for p in unique([*diff.deprecation_matches, *(b.bundlePath for b in diff.invalid),
                                 *diff.carried_tails]) if p in present]
    return replace(diff, to_deprecate=latest_per_package(wanted, records) if wanted else [])
