"""Concurrent merges on the sandbox: the same target is serialised by the per-target lock and both
runs end correctly; different targets publish in parallel.

Evidence comes from the Prefect API: each run's publishing window is from the start of its
"commit and push feature branch" task run to the end of its "delete feature branch" task run.
For different targets the other target's lock is held (by a flow, as a long publish would hold it)
for the whole run: the merge must publish without waiting for it.
"""

from __future__ import annotations

import threading
import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import LogSort

from prefect import flow

from flows.merge_index import merge_index_image
from indexflow.merge import plan
from tasks.lock import lock_name, target_lock
from tests.reliability.sandbox_session import BLOCK
from tests.reliability.test_fault_matrix import private_target

FIRST, LAST = "commit and push feature branch", "delete feature branch"


def _run_together(env, targets: list[str], prefix: str) -> list:  # noqa: ANN001
    """Start one merge per target at the same moment; their final states, in order."""
    states: list = [None] * len(targets)
    go = threading.Barrier(len(targets))

    def one(i: int, target: str) -> None:
        go.wait()
        states[i] = merge_index_image(source_from_index=env.seeded.source_index, target_index=target,
                                      ignore_bundle_ocp_version=True, request_id=f"{prefix}{i}",
                                      settings_block=BLOCK, return_state=True)

    threads = [threading.Thread(target=one, args=(i, t)) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    return states


def _window(flow_run_id) -> tuple[float, float]:  # noqa: ANN001
    """(start of the first publishing task run, end of the last) of one flow run, epoch seconds."""
    deadline = time.monotonic() + 60  # task-run records reach the API through events, which can lag
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        by_name = {r.name.rsplit("-", 1)[0]: r for r in runs}
        ended = by_name.get(LAST) is not None and by_name[LAST].end_time is not None
        if (FIRST in by_name and ended) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert FIRST in by_name and ended, f"task runs of {flow_run_id} never reached the API: {sorted(by_name)}"
    return by_name[FIRST].start_time.timestamp(), by_name[LAST].end_time.timestamp()


def _check_both_ok(states: list) -> list[tuple[float, float]]:
    for state in states:
        assert state is not None and state.is_completed(), state and state.message
        result = state.result()
        assert result["mr_state"] == "closed" and result["output_pullspecs"], result
    return sorted(_window(s.state_details.flow_run_id) for s in states)


def test_same_target_is_serialised_and_both_end_correctly(proxied_env, clean_proxies):
    target = private_target(proxied_env, "conc-same")
    (a_start, a_end), (b_start, b_end) = _check_both_ok(_run_together(proxied_env, [target, target], "same"))
    assert a_end <= b_start, f"publishing overlapped on one target: {a_start}-{a_end} and {b_start}-{b_end}"


HELD, RELEASE = threading.Event(), threading.Event()  # flow parameters are copied: module-level


@flow
def hold_target_lock(parts: list[str]) -> None:
    """Hold a target's lock, as a merge in its publishing steps does, until the test releases it."""
    with target_lock(tuple(parts), timeout_seconds=60):
        HELD.set()
        RELEASE.wait(600)


def _logged(text: str) -> bool:
    with get_client(sync_client=True) as client:
        return any(text in log.message for log in client.read_logs(limit=200, sort=LogSort.TIMESTAMP_DESC))


def lock_parts(env, target: str, ocp: str = "v4.17") -> list[str]:  # noqa: ANN001
    """The flow's lock key for a target: Git repository + OCP branch, the image, its canonical index.db."""
    return list(plan.lock_parts(env.git_url, ocp, target, plan.artifact_refs(target, env.registry_host, "x").canonical))


def test_different_targets_publish_in_parallel(proxied_env, clean_proxies):
    """Targets of different OCP versions share no Git branch, image or index.db: no waiting."""
    busy, free = private_target(proxied_env, "conc-a"), private_target(proxied_env, "conc-b", ocp="v4.16")
    HELD.clear()
    RELEASE.clear()
    holder = threading.Thread(target=hold_target_lock, args=(lock_parts(proxied_env, busy),), daemon=True)
    holder.start()
    try:
        assert HELD.wait(120), "could not take the other target's lock"
        t = time.monotonic()
        (start, end), = _check_both_ok(_run_together(proxied_env, [free], "diff"))
        assert holder.is_alive() and not RELEASE.is_set(), "the other target's lock was released early"
        assert end > start and time.monotonic() - t < 300
    finally:
        RELEASE.set()
        holder.join(60)


def test_lock_key_matches_the_flow(proxied_env, clean_proxies):
    """The holder above must take the very lock the flow takes, or it would prove nothing; and two tags
    of one index (one Git branch) must not overlap: a merge waits while another tag's merge holds the
    lock, until the hold ends."""
    target, other_tag = private_target(proxied_env, "conc-held"), private_target(proxied_env, "conc-other")
    HELD.clear()
    RELEASE.clear()
    holder = threading.Thread(target=hold_target_lock, args=(lock_parts(proxied_env, other_tag),), daemon=True)
    holder.start()
    assert HELD.wait(120)
    released_at: list[float] = []
    name = lock_name(lock_parts(proxied_env, target)[0])

    def release_once_waiting() -> None:
        """Release only after the merge logged that it waits for this lock (then a bit longer)."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not _logged(f"waiting for target lock {name}"):
            time.sleep(0.5)
        time.sleep(3)
        released_at.append(time.time())
        RELEASE.set()

    threading.Thread(target=release_once_waiting, daemon=True).start()
    try:
        (start, _end), = _check_both_ok(_run_together(proxied_env, [target], "held"))
    finally:  # a merge that did not wait must not leave the holder running past the test (and its server)
        released = list(released_at)
        RELEASE.set()
        holder.join(60)
    assert released and start >= released[0], "the merge published while its target's lock was held"
