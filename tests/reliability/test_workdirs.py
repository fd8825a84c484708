"""A run's temp dir outlives a SIGKILL; the next run (or reconcile) removes it, and only it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from indexflow import workdirs

MAKE = "import sys; from pathlib import Path; from indexflow import workdirs; " \
       "d = workdirs.make('t'); (d / 'checkout').mkdir(); print(d, flush=True); sys.stdin.read()"


def _owner_process(tmp: Path) -> tuple[subprocess.Popen, Path]:
    """A separate process that makes its temp dir under `tmp` and then waits for its stdin."""
    proc = subprocess.Popen([sys.executable, "-c", MAKE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={"TMPDIR": str(tmp), "PATH": "/usr/bin:/bin"}, cwd=Path(__file__).parents[2])
    return proc, Path(proc.stdout.readline().strip())


def test_sweep_removes_only_the_dirs_of_dead_owners(tmp_path: Path) -> None:
    killed, killed_dir = _owner_process(tmp_path)
    alive, alive_dir = _owner_process(tmp_path)
    unowned = tmp_path / "indexflow-unowned-x"  # no owner file: being created, or someone else's
    unowned.mkdir()
    other = tmp_path / "other-dir"
    other.mkdir()
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        assert killed_dir.is_dir() and (killed_dir / "checkout").is_dir()  # a SIGKILL cleans nothing

        assert workdirs.sweep(tmp_path) == [killed_dir]
        assert not killed_dir.exists()
        assert alive_dir.is_dir() and unowned.is_dir() and other.is_dir()
        assert workdirs.owner_alive(alive_dir) is True
        assert workdirs.sweep(tmp_path) == []  # idempotent
    finally:
        alive.communicate("")
    assert workdirs.sweep(tmp_path) == [alive_dir]  # its owner has ended without removing it


def test_an_owner_on_another_host_is_never_judged(tmp_path: Path) -> None:
    """A temp dir shared with another node (its pids mean nothing here) is left to that node."""
    shared = tmp_path / "indexflow-elsewhere-x"
    shared.mkdir()
    (shared / workdirs.OWNER_FILE).write_text("another-host 1 1\n")
    assert workdirs.owner_alive(shared) is None
    assert workdirs.sweep(tmp_path) == [] and shared.is_dir()
