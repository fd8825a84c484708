"""Persisted compensation log (the publish journal) and the per-target lock on a real Prefect API."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate

from indexflow.errors import LockError, PublishError
from indexflow.journal import BRANCH, MR, ROLLBACK_INCOMPLETE, TAG, Journal, Record
from tasks import journal as store
from tasks.lock import held_lock, lock_name, target_lock
from tasks.rollback import Compensations, failure_message, rollback


def _journal(request_id: str) -> Journal:
    return Journal(request_id=request_id, settings_block="none", git_url="http://git/x", locks=["l"])


@flow
def undo_flow(request_id: str, fail_tag: bool) -> tuple[list[str], list[str], list[str]]:
    calls: list[str] = []
    log = Compensations(_journal(request_id))
    log.record(Record(BRANCH, "b", None))
    log.record(Record(TAG, "reg/t:1", "sha256:old"))
    log.record(Record(MR, "b", None))

    def undo(rec: Record) -> bool:
        if rec.kind == TAG and fail_tag:
            raise RuntimeError("registry down")
        calls.append(rec.kind)
        return True

    undone, failed = rollback(log.journal, undo)
    return calls, undone, failed


def test_rollback_newest_first_continues_past_failures_and_is_persisted():
    rid = uuid.uuid4().hex[:8]
    calls, undone, failed = undo_flow(rid, fail_tag=True)
    assert calls == [MR, BRANCH]
    assert undone == ["closed the merge request of b", "deleted branch b"]
    assert failed == ["restored reg/t:1 (registry down)"]
    saved = store.load(rid)  # read back from the Prefect API, not from the run's memory
    assert saved.phase == ROLLBACK_INCOMPLETE and [r.undone for r in saved.records] == [True, False, True]
    assert "could not undo: restored reg/t:1" in saved.note
    assert saved in store.open_journals()
    text = failure_message("Waiting on KONFLUX build", PublishError("Pipelinerun p failed"), undone, failed)
    assert text.startswith("Failed to merge operators at step 'Waiting on KONFLUX build': Pipelinerun p failed.")
    assert "Rolled back: closed the merge request of b; deleted branch b." in text
    assert "Could NOT undo: restored reg/t:1" in text


def test_first_record_per_target_wins():
    """A rescheduled attempt journals the target again, seeing its killed attempt's output: the state
    before the request must stay the one the first attempt recorded."""
    rid = uuid.uuid4().hex[:8]
    first = Compensations(_journal(rid))
    first.record(Record(TAG, "reg/target:v4.17", "sha256:original"))
    again = Compensations(store.load(rid))  # the re-run, in another process, from the stored journal
    kept = again.record(Record(TAG, "reg/target:v4.17", "sha256:written-by-the-killed-attempt"))
    assert kept.before == "sha256:original"
    assert [r.before for r in store.load(rid).records] == ["sha256:original"]
    again.journal.records[0].undone = True  # once undone, a new attempt records afresh
    assert again.record(Record(TAG, "reg/target:v4.17", "sha256:new")).before == "sha256:new"


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


@flow
def hold_briefly(key: str) -> str:
    with target_lock((key,), timeout_seconds=1) as held:
        return held.names[0]


def test_inactive_limit_is_refused_in_one_sentence():
    key = f"inactive-{uuid.uuid4().hex[:6]}"
    name = lock_name(key)
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1, active=False))
    state = hold_briefly(key, return_state=True)
    error = state.result(raise_on_failure=False)
    assert isinstance(error, LockError) and "set inactive" in str(error) and "\n" not in str(error)
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active=True))
    assert hold_briefly(key) == name


def test_lock_timeout_is_one_sentence():
    key = f"busy-{uuid.uuid4().hex[:6]}"
    started, release = threading.Event(), threading.Event()

    @flow
    def holder() -> None:
        with target_lock((key,), timeout_seconds=30):
            started.set()
            release.wait(60)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert started.wait(60)
        with pytest.raises(LockError, match=r"^Timed out after 1 seconds waiting for another merge"):
            hold_briefly(key)
    finally:
        release.set()
        t.join(60)


def test_release_refused_by_a_busy_server_is_retried(prefect_server) -> None:  # noqa: ANN001
    """A 500 on the release (SQLite's "database is locked", a restarting server) must not leave the
    target locked until the lease lapses (120 s): the next merge gets the lock within seconds."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from sandbox.faultproxy import FaultProxy

    names = (lock_name(f"release-{uuid.uuid4().hex[:6]}"),)
    with FaultProxy(prefect_server.url.split("//", 1)[1].split("/", 1)[0]) as proxy:
        refused = proxy.add_fault("status", path=r"/decrement-with-lease$", method="POST", status=500, times=2)
        with temporary_settings(updates={PREFECT_API_URL: f"http://{proxy.host}/api"}):
            with held_lock(names, timeout_seconds=10):
                pass
    assert refused.injected == 2  # both refusals reached the client, which asked again
    limit = prefect_server.api("GET", f"/v2/concurrency_limits/{names[0]}")  # read past the proxy
    assert limit["active_slots"] == 0
