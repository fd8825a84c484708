"""Compensation log for merge.md A2 step 11: every remote write records how to undo itself.

Chosen over Prefect transactions because the undo actions need values only known after the write
(an MR iid, a previous digest) and the run must say exactly what it undid; an ordered log makes
both explicit and testable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from indexflow.errors import IndexflowError

@dataclass
class Compensations:
    """Undo actions in the order their writes happened; rolled back newest first.

    An undo is recorded BEFORE its write (from the state before it), so a write whose outcome the
    run never learned is still undone; an undo returns False when it found nothing to undo.
    """

    actions: list[tuple[str, Callable[[], bool | None]]] = field(default_factory=list)

    def record(self, description: str, undo: Callable[[], bool | None]) -> None:
        self.actions.append((description, undo))

    def __len__(self) -> int:
        return len(self.actions)


@task(name="rollback remote changes", cache_policy=NO_CACHE)
def rollback(log: Compensations) -> tuple[list[str], list[str]]:
    """Run every undo (newest first), continuing past failures; returns (undone, failed)."""
    logger = get_run_logger()
    undone, failed = [], []
    for description, undo in reversed(log.actions):
        try:
            changed = undo()
        except Exception as exc:  # keep undoing the rest; report what could not be undone
            logger.error("rollback step failed (%s): %s", description, exc)
            failed.append(f"{description} ({exc})")
        else:
            if changed is False:
                continue
            logger.info("rollback: %s", description)
            undone.append(description)
    log.actions.clear()
    return undone, failed


def failure_message(step: str, error: BaseException, undone: list[str], failed: list[str]) -> str:
    """One paragraph: what failed, then what the run undid (and what it could not)."""
    reason = str(error) if isinstance(error, IndexflowError) else f"{type(error).__name__}: {error}"
    text = f"Failed to merge operators at step {step!r}: {reason.rstrip('.')}."
    text += f" Rolled back: {'; '.join(undone)}." if undone else " Nothing remote had been changed."
    if failed:
        text += f" Could NOT undo: {'; '.join(failed)}."
    return text
