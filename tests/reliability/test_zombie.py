"""Zombie runs: a merge whose process dies ends Crashed and repaired with nobody's help (issues 17, 11).

A real `prefect server start` with what `indexflow setup` creates (run as an operator runs it, so its
automations come from the real API), the `merge-index-image` and `reconcile` deployments of
prefect.yaml (reconcile's schedule paused: every reconcile run here is started by its trigger on
Crashed merges) and a process worker. Flow-run heartbeats every 30 s (Prefect refuses less), so
setup's zombie automation waits 90 s for a missing beat.

- worker, before publishing: the flow's own process is SIGKILLed during the catalog build (no journal
  save yet). The worker marks the run Crashed; the trigger starts a reconcile run within a minute of
  the kill; it completes, its report names the run, the run's temp dir is gone.
- CLI, before publishing: the `indexflow merge` process is SIGKILLed during the catalog build. Only
  the heartbeat automation can mark its run Crashed, and does; the triggered reconcile removes the
  temp dir and reports the run.
- a node that died mid-publish: worker AND flow process SIGKILLed while the merge waits for its
  Konflux build (branch and MR published). The automation marks the run Crashed from the missing
  heartbeats; a fresh worker runs the triggered reconcile, which rolls the request back (registry,
  Git refs and MRs as before) and reports it.

Every wait is for an event (a state, a run, a file); the only clock assertion is the issue's minute.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from tasks import journal as store
from tests.deploy.conftest import artifacts_of, create_run, wait_final
from tests.prefect_server import BIN, REPO, PrefectServer, Service, leased_server, start
from tests.reliability.sandbox_session import remote_state
from tests.reliability.test_fault_matrix import private_target

BLOCK = "zombie"
HEARTBEAT = 30  # Prefect's minimum (PREFECT_FLOWS_HEARTBEAT_FREQUENCY >= 30)
ZOMBIE_AUTOMATION = "indexflow: mark zombie flow runs Crashed"
CRASH_WAIT = 300.0  # 90 s without a beat + the trigger service's 5 s loop, on a loaded 2-core box
RUN_WAIT = 300.0  # a worker starting a flow process can take a while at load


@dataclass
class Workers:
    """The process workers of the module's server; a test may kill them all (a node that died)."""

    server: PrefectServer
    started: list[Service] = field(default_factory=list)

    def start(self) -> Service:
        worker = start([str(BIN / "prefect"), "worker", "start", "--pool", "process", "--type", "process",
                        "--name", f"zombie-{len(self.started) + 1}"], self.server.env, self.server.logs / "worker.log")
        self.started.append(worker)
        return worker

    def kill_all(self) -> None:
        """SIGKILL every worker's process group: no worker lives to report anything."""
        for worker in self.started:
            _killpg(worker.proc.pid)
            worker.proc.wait(30)

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture(scope="module")
def server(prefect_session, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:  # noqa: ANN001
    """A real Prefect server (leases on disk, heartbeats every 30 s for every process it starts; its own,
    nested inside the session's: `leased_server`)."""
    with leased_server(tmp_path_factory, "zombie", PREFECT_FLOWS_HEARTBEAT_FREQUENCY=str(HEARTBEAT)) as srv:
        yield srv


@pytest.fixture(scope="module")
def workers(server: PrefectServer) -> Iterator[Workers]:
    found = Workers(server)
    try:
        yield found
    finally:
        found.stop_all()


@pytest.fixture(scope="module")
def env(server: PrefectServer, workers: Workers, proxied_env, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    """`indexflow setup` (settings block, process pool, automations) for the seeded sandbox; the merge
    and reconcile deployments; one worker."""
    values = proxied_env.settings(konflux_pipeline_timeout=120).model_dump(mode="json", exclude={"block_type_slug"})
    config = tmp_path_factory.mktemp("zombie-setup") / "setup.yaml"
    config.write_text(yaml.safe_dump({"settings": {"name": BLOCK, "values": values},
                                      "work_pools": {"process": {"type": "process"}}}))
    done = server.run("indexflow", "setup", str(config)).stdout
    assert f"automation {ZOMBIE_AUTOMATION}" in done, done
    server.run("prefect", "--no-prompt", "deploy", "--name", "merge-index-image", "--name", "reconcile", timeout=300)
    reconcile = server.api("GET", "/deployments/name/reconcile/reconcile")
    for schedule in reconcile["schedules"]:  # only its trigger on Crashed merges may start it here
        server.api("PATCH", f"/deployments/{reconcile['id']}/schedules/{schedule['id']}", json={"active": False})
    workers.start()
    proxied_env.sub_env = {**server.env, "INDEXFLOW_CACHE_DIR": os.environ["INDEXFLOW_CACHE_DIR"]}
    return proxied_env


# -- the kills --------------------------------------------------------------------------------------
def _killpg(pid: int) -> None:
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        pass


def flow_processes(flow_run_id: str) -> list[int]:
    """Processes running the flow run (the worker starts each with PREFECT__FLOW_RUN_ID set), read from
    /proc, not from anything indexflow wrote."""
    wanted, found = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode(), []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and wanted in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _until(what: str, check: Callable[[], object], timeout: float, interval: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval)
    pytest.fail(f"{what}: not within {timeout:.0f} s")


def _heartbeat_seen(server: PrefectServer, flow_run_id: str) -> None:
    """The server has a heartbeat of the run: it was beating when it died (else no automation could tell)."""
    body = {"filter": {"event": {"name": ["prefect.flow-run.heartbeat"]},
                       "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]}}, "limit": 1}
    _until("a heartbeat of the merge reaching the server",
           lambda: server.api("POST", "/events/filter", json=body)["events"], 120, 1.0)


def _workdirs(cell: str) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"indexflow-{cell}-*"))


def _hold_registry(env):  # noqa: ANN001, ANN202
    """Every registry request of the merge hangs: it stays in its catalog build (resolving the indexes),
    with its temp dir made and nothing journaled."""
    return env.proxies["registry"].add_fault(path=r"/v2/.+", action="hang", times=10**6, hang_seconds=30.0)


def _merge_params(env, target: str, cell: str) -> dict:  # noqa: ANN001
    seed = env.seeded
    return {"source_from_index": seed.source_index, "target_index": target,
            "deprecation_list": seed.deprecation_list, "ignore_bundle_ocp_version": True,
            "request_id": cell, "settings_block": BLOCK}


def _start_worker_run(server: PrefectServer, env, target: str, cell: str) -> str:  # noqa: ANN001
    run = create_run(server, "merge-index-image/merge-index-image", _merge_params(env, target, cell),
                     job_variables={"env": {"INDEXFLOW_CACHE_DIR": os.environ["INDEXFLOW_CACHE_DIR"]}})
    return run["id"]


# -- what must follow -------------------------------------------------------------------------------
def _triggered_reconcile(server: PrefectServer, killed_at: datetime) -> dict:
    """The reconcile run the deployment's trigger created after the kill (its schedule is paused)."""
    body = {"deployments": {"name": {"any_": ["reconcile"]}},
            "flow_runs": {"expected_start_time": {"after_": killed_at.isoformat()}}, "sort": "EXPECTED_START_TIME_ASC"}
    return _until("a reconcile run started by the trigger on the Crashed merge",
                  lambda: server.api("POST", "/flow_runs/filter", json=body), RUN_WAIT, 1.0)[0]


def _reconciled(server: PrefectServer, killed_at: datetime, merge_run: str, cell: str) -> str:
    """The triggered reconcile completes; its report names the dead run; returns the report."""
    run = _triggered_reconcile(server, killed_at)
    final = wait_final(server, run["id"], RUN_WAIT)
    assert final["state"]["type"] == "COMPLETED", final["state"].get("message")
    report = artifacts_of(server, run["id"])["reconcile-report"]["data"]
    assert f"request {cell} (flow run {merge_run})" in report, report
    assert not _workdirs(cell), f"the dead run's temp dir is left: {_workdirs(cell)}"
    assert server.api("GET", f"/flow_runs/{merge_run}")["state"]["type"] == "CRASHED"
    return report


def _zombie_message(server: PrefectServer) -> str:
    """The state message of the zombie automation `indexflow setup` created (read back from the server)."""
    [automation] = [a for a in server.api("POST", "/automations/filter", json={}) if a["name"] == ZOMBIE_AUTOMATION]
    return automation["actions"][0]["message"]


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


# -- the cells --------------------------------------------------------------------------------------
def test_worker_flow_killed_before_publishing(server: PrefectServer, env, clean_proxies):  # noqa: ANN001
    cell = f"zw-{int(time.time()) % 10**6}"
    target = private_target(env, cell)
    held = _hold_registry(env)
    merge_run = _start_worker_run(server, env, target, cell)
    _until("the merge's flow process, in its catalog build, with its temp dir",
           lambda: held.matched and _workdirs(cell) and flow_processes(merge_run), RUN_WAIT)
    _heartbeat_seen(server, merge_run)
    assert store.load(cell) is None, "the merge journaled before the kill: not the pre-publish case"
    killed_at = datetime.now(timezone.utc)
    for pid in flow_processes(merge_run):
        _killpg(pid)  # the flow's own process (its own session), not the worker
    env.proxies["registry"].clear()

    final = wait_final(server, merge_run, RUN_WAIT)
    assert final["state"]["type"] == "CRASHED", final["state"]
    started = _triggered_reconcile(server, killed_at)
    assert _parse(started["expected_start_time"]) - killed_at <= timedelta(seconds=60), \
        f"the reconcile run was started {started['expected_start_time']}, killed at {killed_at}"
    _reconciled(server, killed_at, merge_run, cell)


def test_cli_killed_before_publishing(server: PrefectServer, env, clean_proxies):  # noqa: ANN001
    cell = f"zc-{int(time.time()) % 10**6}"
    target = private_target(env, cell)
    held = _hold_registry(env)
    seed = env.seeded
    args = ["merge", "--source-from-index", seed.source_index, "--target-index", target, "--deprecation-list",
            ",".join(seed.deprecation_list), "--ignore-bundle-ocp-version", "--request-id", cell, "--settings", BLOCK]
    log = server.logs / f"{cell}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "indexflow"), *args], cwd=REPO, env=env.sub_env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        runs = _until("the CLI merge's flow run, in its catalog build, with its temp dir",
                      lambda: held.matched and _workdirs(cell) and server.api(
                          "POST", "/flow_runs/filter", json={"flow_runs": {"name": {"like_": f"merge-{cell}-"}}}),
                      RUN_WAIT)
        merge_run = runs[0]["id"]
        _heartbeat_seen(server, merge_run)
        assert proc.poll() is None, log.read_text()[-2000:]
        killed_at = datetime.now(timezone.utc)
    finally:
        _killpg(proc.pid)
        proc.wait(30)
    env.proxies["registry"].clear()

    final = wait_final(server, merge_run, CRASH_WAIT)  # nobody but the heartbeat automation can end it
    assert final["state"]["type"] == "CRASHED", final["state"]
    assert final["state"]["message"] == _zombie_message(server), final["state"]["message"]
    _reconciled(server, killed_at, merge_run, cell)


def test_node_died_mid_publish(server: PrefectServer, env, workers: Workers, clean_proxies):  # noqa: ANN001
    cell = f"zn-{int(time.time()) % 10**6}"
    target = private_target(env, cell)
    before = remote_state(env)
    env.proxies["kube"].add_fault(path=r"/pipelineruns", method="GET", times=10**6, action="hang", hang_seconds=2.0)
    merge_run = _start_worker_run(server, env, target, cell)
    _until("the merge waiting for its Konflux build, its MR opened",
           lambda: getattr(store.load(cell), "mr_iid", None) is not None, RUN_WAIT, 1.0)
    _heartbeat_seen(server, merge_run)
    time.sleep(1.0)  # inside the Konflux wait now
    killed_at = datetime.now(timezone.utc)
    flow = flow_processes(merge_run)
    assert flow, "the merge's flow process is not running"
    workers.kill_all()  # the node died: its worker and the flow process with it
    for pid in flow:
        _killpg(pid)
    env.proxies["kube"].clear()
    assert server.api("GET", f"/flow_runs/{merge_run}")["state"]["type"] == "RUNNING"

    final = wait_final(server, merge_run, CRASH_WAIT)  # only the server's automation is left to see it
    assert final["state"]["type"] == "CRASHED", final["state"]
    assert final["state"]["message"] == _zombie_message(server), final["state"]["message"]
    workers.start()  # a fresh worker picks up the triggered reconcile run
    report = _reconciled(server, killed_at, merge_run, cell)
    assert "rolled back" in report, report
    journal = store.load(cell)
    assert journal is not None and not journal.is_open, f"journal left {journal and journal.phase}"
    remote_state(env).assert_same(before)
