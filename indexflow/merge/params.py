"""The merge request's parameters (merge.md A1), checked with IIB's API messages (B §1.1, §2 guard).

The flow's schema already enforces types; these checks add IIB's semantic rules so a bad request
fails before anything remote is touched, with the sentence an IIB client already knows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexflow.errors import ValidationError

GRAPH_MODES = ("replaces", "semver", "semver-skippatch")
# "fail": IIB's deprecatetruncate error; "remove-package": deprecate every channel head of the package
HEAD_POLICIES = ("fail", "remove-package")
SCOPES = ("dev", "stage", "prod")
# Secret blocks named so hold one run's overwrite token; the run deletes them once read (blocks/tokens.py)
ONE_TIME_SECRET_PREFIX = "indexflow-one-time-"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # the OCI distribution spec's tag grammar


@dataclass(frozen=True)
class MergeRequest:
    """A validated request; the token is kept out of repr so it never reaches a log line."""

    source_from_index: str
    request_id: str
    target_index: str | None = None
    deprecation_list: tuple[str, ...] = ()
    binary_image: str | None = None
    overwrite_target_index: bool = False
    overwrite_target_index_token: str | None = field(default=None, repr=False)
    distribution_scope: str | None = None
    build_tags: tuple[str, ...] = ()
    graph_update_mode: str | None = None
    graph_update_modes: Mapping[str, str] = field(default_factory=dict)  # package -> mode
    ignore_bundle_ocp_version: bool = False
    dry_run: bool = False
    default_head_policy: str | None = None  # HEAD_POLICIES; None: the settings' choice

    @property
    def effective_index(self) -> str:
        """The index whose Git branch and artifacts are written: target if given, else source."""
        return self.target_index or self.source_from_index

    @property
    def mode(self) -> str:
        return self.graph_update_mode or "replaces"


def _str(payload: Mapping[str, Any], key: str, required: bool = False) -> str | None:
    value = payload.get(key)
    if required and (not isinstance(value, str) or not value):
        raise ValidationError(f'The "{key}" value must be a string')
    if value and not isinstance(value, str):
        raise ValidationError(f'The "{key}" value must be a string')
    return value or None


def _str_list(value: Any, message: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ValidationError(message)
    return tuple(value)


def _overwrite(payload: Mapping[str, Any]) -> tuple[bool, str | None]:
    overwrite = payload.get("overwrite_target_index", False)
    token = payload.get("overwrite_target_index_token")
    if not isinstance(overwrite, bool):
        raise ValidationError('The "overwrite_target_index" value must be a boolean')
    if token is not None and not isinstance(token, str):
        raise ValidationError('The "overwrite_target_index_token" value must be a string')
    if overwrite and not token:
        raise ValidationError('The "overwrite_target_index_token" value is required when the '
                              '"overwrite_target_index" value is set')
    if token and not overwrite:
        raise ValidationError('The "overwrite_target_index" value is required when the '
                              '"overwrite_target_index_token" value is used')
    return overwrite, token or None


def _scope(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value.lower() not in SCOPES:
        raise ValidationError('The "distribution_scope" value must be one of "dev", "stage", or "prod"')
    return value.lower()


def _graph_mode(value: Any, target: str | None, options: Sequence[str], allow_list: Sequence[str]) -> str | None:
    if not value:
        return None
    if value not in options:
        raise ValidationError(f'"graph_update_mode" must be set to one of these: {list(options)}')
    index = target or ""
    if index not in allow_list and index.split(":", 1)[0] not in allow_list:
        raise ValidationError(f'"graph_update_mode" can only be used on the following index image: {list(allow_list)}')
    return value


def _graph_modes(value: Any, target: str | None, options: Sequence[str], allow_list: Sequence[str]) -> dict[str, str]:
    """The per-package map, each mode held to the same rules as `graph_update_mode`."""
    if not value:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and k for k in value):
        raise ValidationError('"graph_update_modes" must map package names to graph update modes')
    for package, mode in value.items():
        if mode not in options:
            raise ValidationError(f'"graph_update_modes" of package "{package}" must be set to one of these: '
                                  f"{list(options)}")
    index = target or ""
    if index not in allow_list and index.split(":", 1)[0] not in allow_list:
        raise ValidationError(f'"graph_update_modes" can only be used on the following index image: {list(allow_list)}')
    return dict(value)


def _head_policy(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if value not in HEAD_POLICIES:
        raise ValidationError(f'The "default_head_policy" value must be one of {list(HEAD_POLICIES)}')
    return value


def _build_tags(value: Any) -> tuple[str, ...]:
    """IIB's list check, then each tag against the registry's grammar: a bad tag would otherwise only
    fail at the output copy, after the MR and the Konflux build."""
    tags = _str_list(value, '"build_tags" should be either an empty array or an array of non-empty strings')
    for tag in tags:
        if not _TAG.match(tag):
            raise ValidationError(f'The build tag "{tag}" is not a valid image tag (up to 128 letters, digits, '
                                  '"_", "." or "-", not starting with "." or "-")')
    return tags


def _request_id(value: Any) -> str:
    text = str(value or "")
    if not _REQUEST_ID.match(text):
        raise ValidationError('The "request_id" value must be 1-64 letters, digits, ".", "_" or "-", '
                              "starting with a letter or digit")
    return text


def validate_request(payload: Mapping[str, Any], *, request_id: str, binary_image_configured: bool,
                     graph_mode_options: Sequence[str] = GRAPH_MODES,
                     graph_mode_allow_list: Sequence[str] = ()) -> MergeRequest:
    """Check a request the way IIB's API and worker guard do; the first problem found is raised."""
    source = _str(payload, "source_from_index", required=True)
    target = _str(payload, "target_index")
    deprecations = _str_list(payload.get("deprecation_list"),
                             'The "deprecation_list" value should be an empty array or an array of strings')
    binary = payload.get("binary_image")
    if binary is not None and not isinstance(binary, str):
        raise ValidationError('The "binary_image" value must be a string')
    if not binary and not binary_image_configured:
        raise ValidationError('The "binary_image" value must be a non-empty string')
    overwrite, token = _overwrite(payload)
    if (overwrite or token) and not target:
        raise ValidationError("Parameter 'target_index' must be set when 'overwrite_target_index' or "
                              "'overwrite_target_index_token' is provided")
    tags = _build_tags(payload.get("build_tags"))
    return MergeRequest(
        source_from_index=source, request_id=_request_id(payload.get("request_id") or request_id),
        target_index=target, deprecation_list=deprecations, binary_image=binary or None,
        overwrite_target_index=overwrite, overwrite_target_index_token=token,
        distribution_scope=_scope(payload.get("distribution_scope")), build_tags=tags,
        graph_update_mode=_graph_mode(payload.get("graph_update_mode"), target, graph_mode_options,
                                      graph_mode_allow_list),
        graph_update_modes=_graph_modes(payload.get("graph_update_modes"), target, graph_mode_options,
                                        graph_mode_allow_list),
        ignore_bundle_ocp_version=bool(payload.get("ignore_bundle_ocp_version")),
        dry_run=bool(payload.get("dry_run")), default_head_policy=_head_policy(payload.get("default_head_policy")))
