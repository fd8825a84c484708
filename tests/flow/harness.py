"""The test session's Prefect API: the real server on a temporary SQLite database, heartbeats off."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@contextmanager
def prefect_api() -> Iterator[None]:
    """Start-up is slow (5-60 s on a busy 2-core box, minutes when several suites share it): enter it
    once per session."""
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=240):
        with temporary_settings(updates={"flows.heartbeat_frequency": None}):
            yield
