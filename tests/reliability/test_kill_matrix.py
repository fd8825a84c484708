"""Kill matrix: SIGKILL a merge at each point from the commit to the MR merge, on the CLI path and on a
real process worker; then `indexflow reconcile`, and the same request again.

After reconcile the remote state (registry tags and digests, Git refs, MRs, read straight from the
services) is exactly the state before the merge, or the merge's complete result; no merge run is
left Running; the dead run's temp dir (Git checkout with its credentials, docker config) is gone; and
the same request id run again completes, with the dead run's lock free (no lock wait).

Kill points: `INDEXFLOW_TEST_KILL_AFTER_JOURNAL_SAVE=N` makes the merge's process SIGKILL itself right
after its Nth journal save, i.e. just before the write that save announced (tasks/journal.py; saves:
1 branch, 2 MR, 3 MR opened, 4-5 output tags, 6 target, 7-8 index.db tags, 9 everything written,
only the MR merge left). "konflux-wait" kills the process from outside while it polls a Konflux build
held back on the wire. All run against a real `prefect server start` with leases on the filesystem.

CI runs a rotated subset (one point per path, a different one each day);
`INDEXFLOW_FULL_KILL_MATRIX=1` runs every point on both paths. The table is printed at the end.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks import journal as store
from tests.deploy.conftest import secret_ref
from tests.prefect_server import BIN, REPO, PrefectServer, leased_server, start, wait_http
from tests.reliability.sandbox_session import BLOCK, remote_state
from tests.reliability.test_fault_matrix import private_target

POINTS = {  # name -> journal save to die after (None: killed from outside during the Konflux wait)
    "branch journaled, not pushed": 1,
    "branch pushed": 2,
    "MR opened": 3,
    "konflux-wait": None,
    "build done, outputs not copied": 4,
    "first output copied": 5,
    "outputs copied, target not overwritten": 6,
    "target overwritten": 7,
    "per-request index.db pushed": 8,
    "all written, MR not merged": 9,
}
PATHS = ["cli", "worker"]
TABLE: list[tuple[str, str, str, str, str]] = []
TOKEN = "demo:demo"


def cells() -> list:
    names = list(POINTS)
    if os.environ.get("INDEXFLOW_FULL_KILL_MATRIX"):
        chosen = [(p, path) for path in PATHS for p in names]
    else:  # one point per path, rotated daily (the two paths half the matrix apart)
        day = datetime.date.today().toordinal()
        chosen = [(names[day % len(names)], "cli"), (names[(day + len(names) // 2) % len(names)], "worker")]
    return [pytest.param(p, path, id=f"{path}:{p.replace(' ', '-')}") for p, path in chosen]


@pytest.fixture(scope="module")
def server(prefect_session, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:  # noqa: ANN001
    """A real Prefect server (leases on the filesystem, repossessor every 2 s) + a process worker; the
    in-process clients of this module talk to it (`leased_server`: not the session's, nested inside it)."""
    with leased_server(tmp_path_factory, "kill", PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS="2") as srv:
        worker = start([str(BIN / "prefect"), "worker", "start", "--pool", "process", "--type", "process",
                        "--name", "kill-matrix"], srv.env, srv.logs / "worker.log")
        try:
            yield srv
        finally:
            worker.stop()


@pytest.fixture(scope="module")
def env(server: PrefectServer, proxied_env, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    """The seeded sandbox with its blocks in this server; the merge deployed for the worker."""
    proxied_env.save_blocks(BLOCK, konflux_pipeline_timeout=60)
    server.wait_for("/work_pools/process")  # the worker creates the pool the deployment names
    server.run("prefect", "--no-prompt", "deploy", "--name", "merge-index-image", "--name", "reconcile", timeout=300)
    reconcile = server.api("GET", "/deployments/name/reconcile/reconcile")
    for schedule in reconcile["schedules"]:  # its trigger on Crashed merges stays; the clock would race the test
        server.api("PATCH", f"/deployments/{reconcile['id']}/schedules/{schedule['id']}", json={"active": False})
    from prefect.blocks.system import Secret

    Secret(value=TOKEN).save("kill-matrix-token", overwrite=True)  # what a worker-path run references
    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(TOKEN)
    proxied_env.token_file = token_file
    proxied_env.sub_env = {**server.env, "INDEXFLOW_CACHE_DIR": os.environ["INDEXFLOW_CACHE_DIR"]}
    return proxied_env


@pytest.fixture(scope="module", autouse=True)
def kill_table():
    yield
    if TABLE:
        lines = [f"{'kill point':<40} {'path':<7} {'after reconcile':<16} {'re-run':<10} seconds"]
        lines += [f"{p:<40} {path:<7} {state:<16} {rerun:<10} {secs}" for p, path, state, rerun, secs in TABLE]
        print("\n" + "\n".join(lines))


def _merge_args(env, target: str, cell: str, block: str = BLOCK) -> list[str]:  # noqa: ANN001
    seed = env.seeded
    return ["merge", "--source-from-index", seed.source_index, "--target-index", target,
            "--deprecation-list", ",".join(seed.deprecation_list), "--overwrite-target-index",
            "--overwrite-target-index-token-file", str(env.token_file), "--ignore-bundle-ocp-version",
            "--build-tag", f"{cell}-b", "--request-id", cell, "--settings", block]


def _params(env, target: str, cell: str) -> dict:  # noqa: ANN001
    seed = env.seeded
    return {"source_from_index": seed.source_index, "target_index": target,
            "deprecation_list": seed.deprecation_list, "overwrite_target_index": True,
            "overwrite_target_index_token_secret": secret_ref("kill-matrix-token"), "ignore_bundle_ocp_version": True,
            "build_tags": [f"{cell}-b"], "request_id": cell, "settings_block": BLOCK}


def _kill_from_outside(env, cell: str, proc: subprocess.Popen | None) -> None:  # noqa: ANN001
    """Hold the Konflux build's answers back on the wire; once the run has opened its MR and polls the
    build, SIGKILL its process (the journal says which)."""
    env.proxies["kube"].add_fault(path=r"/pipelineruns", method="GET", times=10**6, action="hang",
                                  hang_seconds=2.0)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        journal = store.load(cell)
        if journal is not None and journal.mr_iid is not None:
            time.sleep(1.0)  # inside the wait now
            os.kill(journal.pid, signal.SIGKILL)
            break
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the merge ended before the Konflux wait: {proc.returncode}")
        time.sleep(0.3)
    else:
        pytest.fail("the merge never reached the Konflux wait")
    if proc is not None:
        proc.wait(60)
    env.proxies["kube"].clear()


def _run_killed(server: PrefectServer, env, point: str, path: str, target: str, cell: str) -> str | None:  # noqa: ANN001
    """Run the merge until it dies at `point`; on the worker path returns its flow run id."""
    save = POINTS[point]
    extra = {} if save is None else {"INDEXFLOW_TEST_KILL_AFTER_JOURNAL_SAVE": str(save)}
    if path == "cli":
        log = server.logs / f"{cell}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(BIN / "indexflow"), *_merge_args(env, target, cell)], cwd=REPO,
                                    env={**env.sub_env, **extra}, stdout=out, stderr=subprocess.STDOUT)
            if save is None:
                _kill_from_outside(env, cell, proc)
            else:
                proc.wait(300)
        assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
        return None
    from tests.deploy.conftest import create_run, wait_final

    run = create_run(server, "merge-index-image/merge-index-image", _params(env, target, cell),
                     job_variables={"env": {**extra, "INDEXFLOW_CACHE_DIR": os.environ["INDEXFLOW_CACHE_DIR"]}})
    if save is None:
        _kill_from_outside(env, cell, None)
    final = wait_final(server, run["id"])
    assert final["state"]["type"] == "CRASHED", final["state"].get("message")
    _triggered_reconciles(server, final["state"]["timestamp"])
    return run["id"]


def _triggered_reconciles(server: PrefectServer, since: str) -> list[dict]:
    """The reconcile deployment's trigger starts a run on the Crashed merge within a minute."""
    deadline = time.monotonic() + 60
    body = {"deployments": {"name": {"any_": ["reconcile"]}},
            "flow_runs": {"expected_start_time": {"after_": since}}}
    while time.monotonic() < deadline:
        if runs := server.api("POST", "/flow_runs/filter", json=body):
            return runs
        time.sleep(1)
    pytest.fail("no reconcile run was triggered by the Crashed merge within 60 s")


def _wait_other_repairers(server: PrefectServer, run_id: str) -> str:
    """Worker path: the merge's on_crashed hook and the reconcile runs its crash triggered race the
    CLI's reconcile; wait until the hook has said what it did (in the run's logs) and the triggered
    runs have ended, so that what follows judges everyone's result. Returns the hook's line."""
    from tasks.recovery import HOOK_DONE

    deadline, line = time.monotonic() + 180, None
    since = server.api("GET", f"/flow_runs/{run_id}")["state"]["timestamp"]
    while time.monotonic() < deadline:
        if line is None:
            logs = server.api("POST", "/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}},
                                                                  "sort": "TIMESTAMP_DESC", "limit": 50})
            line = next((lg["message"] for lg in logs if lg["message"].startswith(HOOK_DONE)), None)
        pending = [r for r in _triggered_reconciles(server, since)
                   if r["state"]["type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]
        if line is not None and not pending:
            return line
        time.sleep(1)
    pytest.fail(f"the crash hook never reported (logged: {line!r}) or a triggered reconcile is still running")


def _running_merges(server: PrefectServer) -> list[str]:
    """Merge runs still Running (a reconcile run the crash triggered may still be finishing)."""
    runs = server.api("POST", "/flow_runs/filter", json={"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}},
                                                          "flows": {"name": {"any_": ["merge-index-image"]}}})
    return [r["name"] for r in runs]


def _temp_dirs(cell: str) -> tuple[list[Path], list[Path]]:
    """(the dead run's temp dirs, files of any temp dir of the cell that hold the overwrite token)."""
    tmp = Path(tempfile.gettempdir())
    dirs = [d for d in tmp.glob(f"indexflow-*{cell}-*") if d.is_dir()]
    leaks = [f for d in dirs for f in d.rglob("*") if f.is_file() and TOKEN.encode() in _read(f)]
    return [d for d in dirs if d.name.startswith(f"indexflow-{cell}-")], leaks


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # removed meanwhile by a repair session closing
        return b""


def _judge(env, before, target: str, cell: str) -> str:  # noqa: ANN001
    """'as before' or 'complete' (or an AssertionError naming the mixture)."""
    after = remote_state(env)
    try:
        after.assert_same(before)
        return "as before"
    except AssertionError as mixture:
        changed = {k for k in before.tags.keys() | after.tags.keys() if before.tags.get(k) != after.tags.get(k)}
        target_key = target.split("/", 1)[1]
        outputs = {f"iib-build:{cell}", f"iib-build:{cell}-b"}
        complete = (changed and all(cell in k for k in changed) and outputs <= changed and target_key in changed
                    and after.tags[target_key] == after.tags[f"iib-build:{cell}"]
                    and sum(1 for s in after.mrs.values() if s == "merged")
                    == sum(1 for s in before.mrs.values() if s == "merged") + 1)
        assert complete, f"neither the state before nor the complete result: {mixture}"
        return "complete"


# the sum of its own step bounds (the killed run 300 s, two reconciles and the re-run 300 s each, the hook
# 60 s), not the suite's 600 s: at load 25 two of three full runs cut the same cell short inside reconcile
@pytest.mark.timeout(4 * 300 + 60 + 120)
@pytest.mark.parametrize("point,path", cells())
def test_kill_then_reconcile_then_rerun(point: str, path: str, server: PrefectServer, env, clean_proxies):  # noqa: ANN001
    cell = f"k{abs(hash((point, path))) % 10**6}-{int(time.time()) % 10**4}"
    target = private_target(env, cell)
    before = remote_state(env)
    run_id = _run_killed(server, env, point, path, target, cell)

    repaired = server.run("indexflow", "reconcile", "--settings", BLOCK, extra_env=env.sub_env, timeout=300)
    mine = [line for line in repaired.stdout.splitlines() if line.startswith(f"request {cell} ")]
    hook = _wait_other_repairers(server, run_id) if run_id else ""
    journal = store.load(cell)
    assert journal is not None and not journal.is_open, f"journal left {journal and journal.phase}"
    # on the worker path the run's on_crashed hook or the triggered reconcile may have been first
    assert mine or path == "worker", repaired.stdout + repaired.stderr
    assert "could not repair" not in hook, hook
    by = "" if mine else " (hook)" if any(a in hook for a in (": rolled back:", ": rolled forward:")) else " (trigger)"
    state = _judge(env, before, target, cell) + by
    assert not _running_merges(server), "a killed run is still Running after reconcile"
    left, leaks = _temp_dirs(cell)
    assert not left, f"the dead run's temp dir is left: {left}"
    assert not leaks, f"a temp file holds the overwrite token: {leaks}"
    again = server.run("indexflow", "reconcile", "--settings", BLOCK, extra_env=env.sub_env, timeout=300)
    assert not [line for line in again.stdout.splitlines() if cell in line], "reconcile is not idempotent"

    assert _locks_free(journal.locks), "reconcile left the dead run's target lock taken"
    t = time.monotonic()
    rerun = server.run("indexflow", *_merge_args(env, target, cell), extra_env=env.sub_env, timeout=300, check=False)
    secs = time.monotonic() - t
    TABLE.append((point, path, state, "completed" if rerun.returncode == 0 else f"rc {rerun.returncode}",
                  f"{secs:.0f}"))
    print(f"\nkill matrix row: {' | '.join(TABLE[-1])}")  # as it happens (-s): a long run can be cut short
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert _judge(env, before, target, cell) == "complete"


def _locks_free(names: list[str]) -> bool:
    """No slot of the target's locks is taken: the re-run cannot wait for the dead run's lock. (Its
    time is in the table; the issue's 60 s holds on an idle box, a loaded one can double it.)"""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return all(client.read_global_concurrency_limit_by_name(n).active_slots == 0 for n in names)


def _restart(server: PrefectServer) -> None:
    """Stop the server and start it again on the same port, database and lease storage."""
    server.service.stop()
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    server.service = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
                           server.env, server.logs / "server-restarted.log")
    wait_http(f"{server.url}/health", 300, server.service.proc, server.service.log)


def test_server_restart_while_a_merge_holds_its_lock(server: PrefectServer, env, clean_proxies):  # noqa: ANN001
    """Leases on disk: restarting the server while a merge holds its target lock (it waits on its
    Konflux build) harms neither that merge nor the next merge of the same target."""
    block = env.save_blocks("restart-test", konflux_pipeline_timeout=900)  # the wait outlives the restart
    cell = f"restart-{int(time.time()) % 10**5}"
    target = private_target(env, cell)
    env.proxies["kube"].add_fault(path=r"/pipelineruns", method="GET", times=10**6, action="hang",
                                  hang_seconds=2.0)
    log = server.logs / f"{cell}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "indexflow"), *_merge_args(env, target, cell, block)], cwd=REPO,
                                env=env.sub_env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while getattr(store.load(cell), "mr_iid", None) is None and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.5)
        _restart(server)
        env.proxies["kube"].clear()
        proc.wait(600)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert store.load(cell).phase == "completed"
    t = time.monotonic()
    nxt = server.run("indexflow", *_merge_args(env, target, f"{cell}-next", block), extra_env=env.sub_env,
                     timeout=900, check=False)
    assert nxt.returncode == 0, nxt.stderr[-3000:]
    TABLE.append(("server restart under the lock", "cli", "merge completed", "next completed",
                  f"{time.monotonic() - t:.0f}"))
