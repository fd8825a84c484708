"""A stand-in for the merge deployment in the batch timeout test: it accepts a batch entry's merge
parameters and either returns at once or holds until the test releases it, so the test decides which
entry outlives the batch's per-entry timeout without timing a real merge."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow

HOLD_LIMIT = 600.0  # never outlive a forgotten test by more than this


@flow(name="batch-standin")
def standin(source_from_index: str, dry_run: bool = False, settings_block: str = "") -> str:
    """`source_from_index` "quick" returns; any other value is a file whose creation ends the hold."""
    if source_from_index == "quick":
        return "merged"
    release, deadline = Path(source_from_index), time.monotonic() + HOLD_LIMIT
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    return "released"
