"""The flow suite runs its flows on the test session's Prefect server (tests/flow/harness.py)."""

from tests.flow.harness import prefect_harness  # noqa: F401 - autouse session fixture
