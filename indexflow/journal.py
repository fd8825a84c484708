"""The publish journal of one merge request: what it wrote, and how to put each thing back.

Before each remote write the merge records the target's state before it (and the write it intends);
the journal is kept outside the process (Prefect stores it, see tasks/journal.py), so a run killed at
any point can be rolled back, or rolled forward when only the MR merge was left, by whoever finds it
later: the re-run of the same request, a crash hook, or `indexflow reconcile`.

The first record per target wins: a re-run that finds its earlier attempt's writes still in place
(a rescheduled Kubernetes pod, a killed CLI run) must not take the earlier attempt's output for the
state before the request.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

# phases, in order: PUBLISHING (writes under way) -> MERGING (all written, only the MR merge left) or
# CLOSING (all written, only closing the build MR left) -> COMPLETED; or ROLLED_BACK after an undo.
PUBLISHING, MERGING, CLOSING, COMPLETED = "publishing", "merging", "closing", "completed"
ROLLING_BACK, ROLLED_BACK, ROLLBACK_INCOMPLETE = "rolling-back", "rolled-back", "rollback-incomplete"
OPEN = (PUBLISHING, MERGING, CLOSING, ROLLING_BACK, ROLLBACK_INCOMPLETE)  # something may still be left to repair
FORWARD = (MERGING, CLOSING)  # everything was written: finishing is the way to a consistent state

BRANCH, MR, TAG = "branch", "merge-request", "tag"
ROLLBACK_INCOMPLETE_EVENT = "indexflow.merge.rollback-incomplete"  # a request left writes nobody could undo


@dataclass
class Record:
    """One remote write: `before` is the target's state before the request (None: it did not exist).

    kind BRANCH: target = branch name, before = its commit; MR: target = source branch, before = iid of
    an MR already open from it; TAG: target = pullspec, before = digest, `target_registry` when the
    write used the overwrite token's client."""

    kind: str
    target: str
    before: str | None
    intended: str | None = None
    target_registry: bool = False
    undone: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.target

    def describe(self) -> str:
        if self.kind == BRANCH:
            return f"deleted branch {self.target}"
        if self.kind == MR:
            return f"closed the merge request of {self.target}"
        return f"restored {self.target}"


@dataclass
class Journal:
    """Everything a later process needs to undo or finish the request's publishing (no secrets)."""

    request_id: str
    settings_block: str
    git_url: str
    locks: list[str]  # the target lock's names (tasks/lock.py)
    flow_run_id: str | None = None
    lease_id: str | None = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    pid_started: str | None = field(default_factory=lambda: process_start(os.getpid()))
    workdir: str | None = None
    phase: str = PUBLISHING
    records: list[Record] = field(default_factory=list)
    mr_iid: int | None = None
    branch: str | None = None
    result: dict[str, Any] | None = None  # the published outputs, once every write is done
    note: str = ""  # what the last repair did (or could not do)

    def record(self, rec: Record) -> Record:
        """Add `rec` unless a live record of the same target exists (first record wins); returns the
        record in force."""
        for old in self.records:
            if old.key == rec.key and not old.undone:
                if old.intended is None:
                    old.intended = rec.intended
                return old
        self.records = [r for r in self.records if r.key != rec.key] + [rec]
        return rec

    def live(self) -> list[Record]:
        """Records not undone yet, newest first (the order of undo)."""
        return [r for r in reversed(self.records) if not r.undone]

    @property
    def is_open(self) -> bool:
        return self.phase in OPEN

    def to_data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Journal":
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["records"] = [Record(**r) for r in values.get("records", [])]
        return cls(**values)

    def owner_alive(self) -> bool | None:
        """Whether the process that wrote the journal still runs: None when it ran on another host."""
        if self.host != socket.gethostname():
            return None
        started = process_start(self.pid)
        return started is not None and started == self.pid_started


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (pids are reused; this pair is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie has exited; its parent has not reaped it yet
        return None
    return fields[19]
