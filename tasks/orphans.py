"""Tidying after merges whose process died on this host, journal or not (issue "Crash safety").

A run killed before its first journal save left no remote write, but it left its temp dir (Git
checkout, bundles) and, on the CLI path, a flow run that says Running. `reconcile` and the start of
every merge call `remove_orphans`: for each temp dir whose owner process is gone (indexflow/workdirs.py)
the run is marked Crashed if it still says what it said when the dir was made, and the dir is removed.

Only runs this Prefect API knows are judged (a dir of a run on another server is left to that
server's runs). A run whose state changed after the dir was made is not marked: a rescheduled attempt,
or the heartbeat automation, or the worker got there first.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.states import Crashed

from indexflow import workdirs
from tasks.recovery import ALIVE_STATES

MESSAGE = "The merge's process stopped before it published anything; its temp dir was removed."


def remove_orphans(tmp: Path | None = None) -> list[str]:
    """One line per dead run tidied: the run marked Crashed when it still said Running, its dir removed."""
    lines = []
    for owner in workdirs.orphans(tmp):
        run = _flow_run(owner.flow_run_id)
        if owner.flow_run_id and run is None:
            continue  # a run of another Prefect server: not ours to judge
        crashed = run is not None and _mark_crashed(run, owner)
        shutil.rmtree(owner.path, ignore_errors=True)
        lines.append(f"request {owner.request_id} (flow run {owner.flow_run_id})" if owner.flow_run_id
                     else f"a {owner.request_id} step")
        lines[-1] += (f": its process on this host is gone; removed its temp dir {owner.path}"
                      + ("; marked the run Crashed" if crashed else ""))
    return lines


def _flow_run(flow_run_id: str | None) -> Any:  # noqa: ANN401 - prefect FlowRun or None
    if not flow_run_id:
        return None
    with get_client(sync_client=True) as client:
        try:
            return client.read_flow_run(uuid.UUID(flow_run_id))
        except ObjectNotFound:
            return None


def _mark_crashed(run: Any, owner: workdirs.Owner) -> bool:  # noqa: ANN401 - prefect FlowRun
    """Crashed, when the run's state is alive and older than the dead process's temp dir."""
    state = run.state
    if (state is None or owner.created is None or state.type.value not in ALIVE_STATES
            or state.timestamp > datetime.fromisoformat(owner.created)):
        return False
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Crashed(message=MESSAGE), force=True)
    return True


def tidy() -> None:
    """At a merge's start, `remove_orphans`, logged. Never fails the merge: reconcile will try again."""
    from tasks.rollback import logger

    try:
        for line in remove_orphans():
            logger().warning("a dead run on this host was tidied: %s", line)
    except Exception as exc:  # noqa: BLE001 - an API hiccup here must not stop an unrelated merge
        logger().warning("could not tidy after dead runs on this host: %s", exc)
