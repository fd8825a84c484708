"""The automations `indexflow setup` creates, read back from a real Prefect API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.blocks.notifications import SlackWebhook
from prefect.client.orchestration import get_client

from blocks.automations import ROLLBACK_INCOMPLETE_EVENT, apply_automations


def _named(prefix: str) -> dict:
    with get_client(sync_client=True) as client:
        return {a.name: a for a in client.read_automations() if a.name.startswith(prefix)}


@pytest.fixture()
def notices() -> Iterator[str]:
    """A notification block; the notice automations go again after the test, so the failed merges of
    later suites on the session's server do not send notices to it."""
    SlackWebhook(url="https://hooks.example.com/x").save("indexflow-test-notices", overwrite=True)
    yield "slack-webhook/indexflow-test-notices"
    with get_client(sync_client=True) as client:
        for automation in _named("indexflow: notify").values():
            client.delete_automation(automation.id)


def test_zombie_detection_and_notices_are_created_once_per_name(notices: str):
    apply_automations(None, 30)
    lines = apply_automations(notices, 30)  # a second run replaces, not adds
    found = _named("indexflow: ")
    assert len(lines) == 3 and len(found) == 3, sorted(found)
    zombie = found["indexflow: mark zombie flow runs Crashed"]
    assert zombie.trigger.posture == "Proactive" and zombie.trigger.within.total_seconds() == 90
    assert zombie.actions[0].type == "change-flow-run-state" and zombie.actions[0].state == "CRASHED"
    failed = found["indexflow: notify failed or crashed merges"]
    assert failed.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert failed.actions[0].type == "send-notification"
    rollback = found["indexflow: notify incomplete rollbacks"]
    assert rollback.trigger.expect == {ROLLBACK_INCOMPLETE_EVENT}
