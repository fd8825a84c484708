"""IIB's request JSON for a merge, built from a Prefect flow run (pure: no I/O).

A build is a flow run of the merge deployment. Its IIB fields come from four places:
- the request parameters (what the client sent; the token never);
- the run's persisted state: the final `state` and `state_reason` (the flow ends
  `Completed(message=<IIB reason>)` or `Failed(message=<one sentence>)`), so both change together;
- the progress artifact, whose description is the current IIB state reason while the run works,
  and the `state_reason: ...` log lines, which make up IIB's `state_history`;
- the `iib-build-<id>` table artifact: resolved pullspecs, arches, distribution scope.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from indexflow.errors import ValidationError
from indexflow.merge.params import validate_request

ALLOWED_KEYS = {"source_from_index", "target_index", "deprecation_list", "binary_image", "overwrite_target_index",
                "overwrite_target_index_token", "distribution_scope", "build_tags", "graph_update_mode",
                "ignore_bundle_ocp_version", "dry_run",
                "graph_update_modes", "default_head_policy"}  # indexflow's own additions
BOOLEAN_KEYS = ("overwrite_target_index", "ignore_bundle_ocp_version", "dry_run")
STRING_KEYS = ("target_index", "binary_image", "graph_update_mode", "distribution_scope")
IN_PROGRESS = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"}
UNKNOWN_ERROR = "An unknown error occurred. See logs for details"
INITIATED = "The request was initiated"
REQUEST_TYPES = ("generic", "add", "rm", "regenerate-bundle", "merge-index-image", "create-empty-index",
                 "recursive-related-bundles", "fbc-operations", "add-deprecations")  # IIB's RequestTypeMapping
STATES = ("complete", "failed", "in_progress")


@dataclass
class Build:
    """What the endpoint knows of one build: its id, run, and what the flow recorded about it."""

    build_id: int
    flow_run: dict[str, Any]
    user: str | None = None
    current_reason: str | None = None  # progress artifact description / newest reason log
    fields: dict[str, str] = field(default_factory=dict)  # the iib-build artifact
    reason_logs: list[dict] | None = None  # None: not verbose (no state_history)


# -- the request -------------------------------------------------------------------------------------
def check_types(payload: dict[str, Any]) -> None:
    """IIB's type checks the shared validation leaves to the API (IIB's texts where IIB has them)."""
    for key in BOOLEAN_KEYS:
        if key in payload and payload[key] is not None and not isinstance(payload[key], bool):
            raise ValidationError(f'The "{key}" value must be a boolean')
    for key in STRING_KEYS:
        if payload.get(key) is not None and not isinstance(payload[key], str):
            raise ValidationError(f'The "{key}" value must be a string')


def check_payload(payload: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """IIB's API checks with its messages; returns the flow parameters (raises ValidationError)."""
    if not isinstance(payload, dict):
        raise ValidationError("The input data must be a JSON object")
    unknown = sorted(set(payload) - ALLOWED_KEYS)
    if unknown:
        raise ValidationError(f"The following parameters are invalid: {', '.join(unknown)}")
    check_types(payload)
    validate_request(payload, request_id="0", binary_image_configured=bool(settings.get("binary_image_config")),
                     graph_mode_options=settings.get("graph_mode_options") or ("replaces", "semver",
                                                                                "semver-skippatch"),
                     graph_mode_allow_list=settings.get("graph_mode_index_allow_list") or ())
    return {k: v for k, v in payload.items() if v is not None}


def request_key(user: str | None, payload: dict[str, Any], client_key: str | None) -> str:
    """Same user + same request (or the client's Idempotency-Key) -> same key: a retried POST."""
    basis = {"user": user, "idempotency_key": client_key} if client_key else {"user": user, "payload": payload}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:32]


# -- states ---------------------------------------------------------------------------------------------
def iib_state(flow_run: dict, current_reason: str | None) -> tuple[str, str]:
    """Prefect state -> IIB (state, state_reason); a final reason is the persisted state's message."""
    state = flow_run.get("state") or {}
    kind, message = state.get("type", "SCHEDULED"), state.get("message") or ""
    if kind in IN_PROGRESS:
        return "in_progress", current_reason or INITIATED
    if kind == "COMPLETED":
        return "complete", message or current_reason or "The request completed"
    if kind == "CANCELLED":
        return "failed", "The request was cancelled"
    if kind == "FAILED" and message and not message.startswith(("Flow run encountered an exception",
                                                                  "Flow run failed")):
        return "failed", message
    return "failed", UNKNOWN_ERROR


