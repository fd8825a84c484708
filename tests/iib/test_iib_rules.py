"""The iib-api's rules that need no server: start-up refusals, privileges, IIB's JSON shapes."""

from __future__ import annotations

import asyncio

import pytest

from blocks.iib_api_settings import IibApiSettings
from indexflow.app.iib_auth import (Forbidden, ServeError, TrustedProxy, authenticator, check_overwrite, check_tls,
                                    repository)
from indexflow.app.iib_builds import Build, check_payload, id_of_output, request_json, request_key, state_history
from indexflow.errors import ValidationError


@pytest.mark.parametrize("host, cert, key, refused", [
    ("127.0.0.1", None, None, False),
    ("::1", None, None, False),
    ("0.0.0.0", None, None, True),  # plain HTTP off loopback
    ("iib.example.com", None, None, True),
    ("0.0.0.0", "/nonexistent/cert.pem", "/nonexistent/key.pem", True),  # unreadable
    ("127.0.0.1", "/etc/hostname", None, True),  # a certificate without its key
])
def test_tls_is_required_off_loopback(host: str, cert: str | None, key: str | None, refused: bool) -> None:
    if refused:
        with pytest.raises(ServeError):
            check_tls(host, cert, key)
    else:
        check_tls(host, cert, key)


def test_no_login_only_on_loopback_and_logins_need_their_config() -> None:
    assert authenticator(IibApiSettings(), "127.0.0.1").mode == "none"
    with pytest.raises(ServeError, match="loopback only"):
        authenticator(IibApiSettings(), "0.0.0.0")
    with pytest.raises(ServeError, match="proxy_addresses is empty"):
        authenticator(IibApiSettings(auth="proxy"), "0.0.0.0")
    with pytest.raises(ServeError, match="not a readable keytab"):
        authenticator(IibApiSettings(auth="kerberos", keytab="/nonexistent.keytab"), "0.0.0.0")


def test_proxy_header_believed_only_from_the_proxy() -> None:
    proxy = TrustedProxy(["10.1.0.0/16", "127.0.0.2"], "X-Remote-User")
    headers = {"X-Remote-User": "alice@EXAMPLE.COM"}
    assert asyncio.run(proxy.user(headers, "10.1.2.3")) == "alice@EXAMPLE.COM"
    assert asyncio.run(proxy.user(headers, "127.0.0.2")) == "alice@EXAMPLE.COM"
    assert asyncio.run(proxy.user(headers, "10.2.0.1")) is None
    assert asyncio.run(proxy.user(headers, None)) is None
    assert asyncio.run(proxy.user({}, "10.1.2.3")) is None


def test_overwrite_needs_a_privilege_for_that_target_repository() -> None:
    privileged = {"alice@R": ["quay.io/redhat/*-index"], "ops@R": ["*"]}
    check_overwrite("alice@R", "quay.io/redhat/community-operator-index:v4.17", privileged)
    check_overwrite("ops@R", "registry:5000/x/y@sha256:" + "a" * 64, privileged)
    for user, target in [("alice@R", "quay.io/other/community-operator-index:v4.17"),
                         ("bob@R", "quay.io/redhat/community-operator-index:v4.17"), (None, "quay.io/a:b")]:
        with pytest.raises(Forbidden, match='not allowed to use "overwrite_target_index"'):
            check_overwrite(user, target, privileged)
    assert repository("registry:5000/ns/name:v4.17") == "registry:5000/ns/name"
    assert repository("registry:5000/ns/name") == "registry:5000/ns/name"


@pytest.mark.parametrize("payload, message", [
    ({"source_from_index": "a:b", "dry_run": "false"}, 'The "dry_run" value must be a boolean'),
    ({"source_from_index": "a:b", "dry_run": []}, 'The "dry_run" value must be a boolean'),
    ({"source_from_index": "a:b", "ignore_bundle_ocp_version": 1}, 'The "ignore_bundle_ocp_version" value must be a boolean'),
    ({"source_from_index": "a:b", "graph_update_mode": ["semver"]}, 'The "graph_update_mode" value must be a string'),
    ({"source_from_index": "a:b", "target_index": 7}, 'The "target_index" value must be a string'),
])
def test_types_checked_like_iib(payload: dict, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_payload(payload, {"binary_image_config": {"prod": {}}})
    assert str(caught.value) == message


def test_request_key_is_per_user_and_request_unless_the_client_names_one() -> None:
    one = {"source_from_index": "a:b"}
    assert request_key("alice", one, None) == request_key("alice", dict(one), None)
    assert request_key("alice", one, None) != request_key("bob", one, None)
    assert request_key("alice", one, None) != request_key("alice", {**one, "dry_run": True}, None)
    assert request_key("alice", one, "k1") == request_key("alice", {"other": 1}, "k1") != request_key("alice", one, "k2")


def test_output_pullspec_read_back_to_its_build() -> None:
    settings = {"iib_registry": "quay.io/iib", "image_push_template": "{registry}/iib-build:{request_id}"}
    assert id_of_output("quay.io/iib/iib-build:5012", settings) == 5012
    assert id_of_output("quay.io/iib/iib-build:latest", settings) is None
    assert id_of_output("quay.io/other/iib-build:5012", settings) is None


def test_state_history_keeps_every_transition_newest_first() -> None:
    run = {"id": "r", "created": "2026-01-01T00:00:00Z", "parameters": {"source_from_index": "s:1"},
           "state": {"type": "FAILED", "message": "Failed to merge: boom", "timestamp": "2026-01-01T00:03:00Z"}}
    logs = [{"message": "state_reason: Preparing request for merge", "timestamp": "2026-01-01T00:01:00Z"},
            {"message": "state_reason: Cloning Git repository", "timestamp": "2026-01-01T00:02:00Z"},
            {"message": "state_reason: Failed to merge: boom", "timestamp": "2026-01-01T00:03:00Z"}]
    build = Build(9, run, reason_logs=logs)
    history = state_history(build, ("failed", "Failed to merge: boom"))
    assert [(h["state"], h["state_reason"]) for h in history] == [
        ("failed", "Failed to merge: boom"), ("in_progress", "Cloning Git repository"),
        ("in_progress", "Preparing request for merge"), ("in_progress", "The request was initiated")]
    body = request_json(build, {}, None, "https://iib/api/v1/builds/9/logs")
    assert body["state_history"] == history and body["updated"] == "2026-01-01T00:03:00.000000Z"
    assert body["logs"]["url"].endswith("/builds/9/logs") and body["index_image"] is None


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"a": ' * 5000 + b"1" + b"}" * 5000],
                         ids=["deep-list", "deep-object"])
def test_a_body_nested_beyond_the_parser_is_a_400_sentence(body: bytes) -> None:
    """10 KB fit any body limit; Python's JSON parser runs out of stack on them (a 500 and a traceback
    in the service log, before)."""
    from indexflow.app.iib_api import parse_json

    with pytest.raises(ValidationError) as err:
        parse_json(body)
    assert str(err.value) == "The input data must be a JSON object"
