"""Per-target lock (merge.md A2 step 12): Prefect global concurrency limits of 1, held with a lease.

The slot is taken with a lease of LEASE_SECONDS that a thread renews while the merge runs (through a
server restart, too: see _LeaseKeeper; a run that lost its lease stops before its next write): a holder
that dies (SIGKILL, a lost node) loses the lock when the lease lapses, once the server's repossessor
sees it (every 15 s by default), so within 135 s at most; `reconcile` frees it at once when it knows
the holder died (its run ended, its process on this host is gone). The lease must be kept in lease storage that survives a server
restart (PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect.server.concurrency.lease_storage.filesystem,
docs/OPERATIONS.md); the server's default keeps leases in memory, and a restart then leaves the slot
taken for good. The lease id goes into the publish journal, so `reconcile` can release the lease of
a holder it knows to be dead at once instead of waiting for it to lapse.

Acquire and release are Prefect's own (`prefect.concurrency._sync`, pinned 3.8.8): its public
`concurrency()` does not reveal the lease id.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.objects import ConcurrencyLeaseHolder
from prefect.concurrency._sync import acquire_concurrency_slots_with_lease, release_concurrency_slots_with_lease
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.runtime import flow_run

from indexflow.errors import LockError
from tasks.rollback import logger

LEASE_SECONDS = 120.0  # a server restart shorter than this harms no holder; the server's minimum is 60
RELEASE_ATTEMPTS = 4  # 1 + 2 + 4 s between them: a server busy for a moment still frees the target at once


@dataclass
class HeldLock:
    """The slots a run holds under one lease, and whether it still holds them."""

    names: tuple[str, ...]
    lease_id: uuid.UUID
    lost: str = ""  # why the lease was lost ("" while held)

    def check(self) -> None:
        """Called before each remote write: a run that lost its lock must not write any more."""
        if self.lost:
            raise LockError(f"The merge lost its target lock ({self.lost}), so another merge of the target "
                            f"may have started; resubmit the request.")


class _LeaseKeeper(threading.Thread):
    """Renews the lease every quarter of its duration and keeps trying through a server outage (a
    restart) until the lease would have lapsed; only then is the lock lost. Prefect's own renewal
    gives up after three quick attempts, which a server restart of a few seconds defeats."""

    def __init__(self, held: HeldLock) -> None:
        super().__init__(name=f"lease-{held.lease_id}", daemon=True)
        self.held, self.stop = held, threading.Event()

    def run(self) -> None:
        renewed = time.monotonic()
        with get_client(sync_client=True) as client:
            while not self.stop.wait(LEASE_SECONDS / 4):
                try:
                    client.renew_concurrency_lease(self.held.lease_id, lease_duration=LEASE_SECONDS)
                    renewed = time.monotonic()
                except Exception as exc:  # noqa: BLE001 - any failure counts; the deadline decides
                    if time.monotonic() - renewed > LEASE_SECONDS * 0.9:
                        self.held.lost = f"its lease could not be renewed for {LEASE_SECONDS:g} s: {exc}"
                        return


def lock_name(*parts: str) -> str:
    """Limit names must be short and plain; the readable key is logged instead."""
    return "indexflow-target-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def ensure_limits(names: tuple[str, ...]) -> None:
    for name in names:
        ensure_limit(name)


def ensure_limit(name: str) -> None:
    """Create the limit (1 slot) unless it exists; refuse one an operator set inactive (Prefect then
    lets every run through, so two merges would write one target at once). Prefect's upsert is not
    atomic: two runs of a new target creating it at once made one of them fail, so losing that race
    is accepted here."""
    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except (ObjectAlreadyExists, httpx.HTTPStatusError):
                pass  # created by the other run; the read below raises if not
            limit = client.read_global_concurrency_limit_by_name(name)
    if not limit.active:
        raise LockError(f"The target lock {name} is set inactive, which would let merges of one target "
                        f"overlap; activate the global concurrency limit {name} and resubmit the request.")


def _holder() -> ConcurrencyLeaseHolder | None:
    run_id = flow_run.get_id()
    return ConcurrencyLeaseHolder(type="flow_run", id=uuid.UUID(run_id)) if run_id else None


@contextmanager
def target_lock(parts: tuple[str, ...], timeout_seconds: float) -> Iterator[HeldLock]:
    """Hold one slot per shared resource (the Git repo + OCP branch, the target image, the canonical
    index.db artifact), all under one lease: two merges sharing any of them never overlap."""
    names = tuple(lock_name(p) for p in parts)
    logger().info("waiting for target lock %s (%s)", ", ".join(names), " | ".join(parts))
    with held_lock(names, timeout_seconds, " | ".join(parts)) as held:
        yield held


@contextmanager
def held_lock(names: tuple[str, ...] | list[str], timeout_seconds: float, what: str = "") -> Iterator[HeldLock]:
    """Hold the locks called `names` (recovery takes a journal's locks by the names it recorded)."""
    names = tuple(names)
    ensure_limits(names)
    try:
        taken = acquire_concurrency_slots_with_lease(list(names), 1, timeout_seconds=timeout_seconds,
                                                     lease_duration=LEASE_SECONDS, strict=True, holder=_holder())
    except TimeoutError:
        raise LockError(f"Timed out after {timeout_seconds:g} seconds waiting for another merge of the same "
                        f"target ({what or ', '.join(names)}) to finish; resubmit the request once it has.") from None
    held = HeldLock(names, taken.lease_id)
    keeper = _LeaseKeeper(held)
    keeper.start()
    try:
        yield held
    finally:
        keeper.stop.set()
        release_lease(taken.lease_id)


def release_lease(lease_id: uuid.UUID | str) -> bool:
    """Give the slot back; False when it could not be given back (the lease then lapses on its own).

    The server answers 204 for a lease it no longer has, so any error is the server's: retried a few
    times, since a release lost to one 500 keeps the target locked for the lease's full duration."""
    for attempt in range(RELEASE_ATTEMPTS):
        try:
            release_concurrency_slots_with_lease(uuid.UUID(str(lease_id)))
            return True
        except (httpx.HTTPStatusError, httpx.TransportError) as exc:
            error = exc
        if attempt < RELEASE_ATTEMPTS - 1:
            time.sleep(2 ** attempt)
    logger().warning("could not release target lock lease %s (%s); the lock is freed when the lease lapses, "
                     "within %g s", lease_id, error, LEASE_SECONDS + 15)
    return False
