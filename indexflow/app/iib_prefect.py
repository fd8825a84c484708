"""The Prefect REST calls behind `indexflow iib-api` (httpx; the service never imports Prefect).

Everything the IIB endpoint stores lives in Prefect, so any number of replicas can serve it:
- a request id is claimed by creating the variable `indexflow_iib_request_<id>`: variable names are
  unique in Prefect's database, so two replicas never hand out the same id;
- a retried POST finds its build again: the run is created with an `idempotency_key` derived from
  the user and the request, and Prefect returns the existing run for a key it has seen;
- runs are tagged `iib`, `iib-request:<id>`, `iib-user:<user>` and `iib-key:<key>`, which is how
  builds are found and listed.
"""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import dataclass
from typing import Any

import httpx

from indexflow.errors import IndexflowError

DEFAULT_DEPLOYMENT = "merge-index-image/merge-index-image"
SETTINGS_SLUG = "indexflow-merge-settings"
COUNTER_VARIABLE = "indexflow_iib_last_request_id"
CLAIM_VARIABLE = "indexflow_iib_request_"
REQUEST_TAG, USER_TAG, KEY_TAG = "iib-request:", "iib-user:", "iib-key:"
IN_PROGRESS = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")
RETRIES = 5
MAX_LOG_LINES = 20_000


class PrefectApiError(IndexflowError):
    """The Prefect API could not be reached or refused a call this endpoint needs."""


@dataclass(frozen=True)
class ApiConfig:
    """Where the Prefect API is and which deployment / settings block the endpoint uses."""

    prefect_api_url: str
    deployment: str = DEFAULT_DEPLOYMENT
    settings_block: str = "indexflow"
    ui_url: str | None = None
    timeout: float = 60.0  # a self-hosted SQLite server may hold a call that long (its database timeout)

    @classmethod
    def from_env(cls, deployment: str | None = None, settings_block: str | None = None) -> "ApiConfig":
        url = os.environ.get("PREFECT_API_URL", "")
        if not url.startswith(("http://", "https://")):
            raise PrefectApiError("PREFECT_API_URL must be set to the Prefect server's API URL "
                                  "(e.g. http://127.0.0.1:4200/api)")
        ui = os.environ.get("PREFECT_UI_URL") or (url[:-4] if url.rstrip("/").endswith("/api") else None)
        return cls(prefect_api_url=url.rstrip("/"), deployment=deployment or DEFAULT_DEPLOYMENT,
                   settings_block=settings_block or "indexflow", ui_url=ui)


def auth_headers() -> dict[str, str]:
    """Prefect Cloud key or a self-hosted server's basic-auth string; never logged or returned."""
    if os.environ.get("PREFECT_API_KEY"):
        return {"Authorization": f"Bearer {os.environ['PREFECT_API_KEY']}"}
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        encoded = base64.b64encode(os.environ["PREFECT_API_AUTH_STRING"].encode()).decode()
        return {"Authorization": f"Basic {encoded}"}
    return {}


def settings_path(config: ApiConfig) -> str:
    return f"/block_types/slug/{SETTINGS_SLUG}/block_documents/name/{config.settings_block}"


def read_settings_sync(config: ApiConfig) -> dict[str, Any]:
    """The MergeSettings block's data, read once at start-up (TLS and login are fixed for a process)."""
    try:
        response = httpx.get(config.prefect_api_url + settings_path(config), headers=auth_headers(),
                             timeout=config.timeout)
    except httpx.HTTPError as exc:
        raise PrefectApiError(f"the Prefect API at {config.prefect_api_url} is unreachable "
                              f"({type(exc).__name__})") from None
    if response.status_code == 404:
        raise PrefectApiError(f"the MergeSettings block {config.settings_block!r} does not exist; "
                              "run `indexflow setup` first")
    if response.status_code >= 400:
        raise PrefectApiError(f"the Prefect API answered {response.status_code} reading the settings block")
    return response.json()["data"]


