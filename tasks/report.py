"""What a user sees of a merge (merge.md A3): IIB's state reasons, a progress bar, a summary.

`MergeStory` is used inside the flow: each `step()` logs the IIB state reason, moves the progress
artifact and times the step, so the summary can show where the time went.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prefect.artifacts import (create_link_artifact, create_markdown_artifact, create_progress_artifact,
                               create_table_artifact, update_progress_artifact)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.context import get_run_context
from prefect.logging import get_logger, get_run_logger

from indexflow.catalog.db import BundleRecord
from indexflow.merge.diff import MergeDiff
from indexflow.redact import redact

# IIB's containerized merge state reasons, in order (merge.md B §1.3); the flow uses these names.
INITIATED = "The request was initiated"
PREPARING = "Preparing request for merge"
RESOLVING = "Resolving the container images"
CLONING = "Cloning Git repository"
VALIDATING = "Validating whether the bundles have their pullspecs present in the registry"
FINDING_MISSING = "Adding bundles missing in source index image"
ADDING = "Adding the missing bundles to the source index.db file"
DEPRECATING = "Processing the deprecation list"
MIGRATING = "Migrating the intermediary index.db file to FBC and generating the Dockerfile"
VALIDATING_FBC = "Validating the FBC config"
METADATA = "Writing build metadata"
COMMITTING = "Committing changes to Git repository"
WAITING = "Waiting on KONFLUX build"
COPYING = "Copying built index to IIB registry"
PUSHING_DB = "Pushing updated index database"
LOCAL_STEPS = 12  # PREPARING .. METADATA, the arches reason and the index.db pull included
OPERATORS_SHOWN = 10  # the completion line names this many operators, then counts the rest
PUBLISH_STEPS = 4  # COMMITTING, WAITING, COPYING, PUSHING_DB (+1 when overwriting the target)


def artifact_key(*parts: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


def target_slug(index: str) -> str:
    """An index pullspec without its registry host: artifacts keyed by it keep one history per target."""
    first, _, rest = index.partition("/")
    return rest if rest and ("." in first or ":" in first or first == "localhost") else index


def total_steps(dry_run: bool, overwrite: bool) -> int:
    """State reasons a run goes through: the local part, then publishing (one more with overwrite)."""
    return LOCAL_STEPS if dry_run else LOCAL_STEPS + PUBLISH_STEPS + int(overwrite)


def progress_reason(description: str) -> str:
    """The IIB state reason held by a progress artifact's description (its first line)."""
    return description.split("\n", 1)[0]


class Sender:
    """The story's artifact writes, sent in order on one background thread so the merge never waits for
    the Prefect API on them (each is a round trip to a server that may be busy: ~35 progress moves
    cost a warm merge seconds). A progress move still unsent when a newer one comes is dropped: the
    artifact only ever shows the latest. `flush()` returns once everything queued has been sent."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[Callable[[], object]] = deque()
        self._latest: Callable[[], object] | None = None
        self._busy = self._closed = False
        self._thread: threading.Thread | None = None

    def send(self, call: Callable[[], object], latest_only: bool = False) -> None:
        with self._cond:
            if latest_only:
                self._latest = call
            else:
                self._queue.append(call)
            if self._thread is None:  # in the run's context: the run's API client, its flow run id
                context = contextvars.copy_context()
                self._thread = threading.Thread(target=context.run, args=(self._run,), daemon=True,
                                                name="indexflow-story")
                self._thread.start()
            self._cond.notify_all()

    def _next(self) -> Callable[[], object] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._latest or self._closed)
            if self._queue:
                call = self._queue.popleft()
            else:
                call, self._latest = self._latest, None
            self._busy = call is not None
            return call

    def _run(self) -> None:
        while (call := self._next()) is not None:
            try:
                call()
            except Exception as exc:  # noqa: BLE001 - a lost progress move must not fail the merge
                get_logger("indexflow.report").warning("could not update the run's artifacts: %s", exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout: float = 60.0) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not (self._queue or self._latest or self._busy), timeout)

    def close(self) -> None:
        """Send what is queued, then end the thread."""
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class MergeStory:
    """State reasons as log lines + a progress artifact + per-step timings + what the merge found.

    Artifact writes go through a background `Sender`: `finish()` and `close()` wait until they are sent."""

    request_id: str
    target: str = ""  # the index whose artifacts these are (target, else source)
    total: int = LOCAL_STEPS + PUBLISH_STEPS
    timings: list[tuple[str, float]] = field(default_factory=list)
    current: str = ""
    facts: dict[str, Any] = field(default_factory=dict)  # what the merge found so far (summary either way)
    undone: list[str] = field(default_factory=list)  # remote effects rolled back after a failure
    not_undone: list[str] = field(default_factory=list)
    _done: int = 0
    _progress_id: object = None
    _started: bool = False
    _sender: Sender = field(default_factory=Sender, repr=False)

    def key(self, kind: str) -> str:
        """Artifact key of `kind` for this run's target (one history per target on the Artifacts page)."""
        return artifact_key(kind, target_slug(self.target) if self.target else self.request_id)

    def start(self) -> None:
        """The progress artifact; its description is always the current IIB state reason (the UI shows
        it beside the bar, and `indexflow iib-api` answers it as `state_reason` while the run works)."""
        self._started = True
        self._sender.send(self._create_progress)

    def _create_progress(self) -> None:
        self._progress_id = create_progress_artifact(0.0, key=self.key("merge-progress"), description=INITIATED)

    def later(self, call: Callable[[], object]) -> None:
        """An artifact write the merge need not wait for (sent in order with the progress moves)."""
        self._sender.send(call)

    def reason(self, text: str) -> None:
        """One IIB state reason: a log line and a step of the progress bar."""
        get_run_logger().info("state_reason: %s", text)
        self.current = text
        self._done += 1
        self.progress(min(99.0, 100.0 * self._done / self.total))

    def progress_within(self, fraction: float, text: str) -> None:
        """Progress inside a long step (validation): a debug line and the bar moved within the step."""
        get_run_logger().debug("%s: %s", self.current, text)
        self.progress(min(99.0, 100.0 * (self._done - 1 + fraction) / self.total))

    def progress(self, percent: float) -> None:
        if self._started:
            step = f"step {min(self._done, self.total)} of {self.total}" if percent < 100 else "done"
            self._sender.send(lambda text=f"{self.current}\n\n{step}": self._update(percent, text), latest_only=True)

    def _update(self, percent: float, description: str) -> None:
        if self._progress_id is not None:
            update_progress_artifact(self._progress_id, percent, description=description)

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        self.reason(text)
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings.append((text, time.monotonic() - started))

    def found(self, **facts: Any) -> None:
        """Record what the merge found (diff, guard numbers): shown by the summary, failed or not."""
        self.facts.update(facts)

    def finish(self, reason: str | None = None) -> None:
        if reason:
            self.current = reason
        self.progress(100.0)
        self._sender.flush()

    def close(self) -> None:
        """Every artifact write sent (the run's end: nothing may be left behind in the thread)."""
        self._sender.close()


