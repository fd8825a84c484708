"""The redaction step (indexflow/redact.py): every secret the run registers, and its base64 and URL
forms, is gone from error messages and from log records (message and traceback) before they leave."""

from __future__ import annotations

import base64
import io
import logging
import urllib.parse

import pytest

from indexflow import redact
from indexflow.errors import CatalogError, RegistryError
from tests.hostile.harness import assert_no_secret

PASSWORD = "pa55/word+with:odd&chars"
TOKEN = "glpat-0123456789abcdef"


@pytest.fixture(autouse=True)
def _fresh():
    redact.forget_all()
    yield
    redact.forget_all()


def test_errors_made_after_remember_carry_no_secret_in_any_form() -> None:
    redact.remember(TOKEN)
    basic = base64.b64encode(f"robot:{TOKEN}".encode()).decode()
    for text in (f"git said {TOKEN}", f"Authorization: Basic {basic}", f"url ?t={urllib.parse.quote(TOKEN, safe='')}",
                 base64.urlsafe_b64encode(TOKEN.encode()).decode()):
        message = str(RegistryError(f"quay.io/x: {text}"))
        assert message.startswith("quay.io/x: ") and "***" in message
        assert_no_secret(message, [TOKEN])


def test_docker_config_credentials_are_learnt_from_the_auth_field() -> None:
    auth = base64.b64encode(f"robot:{PASSWORD}".encode()).decode()
    redact.remember_docker_config({"auths": {"quay.io": {"auth": auth}, "r.io": {"identitytoken": "idtok-123456"}}})
    message = str(CatalogError(f"object '{{\"auths\":{{\"quay.io\":{{\"auth\":\"{auth}\"}}}}}}' {PASSWORD} idtok-123456"))
    assert_no_secret(message, [PASSWORD, "idtok-123456", auth])


def test_a_docker_config_string_the_parser_cannot_read_is_masked_whole() -> None:
    """A Secret value meant as a config.json but nested past Python's JSON parser: kept as one secret
    (a RecursionError out of the redaction setup, before)."""
    value = '{"auths": ' * 5000 + f'"{PASSWORD}-deep"' + "}" * 5000
    redact.remember_docker_config(value)
    assert redact.redact(f"echo {value}") == f"echo {redact.MASK}"


def test_kubeconfig_user_credentials_are_learnt() -> None:
    kubeconfig = {"users": [{"name": "u", "user": {"token": "kube-bearer-token-1", "client-key-data": "S0VZREFUQQ=="}}],
                  "clusters": [{"cluster": {"server": "https://127.0.0.1:6443"}}]}
    redact.remember_mapping_strings(kubeconfig, redact.KUBECONFIG_SECRET_KEYS)
    text = redact.redact("server https://127.0.0.1:6443 said kube-bearer-token-1 S0VZREFUQQ==")
    assert "127.0.0.1:6443" in text
    assert_no_secret(text, ["kube-bearer-token-1", "S0VZREFUQQ=="])


def test_short_and_empty_values_do_not_mask_ordinary_words() -> None:
    redact.remember("", None, "ab")
    assert redact.redact("a tab and a cab") == "a tab and a cab"


def test_log_records_are_redacted_message_args_and_traceback() -> None:
    redact.remember(TOKEN)
    stream = io.StringIO()
    logger = logging.getLogger("hostile.redact.test")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        redact.install_log_filter([logger.name])
        logger.warning("pushing with %s", TOKEN)
        try:
            raise ValueError(f"bug quoting {TOKEN}")  # not an IndexflowError: only the filter stands guard
        except ValueError:
            logger.exception("it broke")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "pushing with ***" in output and "ValueError: bug quoting ***" in output
    assert_no_secret(output, [TOKEN])
