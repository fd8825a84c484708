"""Compensation log and per-target lock on a real Prefect API (no sandbox needed)."""

from __future__ import annotations

import threading
import time

from prefect import flow

from indexflow.errors import PublishError
from tasks.lock import lock_name, target_lock
from tasks.rollback import Compensations, failure_message, rollback


@flow
def undo_flow(fail_second: bool) -> tuple[list[str], list[str], list[str]]:
    calls: list[str] = []
    log = Compensations()
    log.record("deleted branch b", lambda: calls.append("branch"))

    def broken() -> None:
        raise RuntimeError("registry down")

    log.record("restored tag t", broken if fail_second else (lambda: calls.append("tag")))
    log.record("closed MR !1", lambda: calls.append("mr"))
    undone, failed = rollback(log)
    return calls, undone, failed


def test_rollback_newest_first_and_continues_past_failures():
    calls, undone, failed = undo_flow(fail_second=True)
    assert calls == ["mr", "branch"]
    assert undone == ["closed MR !1", "deleted branch b"]
    assert failed == ["restored tag t (registry down)"]
    text = failure_message("Waiting on KONFLUX build", PublishError("Pipelinerun p failed"), undone, failed)
    assert text.startswith("Failed to merge operators at step 'Waiting on KONFLUX build': Pipelinerun p failed.")
    assert "Rolled back: closed MR !1; deleted branch b." in text and "Could NOT undo: restored tag t" in text


def test_failure_message_when_nothing_remote():
    assert failure_message("x", PublishError("boom"), [], []).endswith("Nothing remote had been changed.")


EVENTS: list = []  # flow parameters are copied, so the runs report through a module-level list


@flow
def hold_lock(key: str, hold: float) -> None:
    with target_lock((key,), timeout_seconds=60):
        EVENTS.append(("in", time.monotonic()))
        time.sleep(hold)
        EVENTS.append(("out", time.monotonic()))


def test_same_target_never_overlaps():
    """Both runs start at once on a target whose limit does not exist yet (both try to create it)."""
    events = EVENTS
    threads = [threading.Thread(target=hold_lock, args=("repo|v4.17|index-db:x", 1.0)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kinds = [k for k, _ in sorted(events, key=lambda e: e[1])]
    assert kinds == ["in", "out"] * 3
    assert lock_name("a") != lock_name("b") and lock_name("a").startswith("indexflow-target-")
