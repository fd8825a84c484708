"""reconcile: repair merges that crashed or stopped, from their publish journals (issue "Crash safety").

Deployed on a short schedule and on every Crashed/Cancelled merge (prefect.yaml), and runnable as
`indexflow reconcile`. For each open journal whose writer is dead (its run ended, its process is gone,
or it lost the target lock) it marks the run Crashed if it still says Running, removes the run's temp
dir and rolls the request back (or forward when only the MR merge was left) under the target's lock;
then it removes every other temp dir whose owner process on this host is gone, marking its run Crashed
if nothing else did (tasks/orphans.py).
Running it again finds nothing left to do. A summary artifact lists what it repaired.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from tasks import journal as store
from tasks import orphans, recovery


@flow(name="reconcile", log_prints=False)
def reconcile(settings_block: str | None = None, lock_wait_seconds: float = 5) -> list[str]:
    """Repair every crashed or stopped merge; returns one line per request repaired.

    Args:
        settings_block: only repair merges that used this MergeSettings block (default: all).
        lock_wait_seconds: how long to wait for a target's lock; a merge that still holds it is alive.
    """
    lines: list[str] = []
    for journal in store.open_journals():
        if settings_block and journal.settings_block != settings_block:
            continue
        done = recovery.settle_for_repair(journal, lock_wait_seconds)
        if done is not None:
            get_run_logger().info("%s", done.line())
            lines.append(done.line())
    for line in orphans.remove_orphans():  # runs killed before they published, or repaired from another host
        get_run_logger().info("%s", line)
        lines.append(line)
    create_markdown_artifact("\n".join(["# reconcile", "", *(f"- {line}" for line in lines)] if lines
                                       else ["# reconcile", "", "Nothing to repair."]),
                             key="reconcile-report", description="merges repaired by reconcile")
    return lines
