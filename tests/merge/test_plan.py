"""Derived names and choices (merge.md B §2, §6.7, §7, §9)."""

import pytest

from indexflow.errors import ValidationError
from indexflow.merge import plan


def test_index_info_defaults():
    info = plan.IndexInfo.from_labels("r/i:v", "r/i@sha256:ab", {}, ["amd64"])
    assert (info.ocp_version, info.distribution_scope, info.digest) == ("v4.5", "prod", "sha256:ab")


@pytest.mark.parametrize(("labels", "message"), [
    ({plan.VERSION_LABEL: "v4.17\nRUN x"}, 'Invalid OCP version, "v4.17\\nRUN x", specified in Index Image'),
    ({plan.VERSION_LABEL: "v4.17 "}, 'Invalid OCP version, "v4.17 ", specified in Index Image'),
    ({plan.VERSION_LABEL: "4." + "1." * 200_000 + "1"}, 'Invalid OCP version, "4.1.1.'),
    ({plan.SCOPE_LABEL: "x" * 1_000_000}, 'Invalid distribution scope, "xxx'),
])
def test_index_labels_that_are_not_short_tokens_are_refused_with_an_excerpt(labels, message):
    """The delivery labels come from the index image's config (anyone who can push it): they name a
    Git branch and land in lock keys, build metadata and messages, so a label of a megabyte or with
    a line break stops here, quoted only in part."""
    with pytest.raises(ValidationError) as err:
        plan.IndexInfo.from_labels("r/i:v", "r/i@sha256:ab", labels, ["amd64"])
    assert str(err.value).startswith(message) and len(str(err.value)) < 250


def test_index_labels_as_real_indexes_carry_them_are_kept():
    info = plan.IndexInfo.from_labels("r/i:v", "r/i@sha256:ab", {plan.VERSION_LABEL: "v4.17",
                                                                 plan.SCOPE_LABEL: "stage"}, ["amd64"])
    assert (info.ocp_version, info.distribution_scope) == ("v4.17", "stage")


@pytest.mark.parametrize(("req", "resolved", "out"), [
    (None, "prod", "prod"), ("dev", "prod", "dev"), ("stage", "stage", "stage"), ("prod", "dev", None),
    ("prod", "stage", None), ("stage", "dev", None), (None, "dev", "dev"), ("dev", "stage", "dev"),
    ("dev", "dev", "dev"),
])
def test_scope_only_narrows(req, resolved, out):
    if out is None:
        with pytest.raises(ValidationError, match=f'Cannot set "distribution_scope" to {req} because from index is already set to {resolved}'):
            plan.narrow_scope(req, resolved)
    else:
        assert plan.narrow_scope(req, resolved) == out


def test_binary_image_rules():
    cfg = {"prod": {"v4.17": "reg/opm:4.17", "v4.5": "scratch"}}
    assert plan.binary_image_for(None, cfg, "prod", "v4.17") == "reg/opm:4.17"
    assert plan.binary_image_for("mine", cfg, "prod", "v4.17") == "mine"
    with pytest.raises(ValidationError, match="does not have a configured binary_image for distribution_scope : dev and ocp_version: v4.17"):
        plan.binary_image_for(None, cfg, "dev", "v4.17")
    with pytest.raises(ValidationError, match="^The index image should not be binaryless for v4.17.$"):
        plan.binary_image_for("scratch", cfg, "prod", "v4.17")
    with pytest.raises(ValidationError, match="^The index image must be built as a binaryless for v4.5.$"):
        plan.binary_image_for("x", cfg, "prod", "v4.5")


def test_build_arches():
    assert plan.build_arches(["amd64", "arm64"], ["amd64", "arm64", "s390x"], "b") == ["amd64", "arm64"]
    assert plan.build_arches(["amd64", "arm64"], ["amd64"], "b") == ["amd64"]
    assert plan.build_arches(["x"], None, "scratch") == ["amd64"]
    with pytest.raises(ValidationError, match="following arches: arm64"):
        plan.build_arches(["amd64", "arm64"], ["amd64"], "b", ["other"])
    with pytest.raises(ValidationError, match="any of the following arches: arm64"):
        plan.build_arches(["arm64"], ["amd64"], "b")
    with pytest.raises(ValidationError, match="No arches"):
        plan.build_arches([], ["amd64"], "b")


def test_names():
    assert plan.branch_name("qe", "7", "v4.17") == "iib-qe-request-7-v4.17"
    assert plan.branch_name(None, "7", "v4.17") == "iib-request-7-v4.17"
    refs = plan.artifact_refs("127.0.0.1:5000/rh-osbs/iib-pub-pending:v4.17@sha256:00", "reg:1", "7")
    assert refs.canonical == "reg:1/index-db:iib-pub-pending-v4.17"
    assert refs.per_request == "reg:1/index-db:iib-pub-pending-v4.17-7"
    assert plan.output_pullspecs("reg", "7", ["a", "b"]) == ["reg/iib-build:7", "reg/iib-build:a", "reg/iib-build:b"]


@pytest.mark.parametrize("bad", ["quay.io/ns/index", "quay.io/ns/index:"])
def test_artifact_names_need_a_tag(bad):
    with pytest.raises(ValidationError, match="Invalid pullspec format"):
        plan.image_name_tag(bad)


def test_metadata_and_levels():
    md = plan.build_metadata("opm-v1.48.0", "v4.19", "prod", "b@sha256:1", "12", ["s390x", "amd64"])
    assert md == {"opm_version": "opm-v1.48.0", "labels": {plan.VERSION_LABEL: "v4.19", plan.SCOPE_LABEL: "prod"},
                  "binary_image": "b@sha256:1", "request_id": 12, "arches": ["amd64", "s390x"]}
    assert plan.migrate_level("v4.17") == "bundle-object-to-csv-metadata"
    assert plan.migrate_level("v4.16") is None
    assert plan.commit_message("3", ["a", "b"]).endswith("Missing bundles: a, b")
