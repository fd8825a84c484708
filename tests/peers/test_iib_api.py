"""IIB (release-engineering/iib, branch main) merge-index-image request checks, as direct calls.

tests/test_web/test_api_v1.py posts merge requests to IIB's API and checks the answer; here the same
payloads go through `validate_request` (what the IIB endpoint and the flow both call). The worker's
binary-image rule (tests/test_workers/test_tasks/test_utils.py) goes through `plan.binary_image_for`.
"""

from __future__ import annotations

import pytest

from indexflow.errors import ValidationError
from indexflow.merge import plan
from indexflow.merge.params import validate_request

API = "iib main tests/test_web/test_api_v1.py"
BASE = {"deprecation_list": ["some@sha256:bundle"], "binary_image": "binary:image",
        "source_from_index": "source_index:image", "target_index": "target_index:image"}


def _validate(payload: dict, **kw: object):  # noqa: ANN202
    kw.setdefault("binary_image_configured", True)
    return validate_request(payload, request_id="1", **kw)


@pytest.mark.parametrize("binary_image", ["binary:image", "scratch"])
@pytest.mark.parametrize("scope", [None, "stage"])
def test_merge_success(binary_image: str, scope: str | None) -> None:
    """Peer: test_api_v1.py:1973-2037 test_merge_index_image_success (201; echoes binary image and scope)."""
    payload = BASE | {"binary_image": binary_image, "build_tags": [], "graph_update_mode": "semver"}
    if scope:
        payload["distribution_scope"] = scope
    req = _validate(payload, graph_mode_allow_list=["target_index:image"])
    assert (req.binary_image, req.distribution_scope, req.graph_update_mode) == (binary_image, scope, "semver")
    assert req.deprecation_list == ("some@sha256:bundle",)


def test_overwrite_token_redacted() -> None:
    """Peer: test_api_v1.py:2040-2066: the token reaches the worker but never its printed arguments."""
    req = _validate(BASE | {"graph_update_mode": "replaces", "overwrite_target_index": True,
                            "overwrite_target_index_token": "username:password"},
                    graph_mode_allow_list=["target_index:image"])
    assert req.overwrite_target_index and req.overwrite_target_index_token == "username:password"
    assert "username:password" not in repr(req)


@pytest.mark.parametrize("overwrite", [False, True])
def test_token_without_colon_accepted(overwrite: bool) -> None:
    """Peer: test_api_v1.py:2068-2121 test_merge_index_image_custom_user_queue: `some_token` (no ':') is a
    201 (IIB later writes it as the registry's auth entry, which skopeo skips: anonymous access).
    The queue routing itself has no counterpart (no Celery queues)."""
    payload = BASE | {"graph_update_mode": "replaces", "ignore_bundle_ocp_version": True}
    if overwrite:
        payload |= {"overwrite_target_index": True, "overwrite_target_index_token": "some_token"}
    req = _validate(payload, graph_mode_allow_list=["target_index:image"])
    assert req.overwrite_target_index is overwrite
    assert req.overwrite_target_index_token == ("some_token" if overwrite else None)
    assert req.ignore_bundle_ocp_version


@pytest.mark.parametrize(("extra", "message"), [
    ({"overwrite_target_index": True},
     'The "overwrite_target_index_token" value is required when the "overwrite_target_index" value is set'),
    ({"overwrite_target_index_token": "some_token"},
     'The "overwrite_target_index" value is required when the "overwrite_target_index_token" value is used'),
])
def test_missing_overwrite_params(extra: dict, message: str) -> None:
    """Peer: test_api_v1.py:2124-2152 test_merge_index_image_fail_on_missing_overwrite_params (400)."""
    with pytest.raises(ValidationError) as err:
        _validate(BASE | extra)
    assert str(err.value) == message


@pytest.mark.parametrize(("change", "message"), [
    ({"deprecation_list": [123]}, 'The "deprecation_list" value should be an empty array or an array of strings'),
    ({"source_from_index": 564}, 'The "source_from_index" value must be a string'),
    ({"target_index": 33}, 'The "target_index" value must be a string'),
    ({"binary_image": 567}, 'The "binary_image" value must be a string'),
])
def test_invalid_params(change: dict, message: str) -> None:
    """Peer: test_api_v1.py:2155-2206 test_merge_index_image_fail_on_invalid_params (400)."""
    with pytest.raises(ValidationError) as err:
        _validate(BASE | change)
    assert str(err.value) == message


@pytest.mark.parametrize(("requested", "config", "message"), [
    ("binary-image:latest", {"prod": {"v4.5": "scratch"}}, "The index image must be built as a binaryless for v4.5."),
    ("scratch", {"prod": {"v4.5": "binary-image:latest"}}, "The index image should not be binaryless for v4.5."),
    ("scratch", {}, "The index image should not be binaryless for v4.5."),
])
def test_binaryless_invalid_conditions(requested: str, config: dict, message: str) -> None:
    """Peer: iib main tests/test_workers/test_tasks/test_utils.py:1529-1572
    test_prepare_request_for_build_binaryless_invalid_conditions; the third row is the same rule in
    iib/workers/tasks/utils.py:281 (`scratch` while the config has no binary image at all)."""
    with pytest.raises(ValidationError) as err:
        plan.binary_image_for(requested, config, "prod", "v4.5")
    assert str(err.value) == message


def test_binaryless_allowed_when_configured() -> None:
    """Peer: test_utils.py:1456 test_prepare_request_for_build_binaryless: scratch requested and configured."""
    assert plan.binary_image_for("scratch", {"prod": {"v4.5": "scratch"}}, "prod", "v4.5") == "scratch"
