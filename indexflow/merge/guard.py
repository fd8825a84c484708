"""The destructive-merge guard: a merge that would empty much of the target index stops before publishing.

IIB's semantics make it easy to lose bundles without noticing: with no OCP-label allow-list every
bundle lacking `com.redhat.openshift.versions` is "invalid", gets deprecated, and deprecatetruncate
removes the older bundles of its channels. The run still says "successfully merged". This module
counts what the merged catalog loses against the target index, so the flow can refuse (one sentence
with the numbers and the knob that allows it) and the summary can show the numbers either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from indexflow.catalog.db import BundleRecord
from indexflow.errors import ValidationError
from indexflow.merge.diff import digest_of

DEFAULT_MAX_REMOVED_SHARE = 0.10
SETTING = "max_removed_share"


class DestructiveMergeError(ValidationError):
    """The merge would drop (or mark invalid) more of the target's bundles than allowed."""


@dataclass(frozen=True)
class RemovalCheck:
    """What the merged catalog loses relative to the target index, and the share that is allowed."""

    target_bundles: int
    dropped: int  # target bundles whose csv name and digest are both absent from the merged catalog
    invalid: int  # bundles judged invalid for the index's OCP version (they get deprecated)
    invalid_without_label: int  # of those, bundles with no OCP label at all (the allow-list case)
    max_share: float

    def share(self, count: int) -> float:
        return count / self.target_bundles if self.target_bundles else 0.0

    @property
    def exceeded(self) -> bool:
        limit = self.max_share
        return self.share(self.dropped) > limit or self.share(self.invalid) > limit

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def sentence(self, settings_block: str) -> str:
        """The refusal: the numbers, why it usually happens, and the two ways to allow it."""
        why = ""
        if self.invalid_without_label:
            why = (f" ({self.invalid_without_label} bundles have no OCP label: put the index on the settings' "
                   "no_ocp_label_allow_list and pass ignore_bundle_ocp_version to keep them)")
        return (f"Refusing a destructive merge: it would drop {self.dropped} of the target index's "
                f"{self.target_bundles} bundles ({self.share(self.dropped):.0%}) and mark {self.invalid} invalid "
                f"({self.share(self.invalid):.0%}), more than the {self.max_share:.0%} allowed{why}; "
                f"if this is intended, raise {SETTING} in the settings block {settings_block!r} "
                f"or run with the parameter {SETTING} (a share from 0 to 1)")


def check_removals(target: Sequence[BundleRecord], merged: Sequence[BundleRecord], invalid: Sequence[BundleRecord],
                   ocp_labels: dict[str, str | None], max_share: float) -> RemovalCheck:
    """Count the target's bundles the merged catalog no longer has (by csv name and by digest)."""
    names = {b.csvName for b in merged}
    digests = {digest_of(b.bundlePath) for b in merged if "@sha256:" in b.bundlePath}
    dropped = [b for b in target if b.csvName not in names and digest_of(b.bundlePath) not in digests]
    unlabelled = [b for b in invalid if not ocp_labels.get(b.bundlePath)]
    return RemovalCheck(target_bundles=len(target), dropped=len(dropped), invalid=len(invalid),
                        invalid_without_label=len(unlabelled), max_share=max_share)


def enforce(check: RemovalCheck, settings_block: str) -> None:
    if check.exceeded:
        raise DestructiveMergeError(check.sentence(settings_block))
