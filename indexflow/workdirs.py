"""A run's temp dir, marked with the process that owns it, so a later process can remove a dead run's.

A SIGKILLed run never cleans up: its Git checkout, bundles and index.db copy stay in the temp dir.
Its publish journal names the dir when the run got as far as publishing; a run killed earlier (during
validation or the catalog build) or repaired from another host leaves only the dir. Each dir
therefore carries an owner file: host, pid, process start time (pids are reused, the pair is not),
and, for a merge, its flow run id and when the dir was made, so whoever finds a dead run's dir can
also say which run died (tasks/orphans.py). A dir without an owner file (being created, or made by
other code), a symlink or another user's dir is never touched. Nothing secret is in the file.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from indexflow.journal import process_start

PREFIX = "indexflow-"
OWNER_FILE = ".indexflow-owner"  # "host pid start-time [flow-run-id|- created-iso]"


@dataclass(frozen=True)
class Owner:
    """Who made a temp dir (`path`); `created` is an ISO UTC time."""

    path: Path
    host: str
    pid: int
    pid_started: str
    flow_run_id: str | None = None
    created: str | None = None

    @property
    def request_id(self) -> str:
        """The name `make` was given (the dir is `indexflow-<name>-<random>`): a merge's request id, or
        the purpose of a step's `scratch` dir (which has no flow run)."""
        return self.path.name[len(PREFIX):].rsplit("-", 1)[0]

    def alive(self) -> bool | None:
        """Whether the owner still runs: None when it ran on another host (nobody here can tell)."""
        if self.host != socket.gethostname():
            return None
        return self.pid_started != "None" and process_start(self.pid) == self.pid_started


def make(name: str, flow_run_id: str | None = None, parent: Path | None = None) -> Path:
    """A new temp dir `indexflow-<name>-*` (in `parent`, default the system's) owned by this process."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{name}-", dir=parent))
    pid = os.getpid()
    (workdir / OWNER_FILE).write_text(f"{socket.gethostname()} {pid} {process_start(pid)} {flow_run_id or '-'} "
                                      f"{datetime.now(timezone.utc).isoformat()}\n")
    return workdir


@contextmanager
def scratch(purpose: str) -> Iterator[Path]:
    """A step's own temp dir (layers, a blob being copied, an upgraded db copy), owned like a run's dir,
    so a process killed inside the step leaves nothing a later sweep cannot tell is dead; removed when
    the step ends."""
    path = make(purpose)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def read_owner(workdir: Path) -> Owner | None:
    """The dir's owner; None when it has no readable owner file or is not this user's own dir."""
    try:
        if workdir.is_symlink() or not workdir.is_dir() or workdir.stat().st_uid != os.getuid():
            return None
        host, pid, started, *rest = (workdir / OWNER_FILE).read_text().split()
        run = rest[0] if rest and rest[0] != "-" else None
        return Owner(workdir, host, int(pid), started, run, rest[1] if len(rest) > 1 else None)
    except (OSError, ValueError):
        return None


def owner_alive(workdir: Path) -> bool | None:
    """Whether the dir's owner process still runs; None when that cannot be told here (no owner
    file, or an owner on another host sharing the dir)."""
    owner = read_owner(workdir)
    return owner.alive() if owner else None


def orphans(tmp: Path | None = None) -> list[Owner]:
    """The owners of temp dirs whose process on this host is gone."""
    found = (read_owner(p) for p in sorted(Path(tmp or tempfile.gettempdir()).glob(f"{PREFIX}*")))
    return [owner for owner in found if owner is not None and owner.alive() is False]


def sweep(tmp: Path | None = None) -> list[Path]:
    """Remove the temp dirs of dead runs on this host; returns the dirs removed. (A merge and
    reconcile use tasks/orphans.py, which also settles each dead run's state.)"""
    removed = []
    for owner in orphans(tmp):
        shutil.rmtree(owner.path, ignore_errors=True)
        removed.append(owner.path)
    return removed
