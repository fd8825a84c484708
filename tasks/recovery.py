"""Repairing a request whose publishing was cut short, from its journal (issue "Crash safety").

Three callers use `repair`: a re-run of the same request (`resume`, before it builds anything), the
flow's crash/cancel hooks, and the `reconcile` flow. A journal whose writes were all done (only the
MR merge, or closing the build MR, was left) is rolled forward; any other is rolled back. Both are
idempotent, and both run under the target's lock, so no merge of the target runs meanwhile.

Whether the writer is dead: its flow run ended (Crashed, Cancelled, Failed...), or it ran on this host
and its process is gone, or it lost the target lock (its lease lapsed). A writer known dead has its
lease released at once, so the lock is free without waiting for the lease to lapse.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import Flow, runtime
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.logging.loggers import flow_run_logger
from prefect.states import Crashed, State

from blocks.settings import MergeSettings
from indexflow import gitops
from indexflow.errors import IndexflowError, LockError, PublishError
from indexflow.journal import COMPLETED, FORWARD, MERGING, ROLLED_BACK, Journal
from indexflow.merge.params import MergeRequest
from tasks import journal as store
from tasks.lock import HeldLock, held_lock, release_lease
from tasks.report import result_lines
from tasks.rollback import Remotes, logger, rollback, undo_record
from tasks.session import Session, open_session

ALIVE_STATES = {"RUNNING", "PENDING", "SCHEDULED", "PAUSED", "CANCELLING"}
HOOK_DONE = "crash repair:"  # how the hook's outcome starts in the run's logs
REPAIR_WAIT = 120.0  # how long a repairer waits for another one (a full rollback on a loaded box)


@dataclass(frozen=True)
class Repair:
    """What one repair did, as the line `indexflow reconcile` prints."""

    journal: Journal
    action: str  # "rolled back" | "rolled forward" | "could not undo"
    detail: str

    def line(self) -> str:
        run = f" (flow run {self.journal.flow_run_id})" if self.journal.flow_run_id else ""
        return f"request {self.journal.request_id}{run}: {self.action}: {self.detail}"


def run_state(flow_run_id: str | None) -> str | None:
    """The state type of the journal's flow run (None when unknown to this API)."""
    if not flow_run_id:
        return None
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(uuid.UUID(flow_run_id))
        except ObjectNotFound:
            return None
    return run.state.type.value if run.state else None


def writer_dead(journal: Journal, current_run: str | None = None) -> bool | None:
    """True when the journal's writer certainly no longer runs; None when only its lock can tell."""
    if current_run and journal.flow_run_id == current_run:
        return True  # this very flow run, rescheduled after its earlier attempt was killed
    alive = journal.owner_alive()
    if alive is not None:
        return not alive
    state = run_state(journal.flow_run_id)
    return True if state is not None and state not in ALIVE_STATES else None


def repair(journal: Journal, remotes: Remotes) -> Repair:
    """Roll the journal forward when only the last step was left, else back. The caller holds the lock."""
    if journal.phase in FORWARD:
        try:
            return _forward(journal, remotes)
        except IndexflowError as exc:  # the MR cannot be merged any more: back to the state before
            logger().warning("could not finish request %s (%s); rolling it back", journal.request_id, exc)
            journal.phase = MERGING
    undone, failed = rollback(journal, lambda rec: undo_record(rec, remotes))
    if failed:
        return Repair(journal, "could not undo", "; ".join(failed))
    return Repair(journal, "rolled back", "; ".join(undone) or "nothing was left to undo")


def _forward(journal: Journal, remotes: Remotes) -> Repair:
    result = dict(journal.result or {})
    if journal.phase == MERGING:
        remotes.mrs.merge(journal.mr_iid)
        result["mr_state"], detail = "merged", f"merged merge request !{journal.mr_iid}"
    else:
        remotes.mrs.close(journal.mr_iid)
        gitops.delete_remote_branch(remotes.git_url, journal.branch, remotes.git_token)
        result["mr_state"], detail = "closed", f"closed merge request !{journal.mr_iid} and deleted {journal.branch}"
    journal.result, journal.phase, journal.note = result, COMPLETED, f"finished by a repair: {detail}"
    store.save(journal)
    return Repair(journal, "rolled forward", detail)


def settle(journal: Journal, remotes: Remotes, lock_timeout: float, current_run: str | None = None) -> Repair | None:
    """Repair `journal` if its writer is dead; None when it is still alive (its lock is held), or when
    another repairer did it first.

    The crash hook, a reconcile triggered by the crash and a scheduled one may all arrive at once: the
    first to take the lock repairs, the others wait for the lock (a dead writer's lock can only be held
    by a repairer, or by a merge that came after it), then find the journal closed and do nothing. The
    temp dir goes before the journal is closed, so whoever sees it closed sees the dir gone too."""
    dead = writer_dead(journal, current_run)
    if dead is False or not _still_open(journal):
        return None
    if dead and journal.lease_id:
        release_lease(journal.lease_id)  # free the lock now rather than when the lease lapses
    try:
        with held_lock(journal.locks, lock_timeout if dead is None else max(lock_timeout, REPAIR_WAIT)):
            latest = _still_open(journal)
            if latest is None:
                return None  # repaired meanwhile by someone else
            remove_workdir(latest)
            done = repair(latest, remotes)
            if latest.flow_run_id != current_run:
                mark_crashed(latest.flow_run_id)  # its process is gone: no run may stay Running
            return done
    except LockError:
        return None  # its writer still holds the lock (alive), or another repair does


