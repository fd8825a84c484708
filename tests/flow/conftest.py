"""One Prefect test harness per session (ephemeral API on SQLite), analytics and heartbeats off."""

from __future__ import annotations

import pytest

from tests.flow.harness import prefect_api


@pytest.fixture(scope="session", autouse=True)
def prefect_harness():
    with prefect_api():
        yield