def run_filter(tags: list[str], states: list[str] | None = None, deployment_id: str | None = None) -> dict:
    flow_runs: dict[str, Any] = {"tags": {"all_": tags}}
    if states:
        flow_runs["state"] = {"type": {"any_": states}}
    body: dict[str, Any] = {"flow_runs": flow_runs}
    if deployment_id:
        body["deployments"] = {"id": {"any_": [deployment_id]}}
    return body


class PrefectRest:
    """The handful of Prefect REST calls the endpoint needs."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self.http = httpx.AsyncClient(base_url=config.prefect_api_url, headers=auth_headers(),
                                      timeout=config.timeout)

    async def send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One call; 429/503 and timeouts (a busy server) are retried with backoff, as Prefect's own
        client does. Every call here is safe to repeat: reads, claims and block writes answer 409 the
        second time, and a run is created with an idempotency key."""
        for attempt in range(RETRIES + 1):
            try:
                response = await self.http.request(method, path, **kw)
            except httpx.TimeoutException as exc:
                if attempt == RETRIES:
                    raise self._unreachable(exc) from None
                continue
            except httpx.HTTPError as exc:
                raise self._unreachable(exc) from None
            if response.status_code not in (429, 503) or attempt == RETRIES:
                return response
            await asyncio.sleep(2.0 ** (attempt + 1))  # 2..32 s, ~60 s in all, like Prefect's own client
        raise AssertionError("unreachable")

    def _unreachable(self, exc: Exception) -> PrefectApiError:
        return PrefectApiError(f"the Prefect API at {self.config.prefect_api_url} is unreachable "
                               f"({type(exc).__name__})")

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        """A call whose 404 means "none" and whose other errors mean the API is unusable."""
        response = await self.send(method, path, **kw)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise PrefectApiError(f"the Prefect API answered {response.status_code} to {method} {path}")
        return response.json() if response.content else None

    async def healthy(self) -> bool:
        try:
            return (await self.http.get("/health")).status_code == 200
        except httpx.HTTPError:
            return False

    async def settings(self) -> dict[str, Any]:
        doc = await self.call("GET", settings_path(self.config))
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

    # -- creating a build --------------------------------------------------------------------
    async def claim_request_id(self, offset: int) -> int:
        """The next free id above `offset`, claimed atomically (a unique variable name per id).

        The counter variable is only a hint of where to start; the claim is what makes an id ours."""
        hint = await self.call("GET", f"/variables/name/{COUNTER_VARIABLE}")
        candidate = max(int(hint["value"]) if hint else 0, offset) + 1
        while True:
            response = await self.send("POST", "/variables/", json={"name": f"{CLAIM_VARIABLE}{candidate}",
                                                                     "value": candidate})
            if response.status_code == 409:
                candidate += 1
                continue
            if response.status_code >= 400:
                raise PrefectApiError(f"the Prefect API answered {response.status_code} claiming request id "
                                      f"{candidate}")
            await self._store_hint(hint is not None, candidate)
            return candidate

    async def _store_hint(self, exists: bool, value: int) -> None:
        if exists:
            await self.send("PATCH", f"/variables/name/{COUNTER_VARIABLE}", json={"value": value})
        else:
            await self.send("POST", "/variables/", json={"name": COUNTER_VARIABLE, "value": value})

    async def put_secret(self, name: str, value: str) -> str:
        """A Secret block named `name` holding `value` (overwritten if a retry made it already); its id."""
        block_type = await self.call("GET", "/block_types/slug/secret")
        schemas = await self.call("POST", "/block_schemas/filter",
                                  json={"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}})
        body = {"name": name, "data": {"value": value}, "block_type_id": block_type["id"],
                "block_schema_id": schemas[0]["id"], "is_anonymous": False}
        response = await self.send("POST", "/block_documents/", json=body)
        if response.status_code == 409:
            existing = await self.call("GET", f"/block_types/slug/secret/block_documents/name/{name}")
            await self.call("PATCH", f"/block_documents/{existing['id']}",
                            json={"data": {"value": value}, "merge_existing_data": False})
            return existing["id"]
        if response.status_code >= 400:
            raise PrefectApiError(f"the Prefect API answered {response.status_code} storing the one-time token block")
        return response.json()["id"]

    async def delete_secret(self, name: str) -> None:
        """Remove a one-time block; already gone (read by its run) is fine."""
        found = await self.call("GET", f"/block_types/slug/secret/block_documents/name/{name}")
        if found:
            await self.send("DELETE", f"/block_documents/{found['id']}")

    async def create_run(self, deployment_id: str, request_id: int, parameters: dict[str, Any],
                         tags: list[str], idempotency_key: str) -> dict:
        """The flow run of a build; for a key Prefect has seen, the existing run (another id)."""
        body = {"parameters": parameters, "name": f"iib-request-{request_id}", "idempotency_key": idempotency_key,
                "tags": ["iib", f"{REQUEST_TAG}{request_id}", *tags]}
        response = await self.send("POST", f"/deployments/{deployment_id}/create_flow_run", json=body)
        if response.status_code in (409, 422):  # Prefect's answers to parameters its schema refuses
            raise PrefectApiError("the merge-index-image deployment refused the request's parameters")
        if response.status_code >= 400:
            raise PrefectApiError(f"the Prefect API answered {response.status_code} creating the flow run")
        return response.json()

    # -- reading builds ----------------------------------------------------------------------
    async def find_run(self, build_id: int) -> dict | None:
        runs = await self.call("POST", "/flow_runs/filter", json={
            **run_filter([f"{REQUEST_TAG}{build_id}"]), "sort": "START_TIME_DESC", "limit": 1})
        return runs[0] if runs else None

    async def find_recent(self, tags: list[str], since: str) -> dict | None:
        """The newest run with all `tags` created (scheduled) after `since`."""
        body = run_filter(tags)
        body["flow_runs"]["expected_start_time"] = {"after_": since}
        runs = await self.call("POST", "/flow_runs/filter", json={**body, "limit": 1})
        return runs[0] if runs else None

    async def list_runs(self, body: dict, offset: int, limit: int) -> list[dict]:
        return await self.call("POST", "/flow_runs/filter", json={
            **body, "sort": "EXPECTED_START_TIME_DESC", "offset": offset, "limit": limit}) or []

    async def count_runs(self, body: dict) -> int:
        return int(await self.call("POST", "/flow_runs/count", json=body) or 0)

    async def states(self, flow_run_id: str) -> list[dict]:
        return await self.call("GET", "/flow_run_states/", params={"flow_run_id": flow_run_id}) or []

    async def artifacts(self, flow_run_ids: list[str]) -> list[dict]:
        if not flow_run_ids:
            return []
        return await self.call("POST", "/artifacts/filter", json={
            "artifacts": {"flow_run_id": {"any_": flow_run_ids}}, "sort": "CREATED_DESC", "limit": 200}) or []

    async def reason_logs(self, flow_run_id: str) -> list[dict]:
        """The flow's `state_reason: ...` log lines, oldest first (IIB's state history).

        Read page by page and picked here: the log text search answers 500 on a SQLite server."""
        return [e for e in await self.logs(flow_run_id, min_level=20) if e["message"].startswith("state_reason: ")]

    async def logs(self, flow_run_id: str, min_level: int = 0) -> list[dict]:
        """The run's log records, oldest first, at most MAX_LOG_LINES."""
        records: list[dict] = []
        while len(records) < MAX_LOG_LINES:
            page = await self.call("POST", "/logs/filter", json={
                "logs": {"flow_run_id": {"any_": [flow_run_id]}, "level": {"ge_": min_level}},
                "sort": "TIMESTAMP_ASC", "offset": len(records), "limit": 200}) or []
            records += page
            if len(page) < 200:
                break
        return records

    async def log_text(self, flow_run_id: str) -> str:
        """The run's whole log as text (IIB's /builds/<id>/logs)."""
        return "".join(f"{e['timestamp']} {_level(e['level'])} {e['name']} {e['message']}\n"
                       for e in await self.logs(flow_run_id))


def _level(number: int) -> str:
    return {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}.get(number, str(number))
