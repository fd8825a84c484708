"""The overwrite token never as a run parameter: a Secret block reference, or the in-process hand-over
(blocks/tokens.py), on a real Prefect API."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prefect.blocks.system import Secret

from blocks.tokens import local_overwrite_token, overwrite_token
from flows.batch_merge import BatchFileError, with_secret_reference
from indexflow.errors import ValidationError
from indexflow.merge.params import ONE_TIME_SECRET_PREFIX


def test_token_from_a_referenced_secret_block_is_kept() -> None:
    Secret(value="robot:kept").save("release-robot-token", overwrite=True)
    assert overwrite_token(Secret.load("release-robot-token")) == "robot:kept"
    assert Secret.load("release-robot-token").get() == "robot:kept"  # an operator's block stays


def test_one_time_secret_is_deleted_once_read() -> None:
    name = f"{ONE_TIME_SECRET_PREFIX}42-abcd"
    Secret(value="robot:once").save(name, overwrite=True)
    assert overwrite_token(Secret.load(name)) == "robot:once"
    with pytest.raises(ValueError):
        Secret.load(name)


def test_local_token_holds_only_inside_its_block_and_its_thread() -> None:
    seen_elsewhere: list[str | None] = []
    with local_overwrite_token("u:p"):
        assert overwrite_token(None) == "u:p"
        other = threading.Thread(target=lambda: seen_elsewhere.append(overwrite_token(None)))
        other.start()
        other.join()
    assert overwrite_token(None) is None
    assert seen_elsewhere == [None]  # a concurrent merge in another thread does not get this run's token


def test_both_ways_at_once_is_one_sentence() -> None:
    Secret(value="robot:kept").save("release-robot-token", overwrite=True)
    with local_overwrite_token("u:p"), pytest.raises(ValidationError) as err:
        overwrite_token(Secret.load("release-robot-token"))
    assert str(err.value) == 'Give either a local overwrite token or "overwrite_target_index_token_secret", not both'


def test_an_inline_secret_is_refused() -> None:
    with pytest.raises(ValidationError) as err:
        overwrite_token(Secret(value="u:p"))
    assert str(err.value) == ('"overwrite_target_index_token_secret" must reference a saved Secret block '
                              '({"$ref": {"block_document_id": "<uuid>"}}), never hold the token itself')


def test_a_batch_entry_names_its_secret_and_the_run_gets_a_reference() -> None:
    block_id = Secret(value="robot:batch").save("batch-robot-token", overwrite=True)
    entry = {"source_from_index": "s:1", "overwrite_target_index_token_secret": "batch-robot-token"}
    params = asyncio.run(with_secret_reference(entry))
    assert params == {"source_from_index": "s:1",
                      "overwrite_target_index_token_secret": {"$ref": {"block_document_id": str(block_id)}}}
    with pytest.raises(BatchFileError) as err:
        asyncio.run(with_secret_reference({"overwrite_target_index_token_secret": "no-such-block"}))
    assert str(err.value) == ('The Secret block "no-such-block" named by "overwrite_target_index_token_secret" '
                              "does not exist")
