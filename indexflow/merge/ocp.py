"""OCP version labels (`com.redhat.openshift.versions`) judged the way IIB judges them (merge.md B §4.2).

Kept byte-for-byte compatible with IIB's quirks on purpose: clients rely on which bundles a merge
deprecates, so a "cleaner" grammar would silently change published catalogs.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from indexflow.catalog.limits import excerpt
from indexflow.errors import ValidationError

OCP_LABEL = "com.redhat.openshift.versions"


def parse_index_ocp_version(value: str) -> Version:
    """The index's delivery version (`v4.17`) as a comparable version; IIB's message when unparsable."""
    try:
        return Version(value.replace("v", ""))
    except (InvalidVersion, ValueError):  # ValueError: a number past Python's 4,300-digit limit
        raise invalid_index_version(value) from None


def invalid_index_version(value: str) -> ValidationError:
    """IIB's sentence for an index delivery version it cannot use, quoting an excerpt of it."""
    return ValidationError(f'Invalid OCP version, "{excerpt(value)}", specified in Index Image')


def _v(text: str) -> Version:
    return Version(text.replace("v", ""))


def _pipe_valid(label: str, index: Version) -> bool:
    """`=vA|>=vB|...`: every part must be an exact or a lower bound; any match wins."""
    parts = label.split("|")
    if not all(p.startswith(("=", ">=")) for p in parts):
        return False
    for part in parts:
        if part.startswith(">="):
            if index >= _v(part[2:]):
                return True
        elif _v(part[1:]) == index:
            return True
    return False


def _label_valid(label: str, index: Version) -> bool:
    if "|" in label:
        return _pipe_valid(label, index)
    if label.startswith("="):
        return _v(label[1:]) == index
    if "-" in label:
        low, high = (_v(p) for p in label.split("-"))
        return low <= index <= high
    if "," in label:
        return min(_v(p) for p in label.split(",")) <= index
    return _v(label) <= index


def is_bundle_version_valid(label: str | None, index_ocp_version: str, allow_no_ocp_version: bool) -> bool:
    """Whether a bundle whose OCP label is `label` may ship in an index of `index_ocp_version`.

    A missing label is only acceptable when the allow-list permits it; an unparsable label is
    invalid (the bundle gets deprecated, it is not an error of the merge).
    """
    index = parse_index_ocp_version(index_ocp_version)
    if not label:
        return allow_no_ocp_version
    try:
        return _label_valid(label, index)
    except (InvalidVersion, ValueError):
        return False