def bundle_table(key: str, description: str, bundles: Sequence[BundleRecord]) -> None:
    """A table artifact of bundles (added / invalid), one row per bundle."""
    rows = [{"package": b.packageName, "csv": b.csvName, "version": b.version, "pullspec": b.bundlePath}
            for b in bundles]
    create_table_artifact(rows or [{"package": "(none)", "csv": "", "version": "", "pullspec": ""}],
                          key=key, description=description)


def pullspec_table(key: str, description: str, pullspecs: Sequence[str]) -> None:
    create_table_artifact([{"pullspec": p} for p in pullspecs] or [{"pullspec": "(none)"}],
                          key=key, description=description)


def summary_markdown(title: str, facts: Sequence[tuple[str, str]], timings: Sequence[tuple[str, float]],
                     notes: Sequence[str] = ()) -> str:
    """The run's markdown summary: facts, notes, then where the time went."""
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in facts]
    lines += ["", *notes]
    lines += ["", "## Timings", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {name} | {secs:.2f} |" for name, secs in timings]
    return "\n".join(lines)


def diff_artifacts(story: MergeStory, diff: MergeDiff, status: str = "") -> None:
    """Tables of what the merge adds, deprecates and found invalid (a dry or refused run writes them too).

    `status` qualifies them when their effect was not published, e.g. "rolled back".
    """
    suffix = f" ({status})" if status else ""
    story.later(lambda: bundle_table(story.key("bundles-added"), f"bundles added (missing from source){suffix}",
                                     diff.missing))
    story.later(lambda: bundle_table(story.key("bundles-invalid"),
                                     f"bundles invalid for the OCP version (deprecated){suffix}", diff.invalid))
    story.later(lambda: pullspec_table(story.key("bundles-deprecated"),
                                       f"bundles deprecated (latest per package; older ones truncated){suffix}",
                                       diff.to_deprecate))


def found_facts(diff: MergeDiff | None, removals: dict | None) -> dict[str, Any]:
    """Counts of what the merge found, for the result and the summary (also of failed runs)."""
    facts: dict[str, Any] = {}
    if diff is not None:
        facts.update(missing=len(diff.missing), invalid=len(diff.invalid), deprecated=len(diff.to_deprecate),
                     packages_touched=diff.packages_touched())
    if removals is not None:
        facts["removals"] = removals
    return facts


def operators_line(operators: Sequence[str], limit: int = OPERATORS_SHOWN) -> str:
    """IIB's completion message, with the operator list cut to its first `limit` names."""
    names = sorted(set(operators))
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return (f"The operator(s) {names[:limit]}{more} were successfully merged from the source index image into "
            f"the target index image")


def result_lines(result: dict) -> list[str]:
    """The run's outcome as a few plain lines (CLI output and the summary's facts)."""
    head = f"request {result['request_id']}{' (dry run: nothing published)' if result['dry_run'] else ''}: "
    lines = [head + f"{result['missing']} bundles added, {result['deprecated']} deprecated "
             f"(of which {result['invalid']} invalid for the OCP version), "
             f"{result['bundles_in_db']} bundles in the catalog"]
    if result.get("removed_packages"):
        lines.append("packages removed (OCP-incompatible default-channel head): "
                     + ", ".join(result["removed_packages"]))
    removals = result.get("removals")
    if removals:
        lines.append(removal_line(removals))
    lines += [f"output: {o['pullspec']}@{o['digest']}" if o.get("digest") else f"output: {o['pullspec']}"
              for o in result.get("outputs", [])]
    if result.get("mr_url"):
        lines.append(f"merge request: {result['mr_url']} ({result['mr_state']})")
    return lines


def removal_line(removals: dict) -> str:
    target = removals["target_bundles"]
    return (f"destructive-merge guard: {removals['dropped']} of {target} target bundles dropped, "
            f"{removals['invalid']} invalid (allowed: {removals['max_share']:.0%})")


def _facts(result: dict) -> list[tuple[str, str]]:
    facts = [("request", result["request_id"]), ("dry run", "yes: nothing published" if result.get("dry_run") else "no")]
    if "missing" in result:
        facts += [("bundles added", str(result["missing"])), ("bundles deprecated", str(result["deprecated"])),
                  ("of which invalid for the OCP version", str(result["invalid"])),
                  ("packages touched", ", ".join(result["packages_touched"]) or "-")]
    if "bundles_in_db" in result:
        facts.append(("bundles in catalog", str(result["bundles_in_db"])))
    if result.get("removed_packages"):
        facts.append(("packages removed (OCP-incompatible default-channel head)", ", ".join(result["removed_packages"])))
    if result.get("removals"):
        facts.append(("destructive-merge guard", removal_line(result["removals"]).split(": ", 1)[1]))
    facts += [("output", f"{o['pullspec']} ({o.get('digest') or '?'})") for o in result.get("outputs", [])]
    if result.get("mr_url"):
        facts.append(("merge request", f"[{result['mr_url']}]({result['mr_url']}) ({result['mr_state']})"))
    return facts


def publish_summary(story: MergeStory, result: dict) -> None:
    """The summary of a completed run, the result as data, and links to the MR and the output image."""
    markdown = summary_markdown("merge_index_image", _facts(result), list(result["timings"].items()))
    create_markdown_artifact(redact(markdown), key=story.key("merge-summary"),
                             description=f"merge_index_image result of request {story.request_id}")
    result_artifact(story, result)
    if result.get("mr_url"):
        create_link_artifact(result["mr_url"], link_text=f"merge request ({result['mr_state']})",
                             key=story.key("merge-request"), description=f"merge request of {story.request_id}")
    for output in result.get("outputs", [])[:1]:
        create_link_artifact(image_link(output["pullspec"], result.get("insecure_hosts", ())),
                             link_text=output["pullspec"], key=story.key("output-image"),
                             description=f"output index image of {story.request_id}")


def image_link(pullspec: str, insecure_hosts: Sequence[str]) -> str:
    """A browsable address for an image: its registry's manifest URL (plain HTTP for insecure hosts)."""
    host, _, rest = pullspec.partition("/")
    repo, _, tag = rest.rpartition(":") if "@" not in rest else rest.partition("@")
    scheme = "http" if host in insecure_hosts else "https"
    return f"{scheme}://{host}/v2/{repo}/manifests/{tag}"


def result_artifact(story: MergeStory, result: dict) -> None:
    """The result dict itself in the API (`type: result`): REST clients read it without the result storage."""
    data = {k: v for k, v in result.items() if k != "lines"}
    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(
            key=story.key("merge-result"), type="result", data=data,
            description=f"result of request {story.request_id} (JSON)",
            flow_run_id=get_run_context().flow_run.id))


def failure_summary(story: MergeStory, reason: str) -> None:
    """A failed or refused run's summary: what it found, what it undid, and the one-sentence reason."""
    refused = not story.undone and not story.not_undone
    title = "merge_index_image refused (nothing published)" if refused else "merge_index_image failed"
    result = {"request_id": story.request_id, "dry_run": story.facts.get("dry_run", False),
              **{k: v for k, v in story.facts.items() if k != "diff"}}
    notes = [f"**Reason:** {reason}", ""]
    if story.undone:
        notes += ["**Rolled back:**", "", *[f"- {u}" for u in story.undone], ""]
    if story.not_undone:
        notes += ["**Could NOT undo:**", "", *[f"- {u}" for u in story.not_undone], ""]
    notes.append(f"Failed at: {story.current}")
    markdown = summary_markdown(title, _facts(result), story.timings, notes)
    create_markdown_artifact(redact(markdown), key=story.key("merge-summary"),
                             description=f"merge_index_image failed: request {story.request_id}")
    diff = story.facts.get("diff")
    if diff is not None and story.undone:
        diff_artifacts(story, diff, "rolled back")
    story.finish(reason)
