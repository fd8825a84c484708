"""The overwrite token by reference: a Secret block named by `overwrite_target_index_token_secret`."""

from __future__ import annotations

import pytest
from prefect.blocks.system import Secret
from pydantic import SecretStr

from blocks.tokens import overwrite_token
from indexflow.errors import ValidationError
from indexflow.merge.params import ONE_TIME_SECRET_PREFIX


def test_token_from_a_named_secret_block_is_kept() -> None:
    Secret(value="robot:kept").save("release-robot-token", overwrite=True)
    assert overwrite_token(None, "release-robot-token") == "robot:kept"
    assert Secret.load("release-robot-token").get() == "robot:kept"  # an operator's block stays


def test_one_time_secret_is_deleted_once_read() -> None:
    name = f"{ONE_TIME_SECRET_PREFIX}42-abcd"
    Secret(value="robot:once").save(name, overwrite=True)
    assert overwrite_token(None, name) == "robot:once"
    with pytest.raises(ValueError):
        Secret.load(name)


def test_plain_parameter_still_works_and_nothing_is_none() -> None:
    assert overwrite_token(SecretStr("u:p"), None) == "u:p"
    assert overwrite_token(None, None) is None


@pytest.mark.parametrize("token, name, message", [
    (SecretStr("u:p"), "some-block", 'Give either "overwrite_target_index_token" or '
                                     '"overwrite_target_index_token_secret", not both'),
    (None, "no-such-block", 'The Secret block "no-such-block" named by "overwrite_target_index_token_secret" '
                            "does not exist"),
])
def test_mistakes_are_one_sentence(token: SecretStr | None, name: str, message: str) -> None:
    with pytest.raises(ValidationError) as err:
        overwrite_token(token, name)
    assert str(err.value) == message