def iib_time(value: str | None) -> str:
    """IIB's timestamp form: UTC, microseconds, a trailing Z."""
    if not value:
        return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def state_history(build: Build, final: tuple[str, str]) -> list[dict[str, str]]:
    """Every transition, newest first (IIB's order): initiated, each step's reason, the final state."""
    run = build.flow_run
    entries = [("in_progress", INITIATED, run.get("created"))]
    for log in build.reason_logs or []:
        reason = log["message"].removeprefix("state_reason: ")
        if reason != entries[-1][1]:
            entries.append(("in_progress", reason, log["timestamp"]))
    if final[0] != "in_progress":
        if entries[-1][1] == final[1] and len(entries) > 1:
            entries.pop()  # the flow also logs its final reason
        entries.append((final[0], final[1], (run.get("state") or {}).get("timestamp")))
    return [{"state": s, "state_reason": r, "updated": iib_time(t)} for s, r, t in reversed(entries)]


# -- the JSON --------------------------------------------------------------------------------------------
def output_image(build_id: int, settings: dict[str, Any]) -> str:
    template = settings.get("image_push_template") or "{registry}/iib-build:{request_id}"
    return template.format(registry=settings.get("iib_registry", ""), request_id=build_id)


def id_of_output(index_image: str, settings: dict[str, Any]) -> int | None:
    """The build id whose output is `index_image` (the push template read backwards), or None."""
    template = settings.get("image_push_template") or "{registry}/iib-build:{request_id}"
    literal = [re.escape(part) for part in template.split("{request_id}")]
    pattern = r"([0-9]{1,18})".join(literal).replace(re.escape("{registry}"),
                                                      re.escape(settings.get("iib_registry", "")))
    match = re.fullmatch(pattern, index_image)
    return int(match.group(1)) if match else None


def request_json(build: Build, settings: dict[str, Any], ui_url: str | None, logs_url: str | None = None
                 ) -> dict[str, Any]:
    """IIB's request JSON for a merge (verbose when the build carries its reason logs)."""
    run, payload = build.flow_run, parameters_of(build.flow_run)
    state = iib_state(run, build.current_reason)
    done = state[0] == "complete" and not payload.get("dry_run")
    history = state_history(build, state)
    f = build.fields
    body: dict[str, Any] = {
        "id": build.build_id, "request_type": "merge-index-image", "batch": build.build_id,
        "arches": sorted(a for a in f.get("arches", "").split(",") if a),
        "state": state[0], "state_reason": state[1], "updated": history[0]["updated"], "user": build.user,
        "source_from_index": payload.get("source_from_index"),
        "source_from_index_resolved": f.get("source_from_index_resolved"),
        "target_index": payload.get("target_index"), "target_index_resolved": f.get("target_index_resolved"),
        "binary_image": f.get("binary_image") or payload.get("binary_image"),
        "binary_image_resolved": f.get("binary_image_resolved"),
        "deprecation_list": list(payload.get("deprecation_list") or []),
        "distribution_scope": f.get("distribution_scope") or payload.get("distribution_scope"),
        "build_tags": list(payload.get("build_tags") or []),
        "graph_update_mode": payload.get("graph_update_mode"),
        "ignore_bundle_ocp_version": bool(payload.get("ignore_bundle_ocp_version")),
        "index_image": output_image(build.build_id, settings) if done else None,
        "flow_run_id": run.get("id"),
        "flow_run_url": f"{ui_url.rstrip('/')}/runs/flow-run/{run.get('id')}" if ui_url else None,
    }
    if "dry_run" in payload:
        body["dry_run"] = bool(payload["dry_run"])
    if build.reason_logs is not None:
        body.update(state_history=history, batch_annotations=None,
                    logs={"url": logs_url, "expiration": None} if logs_url else None)
    return body


def parameters_of(flow_run: dict) -> dict[str, Any]:
    """The IIB request fields among the run's parameters (the token was never one)."""
    return {k: v for k, v in (flow_run.get("parameters") or {}).items()
            if k in ALLOWED_KEYS and k != "overwrite_target_index_token"}


def tag_value(flow_run: dict, prefix: str) -> str | None:
    return next((t[len(prefix):] for t in flow_run.get("tags", []) if t.startswith(prefix)), None)


def fields_from_artifact(data: Any) -> dict[str, str]:
    """Rows of the iib-build table artifact -> {field: value} (the API serves artifact data as text)."""
    rows = json.loads(data) if isinstance(data, str) else data
    return {r["field"]: r["value"] for r in rows or [] if isinstance(r, dict) and "field" in r}
