"""When a task retry can help: only for transient remote failures (rate limits, 5xx, timeouts,
dropped connections). A 403, a missing image or a graph error fails the same way again, so those
end the task at once instead of making the user wait through pointless retries.

The decision reads only `IndexflowError.transient`, set by the adapter that saw the cause (a status
code, a connection error after the client's own retries); never the message text, which names
user input (an image called `connection-operator-bundle` is not a connection error). Anything that
is not an IndexflowError is a bug and is not retried.
"""

from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from indexflow.errors import IndexflowError


def is_transient(exc: BaseException) -> bool:
    """True when asking again later may succeed."""
    return isinstance(exc, IndexflowError) and exc.transient


def transient_only(task: Task[..., Any], task_run: TaskRun, state: State) -> bool:
    """Prefect's `retry_condition_fn`: retry the failed task run only when its error is transient."""
    try:
        state.result()
    except Exception as exc:  # the task's own failure, re-raised by result()
        return is_transient(exc)
    return False
