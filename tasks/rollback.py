"""Compensation log for merge.md A2 step 11, persisted: every remote write is journaled before it.

Chosen over Prefect transactions because a task that wrote and then failed never has its undo hook
run, hooks die with the process, and the undo needs values known only at write time (a previous
digest, an MR iid). The log is the request's journal (indexflow/journal.py), saved to Prefect before
each write (tasks/journal.py), so a later process can undo or finish what a killed one began.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger

from indexflow import gitops
from indexflow.errors import IndexflowError
from indexflow.gitlab_mr import MergeRequests
from indexflow.journal import (BRANCH, MR, ROLLBACK_INCOMPLETE, ROLLBACK_INCOMPLETE_EVENT, ROLLED_BACK,
                               ROLLING_BACK, Journal, Record)
from indexflow.registry.client import RegistryClient
from tasks import journal as store
from tasks.outputs import undo_tag_write


@dataclass
class Compensations:
    """The request's journal, saved before each remote write it records."""

    journal: Journal
    before_write: Callable[[], None] = lambda: None  # raises when the run must not write (lost its lock)

    def record(self, rec: Record) -> Record:
        """Journal a write about to happen; the first record of a target wins (see Journal.record)."""
        self.before_write()
        kept = self.journal.record(rec)
        store.save(self.journal)
        store.kill_point()
        return kept

    def advance(self, phase: str, **changes: Any) -> None:
        """Move the journal on (MR opened, everything written, completed) and save it."""
        for name, value in changes.items():
            setattr(self.journal, name, value)
        self.journal.phase = phase
        store.save(self.journal)
        store.kill_point()

    def __len__(self) -> int:
        return len(self.journal.live())


def logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside a flow or task run; else (CLI, hooks) the plain indexflow logger."""
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger("indexflow.recovery")


@dataclass
class Remotes:
    """What undoing a journal needs: the registry clients and Git/GitLab access (from a Session)."""

    registry: RegistryClient
    target_registry: RegistryClient  # carries the overwrite token, when the run had one
    git_url: str
    git_token: str
    mrs: MergeRequests


def undo_record(rec: Record, remotes: Remotes) -> bool:
    """Put one target back as it was before the request; False when it already is."""
    if rec.kind == BRANCH:
        if rec.before is not None or gitops.remote_branch_sha(remotes.git_url, rec.target, remotes.git_token) is None:
            return False
        gitops.delete_remote_branch(remotes.git_url, rec.target, remotes.git_token)
        return True
    if rec.kind == MR:
        mr = None if rec.before is not None else remotes.mrs.find_open(rec.target)
        if mr is None:
            return False
        remotes.mrs.close(mr.iid)
        return True
    client = remotes.target_registry if rec.target_registry else remotes.registry
    return undo_tag_write(client, rec.target, rec.before)()


@task(name="rollback remote changes", cache_policy=NO_CACHE)
def rollback(journal: Journal, undo: Callable[[Record], bool]) -> tuple[list[str], list[str]]:
    """Undo every live record (newest first), continuing past failures; returns (undone, failed).

    Each undo compares the target with its state before the request, so running this twice (a
    rollback killed half-way, then reconcile) is harmless."""
    log = logger()
    undone, failed = [], []
    journal.phase = ROLLING_BACK  # from here on, a repair must not finish the request instead
    store.save(journal)
    for rec in journal.live():
        try:
            changed = undo(rec)
        except Exception as exc:  # keep undoing the rest; report what could not be undone
            log.error("rollback step failed (%s): %s", rec.describe(), exc)
            failed.append(f"{rec.describe()} ({exc})")
            continue
        rec.undone = True
        if changed is not False:
            log.info("rollback: %s", rec.describe())
            undone.append(rec.describe())
    journal.phase = ROLLBACK_INCOMPLETE if failed else ROLLED_BACK
    journal.note = f"could not undo: {'; '.join(failed)}" if failed else ""
    store.save(journal)
    if failed:
        rollback_incomplete_event(journal, failed)
    return undone, failed


def rollback_incomplete_event(journal: Journal, failed: list[str]) -> None:
    """Tell whoever listens (the notification automation `indexflow setup` creates) that a request
    left writes nobody could undo: a person has to look."""
    related = ([{"prefect.resource.id": f"prefect.flow-run.{journal.flow_run_id}",
                 "prefect.resource.role": "flow-run"}] if journal.flow_run_id else [])
    emit_event(event=ROLLBACK_INCOMPLETE_EVENT,
               resource={"prefect.resource.id": f"indexflow.merge.{journal.request_id}",
                         "prefect.resource.name": f"merge request {journal.request_id}"},
               related=related, payload={"could_not_undo": failed, "journal": store.key_for(journal.request_id)})


def failure_message(step: str, error: BaseException, undone: list[str], failed: list[str]) -> str:
    """One paragraph: what failed, then what the run undid (and what it could not)."""
    reason = str(error) if isinstance(error, IndexflowError) else f"{type(error).__name__}: {error}"
    text = f"Failed to merge operators at step {step!r}: {reason.rstrip('.')}."
    text += f" Rolled back: {'; '.join(undone)}." if undone else " Nothing remote had been changed."
    if failed:
        text += f" Could NOT undo: {'; '.join(failed)}."
    return text
