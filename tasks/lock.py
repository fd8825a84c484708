"""Per-target lock (merge.md A2 step 12): a Prefect global concurrency limit of 1, created on demand."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_run_logger


def lock_name(*parts: str) -> str:
    """Limit names must be short and plain; the readable key is logged instead."""
    return "indexflow-target-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def ensure_limit(name: str) -> None:
    """Create the limit (1 slot) unless it exists. Prefect's own upsert is not atomic: two runs of a
    new target creating it at once made one of them fail, so losing that race is accepted here."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except (ObjectAlreadyExists, httpx.HTTPStatusError):
            client.read_global_concurrency_limit_by_name(name)  # created by the other run; else raise


@contextmanager
def target_lock(parts: tuple[str, ...], timeout_seconds: float) -> Iterator[str]:
    """Hold the target's slot: two merges writing the same Git branch / artifact tag never overlap."""
    name = lock_name(*parts)
    ensure_limit(name)
    get_run_logger().info("waiting for target lock %s (%s)", name, " | ".join(parts))
    with concurrency(name, occupy=1, timeout_seconds=timeout_seconds, strict=True):
        yield name
