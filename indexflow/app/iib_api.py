"""IIB's REST API for merge-index-image, in front of the `merge-index-image` Prefect deployment.

Existing IIB clients (iiblib, pubtools-iib, curl scripts) switch by changing the host name:
- `POST /api/v1/builds/merge-index-image` checks the login and the request the way IIB does (same
  messages and status codes) before anything is created, then starts a flow run; a retried POST
  returns the build the first one made;
- `GET /api/v1/builds`, `/builds/<id>`, `/builds/<id>/logs` and `/healthcheck` answer IIB's JSON
  (paging, filters, full `state_history`), with no login, as IIB does;
- every error is IIB's `{"error": "..."}` body.
Prefect holds all state (see iib_prefect), so replicas share nothing but the Prefect API.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import FastAPI, Request
from pydantic import ValidationError as PydanticValidationError
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from blocks.iib_api_settings import IibApiSettings
from indexflow.app.iib_auth import Authenticator, Forbidden, ServeError, check_overwrite
from indexflow.app.iib_builds import (INITIATED, REQUEST_TYPES, STATES, UNKNOWN_ERROR, Build, check_payload,
                                      fields_from_artifact, id_of_output, iib_state, request_json, request_key,
                                      tag_value)
from indexflow.app.iib_prefect import (IN_PROGRESS, KEY_TAG, REQUEST_TAG, USER_TAG, ApiConfig, PrefectApiError,
                                       PrefectRest, run_filter)
from indexflow.errors import ValidationError
from indexflow.merge.params import ONE_TIME_SECRET_PREFIX

__all__ = ["ApiConfig", "UNKNOWN_ERROR", "create_app", "iib_state", "request_json"]

API = "/api/v1"
BUILD_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only ("²" is a digit to Python), bounded
IIB_FIELDS_KEY = "iib-build-"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# werkzeug's descriptions, which IIB answers for these codes
HTTP_TEXTS = {
    401: "The server could not verify that you are authorized to access the URL requested. You either supplied "
         "the wrong credentials (e.g. a bad password), or your browser doesn't understand how to supply the "
         "credentials required.",
    404: "The requested resource was not found",
    405: "The method is not allowed for the requested URL.",
    413: "The data value transmitted exceeds the capacity limit.",
}


class TooLarge(Exception):
    """The request body is over `max_body_bytes`."""


class TooMany(Exception):
    """The user already has as many builds in progress as allowed."""


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message}, headers=headers)


def api_settings(settings: dict[str, Any]) -> IibApiSettings:
    """The block's `iib_api` section; a wrong value is one sentence naming the field."""
    try:
        return IibApiSettings.model_validate(settings.get("iib_api") or {})
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        raise ServeError(f"settings iib_api.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None


def create_app(config: ApiConfig, auth: Authenticator | None = None) -> FastAPI:
    """The FastAPI app; one pooled httpx client to Prefect for its lifetime."""
    from indexflow.app.iib_auth import NoLogin

    login = auth or NoLogin()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.prefect = PrefectRest(config)
        try:
            yield
        finally:
            await app.state.prefect.http.aclose()

    app = FastAPI(title="indexflow IIB-compatible API", lifespan=lifespan)
    register_errors(app, login)

    @app.post(f"{API}/builds/merge-index-image", status_code=201)
    async def merge_index_image(request: Request) -> JSONResponse:
        prefect: PrefectRest = request.app.state.prefect
        user = await login.user(request.headers, request.client.host if request.client else None)
        if user is None and login.mode != "none":
            return unauthorized(login)
        settings = await prefect.settings()
        limits = api_settings(settings)
        payload = parse_json(await read_body(request, limits.max_body_bytes))
        params = check_payload(payload, settings)
        if params.get("overwrite_target_index") and login.mode != "none":
            check_overwrite(user, params.get("target_index"), limits.privileged_users)
        build = await start_build(prefect, config, limits, user, payload, params,
                                  request.headers.get("idempotency-key"))
        return JSONResponse(status_code=201, content=request_json(build, settings, config.ui_url,
                                                                  logs_url(request, build)))

    @app.get(f"{API}/builds")
    async def get_builds(request: Request) -> JSONResponse:
        prefect: PrefectRest = request.app.state.prefect
        settings = await prefect.settings()
        query = request.query_params
        page, per_page = paging(query, api_settings(settings).max_per_page)
        filters, body = await list_filter(prefect, query, settings)
        verbose = (query.get("verbose") or "").lower() in ("true", "1", "yes")
        total = 0 if body is None else await prefect.count_runs(body)
        offset = (page - 1) * per_page  # past the last run, nothing to ask (past 2**63 Prefect fails: 503)
        runs = [] if body is None or offset >= total else await prefect.list_runs(body, offset, per_page)
        if not runs and page != 1:
            return error(404, HTTP_TEXTS[404])
        builds = await describe(prefect, runs, verbose)
        items = [request_json(b, settings, config.ui_url, logs_url(request, b) if verbose else None) for b in builds]
        return JSONResponse(content={"items": items, "meta": page_meta(request, page, per_page, total, filters)})

    @app.get(f"{API}/builds/{{build_id}}")
    async def get_build(build_id: str, request: Request) -> JSONResponse:
        prefect: PrefectRest = request.app.state.prefect
        run = await run_of(prefect, build_id)
        (build,) = await describe(prefect, [run], verbose=True)
        return JSONResponse(content=request_json(build, await prefect.settings(), config.ui_url,
                                                 logs_url(request, build)))

    @app.get(f"{API}/builds/{{build_id}}/logs")
    async def get_build_logs(build_id: str, request: Request) -> Response:
        prefect: PrefectRest = request.app.state.prefect
        run = await run_of(prefect, build_id)
        if iib_state(run, None)[0] == "in_progress":
            return error(400, f"The request {int(build_id)} is not complete yet. logs will be available once "
                              "the request is complete.")
        return PlainTextResponse(await prefect.log_text(run["id"]))

    @app.get(f"{API}/healthcheck")
    async def healthcheck(request: Request) -> JSONResponse:
        if not await request.app.state.prefect.healthy():
            return error(500, "Prefect API health check failed.")
        return JSONResponse(content={"status": "Health check OK"})

    return app


def register_errors(app: FastAPI, login: Authenticator) -> None:
    """IIB's `{"error": ...}` body for every error, whatever raised it."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, HTTP_TEXTS.get(exc.status_code, str(exc.detail)), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, "The request is not valid")

    @app.exception_handler(ValidationError)
    async def invalid(request: Request, exc: ValidationError) -> JSONResponse:
        status = 403 if str(exc).startswith(('"graph_update_mode" can only be used',
                                             '"graph_update_modes" can only be used')) else 400
        return error(status, str(exc))

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return error(403, str(exc))

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, exc: TooLarge) -> JSONResponse:
        return error(413, HTTP_TEXTS[413], {"Connection": "close"})

    @app.exception_handler(TooMany)
    async def too_many(request: Request, exc: TooMany) -> JSONResponse:
        return error(429, str(exc))

    @app.exception_handler(PrefectApiError)
    async def prefect_down(request: Request, exc: PrefectApiError) -> JSONResponse:
        return error(503, str(exc))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        return error(500, UNKNOWN_ERROR)


def unauthorized(login: Authenticator) -> JSONResponse:
    headers = {"WWW-Authenticate": "Negotiate"} if login.mode == "kerberos" else None
    return error(401, HTTP_TEXTS[401], headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to be over `limit`: never held whole in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge()
    return bytes(body)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValidationError("The input data must be a JSON object") from None


# -- creating a build ---------------------------------------------------------------------------------
async def start_build(prefect: PrefectRest, config: ApiConfig, limits: IibApiSettings, user: str | None,
                      payload: dict, params: dict[str, Any], client_key: str | None) -> Build:
    """One build per request: a retry (same user and request within the window, or the same
    Idempotency-Key) gets the build the first POST made, even when both arrive at once."""
    key = request_key(user, payload, client_key)
    window = limits.retry_window_seconds
    if client_key or window:
        since = EPOCH if client_key else datetime.now(timezone.utc) - timedelta(seconds=window)
        earlier = await prefect.find_recent([f"{KEY_TAG}{key}"], since.isoformat())
        if earlier:
            return (await describe(prefect, [earlier], verbose=True))[0]
    await check_in_flight(prefect, user, limits.max_builds_in_flight_per_user)
    deployment_id = await prefect.deployment_id()
    build_id = await prefect.claim_request_id(limits.request_id_offset)
    params.update(request_id=str(build_id), settings_block=config.settings_block)
    token = params.pop("overwrite_target_index_token", None)
    secret = f"{ONE_TIME_SECRET_PREFIX}{build_id}-{key[:12]}" if token else None
    tags = [f"{KEY_TAG}{key}"] + ([f"{USER_TAG}{user}"] if user else [])
    try:
        if secret:  # the run stores a reference to the block (a Secret-typed parameter), never the token
            block_id = await prefect.put_secret(secret, token)
            params["overwrite_target_index_token_secret"] = {"$ref": {"block_document_id": block_id}}
        run = await prefect.create_run(deployment_id, build_id, params, tags, idempotency(key, window, client_key))
    except BaseException:
        if secret:
            await prefect.delete_secret(secret)
        raise
    if tag_value(run, REQUEST_TAG) != str(build_id):  # a concurrent twin made the build first
        if secret:
            await prefect.delete_secret(secret)
        return (await describe(prefect, [run], verbose=True))[0]
    return Build(build_id, run, user, INITIATED, reason_logs=[])


def idempotency(key: str, window: int, client_key: str | None) -> str:
    """Prefect's idempotency key of the run: the request key, per retry window when the client gave none."""
    if client_key:
        return f"iib-{key}"
    return f"iib-{key}-{int(time.time() // window)}" if window else f"iib-{uuid.uuid4().hex}"


async def check_in_flight(prefect: PrefectRest, user: str | None, limit: int) -> None:
    if not limit or not user:
        return
    running = await prefect.count_runs(run_filter([f"{USER_TAG}{user}"], list(IN_PROGRESS)))
    if running >= limit:
        raise TooMany(f"The user {user} already has {running} builds in progress (the limit is {limit})")


# -- reading builds ---------------------------------------------------------------------------------------
async def describe(prefect: PrefectRest, runs: list[dict], verbose: bool) -> list[Build]:
    """Builds for runs: their artifacts in one call; reason logs (state_history) when verbose."""
    artifacts = await prefect.artifacts([r["id"] for r in runs])
    builds = []
    for run in runs:
        mine = [a for a in artifacts if a.get("flow_run_id") == run["id"]]
        build = Build(int(tag_value(run, REQUEST_TAG) or 0), run, tag_value(run, USER_TAG))
        fields = next((a for a in mine if (a.get("key") or "").startswith(IIB_FIELDS_KEY)), None)
        build.fields = fields_from_artifact(fields["data"]) if fields else {}
        progress = next((a for a in mine if a.get("type") == "progress"), None)
        build.reason_logs = await prefect.reason_logs(run["id"]) if verbose else None
        build.current_reason = current_reason(progress, build.reason_logs)
        builds.append(build)
    return builds


def current_reason(progress: dict | None, reason_logs: list[dict] | None) -> str | None:
    """The progress artifact's description is the flow's current IIB state reason; the newest reason
    log line stands in for runs whose flow did not set it yet (created before that contract)."""
    description = (progress or {}).get("description") or ""
    if description and not description.startswith("merge progress"):  # the older flow's fixed text
        return description.split("\n", 1)[0]  # the reason; "step i of n" follows on its own line
    if reason_logs:
        return reason_logs[-1]["message"].removeprefix("state_reason: ")
    return None


async def run_of(prefect: PrefectRest, build_id: str) -> dict:
    """The run of a build id from the URL; anything but a known id is IIB's 404."""
    run = await prefect.find_run(int(build_id)) if BUILD_ID.fullmatch(build_id) else None
    if run is None:
        raise StarletteHTTPException(404)
    return run


def logs_url(request: Request, build: Build) -> str:
    return str(request.url_for("get_build_logs", build_id=str(build.build_id)))


def paging(query: Any, max_per_page: int) -> tuple[int, int]:
    """IIB's (flask-sqlalchemy's) paging: bad or < 1 values are a 404; per_page capped."""
    try:
        page, per_page = int(query.get("page", 1)), int(query.get("per_page", 20))
    except ValueError:
        raise StarletteHTTPException(404) from None
    if page < 1 or per_page < 1:
        raise StarletteHTTPException(404)
    return page, min(per_page, max_per_page)


async def list_filter(prefect: PrefectRest, query: Any, settings: dict[str, Any]
                      ) -> tuple[dict[str, str], dict | None]:
    """IIB's filters as a flow-run filter of the merge deployment (None: nothing can match)."""
    filters: dict[str, str] = {}
    tags, states = ["iib"], None
    if query.get("state"):
        state = filters["state"] = query["state"]
        if state not in STATES:
            raise ValidationError(f"{state} is not a valid build request state. Valid states are: {', '.join(STATES)}")
        states = {"in_progress": list(IN_PROGRESS), "complete": ["COMPLETED"],
                  "failed": ["FAILED", "CRASHED", "CANCELLED"]}[state]
    if query.get("request_type"):
        kind = filters["request_type"] = query["request_type"]
        if kind not in REQUEST_TYPES:
            raise ValidationError(f"{kind} is not a valid build request type. Valid request_types are: "
                                  f"{', '.join(REQUEST_TYPES)}")
        if kind != "merge-index-image":
            return filters, None
    if query.get("user"):
        filters["user"] = query["user"]
        tags.append(f"{USER_TAG}{query['user']}")
    for name in ("batch", "index_image"):
        if query.get(name) is not None:
            filters[name] = query[name]
            tags.append(f"{REQUEST_TAG}{await build_of(name, query[name], settings)}")
    if query.get("from_index") or query.get("from_index_startswith"):
        return filters, None  # merges have no from_index (IIB filters add/rm requests on it)
    return filters, run_filter(tags, states, await prefect.deployment_id())


async def build_of(name: str, value: str, settings: dict[str, Any]) -> int:
    """The build a `batch` (one build per batch here) or output `index_image` names; IIB's 400s."""
    if name == "batch":
        if not BUILD_ID.fullmatch(value) or int(value) < 1:
            raise ValidationError("The batch must be a positive integer")
        return int(value)
    found = id_of_output(value, settings)
    if found is None:
        raise ValidationError(f"{value} is not a valid index image")
    return found


def page_meta(request: Request, page: int, per_page: int, total: int, filters: dict[str, str]) -> dict[str, Any]:
    """IIB's `meta`: absolute first/last/next/previous URLs carrying the filters, counts."""
    pages = math.ceil(total / per_page) if total else 0
    base = request.url_for("get_builds")

    def url(number: int) -> str:
        return str(base.include_query_params(page=number, per_page=per_page, **filters))

    return {"first": url(1), "last": url(pages), "next": url(page + 1) if page < pages else None,
            "page": page, "pages": pages, "per_page": per_page,
            "previous": url(page - 1) if page > 1 else None, "total": total}
