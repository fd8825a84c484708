"""IIB's API messages for bad merge parameters (merge.md B §1.1, §2 guard)."""

import pytest

from indexflow.errors import ValidationError
from indexflow.merge.params import validate_request


def check(payload, **kw):
    kw.setdefault("binary_image_configured", True)
    return validate_request(payload, request_id="42", **kw)


@pytest.mark.parametrize(("payload", "message"), [
    ({}, 'The "source_from_index" value must be a string'),
    ({"source_from_index": 3}, 'The "source_from_index" value must be a string'),
    ({"source_from_index": "s", "target_index": 3}, 'The "target_index" value must be a string'),
    ({"source_from_index": "s", "deprecation_list": [""]},
     'The "deprecation_list" value should be an empty array or an array of strings'),
    ({"source_from_index": "s", "binary_image": 1}, 'The "binary_image" value must be a string'),
    ({"source_from_index": "s", "target_index": "t", "overwrite_target_index": "yes"},
     'The "overwrite_target_index" value must be a boolean'),
    ({"source_from_index": "s", "target_index": "t", "overwrite_target_index": True},
     'The "overwrite_target_index_token" value is required when the "overwrite_target_index" value is set'),
    ({"source_from_index": "s", "target_index": "t", "overwrite_target_index_token": "u:p"},
     'The "overwrite_target_index" value is required when the "overwrite_target_index_token" value is used'),
    ({"source_from_index": "s", "overwrite_target_index": True, "overwrite_target_index_token": "u:p"},
     "Parameter 'target_index' must be set when 'overwrite_target_index' or 'overwrite_target_index_token' is provided"),
    ({"source_from_index": "s", "distribution_scope": "qa"},
     'The "distribution_scope" value must be one of "dev", "stage", or "prod"'),
    ({"source_from_index": "s", "build_tags": ["ok", ""]},
     '"build_tags" should be either an empty array or an array of non-empty strings'),
    ({"source_from_index": "s", "build_tags": ["ok", ".hidden"]},
     'The build tag ".hidden" is not a valid image tag (up to 128 letters, digits, "_", "." or "-", '
     'not starting with "." or "-")'),
    ({"source_from_index": "s", "build_tags": ["x" * 129]},
     f'The build tag "{"x" * 129}" is not a valid image tag (up to 128 letters, digits, "_", "." or "-", '
     'not starting with "." or "-")'),
    ({"source_from_index": "s", "graph_update_mode": "fast"},
     "\"graph_update_mode\" must be set to one of these: ['replaces', 'semver', 'semver-skippatch']"),
    ({"source_from_index": "s", "target_index": "q/t:v1", "graph_update_mode": "semver"},
     "\"graph_update_mode\" can only be used on the following index image: []"),
    ({"source_from_index": "s", "graph_update_modes": {"etcd": "fast"}},
     "\"graph_update_modes\" of package \"etcd\" must be set to one of these: ['replaces', 'semver', "
     "'semver-skippatch']"),
    ({"source_from_index": "s", "graph_update_modes": ["etcd"]},
     '"graph_update_modes" must map package names to graph update modes'),
    ({"source_from_index": "s", "target_index": "q/t:v1", "graph_update_modes": {"etcd": "semver"}},
     "\"graph_update_modes\" can only be used on the following index image: []"),
    ({"source_from_index": "s", "default_head_policy": "ignore"},
     "The \"default_head_policy\" value must be one of ['fail', 'remove-package']"),
])
def test_messages(payload, message):
    with pytest.raises(ValidationError) as err:
        check(payload)
    assert str(err.value) == message


def test_binary_image_needed_without_config():
    with pytest.raises(ValidationError, match='^The "binary_image" value must be a non-empty string$'):
        check({"source_from_index": "s"}, binary_image_configured=False)


def test_token_never_in_repr_or_errors():
    req = check({"source_from_index": "s", "target_index": "t", "overwrite_target_index": True,
                 "overwrite_target_index_token": "user:s3cret"})
    assert "s3cret" not in repr(req)
    with pytest.raises(ValidationError) as err:
        check({"source_from_index": "s", "target_index": "t", "overwrite_target_index_token": "user:s3cret"})
    assert "s3cret" not in str(err.value)


def test_valid_request_normalises():
    req = check({"source_from_index": "s", "target_index": "q/t:v1", "distribution_scope": "STAGE",
                 "graph_update_mode": "semver", "build_tags": ["x"]}, graph_mode_allow_list=["q/t"])
    assert (req.distribution_scope, req.mode, req.build_tags, req.request_id) == ("stage", "semver", ("x",), "42")
    assert req.effective_index == "q/t:v1"
    assert check({"source_from_index": "s"}).mode == "replaces"


def test_graph_update_modes_follow_the_graph_mode_rules():
    req = check({"source_from_index": "s", "target_index": "q/t:v1", "graph_update_modes": {"etcd": "semver"},
                 "default_head_policy": "remove-package"}, graph_mode_allow_list=["q/t"])
    assert (dict(req.graph_update_modes), req.mode, req.default_head_policy) == ({"etcd": "semver"}, "replaces",
                                                                                 "remove-package")
    with pytest.raises(ValidationError, match="must be set to one of these: \\['replaces'\\]"):
        check({"source_from_index": "s", "target_index": "q/t:v1", "graph_update_modes": {"etcd": "semver"}},
              graph_mode_allow_list=["q/t"], graph_mode_options=["replaces"])
    assert check({"source_from_index": "s"}).default_head_policy is None  # the settings decide


def test_bad_request_id():
    with pytest.raises(ValidationError, match="request_id"):
        check({"source_from_index": "s", "request_id": "a b"})
