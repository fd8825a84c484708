"""The flow suites' Prefect API: the test session's one server (`prefect_session` in tests/conftest.py),
never a second API of their own. Suites import `prefect_harness` into their conftest.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_harness(prefect_session):  # noqa: ANN001, ANN201 - the session's PrefectServer
    """Every test of the suite runs its flows against the session's server."""
    return prefect_session
