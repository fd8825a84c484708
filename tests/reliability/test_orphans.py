"""indexflow/workdirs.py: a temp dir is an orphan exactly when the process that made it is gone.

Real processes (the dead owner is a Python child that made its dir and exited) and, for
tasks/orphans.py, a real Prefect API (the suite's harness).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from uuid import UUID, uuid4

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Running

from indexflow import workdirs
from tasks import orphans


def _made_by_a_process_that_exited(parent: Path, request: str, flow_run_id: str = "run-1") -> Path:
    code = f"from indexflow import workdirs; print(workdirs.make({request!r}, {flow_run_id!r}, {str(parent)!r}))"
    return Path(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                               text=True).stdout.strip())


def test_only_dirs_of_dead_owners_are_orphans(tmp_path: Path) -> None:
    mine = workdirs.make("alive", "run-0", tmp_path)
    dead = _made_by_a_process_that_exited(tmp_path, "dead")
    assert dead.name.startswith("indexflow-dead-") and (dead / workdirs.OWNER_FILE).exists()
    orphans = workdirs.orphans(tmp_path)
    assert [(o.path, o.request_id, o.flow_run_id) for o in orphans] == [(dead, "dead", "run-1")]
    assert workdirs.owner_alive(mine) is True


def test_dirs_not_made_by_create_are_never_orphans(tmp_path: Path) -> None:
    dead = _made_by_a_process_that_exited(tmp_path, "dead")
    (tmp_path / "indexflow-plain-x").mkdir()  # no owner file (an older run, another tool)
    (tmp_path / "indexflow-link-x").symlink_to(dead)  # a symlink to an orphan is not one
    broken = tmp_path / "indexflow-broken-x"
    broken.mkdir()
    (broken / workdirs.OWNER_FILE).write_text("half-written")
    elsewhere = _made_by_a_process_that_exited(tmp_path, "elsewhere")
    host, rest = (elsewhere / workdirs.OWNER_FILE).read_text().split(" ", 1)
    (elsewhere / workdirs.OWNER_FILE).write_text(f"another-node {rest}")
    assert [o.path for o in workdirs.orphans(tmp_path)] == [dead]
    assert workdirs.owner_alive(elsewhere) is None  # nobody on this host can tell


def test_a_step_killed_inside_its_scratch_dir_leaves_a_dir_the_sweep_removes(tmp_path: Path) -> None:
    """A scratch dir (layers, a copied blob, an upgraded db) outlives a killed process, but not the next sweep;
    one the step finished with is already gone."""
    code = ("import os; from indexflow import workdirs\n"
            "with workdirs.scratch('done') as d: print(d)\n"
            "with workdirs.scratch('layers') as d:\n"
            "    (d / 'layer0').write_bytes(b'x' * 10); print(d, flush=True); os._exit(9)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"TMPDIR": str(tmp_path)})
    done, killed = (Path(line) for line in run.stdout.split())
    assert run.returncode == 9 and not done.exists() and (killed / "layer0").exists()
    assert killed.parent == tmp_path and killed.name.startswith("indexflow-layers-")
    assert orphans.remove_orphans(tmp_path) == [
        f"a layers step: its process on this host is gone; removed its temp dir {killed}"]
    assert not killed.exists() and orphans.remove_orphans(tmp_path) == []


# -- tasks/orphans.py against a real Prefect API -----------------------------------------------------
@flow(name="zombie-probe")
def _probe() -> None:
    """Only its flow runs are used: records in a Running state whose process never existed here."""


def _running_run(client) -> str:  # noqa: ANN001
    return str(client.create_flow_run(_probe, state=Running()).id)


def test_reconcile_tidies_a_run_killed_before_publishing(prefect_api, tmp_path: Path) -> None:  # noqa: ANN001
    """Its run is marked Crashed (it still said Running), its dir is removed, the line names both."""
    with get_client(sync_client=True) as client:
        run = _running_run(client)
        dead = _made_by_a_process_that_exited(tmp_path, "killed", run)
        lines = orphans.remove_orphans(tmp_path)
        state = client.read_flow_run(UUID(run)).state
    assert not dead.exists()
    assert lines == [f"request killed (flow run {run}): its process on this host is gone; removed its temp "
                     f"dir {dead}; marked the run Crashed"]
    assert (state.type.value, state.message) == ("CRASHED", orphans.MESSAGE)
    assert orphans.remove_orphans(tmp_path) == []  # idempotent


def test_a_run_someone_else_already_moved_on_is_left_alone(prefect_api, tmp_path: Path) -> None:  # noqa: ANN001
    """A state newer than the dead process's dir (a rescheduled attempt runs it now) is not overruled;
    a dir of a run this API does not know (another server's) is not touched."""
    with get_client(sync_client=True) as client:
        run = _running_run(client)
        dead = _made_by_a_process_that_exited(tmp_path, "moved", run)
        client.set_flow_run_state(UUID(run), Running(), force=True)  # a new attempt took it over
        foreign = _made_by_a_process_that_exited(tmp_path, "foreign", str(uuid4()))
        lines = orphans.remove_orphans(tmp_path)
        state = client.read_flow_run(UUID(run)).state
    assert not dead.exists() and lines[0].endswith(f"removed its temp dir {dead}") and len(lines) == 1
    assert state.type.value == "RUNNING"
    assert foreign.exists()
