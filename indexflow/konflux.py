"""Konflux builds as Tekton PipelineRuns (merge.md B §8): find the run of a commit, read its outcome.

`api` is a kubernetes_asyncio `CustomObjectsApi` (what prefect-kubernetes 0.8.0's
`KubernetesCredentials.get_client("custom_objects")` yields), so the calls are coroutines. The
outcome rules and their texts are IIB's, condition by condition; the polling loop lives in the
Prefect layer (tasks/konflux_wait.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from indexflow.errors import PublishError

GROUP, VERSION, PLURAL = "tekton.dev", "v1", "pipelineruns"
SHA_LABEL = "pipelinesascode.tekton.dev/sha"
API_TIMEOUT = 30.0
SUCCESS_REASONS = frozenset({"Succeeded", "Completed"})
MAX_MESSAGE = 2000  # characters of a PipelineRun's condition message kept in errors and states
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class KonfluxAPIError(PublishError):
    """The cluster API failed; `transient` when asking again later may work (5xx, 429, network)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message, transient=transient)


def _api_error(prefix: str, exc: Exception) -> KonfluxAPIError:
    if isinstance(exc, ApiException):
        return KonfluxAPIError(f"{prefix}: API error {exc.status}", exc.status in TRANSIENT_STATUSES)
    return KonfluxAPIError(f"{prefix}: API error {type(exc).__name__} (connection failed or timed out)", True)


@dataclass(frozen=True)
class Outcome:
    done: bool
    ok: bool
    reason: str  # the condition's reason ("" while Tekton has not set one)
    message: str  # IIB's text for a failure; Tekton's message otherwise


def _creation_key(pr: dict) -> tuple[str, str]:
    meta = pr.get("metadata") or {}
    return meta.get("creationTimestamp") or "", meta.get("name") or ""


def run_name(pr: dict) -> str:
    name = (pr.get("metadata") or {}).get("name")
    if not name:
        raise PublishError("Pipelinerun name not found in pipeline metadata")
    return name


async def find_pipelinerun(api, namespace: str, sha: str, timeout: float = API_TIMEOUT) -> dict | None:  # noqa: ANN001
    """The newest PipelineRun labelled with the commit `sha`, or None while there is none."""
    try:
        listing = await api.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=f"{SHA_LABEL}={sha}", _request_timeout=timeout)
    except (ApiException, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise _api_error(f"Failed to fetch pipelineruns for commit {sha}", exc) from None
    items = listing.get("items") or []
    return max(items, key=_creation_key) if items else None


async def get_pipelinerun(api, namespace: str, name: str, timeout: float = API_TIMEOUT) -> dict:  # noqa: ANN001
    """The current state of one PipelineRun."""
    try:
        return await api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name,
                                                      _request_timeout=timeout)
    except (ApiException, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise _api_error(f"Failed to monitor pipelinerun {name}", exc) from None


def outcome(pr: dict) -> Outcome:
    """Done/ok from `status.conditions[0]` exactly as IIB reads it (B §8)."""
    name = run_name(pr)
    conditions = (pr.get("status") or {}).get("conditions") or []
    if not conditions:
        return Outcome(False, False, "", "initializing")
    cond = conditions[0]
    reason, message, status = cond.get("reason") or "", _cut(cond.get("message") or ""), cond.get("status")
    if reason in SUCCESS_REASONS:
        return Outcome(True, True, reason, message)
    failed = f"Pipelinerun {name} failed" + (f": {message}" if message else "")
    fixed = {"Cancelled": f"Pipelinerun {name} was cancelled",
             "Failed": failed,
             "PipelineRunTimeout": f"Pipelinerun {name} failed due to timeout",
             "CreateRunFailed": f"Pipelinerun {name} failed due to resource creation failure"}
    if reason in fixed:
        return Outcome(True, False, reason, fixed[reason])
    if status == "False":
        return Outcome(True, False, reason, failed)
    return Outcome(False, False, reason, message)


def _cut(message: str) -> str:
    """Tekton's message as IIB quotes it, up to MAX_MESSAGE characters: a step's output can put
    megabytes there, and the text becomes the run's state, the IIB state reason and a log line."""
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}... ({len(message) - MAX_MESSAGE} more characters)"


def _result(pr: dict, key: str) -> str | None:
    status = pr.get("status") or {}
    for field in ("results", "pipelineResults"):  # Tekton v1, then v1beta1
        for item in status.get(field) or []:
            if item.get("name") == key:
                return str(item.get("value", "")).strip()
    return None


def image_url(pr: dict) -> str:
    """IMAGE_URL of a finished run (B §8: its absence is an error)."""
    url = _result(pr, "IMAGE_URL")
    if not url:
        raise PublishError(f"IMAGE_URL not found in pipelinerun {run_name(pr)} results")
    return url


def image_digest(pr: dict) -> str | None:
    """IMAGE_DIGEST of a run, when the pipeline reports one (IIB does not use it; we log it)."""
    return _result(pr, "IMAGE_DIGEST")
