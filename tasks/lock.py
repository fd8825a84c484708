"""Per-target lock (merge.md A2 step 12): a Prefect global concurrency limit of 1, created on demand."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.logging import get_run_logger


def lock_name(*parts: str) -> str:
    """Limit names must be short and plain; the readable key is logged instead."""
    return "indexflow-target-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


@contextmanager
def target_lock(parts: tuple[str, ...], timeout_seconds: float) -> Iterator[str]:
    """Hold the target's slot: two merges writing the same Git branch / artifact tag never overlap."""
    name = lock_name(*parts)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
    get_run_logger().info("waiting for target lock %s (%s)", name, " | ".join(parts))
    with concurrency(name, occupy=1, timeout_seconds=timeout_seconds, strict=True):
        yield name
