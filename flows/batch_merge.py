"""batch_merge: run every merge listed in a batch file as its own `merge-index-image` deployment run.

Scheduled by the `batch-merge` deployment (prefect.yaml). Each entry becomes one flow run of the
merge deployment (so it gets the worker, per-target lock and UI page of any other merge); at most
`max_parallel` run at once; the batch waits for all of them, one failing entry does not stop the
others, and a summary artifact lists every entry's outcome. The batch ends Failed if any entry did.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.runtime import flow_run
from prefect.settings import PREFECT_UI_URL
from prefect.states import Completed, Failed

from blocks.setup import read_yaml_file
from indexflow.errors import IndexflowError

MERGE_DEPLOYMENT = "merge-index-image/merge-index-image"
TOKEN_SECRET = "overwrite_target_index_token_secret"
API_RETRIES = 3
POLL_SECONDS = 10  # one state read per entry this often: a batch of many merges stays light on the API
ENTRY_KEYS = {"name", "source_from_index", "target_index", "deprecation_list", "binary_image",
              "overwrite_target_index", "overwrite_target_index_token_secret", "distribution_scope", "build_tags",
              "graph_update_mode", "ignore_bundle_ocp_version", "dry_run", "settings_block"}


class BatchFileError(IndexflowError):
    """The batch file cannot be read or one of its entries is malformed."""


@dataclass(frozen=True)
class Entry:
    name: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    entry: str
    state: str  # complete | failed
    detail: str
    flow_run_id: str | None = None
    result: dict[str, Any] | None = None  # the merge's result dict (its `merge-result` artifact)

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "flow_run_id": self.flow_run_id, "result": self.result}


def load_batch(path: Path) -> list[Entry]:
    """`merges:` list of IIB parameters, each with a unique `name`; tokens only as Secret block names."""
    doc = read_yaml_file(path, "batch file", BatchFileError)
    merges = doc.get("merges") if isinstance(doc, dict) else None
    if not isinstance(merges, list):
        raise BatchFileError(f"batch file {path} must have a 'merges' list")
    defaults = {k: v for k, v in doc.items() if k != "merges"}
    entries = [_entry(i, {**defaults, **(item or {})}) for i, item in enumerate(merges)]
    names = [e.name for e in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BatchFileError(f"batch file {path} repeats entry name(s): {', '.join(duplicates)}")
    return entries


def _entry(index: int, item: dict[str, Any]) -> Entry:
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise BatchFileError(f"merges[{index}] needs a 'name'")
    if "overwrite_target_index_token" in item:
        raise BatchFileError(f"merge {name!r}: put the token in a Secret block and name it in "
                             "'overwrite_target_index_token_secret', never in the batch file")
    unknown = sorted(set(item) - ENTRY_KEYS)
    if unknown:
        raise BatchFileError(f"merge {name!r} has unknown key(s): {', '.join(unknown)}")
    params = {k: v for k, v in item.items() if k != "name"}
    return Entry(name, params)


async def run_entry(entry: Entry, deployment: str, gate: asyncio.Semaphore, timeout_seconds: float) -> Outcome:
    """One merge run, waited for; any problem becomes this entry's failed outcome, never the batch's."""
    async with gate:
        try:
            params = await with_secret_reference(entry.parameters)
            run = await _run_and_wait(entry, deployment, params, timeout_seconds)
        except Exception as exc:  # noqa: BLE001 - one entry's failure must not stop the others
            get_run_logger().error("merge %s could not run: %s", entry.name, _one_line(exc))
            return Outcome(entry.name, "failed", _one_line(exc))
    outcome = _outcome(entry.name, run, timeout_seconds)
    if outcome.state == "complete":
        result = await merge_result(outcome.flow_run_id)
        outcome = Outcome(entry.name, outcome.state, describe(result), outcome.flow_run_id, result)
    return outcome


async def with_secret_reference(params: dict[str, Any]) -> dict[str, Any]:
    """The entry's parameters with the token's Secret block, named in the batch file, as the reference
    the merge deployment takes (the run then stores that reference, never the token)."""
    name = params.get(TOKEN_SECRET)
    if not isinstance(name, str):
        return dict(params)
    async with get_client() as client:
        try:
            block = await client.read_block_document_by_name(name, block_type_slug="secret", include_secrets=False)
        except ObjectNotFound:
            raise BatchFileError(f'The Secret block "{name}" named by "{TOKEN_SECRET}" does not exist') from None
    return {**params, TOKEN_SECRET: {"$ref": {"block_document_id": str(block.id)}}}


async def merge_result(flow_run_id: str) -> dict[str, Any] | None:
    """The result dict a merge run left in the API (as its `result` artifact)."""
    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["result"])))
    return found[-1].data if found and isinstance(found[-1].data, dict) else None


def describe(result: dict[str, Any] | None) -> str:
    """What a completed merge did, in a few words: a dry run says so; a real one names its output."""
    if result is None:
        return "merged"
    counts = f"{result.get('missing', 0)} added, {result.get('deprecated', 0)} deprecated"
    if result.get("dry_run"):
        return f"dry run, nothing published ({counts})"
    outputs = ", ".join(o["pullspec"] for o in result.get("outputs", [])) or "-"
    return f"merged ({counts}): {outputs}; MR {result.get('mr_state', '-')}"


async def _run_and_wait(entry: Entry, deployment: str, params: dict[str, Any], timeout_seconds: float) -> Any:
    """run_deployment, retried when the API is briefly unavailable (after the client's own retries).

    The idempotency key makes a retry find the run already created instead of starting a second one.
    """
    attempt = 0
    while True:
        try:
            return await run_deployment(
                deployment, parameters=params, timeout=timeout_seconds, poll_interval=POLL_SECONDS,
                flow_run_name=f"{flow_run.get_name() or 'batch'}-{entry.name}", tags=["batch"],
                idempotency_key=f"{flow_run.get_id()}-{entry.name}")
        except (PrefectHTTPStatusError, httpx.TransportError) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", 503)
            attempt += 1
            if status not in (429, 502, 503, 504) or attempt > API_RETRIES:
                raise
            get_run_logger().warning("merge %s: Prefect API busy (%s), retrying", entry.name, status)
            await asyncio.sleep(5 * attempt)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _outcome(name: str, run: Any, timeout_seconds: float) -> Outcome:
    state = run.state
    run_id = str(run.id)
    if state is None or not state.is_final():
        return Outcome(name, "failed", f"still {state.name if state else 'pending'} after {timeout_seconds:.0f} s",
                       run_id)
    if state.is_completed():
        return Outcome(name, "complete", "merged", run_id)
    return Outcome(name, "failed", f"{state.name}: {state.message or 'no message'}", run_id)


def summary_markdown(batch_file: str, outcomes: list[Outcome], ui_url: str | None) -> str:
    failed = [o for o in outcomes if o.state != "complete"]
    lines = [f"# batch-merge: {len(outcomes) - len(failed)} of {len(outcomes)} merges complete", "",
             f"Batch file: `{batch_file}`", ""]
    if failed:
        lines += [f"**Failed:** {', '.join(o.entry for o in failed)}", ""]
    lines += ["| entry | outcome | detail | flow run |", "|---|---|---|---|"]
    for o in outcomes:
        link = f"[{o.flow_run_id[:8]}]({ui_url}/runs/flow-run/{o.flow_run_id})" if o.flow_run_id and ui_url \
            else (o.flow_run_id or "-")
        outcome = "dry run" if o.result and o.result.get("dry_run") else o.state
        lines.append(f"| {o.entry} | {outcome} | {o.detail.replace('|', '/')} | {link} |")
    return "\n".join(lines)


def _ui_url() -> str | None:
    return PREFECT_UI_URL.value()


@flow(name="batch-merge", validate_parameters=True, persist_result=True, result_serializer="json")
async def batch_merge(batch_file: str = "deployments/batches/nightly.yaml", max_parallel: int = 2,
                      deployment: str = MERGE_DEPLOYMENT, timeout_seconds: float = 7200.0) -> Any:
    """Fan out one merge-index-image run per entry of `batch_file` (relative to the repository).

    `max_parallel` bounds this batch; the merge deployment's own concurrency limit bounds merges
    across everything that triggers them. The result maps each entry to its state and merge result.

    Args:
        batch_file: YAML file with a `merges:` list of merge parameters, each with a unique `name`.
        max_parallel: At most this many merges of the batch run at once.
        deployment: The merge deployment each entry runs as (flow/deployment).
        timeout_seconds: How long to wait for one merge before counting it as failed.
    """
    try:
        entries = load_batch(Path(batch_file))
    except BatchFileError as exc:
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc))
    if not entries:  # the shipped nightly file: the schedule runs, finds nothing to do, and says so
        get_run_logger().info("batch %s lists no merges: nothing to do", batch_file)
        return Completed(message=f"{batch_file} lists no merges: nothing to do", data={})
    gate = asyncio.Semaphore(max(1, max_parallel))
    get_run_logger().info("batch %s: %d merges, at most %d at once", batch_file, len(entries), max_parallel)
    outcomes = list(await asyncio.gather(*(run_entry(e, deployment, gate, timeout_seconds) for e in entries)))
    await acreate_markdown_artifact(summary_markdown(batch_file, outcomes, _ui_url()), key="batch-merge-summary",
                                    description="outcome of every merge in the batch")
    failed = [o.entry for o in outcomes if o.state != "complete"]
    result = {o.entry: o.as_dict() for o in outcomes}
    if failed:
        get_run_logger().error("merges failed: %s", {o.entry: o.detail for o in outcomes if o.state != "complete"})
        return Failed(message=f"{len(failed)} of {len(outcomes)} merges failed: {', '.join(failed)}", data=result)
    return Completed(message=f"{len(outcomes)} merges complete", data=result)