def _still_open(journal: Journal) -> Journal | None:
    """The journal as last saved, while something may be left to repair."""
    latest = store.load(journal.request_id) or journal
    return latest if latest.is_open else None


def mark_crashed(flow_run_id: str | None, message: str = "") -> None:
    """A run whose process is gone never reports its end: say it crashed (no RUNNING run stays)."""
    if not flow_run_id or run_state(flow_run_id) not in ALIVE_STATES:
        return
    text = message or "The merge's process stopped without ending the run; indexflow reconcile repairs it."
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(flow_run_id), Crashed(message=text), force=True)


def remove_workdir(journal: Journal) -> None:
    """The dead run's temp dir (its Git checkout, bundles, docker config) when it was on this host."""
    if journal.workdir and journal.owner_alive() is False and Path(journal.workdir).name.startswith("indexflow-"):
        shutil.rmtree(journal.workdir, ignore_errors=True)


def remotes(session: Session, git_url: str) -> Remotes:
    """A Session's clients as undo/finish needs them."""
    return Remotes(session.registry, session.target_registry, git_url, session.git_token,
                   session.merge_requests(git_url))


def new_journal(session: Session, req: MergeRequest, git_url: str, lock: HeldLock, branch: str) -> Journal:
    """The journal of a request about to publish (nothing written yet)."""
    return Journal(request_id=req.request_id, settings_block=block_name(session.settings), git_url=git_url,
                   locks=list(lock.names), lease_id=str(lock.lease_id), flow_run_id=runtime.flow_run.get_id(),
                   workdir=str(session.workdir), branch=branch)


def block_name(settings: MergeSettings) -> str:
    """The MergeSettings block a later repair loads (the settings object came from it)."""
    return getattr(settings, "_block_document_name", None) or "indexflow"


def resume(session: Session, request_id: str) -> dict[str, Any] | None:
    """Before a run builds anything: settle an earlier attempt of the same request.

    Returns the earlier attempt's outputs when it completed (now or by rolling forward): the re-run
    then ends with them and writes nothing. An attempt rolled back leaves a fresh start (None)."""
    journal = store.load(request_id)
    if journal is None or journal.phase == ROLLED_BACK:
        return None
    if journal.is_open:
        done = settle(journal, remotes(session, journal.git_url), session.settings.lock_timeout_seconds,
                      runtime.flow_run.get_id())
        if done is None:  # its writer is alive, or another repairer was first: its result decides
            journal = store.load(request_id) or journal
            if journal.is_open:
                raise PublishError(f"Request {request_id} is being published by flow run {journal.flow_run_id}; "
                                   f"wait for it to end instead of running it twice.")
        else:
            logger().warning("an earlier attempt of this request was repaired: %s", done.line())
            if done.action == "could not undo":
                raise PublishError(f"An earlier attempt of request {request_id} left writes that could not be "
                                   f"undone ({done.detail}); fix them, then run `indexflow reconcile`.")
            journal = done.journal
    if journal.phase != COMPLETED or not journal.result:
        return None
    logger().info("request %s was completed by an earlier attempt; nothing is written again", request_id)
    return {**journal.result, "lines": result_lines(journal.result)}


def open_for_repair(settings_block: str, request_id: str) -> Session:
    """A Session from the journal's settings block (no overwrite token: the registry credentials are used)."""
    return open_session(MergeSettings.load(settings_block), MergeRequest(source_from_index="",
                                                                          request_id=f"repair-{request_id}"))


def settle_for_repair(journal: Journal, lock_timeout: float, current_run: str | None = None) -> Repair | None:
    """`settle` with clients of its own (reconcile, crash hooks)."""
    session = open_for_repair(journal.settings_block, journal.request_id)
    try:
        return settle(journal, remotes(session, journal.git_url), lock_timeout, current_run)
    finally:
        session.close()


def repair_hook(flow: Flow[..., Any], flow_run: FlowRun, state: State) -> None:
    """on_crashed / on_cancellation: undo (or finish) what the run left, while a process still can.

    The flow's own rollback usually did it already (the journal then is closed); this covers a run
    stopped half-way through its rollback, or killed and cancelled from the UI."""
    run_log = flow_run_logger(flow_run, flow)  # in the run's logs: the hook may run in a process of its own
    request_id = (flow_run.parameters or {}).get("request_id") or str(flow_run.id)[:8]
    try:
        journal = store.load(request_id)
        if journal is None or journal.flow_run_id != str(flow_run.id):
            return  # the run published nothing (a journal of another attempt is not this hook's)
        done = settle_for_repair(journal, lock_timeout=30, current_run=str(flow_run.id)) if journal.is_open else None
        run_log.warning("%s %s", HOOK_DONE, done.line() if done else
                        f"request {request_id}: nothing left to repair (its rollback or reconcile did it)")
    except Exception as exc:  # a hook must not hide the run's own end; reconcile will try again
        run_log.error("%s could not repair request %s: %s", HOOK_DONE, request_id, exc)
