"""Steps `prefect deploy` runs from prefect.yaml's `build:` section (not flows: nothing here runs on a worker).

`schedule_active` decides whether a deploy should set a schedule's `active` flag. The scheduled
batch must not start nights that do nothing (or fail on placeholders), and a re-deploy must not undo
what an operator did to the schedule in the UI or with `prefect deployment schedule pause/resume`.
"""

from __future__ import annotations

from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from flows.batch_merge import BatchFileError, load_batch


def schedule_active(deployment: str, slug: str, batch_file: str) -> dict[str, bool | None]:
    """`{"active": None}` when `deployment` already has the schedule `slug`, else whether `batch_file` lists merges.

    None leaves `active:` out of the schedule `prefect deploy` sends, and Prefect then keeps a
    slugged schedule's state (paused stays paused, resumed stays resumed). A new schedule starts
    active only when its batch file has entries; an empty or unreadable file ships it paused.
    """
    if _has_schedule(deployment, slug):
        return {"active": None}
    try:
        entries = load_batch(Path(batch_file))
    except BatchFileError as exc:
        print(f"schedule {slug!r} of {deployment} starts paused: {exc}")
        return {"active": False}
    if not entries:
        print(f"schedule {slug!r} of {deployment} starts paused: {batch_file} lists no merges yet")
    return {"active": bool(entries)}


def _has_schedule(deployment: str, slug: str) -> bool:
    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            return False
    return any(schedule.slug == slug for schedule in found.schedules or [])
