"""Parameter checks through the real flow: IIB's messages, before anything remote; the token secret."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.blocks.system import Secret

from blocks.settings import MergeSettings
from blocks.tokens import local_overwrite_token
from flows.merge_index import merge_index_image
from indexflow.errors import ValidationError

SECRET = "robot:hunter2-very-secret"


@pytest.fixture(scope="module")
def settings_block() -> str:
    MergeSettings(iib_registry="127.0.0.1:1", index_db_artifact_registry="127.0.0.1:1", konflux_namespace="ns", binary_image_config={"prod": {"v4.17": "b"}},
                  gitlab_credentials="none", kubernetes_credentials="none").save("params-test", overwrite=True)
    return "params-test"


def test_missing_token_fails_with_iib_message(settings_block):
    state = merge_index_image(source_from_index="127.0.0.1:1/a/b:v4.16", target_index="127.0.0.1:1/a/b:v4.17",
                              overwrite_target_index=True, settings_block=settings_block, return_state=True)
    assert state.is_failed()
    with pytest.raises(ValidationError) as err:
        state.result()
    assert str(err.value) == ('The "overwrite_target_index_token" value is required when the '
                              '"overwrite_target_index" value is set')


def _stored(state):  # noqa: ANN001, ANN202 - a Prefect State in; the run's stored parameters and all logs out
    with get_client(sync_client=True) as client:
        run_id = state.state_details.flow_run_id  # this run's logs: the session's server holds every suite's
        return client.read_flow_run(run_id).parameters, client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))


def test_token_never_stored_in_flow_run(settings_block):
    with local_overwrite_token(SECRET):  # what `indexflow merge` does with the token file
        state = merge_index_image(source_from_index="127.0.0.1:1/a/b:v4.16", overwrite_target_index=True,
                                  settings_block=settings_block, return_state=True)
    with pytest.raises(ValidationError, match="Parameter 'target_index' must be set"):
        state.result()  # the token arrived: the check after the token check is the one that failed
    parameters, logs = _stored(state)
    assert "overwrite_target_index_token" not in parameters and "hunter2" not in repr(parameters)
    assert "hunter2" not in str(state.message) and all("hunter2" not in log.message for log in logs)


def test_a_secret_reference_is_stored_as_the_reference_only(settings_block):
    block_id = Secret(value=SECRET).save("params-test-token", overwrite=True)
    reference = {"$ref": {"block_document_id": str(block_id)}}
    state = merge_index_image(source_from_index="127.0.0.1:1/a/b:v4.16", overwrite_target_index=True,
                              overwrite_target_index_token_secret=reference, settings_block=settings_block,
                              return_state=True)
    with pytest.raises(ValidationError, match="Parameter 'target_index' must be set"):
        state.result()  # the block was loaded and its token read: the next check failed
    parameters, logs = _stored(state)
    assert parameters["overwrite_target_index_token_secret"] == reference and "hunter2" not in repr(parameters)
    assert all("hunter2" not in log.message for log in logs)
