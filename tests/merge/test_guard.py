"""The destructive-merge guard: counts against the target, the threshold, and its one sentence."""

import pytest

from indexflow.catalog.db import BundleRecord
from indexflow.merge import guard


def rec(pkg: str, n: int, digest: int | None = None) -> BundleRecord:
    return BundleRecord(pkg, f"{pkg}.v{n}.0.0", f"{n}.0.0", f"quay.io/ns/{pkg}@sha256:{(digest or n):064x}")


TARGET = [rec("a", n) for n in range(1, 11)]  # ten bundles of one package


def test_kept_by_name_or_by_digest_is_not_dropped():
    merged = [rec("a", 1), rec("a", 2, digest=99),  # same csv name, rebuilt
              BundleRecord("a", "a.renamed", "3.0.0", TARGET[2].bundlePath)]  # same digest, other name
    check = guard.check_removals(TARGET, merged, [], {}, 0.1)
    assert check.dropped == 7 and check.target_bundles == 10 and check.exceeded


def test_within_the_share_passes_and_is_still_counted():
    check = guard.check_removals(TARGET, TARGET[1:], [], {}, 0.1)
    assert (check.dropped, check.exceeded) == (1, False)  # 10% is allowed, more is not
    guard.enforce(check, "indexflow")


def test_invalid_share_alone_trips_it_and_the_sentence_names_numbers_and_knobs():
    invalid = TARGET[:3]
    labels = {TARGET[0].bundlePath: None, TARGET[1].bundlePath: "=v4.12", TARGET[2].bundlePath: ""}
    check = guard.check_removals(TARGET, TARGET, invalid, labels, 0.25)
    assert (check.dropped, check.invalid, check.invalid_without_label) == (0, 3, 2)
    with pytest.raises(guard.DestructiveMergeError) as err:
        guard.enforce(check, "prod-settings")
    assert str(err.value) == (
        "Refusing a destructive merge: it would drop 0 of the target index's 10 bundles (0%) and mark 3 invalid "
        "(30%), more than the 25% allowed (2 bundles have no OCP label: put the index on the settings' "
        "no_ocp_label_allow_list and pass ignore_bundle_ocp_version to keep them); if this is intended, raise "
        "max_removed_share in the settings block 'prod-settings' or run with the parameter max_removed_share "
        "(a share from 0 to 1)")


def test_share_one_allows_everything_and_no_target_drops_nothing():
    assert not guard.check_removals(TARGET, [], TARGET, {}, 1.0).exceeded
    assert not guard.check_removals([], [], [], {}, 0.0).exceeded
