"""What a user sees of a merge (merge.md A3): IIB's state reasons, a progress bar, a summary.

`MergeStory` is used inside the flow: each `step()` logs the IIB state reason, moves the progress
artifact and times the step, so the summary can show where the time went.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from prefect.artifacts import (create_markdown_artifact, create_progress_artifact, create_table_artifact,
                               update_progress_artifact)
from prefect.logging import get_run_logger

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
TOTAL_STEPS = 17


def artifact_key(*parts: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")


@dataclass
class MergeStory:
    """State reasons as log lines + a progress artifact + per-step timings."""

    request_id: str
    timings: list[tuple[str, float]] = field(default_factory=list)
    current: str = ""
    _done: int = 0
    _progress_id: object = None

    def start(self) -> None:
        """The progress artifact; its description is always the current IIB state reason (the UI shows
        it beside the bar, and `indexflow iib-api` answers it as `state_reason` while the run works)."""
        self._progress_id = create_progress_artifact(0.0, key=artifact_key("merge-progress", self.request_id),
                                                     description=INITIATED)

    def reason(self, text: str) -> None:
        """One IIB state reason: a log line and a step of the progress bar."""
        get_run_logger().info("state_reason: %s", text)
        self.current = text
        self._done += 1
        self.progress(min(99.0, 100.0 * self._done / TOTAL_STEPS))

    def progress_within(self, fraction: float, text: str) -> None:
        """Progress inside a long step (validation): a log line and the bar moved within the step."""
        get_run_logger().info("%s: %s", self.current, text)
        self.progress(min(99.0, 100.0 * (self._done - 1 + fraction) / TOTAL_STEPS))

    def progress(self, percent: float) -> None:
        if self._progress_id is not None:
            update_progress_artifact(self._progress_id, percent, description=self.current or None)

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        self.reason(text)
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings.append((text, time.monotonic() - started))

    def finish(self) -> None:
        self.progress(100.0)


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
    """The run's markdown summary: facts, then where the time went."""
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts]
    lines += ["", "## Timings", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {name} | {secs:.2f} |" for name, secs in timings]
    lines += ["", *notes]
    return "\n".join(lines)


def diff_artifacts(request_id: str, diff: MergeDiff) -> None:
    """Tables of what the merge adds, deprecates and found invalid (also written by a dry run)."""
    bundle_table(artifact_key("bundles-added", request_id), "bundles added (missing from source)", diff.missing)
    bundle_table(artifact_key("bundles-invalid", request_id), "bundles invalid for the OCP version", diff.invalid)
    pullspec_table(artifact_key("bundles-deprecated", request_id),
                   "bundles deprecated (latest per package; older ones truncated)", diff.to_deprecate)


def result_lines(result: dict) -> list[str]:
    """The run's outcome as a few plain lines (CLI output and the summary's facts)."""
    lines = [f"request {result['request_id']}{' (dry run)' if result['dry_run'] else ''}: "
             f"{result['missing']} bundles added, {result['deprecated']} deprecated "
             f"({result['invalid']} invalid), {result['bundles_in_db']} bundles in the catalog"]
    if result.get("removed_packages"):
        lines.append("packages removed (OCP-incompatible default-channel head): "
                     + ", ".join(result["removed_packages"]))
    lines += [f"output: {p}" for p in result.get("output_pullspecs", [])]
    if result.get("mr_url"):
        lines.append(f"merge request: {result['mr_url']} ({result['mr_state']})")
    return lines


def publish_summary(request_id: str, result: dict) -> None:
    facts = [("request", request_id), ("dry run", str(result["dry_run"])),
             ("bundles added", str(result["missing"])), ("bundles deprecated", str(result["deprecated"])),
             ("bundles invalid", str(result["invalid"])), ("bundles in catalog", str(result["bundles_in_db"])),
             ("packages touched", ", ".join(result["packages_touched"]) or "-")]
    if result.get("removed_packages"):
        facts.append(("packages removed (OCP-incompatible default-channel head)", ", ".join(result["removed_packages"])))
    facts += [("output", p) for p in result.get("output_pullspecs", [])]
    if result.get("mr_url"):
        facts.append(("merge request", f"[{result['mr_url']}]({result['mr_url']}) ({result['mr_state']})"))
    markdown = summary_markdown("merge_index_image", facts, list(result["timings"].items()))
    create_markdown_artifact(redact(markdown), key=artifact_key("merge-summary", request_id),
                             description="merge_index_image result")
