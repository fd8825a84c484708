"""IIB's `merge-index-image` REST endpoint in front of the `merge-index-image` Prefect deployment.

Existing IIB clients switch by changing the base URL: `POST /api/v1/builds/merge-index-image`
validates like IIB (merge.md B §1.1, same messages and status codes), answers 201 with an integer
id and the request JSON, and creates a flow run; `GET /api/v1/builds/<id>` maps the flow run's
state back to IIB's `state` / `state_reason`.

This module talks to the Prefect server over its REST API with httpx (no Prefect import: it is
core), reading PREFECT_API_URL and, if set, PREFECT_API_KEY or PREFECT_API_AUTH_STRING. Request
ids come from a Prefect variable guarded by one in-process lock, so run one replica of this app.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from indexflow.errors import IndexflowError, ValidationError
from indexflow.merge.params import ONE_TIME_SECRET_PREFIX, validate_request

DEFAULT_DEPLOYMENT = "merge-index-image/merge-index-image"
SETTINGS_SLUG = "indexflow-merge-settings"
COUNTER_VARIABLE = "indexflow_iib_last_request_id"
REQUEST_TAG = "iib-request:"
ALLOWED_KEYS = {"source_from_index", "target_index", "deprecation_list", "binary_image", "overwrite_target_index",
                "overwrite_target_index_token", "distribution_scope", "build_tags", "graph_update_mode",
                "ignore_bundle_ocp_version", "dry_run",
                "graph_update_modes", "default_head_policy"}  # indexflow's own additions
IN_PROGRESS = {"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"}
UNKNOWN_ERROR = "An unknown error occurred. See logs for details"
RETRIES = 5


class PrefectApiError(IndexflowError):
    """The Prefect API could not be reached or refused a call this endpoint needs."""


@dataclass(frozen=True)
class ApiConfig:
    """Where the Prefect API is and which deployment / settings block the endpoint uses."""

    prefect_api_url: str
    deployment: str = DEFAULT_DEPLOYMENT
    settings_block: str = "indexflow"
    ui_url: str | None = None
    timeout: float = 15.0

    @classmethod
    def from_env(cls, deployment: str | None = None, settings_block: str | None = None) -> "ApiConfig":
        url = os.environ.get("PREFECT_API_URL", "")
        if not url.startswith(("http://", "https://")):
            raise PrefectApiError("PREFECT_API_URL must be set to the Prefect server's API URL "
                                  "(e.g. http://127.0.0.1:4200/api)")
        ui = os.environ.get("PREFECT_UI_URL") or (url[:-4] if url.rstrip("/").endswith("/api") else None)
        return cls(prefect_api_url=url.rstrip("/"), deployment=deployment or DEFAULT_DEPLOYMENT,
                   settings_block=settings_block or "indexflow", ui_url=ui)


def _auth_headers() -> dict[str, str]:
    """Prefect Cloud key or a self-hosted server's basic-auth string; never logged or returned."""
    if os.environ.get("PREFECT_API_KEY"):
        return {"Authorization": f"Bearer {os.environ['PREFECT_API_KEY']}"}
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        encoded = base64.b64encode(os.environ["PREFECT_API_AUTH_STRING"].encode()).decode()
        return {"Authorization": f"Basic {encoded}"}
    return {}


