"""Automations `indexflow setup` creates (issue 17): Prefect's own means for what a merge service needs.

- zombie detection: a Running flow run whose heartbeats stop (its node died) is marked Crashed, which
  in turn starts the `reconcile` deployment (its trigger in prefect.yaml) to repair what it left;
- with a notification block named in the setup file: a notice for every Failed or Crashed merge, and
  for every `indexflow.merge.rollback-incomplete` event (a request left writes nobody could undo).

Each is recreated by name on every setup run, so the setup stays idempotent.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

from indexflow.journal import ROLLBACK_INCOMPLETE_EVENT  # emitted by tasks/rollback.py

MERGE_FLOW = "merge-index-image"
FINAL_EVENTS = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}


def zombie_detection(heartbeat_seconds: float) -> Automation:
    """Prefect's documented zombie automation: no heartbeat within three beats -> Crashed."""
    return Automation(
        name="indexflow: mark zombie flow runs Crashed",
        description="A Running flow run that stopped sending heartbeats (its process or node died) is "
                    "marked Crashed; reconcile then repairs a merge it left half-published.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"}, expect={"prefect.flow-run.heartbeat", *FINAL_EVENTS},
            match={"prefect.resource.id": ["prefect.flow-run.*"]}, for_each={"prefect.resource.id"},
            posture=Posture.Proactive, threshold=1, within=timedelta(seconds=3 * heartbeat_seconds)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, force=True,
                                    message="Flow run marked Crashed: its heartbeats stopped.")])


def failed_merge_notice(block_id: UUID) -> Automation:
    return Automation(
        name="indexflow: notify failed or crashed merges",
        description="A merge-index-image run ended Failed or Crashed.",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": MERGE_FLOW},
            posture=Posture.Reactive, threshold=1),
        actions=[SendNotification(block_document_id=block_id, subject="indexflow: merge {{ flow_run.name }} "
                                  "{{ flow_run.state.name }}", body="{{ flow_run.state.message }}")])


def rollback_incomplete_notice(block_id: UUID) -> Automation:
    return Automation(
        name="indexflow: notify incomplete rollbacks",
        description="A merge left remote writes it could not undo; its publish journal names them.",
        trigger=EventTrigger(expect={ROLLBACK_INCOMPLETE_EVENT},
                             match={"prefect.resource.id": ["indexflow.merge.*"]},
                             posture=Posture.Reactive, threshold=1),
        actions=[SendNotification(block_document_id=block_id,
                                  subject="indexflow: {{ event.resource.name }} could not be rolled back",
                                  body="Could NOT undo: {{ event.payload.could_not_undo }} "
                                       "(journal {{ event.payload.journal }})")])


def wanted(notification_block_id: UUID | None, heartbeat_seconds: float) -> list[Automation]:
    found = [zombie_detection(heartbeat_seconds)]
    if notification_block_id is not None:
        found += [failed_merge_notice(notification_block_id), rollback_incomplete_notice(notification_block_id)]
    return found


def apply_automations(notification_block: str | None, heartbeat_seconds: float = 30) -> list[str]:
    """Create (or recreate) the automations; `notification_block` is `<block type slug>/<name>`."""
    with get_client(sync_client=True) as client:
        block_id = None
        if notification_block:
            slug, _, name = notification_block.partition("/")
            block_id = client.read_block_document_by_name(name, block_type_slug=slug).id
        done = []
        for automation in wanted(block_id, heartbeat_seconds):
            for old in client.read_automations_by_name(automation.name):
                client.delete_automation(old.id)
            automation.create()
            done.append(f"automation {automation.name}")
    return done
