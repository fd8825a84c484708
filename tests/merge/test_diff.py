"""Missing/invalid bundles and the deprecation choice (merge.md B §4.1, §5)."""

import pytest

from indexflow.catalog.db import BundleRecord
from indexflow.errors import ValidationError
from indexflow.merge import diff

D = {i: f"{i:x}" * 64 for i in range(1, 10)}


def rec(pkg, csv, ver, repo, d):
    return BundleRecord(pkg, csv, ver, f"quay.io/ns/{repo}@sha256:{D[d][:64]}")


SRC = [rec("a", "a.v1.0.0", "1.0.0", "a-bundle", 1), rec("b", "b.v1.0.0", "1.0.0", "b-bundle", 2)]
TGT = [
    rec("a", "a.v1.0.0", "1.0.0", "a-bundle", 1),          # same digest + name: present
    BundleRecord("a", "a.v1.1.0", "1.1.0", f"other.io/x/a-bundle@sha256:{D[2][:64]}"),  # digest in source
    rec("b", "b.v1.0.0", "1.0.0", "b-bundle", 3),          # same csv name, other digest: present
    rec("b", "b.v1.1.0", "1.1.0", "b-bundle", 4),          # missing
    rec("c", "c.v0.1.0", "0.1.0", "c-bundle", 5),          # missing
]


def test_missing_needs_digest_and_name_absent():
    assert [b.csvName for b in diff.missing_bundles(SRC, TGT)] == ["b.v1.1.0", "c.v0.1.0"]


def test_tag_bundles_are_refused():
    bad = [BundleRecord("a", "a.v1", "1.0.0", "quay.io/ns/a:1")]
    with pytest.raises(ValidationError, match="^Bundle quay.io/ns/a:1 in the target index image is not defined via digest$"):
        diff.missing_bundles(SRC, bad)


def test_allow_list_needs_flag_and_prefix():
    assert not diff.allow_no_ocp_version(False, ["quay.io/x"], "quay.io/x/t@sha256:1", None)
    assert diff.allow_no_ocp_version(True, ["quay.io/x"], None, "quay.io/x/s@sha256:1")
    assert not diff.allow_no_ocp_version(True, ["quay.io/y", ""], "quay.io/x/t", "quay.io/x/s")
    assert diff.allow_no_ocp_version(True, ["alice"], "t", "s", user="alice")


def test_invalid_bundles_keep_order():
    labels = {TGT[3].bundlePath: "=v4.5", TGT[4].bundlePath: "v4.12", SRC[0].bundlePath: "v4.6",
              SRC[1].bundlePath: None}
    cand = [TGT[3], TGT[4], *SRC]
    assert diff.invalid_bundles(cand, labels, "v4.13", False) == [TGT[3], SRC[1]]
    assert diff.invalid_bundles(cand, labels, "v4.13", True) == [TGT[3]]


def test_latest_per_package_dedupes_records_present_in_both():
    # IIB raised here: a1 is in source and target, so its record appears twice
    paths = [SRC[0].bundlePath, TGT[3].bundlePath, SRC[1].bundlePath]
    assert diff.latest_per_package(paths, [*SRC, *TGT]) == sorted([SRC[0].bundlePath, TGT[3].bundlePath])


def test_latest_per_package_missing_record():
    with pytest.raises(ValidationError, match=r"missing bundle images: \['nope'\]"):
        diff.latest_per_package(["nope"], SRC)


def test_plan_diff_deprecates_list_and_invalid_latest_only():
    labels = {b.bundlePath: "v4.6" for b in [*SRC, *TGT]}
    labels[SRC[1].bundlePath] = "=v4.5"  # b 1.0.0 invalid at v4.13
    result = diff.plan_diff(SRC, TGT, labels, "v4.13", False, [SRC[0].bundlePath, "quay.io/ns/none@sha256:0"])
    assert [b.csvName for b in result.missing] == ["b.v1.1.0", "c.v0.1.0"]
    assert result.invalid == [SRC[1]]
    assert result.deprecation_matches == [SRC[0].bundlePath]
    assert result.to_deprecate == sorted([SRC[0].bundlePath, SRC[1].bundlePath])
    assert result.packages_touched() == ["b", "c"]


def test_plan_diff_without_target():
    labels = {b.bundlePath: "v4.6" for b in SRC}
    result = diff.plan_diff(SRC, [], labels, "v4.13", False, [])
    assert result.missing == [] and result.to_deprecate == []


def test_chunks():
    assert diff.chunks(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]


def test_a_bundle_left_off_every_channel_gives_way_to_its_packages_newest_listed_one():
    old, new = rec("c", "c.v0.1.0", "0.1.0", "c-bundle", 5), rec("c", "c.v0.2.0", "0.2.0", "c-bundle", 6)
    other = rec("b", "b.v1.1.0", "1.1.0", "b-bundle", 4)
    planned = diff.MergeDiff(missing=[old, new, other], invalid=[old, new, other], deprecation_matches=[],
                             to_deprecate=sorted([new.bundlePath, other.bundlePath]))
    after = diff.listed_only(planned, [old, other], [old, new, other])  # the add left c.v0.2.0 off its channel
    assert after.to_deprecate == sorted([old.bundlePath, other.bundlePath])
    assert diff.listed_only(planned, [], [old, new, other]).to_deprecate == []


def test_plan_diff_carries_the_targets_deprecated_tail_the_source_lacks():
    """The nightly case: the target holds an earlier merge, whose deprecation left c 0.1.0 as the
    deprecated tail that c 0.2.0 replaces. The source lacks it: it is added and deprecated again (IIB
    lists only rendered bundles and fails with "replaces nonexistent bundle")."""
    tail, newer = rec("c", "c.v0.1.0", "0.1.0", "c-bundle", 5), rec("c", "c.v0.2.0", "0.2.0", "c-bundle", 6)
    in_source_tail = rec("a", "a.v0.9.0", "0.9.0", "a-bundle", 7)
    source = [*SRC, in_source_tail]
    labels = {b.bundlePath: "v4.6" for b in [*source, tail, newer]}
    result = diff.plan_diff(source, [SRC[0], newer], labels, "v4.13", False, [], [tail, in_source_tail])
    assert [b.csvName for b in result.missing] == ["c.v0.2.0", "c.v0.1.0"]
    assert result.to_deprecate == [tail.bundlePath]  # a tail the source has stays the source's business
    assert result.invalid == []
