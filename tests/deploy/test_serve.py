"""`indexflow serve` as a user meets it: it comes up, its printed `try:` line merges as printed (the run
shows in the server it printed), and Ctrl-C stops every process it started.

It starts its own Prefect server by design (that is what it is for), on free ports, in a temp state dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from indexflow.app.serve_cmd import KILL_WAIT, STOP_GRACE
from tests.deploy.conftest import API_TIMEOUT, BIN, REPO

STARTUP = 420.0  # server boot + seeding 413 real bundles + setup + deploy, on a loaded 2-core box
MERGE = 600.0  # the try line's merge (measured > 6 min at load 25)
# serve's documented bound for its parts (one shared SIGTERM grace, then SIGKILL) + the sandbox's
# teardown and the interpreter's exit, loaded
STOP = STOP_GRACE + KILL_WAIT + 120.0


def read_until(proc: subprocess.Popen, log: Path, prefix: str, timeout: float) -> dict[str, str]:
    """The `key: value` lines serve printed, once a line starting with `prefix` appeared."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        if any(line.startswith(prefix) for line in text.splitlines()):
            return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
        if proc.poll() is not None:
            break
        time.sleep(1.0)
    pytest.fail(f"serve printed no {prefix!r} line:\n{log.read_text()[-3000:] if log.exists() else ''}")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _processes_with(variable: str) -> list[str]:
    """`pid cmdline` of every live process whose environment holds `variable` (read from /proc)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if variable.encode() in environ.read_bytes().split(b"\0"):
                found.append(f"{environ.parent.name} {(environ.parent / 'cmdline').read_bytes()[:200]!r}")
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


@pytest.mark.timeout(STARTUP + MERGE + STOP + 120)  # the sum of its own step bounds, not the suite's 600 s
def test_serve_comes_up_its_try_line_merges_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    out = tmp_path / "serve.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    with out.open("wb") as sink:  # started as a script's background job is: SIGINT ignored
        proc = subprocess.Popen([str(BIN / "indexflow"), "serve", "--port", "0", "--iib-port", "0",
                                 "--state-dir", str(tmp_path / "state")], cwd=REPO, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_ignore_sigint)
    try:
        printed = read_until(proc, out, "Ctrl-C", STARTUP)
        ui, iib, api = printed["ui"], printed["iib-api"], printed["api"]
        assert httpx.get(ui, timeout=API_TIMEOUT).status_code == 200
        assert httpx.get(f"{api}/health", timeout=API_TIMEOUT).status_code == 200
        assert httpx.get(f"{iib}/api/v1/builds/1", timeout=API_TIMEOUT).status_code == 404  # up, no request yet
        # the UI asks /ui-settings where its API is: right for this port (the URL was set before the server)
        assert httpx.get(f"{ui}/ui-settings", timeout=API_TIMEOUT).json()["api_url"] == api
        names = httpx.post(f"{api}/deployments/filter", json={}, timeout=API_TIMEOUT).json()
        assert {d["name"] for d in names} == {"merge-index-image", "batch-merge", "reconcile"}

        # the try line, exactly as printed, in a shell without any Prefect settings
        merged = subprocess.run(printed["try"] + " --json", shell=True, cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=MERGE)
        assert merged.returncode == 0, merged.stderr[-3000:]
        import json

        result = json.loads(merged.stdout)
        assert result["missing"] == 88 and result["mr_state"] == "closed" and result["outputs"][0]["digest"]
        runs = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"name": {
            "like_": f"merge-{result['request_id']}"}}}, timeout=API_TIMEOUT).json()
        assert [r["state"]["type"] for r in runs] == ["COMPLETED"]  # visible in the printed server's UI
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            proc.wait(timeout=STOP)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("serve did not stop on Ctrl-C")
    assert proc.returncode == 0 and out.read_text().rstrip().endswith("stopped")
    # no part, and no flow run its worker started (Prefect gives each its own session), runs on
    assert not _processes_with(f"PREFECT_HOME={tmp_path / 'state' / 'prefect'}")
    for url in (printed["ui"], printed["iib-api"], printed["registry"]):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, timeout=5)


def test_a_part_stops_when_serve_itself_is_killed(tmp_path: Path) -> None:
    """SIGKILL cannot be caught: the parts serve started must not run on as orphans (a server, a worker)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from indexflow.app.serve_cmd import start_child; "
         "c = start_child('sleeper', ['sleep', '300'], {}, Path(sys.argv[1])); "
         "print(c.proc.pid, flush=True); time.sleep(300)", str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    comm = Path(f"/proc/{child}/comm")
    deadline = time.monotonic() + 60
    while comm.read_text().strip() != "sleep" and time.monotonic() < deadline:
        time.sleep(0.05)  # setpriv arms the death signal, then execs: a parent killed before that is too early
    parent.kill()
    parent.wait(timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = Path(f"/proc/{child}/status")
        state = status.read_text() if status.exists() else ""
        if "State:\tZ" in state or not state:  # gone, or dead and waiting for init to reap it
            return
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    pytest.fail(f"the part serve started outlived serve's SIGKILL:\n{state}")


def test_stop_all_ends_what_a_part_started_in_a_session_of_its_own(tmp_path: Path) -> None:
    """A process worker runs each flow run in a new session: the part's group signal does not reach it.
    Here the part's child also ignores SIGTERM (a run stuck in a call): it must be SIGKILLed at the grace."""
    from indexflow.app.serve_cmd import start_child, stop_all

    pidfile = tmp_path / "run.pid"
    run = ("import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
           "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)")
    part = start_child("worker", [sys.executable, "-c",
                                  "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', sys.argv[1], "
                                  "sys.argv[2]], start_new_session=True); time.sleep(300)", run, str(pidfile)],
                       {}, tmp_path)
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    stuck = int(pidfile.read_text())
    assert os.getsid(stuck) == stuck != os.getsid(part.proc.pid)  # its own session, as Prefect makes it
    stop_all([part], grace=2.0)
    deadline = time.monotonic() + 60  # SIGKILLed: gone once init reaps it
    while time.monotonic() < deadline:
        status = Path(f"/proc/{stuck}/status")
        state = status.read_text() if status.exists() else ""
        if not state or "State:\tZ" in state:
            return
        time.sleep(0.2)
    os.kill(stuck, signal.SIGKILL)
    pytest.fail(f"the flow-run-like process outlived serve's stop:\n{state}")