class PrefectRest:
    """The handful of Prefect REST calls the endpoint needs."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self.http = httpx.AsyncClient(base_url=config.prefect_api_url, headers=_auth_headers(),
                                      timeout=config.timeout)
        self._id_lock = asyncio.Lock()

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        """One call; 429/503 (a busy server) are retried with backoff, as Prefect's own client does."""
        for attempt in range(RETRIES + 1):
            try:
                response = await self.http.request(method, path, **kw)
            except httpx.HTTPError as exc:
                raise PrefectApiError(f"the Prefect API at {self.config.prefect_api_url} is unreachable "
                                      f"({type(exc).__name__})") from None
            if response.status_code not in (429, 503) or attempt == RETRIES:
                break
            await asyncio.sleep(0.5 * 2 ** attempt)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise PrefectApiError(f"the Prefect API answered {response.status_code} to {method} {path}")
        return response.json() if response.content else None

    async def settings(self) -> dict[str, Any]:
        doc = await self.call("GET", f"/block_types/slug/{SETTINGS_SLUG}/block_documents/name/"
                                     f"{self.config.settings_block}")
        if doc is None:
            raise PrefectApiError(f"the MergeSettings block {self.config.settings_block!r} does not exist; "
                                  "run `indexflow setup` first")
        return doc["data"]

    async def deployment_id(self) -> str:
        flow_name, _, name = self.config.deployment.partition("/")
        found = await self.call("GET", f"/deployments/name/{flow_name}/{name}")
        if found is None:
            raise PrefectApiError(f"the deployment {self.config.deployment} does not exist; run `prefect deploy --all`")
        return found["id"]

    async def next_request_id(self) -> int:
        """IIB ids are integers: a counter kept in a Prefect variable (one API replica, one lock)."""
        async with self._id_lock:
            current = await self.call("GET", f"/variables/name/{COUNTER_VARIABLE}")
            value = int(current["value"]) + 1 if current else 1
            if current:
                await self.call("PATCH", f"/variables/name/{COUNTER_VARIABLE}", json={"value": value})
            else:
                await self.call("POST", "/variables/", json={"name": COUNTER_VARIABLE, "value": value})
            return value

    async def one_time_secret(self, build_id: int, value: str) -> str:
        """Store `value` in a Secret block the run deletes once read; returns the block's name.

        Prefect keeps flow-run parameters in plain text, so the token travels by reference."""
        block_type = await self.call("GET", "/block_types/slug/secret")
        schemas = await self.call("POST", "/block_schemas/filter",
                                  json={"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}})
        name = f"{ONE_TIME_SECRET_PREFIX}{build_id}-{os.urandom(4).hex()}"
        await self.call("POST", "/block_documents/", json={
            "name": name, "data": {"value": value}, "block_type_id": block_type["id"],
            "block_schema_id": schemas[0]["id"], "is_anonymous": False})
        return name

    async def create_run(self, deployment_id: str, request_id: int, parameters: dict[str, Any]) -> dict:
        body = {"parameters": parameters, "name": f"iib-request-{request_id}",
                "tags": ["iib", f"{REQUEST_TAG}{request_id}"]}
        return await self.call("POST", f"/deployments/{deployment_id}/create_flow_run", json=body)

    async def find_run(self, build_id: str) -> dict | None:
        if not build_id.isdigit():
            return None
        runs = await self.call("POST", "/flow_runs/filter", json={
            "flow_runs": {"tags": {"all_": [f"{REQUEST_TAG}{int(build_id)}"]}}, "sort": "START_TIME_DESC",
            "limit": 1})
        return runs[0] if runs else None

    async def last_state_reason(self, flow_run_id: str) -> str | None:
        """The newest `state_reason: ...` line the flow logged (its IIB state reason)."""
        logs = await self.call("POST", "/logs/filter", json={
            "logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_DESC", "limit": 200})
        for entry in logs or []:
            if entry["message"].startswith("state_reason: "):
                return entry["message"][len("state_reason: "):]
        return None


def iib_state(flow_run: dict, last_reason: str | None) -> tuple[str, str]:
    """Prefect state -> IIB (state, state_reason)."""
    state = flow_run.get("state") or {}
    kind, message = state.get("type", "SCHEDULED"), state.get("message") or ""
    if kind in IN_PROGRESS:
        return "in_progress", last_reason or "The request was initiated"
    if kind == "COMPLETED":
        return "complete", last_reason or "The request completed"
    if kind == "CANCELLED":
        return "failed", "The request was cancelled"
    if kind == "FAILED" and message and not message.startswith(("Flow run encountered an exception",
                                                                  "Flow run failed")):
        return "failed", message
    return "failed", UNKNOWN_ERROR


def request_json(build_id: int, payload: dict[str, Any], flow_run: dict, state: tuple[str, str],
                 settings: dict[str, Any], ui_url: str | None) -> dict[str, Any]:
    """IIB's verbose request JSON for a merge (the token is never included)."""
    done = state[0] == "complete"
    index_image = settings.get("image_push_template", "{registry}/iib-build:{request_id}").format(
        registry=settings.get("iib_registry", ""), request_id=build_id) if done and not payload.get("dry_run") \
        else None
    updated = (flow_run.get("state") or {}).get("timestamp") or datetime.now(timezone.utc).isoformat()
    body = {
        "id": build_id, "request_type": "merge-index-image", "batch": build_id, "batch_annotations": None,
        "arches": [], "state": state[0], "state_reason": state[1],
        "state_history": [{"state": state[0], "state_reason": state[1], "updated": updated}],
        "updated": updated, "user": None, "logs": None,
        "source_from_index": payload.get("source_from_index"), "source_from_index_resolved": None,
        "target_index": payload.get("target_index"), "target_index_resolved": None,
        "binary_image": payload.get("binary_image"), "binary_image_resolved": None,
        "deprecation_list": list(payload.get("deprecation_list") or []),
        "distribution_scope": payload.get("distribution_scope"), "build_tags": list(payload.get("build_tags") or []),
        "graph_update_mode": payload.get("graph_update_mode"),
        "ignore_bundle_ocp_version": bool(payload.get("ignore_bundle_ocp_version")),
        "index_image": index_image, "index_image_resolved": None,
        "flow_run_id": flow_run.get("id"),
        "flow_run_url": f"{ui_url.rstrip('/')}/runs/flow-run/{flow_run.get('id')}" if ui_url else None,
    }
    if "dry_run" in payload:
        body["dry_run"] = bool(payload["dry_run"])
    return body


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _validation_status(message: str) -> int:
    """IIB answers 403 when graph_update_mode is used on an index outside the allow-list, else 400."""
    return 403 if message.startswith(('"graph_update_mode" can only be used',
                                      '"graph_update_modes" can only be used')) else 400


def check_payload(payload: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """IIB's API checks with its messages; returns the flow parameters (raises ValidationError)."""
    if not isinstance(payload, dict):
        raise ValidationError("The input data must be a JSON object")
    unknown = sorted(set(payload) - ALLOWED_KEYS)
    if unknown:
        raise ValidationError(f"The following parameters are invalid: {', '.join(unknown)}")
    validate_request(payload, request_id="0", binary_image_configured=bool(settings.get("binary_image_config")),
                     graph_mode_options=settings.get("graph_mode_options") or ("replaces", "semver",
                                                                                "semver-skippatch"),
                     graph_mode_allow_list=settings.get("graph_mode_index_allow_list") or ())
    return {k: v for k, v in payload.items() if v is not None}


def create_app(config: ApiConfig) -> FastAPI:
    """The FastAPI app; one pooled httpx client to Prefect for its lifetime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.prefect = PrefectRest(config)
        try:
            yield
        finally:
            await app.state.prefect.http.aclose()

    app = FastAPI(title="indexflow IIB-compatible API", lifespan=lifespan)

    @app.exception_handler(PrefectApiError)
    async def prefect_down(request: Request, exc: PrefectApiError) -> JSONResponse:
        return _error(503, str(exc))

    @app.post("/api/v1/builds/merge-index-image", status_code=201)
    async def merge_index_image(request: Request) -> JSONResponse:
        prefect: PrefectRest = request.app.state.prefect
        try:
            payload = await request.json()
        except ValueError:
            return _error(400, "The input data must be a JSON object")
        settings = await prefect.settings()
        try:
            params = check_payload(payload, settings)
        except ValidationError as exc:
            return _error(_validation_status(str(exc)), str(exc))
        deployment_id = await prefect.deployment_id()
        build_id = await prefect.next_request_id()
        params.update(request_id=str(build_id), settings_block=config.settings_block)
        token = params.pop("overwrite_target_index_token", None)
        if token:
            params["overwrite_target_index_token_secret"] = await prefect.one_time_secret(build_id, token)
        flow_run = await prefect.create_run(deployment_id, build_id, params)
        body = request_json(build_id, payload, flow_run, ("in_progress", "The request was initiated"),
                            settings, config.ui_url)
        return JSONResponse(status_code=201, content=body)

    @app.get("/api/v1/builds/{build_id}")
    async def get_build(build_id: str, request: Request) -> JSONResponse:
        prefect: PrefectRest = request.app.state.prefect
        flow_run = await prefect.find_run(build_id)
        if flow_run is None:
            return _error(404, f"The requested resource was not found: build {build_id}")
        state = iib_state(flow_run, await prefect.last_state_reason(flow_run["id"]))
        payload = {k: v for k, v in flow_run.get("parameters", {}).items() if k in ALLOWED_KEYS}
        return JSONResponse(content=request_json(int(build_id), payload, flow_run, state,
                                                 await prefect.settings(), config.ui_url))

    return app
