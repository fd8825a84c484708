"""A throwaway PostgreSQL cluster for the suite's Prefect servers (one per test process, started on
first use), each server with a database of its own.

Why not SQLite, Prefect's default: one SQLite writer at a time, and a write that waits out the lock
(60 s here) stalls everything behind it. On the session's shared server that stalled a lock release
for a minute on a quiet box, and a waiting merge timed out (tests/flow/test_rollback_lock.py). The
release engineers' server runs on PostgreSQL (docs/OPERATIONS.md), so the tests now do too.
"""

from __future__ import annotations

import atexit
import functools
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from indexflow.app.serve_cmd import signal_group
from tests.prefect_server import Service, free_port, start

USER = "prefect"  # the cluster's superuser; trust auth on loopback only
STARTUP_TIMEOUT = 60.0


@functools.cache
def bindir() -> Path:
    """Debian's versioned directory (its binaries are not on PATH), newest version first."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql): run `make setup`")
    return Path(found[-1]).parent


def _as_owner(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class Cluster:
    root: Path
    port: int
    service: Service

    def create_database(self, name: str) -> str:
        """A fresh database; its SQLAlchemy URL for PREFECT_API_DATABASE_CONNECTION_URL."""
        subprocess.run([str(bindir() / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name],
                       check=True, capture_output=True, timeout=60)
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients cut off), quietly: this runs at exit, after pytest's summary
        line, which tests/mutants.py reads as the last line of the output."""
        proc = self.service.proc
        signal_group(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster() -> Cluster:
    """initdb + postgres on a free loopback port, durability off (a test box: speed over crash safety)."""
    root = Path(tempfile.mkdtemp(prefix="indexflow-pg-"))  # not under pytest's 0700 basetemp
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run(_as_owner([str(bindir() / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8",
                              "--no-sync"]), check=True, capture_output=True, timeout=120)
    args = [str(bindir() / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", str(root),
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=500"]
    cluster = Cluster(root, port, start(_as_owner(args), dict(os.environ), root / "postgres.log"))
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while subprocess.run([str(bindir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode:
        if time.monotonic() > deadline or cluster.service.proc.poll() is not None:
            log = (root / "postgres.log").read_text()[-2000:]
            cluster.stop()
            raise RuntimeError(f"PostgreSQL did not start in {STARTUP_TIMEOUT:.0f} s:\n{log}")
        time.sleep(0.2)
    return cluster


_cluster: Cluster | None = None
_count = 0


def database_url() -> str:
    """A new database in this process's cluster (started on first use, stopped at exit)."""
    global _cluster, _count
    if _cluster is None:
        _cluster = start_cluster()
        atexit.register(_cluster.stop)
    _count += 1
    return _cluster.create_database(f"prefect{_count}")
