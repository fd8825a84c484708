"""The batch's per-entry timeout, on the suite's real Prefect server and process worker: an entry
still running when its timeout passes is reported as such, while the other entries complete.

The batch flow is the real one; the deployment it fans out to is a stand-in flow that holds one
entry until the test releases it, so the test needs no merge timing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from tests.deploy.conftest import REPO, artifacts_of

STANDIN = "batch-standin/variants-standin"
TIMEOUT = 90.0  # far above a quick entry's worker pick-up and start on a loaded box; the held one never ends


def _deploy_standin(server) -> None:  # noqa: ANN001
    """The stand-in deployed to the worker's pool (which the worker creates when it starts)."""
    from prefect import flow

    server.wait_for("/work_pools/process")
    flow.from_source(source=str(REPO), entrypoint="tests/deploy/batch_standin.py:standin").deploy(
        name="variants-standin", work_pool_name="process", print_next_steps=False)


def test_entry_over_its_timeout_is_reported_while_the_others_complete(prefect_api, process_worker,  # noqa: ANN001
                                                                      tmp_path: Path) -> None:
    from flows.batch_merge import batch_merge

    _deploy_standin(prefect_api)
    release = tmp_path / "release"
    batch_file = tmp_path / "batch.yaml"
    batch_file.write_text(yaml.safe_dump({"settings_block": "unused", "merges": [
        {"name": "quick-a", "source_from_index": "quick"}, {"name": "held", "source_from_index": str(release)},
        {"name": "quick-b", "source_from_index": "quick", "dry_run": True}]}))
    try:
        state = asyncio.run(batch_merge(batch_file=str(batch_file), max_parallel=3, deployment=STANDIN,
                                        timeout_seconds=TIMEOUT, return_state=True))
        batch_id = state.state_details.flow_run_id
        held_state = prefect_api.api("GET", f"/flow_runs/{_child(prefect_api, batch_id, 'held')}")["state"]["type"]
    finally:
        release.touch()  # the held run ends by itself; nothing is left running on the worker
    assert state.is_failed()
    assert state.message == "1 of 3 merges failed: held", state.message
    assert held_state in ("RUNNING", "PENDING", "SCHEDULED"), held_state  # the API says it had not ended
    children = {name: prefect_api.api("GET", f"/flow_runs/{_child(prefect_api, batch_id, name)}")["state"]["type"]
                for name in ("quick-a", "quick-b")}
    assert children == {"quick-a": "COMPLETED", "quick-b": "COMPLETED"}
    summary = artifacts_of(prefect_api, str(batch_id))["batch-merge-summary"]["data"]
    assert "| held | failed | still " in summary and f" after {TIMEOUT:.0f} s |" in summary, summary
    assert "| quick-a | complete | merged |" in summary and "| quick-b | complete | merged |" in summary


def _child(server, batch_id, entry: str) -> str:  # noqa: ANN001
    """The flow run the batch started for `entry` (named `<batch run>-<entry>`)."""
    runs = server.api("POST", "/flow_runs/filter", json={
        "flow_runs": {"parent_flow_run_id": {"any_": [str(batch_id)]}}})
    found = [r["id"] for r in runs if r["name"].endswith(f"-{entry}")]
    assert len(found) == 1, f"flow runs for entry {entry}: {found}"
    return found[0]

