"""Where the publish journal (indexflow/journal.py) lives: a Prefect artifact keyed by request id.

Every save is a new version of artifact `merge-journal-<request id>` on the Prefect server, so the
journal outlives the process (and the node), and its versions are the request's audit trail in the UI.
The data is JSON with no secret in it (pullspecs, digests, branch names, an MR number).
"""

from __future__ import annotations

import os
import signal
import uuid

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import (ArtifactCollectionFilter, ArtifactCollectionFilterKey,
                                            ArtifactCollectionFilterType)

from indexflow.journal import Journal
from tasks.report import artifact_key

TYPE = "indexflow-journal"
KILL_AFTER_SAVE = "INDEXFLOW_TEST_KILL_AFTER_JOURNAL_SAVE"  # test hook, see kill_point
_saves = 0


def key_for(request_id: str) -> str:
    return artifact_key("merge-journal", request_id)


def save(journal: Journal) -> None:
    """Write the journal's current state (a new artifact version, linked to the merge's flow run)."""
    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(
            key=key_for(journal.request_id), type=TYPE, data=journal.to_data(), description=describe(journal),
            flow_run_id=uuid.UUID(journal.flow_run_id) if journal.flow_run_id else None))


def kill_point() -> None:
    """Test hook of the kill matrix (tests/reliability/test_kill_matrix.py): with the environment
    variable INDEXFLOW_TEST_KILL_AFTER_JOURNAL_SAVE=N the process SIGKILLs itself right after its Nth
    publishing save (tasks/rollback.Compensations), i.e. just before the remote write that save
    announced. Saves made by a repair do not count: a crash hook runs with the dead run's environment
    and must live to finish its repair. Unset (always, outside that test) it does nothing."""
    global _saves
    wanted = os.environ.get(KILL_AFTER_SAVE)
    if wanted:
        _saves += 1
        if _saves == int(wanted):
            os.kill(os.getpid(), signal.SIGKILL)


def load(request_id: str) -> Journal | None:
    """The request's journal as last saved, or None when it never published anything."""
    found = _latest(ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key_for(request_id)])))
    return found[0] if found else None


def open_journals() -> list[Journal]:
    """Every journal whose request may have left something to repair."""
    return [j for j in _latest(ArtifactCollectionFilter(type=ArtifactCollectionFilterType(any_=[TYPE])))
            if j.is_open]


def _latest(artifact_filter: ArtifactCollectionFilter) -> list[Journal]:
    out, offset = [], 0
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_latest_artifacts(artifact_filter=artifact_filter, limit=200, offset=offset)
            out += [Journal.from_data(a.data) for a in page if isinstance(a.data, dict)]
            if len(page) < 200:
                return out
            offset += 200


def describe(journal: Journal) -> str:
    """The journal as a person reads it in the UI: phase, then each write and whether it was undone."""
    lines = [f"Publish journal of request {journal.request_id}: **{journal.phase}**"
             + (f" ({journal.note})" if journal.note else ""), "",
             "| write | state before | intended | undone |", "|---|---|---|---|"]
    lines += [f"| {r.kind} {r.target} | {r.before or '(absent)'} | {r.intended or ''} | {'yes' if r.undone else ''} |"
              for r in journal.records]
    return "\n".join(lines)
