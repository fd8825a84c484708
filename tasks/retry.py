"""When a task retry can help: only for transient remote failures (rate limits, 5xx, timeouts,
dropped connections). A 403, a missing image or a graph error fails the same way again, so those
end the task at once instead of making the user wait through pointless retries."""

from __future__ import annotations

import re

from indexflow.errors import IndexflowError

TRANSIENT = re.compile(r"\b(408|429|500|502|503|504)\b|timed? ?out|timeout|connection|temporar|reset by peer",
                       re.IGNORECASE)


def is_transient(exc: BaseException) -> bool:
    """Our errors say what happened in words; network errors from client libraries are OSErrors."""
    transient = getattr(exc, "transient", None)  # KonfluxAPIError knows from the status it got
    if isinstance(transient, bool):
        return transient
    if isinstance(exc, IndexflowError):
        return bool(TRANSIENT.search(str(exc)))
    return isinstance(exc, (OSError, TimeoutError))


def transient_only(task, task_run, state) -> bool:  # noqa: ANN001 - Prefect's retry_condition_fn signature
    try:
        state.result()
    except Exception as exc:  # the task's own failure, re-raised by result()
        return is_transient(exc)
    return False
