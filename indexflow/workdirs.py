"""A run's temp dir, marked with the process that owns it, so a later process can remove a dead run's.

A SIGKILLed run never cleans up: its Git checkout, bundles and index.db copy stay in the temp dir.
Its publish journal names the dir when the run got as far as publishing; a run killed earlier (or
repaired from another host) leaves only the dir. Each dir therefore carries an owner file (host, pid,
process start time): `sweep` removes every `indexflow-*` dir whose owner on this host is gone. A dir
without an owner file (being created, or made by other code) is never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

from indexflow.journal import process_start

PREFIX = "indexflow-"
OWNER_FILE = ".indexflow-owner"


def make(name: str) -> Path:
    """A new temp dir `indexflow-<name>-*` owned by this process."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{name}-"))
    pid = os.getpid()
    (workdir / OWNER_FILE).write_text(f"{socket.gethostname()} {pid} {process_start(pid)}\n")
    return workdir


def owner_alive(workdir: Path) -> bool | None:
    """Whether the dir's owner process still runs; None when that cannot be told here (no owner
    file, or an owner on another host sharing the dir)."""
    try:
        host, pid, started = (workdir / OWNER_FILE).read_text().split()
    except (OSError, ValueError):
        return None
    if host != socket.gethostname():
        return None
    return started != "None" and process_start(int(pid)) == started


def sweep(tmp: Path | None = None) -> list[Path]:
    """Remove the temp dirs of dead runs on this host; returns the dirs removed."""
    removed = []
    for workdir in Path(tmp or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        if workdir.is_dir() and owner_alive(workdir) is False:
            shutil.rmtree(workdir, ignore_errors=True)
            removed.append(workdir)
    return removed
