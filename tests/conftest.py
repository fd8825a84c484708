"""Session-wide fixtures shared by every suite: one real local registry and a client for it, and ONE
Prefect server (a real `prefect server start`, tests/prefect_server.py) for every suite that needs one.

Each xdist worker is its own session, so it starts at most one server, and only when a test asks.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The registry caches (confirmed digests, labels, index.db files) persist under $INDEXFLOW_CACHE_DIR;
# a test session must neither read the user's cache nor leave entries in it.
if "INDEXFLOW_CACHE_DIR" not in os.environ:
    os.environ["INDEXFLOW_CACHE_DIR"] = _CACHE = tempfile.mkdtemp(prefix="indexflow-test-cache-")
    atexit.register(shutil.rmtree, _CACHE, True)
# Merges persist their results (JSON); flows run in the test process must not fill the user's
# ~/.prefect/storage with them (read before Prefect is imported).
if "PREFECT_RESULTS_LOCAL_STORAGE_PATH" not in os.environ:
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = _RESULTS = tempfile.mkdtemp(prefix="indexflow-test-results-")
    atexit.register(shutil.rmtree, _RESULTS, True)


# ../shared (opm's golden cases, the corpus) sits beside the checkout in CI and on every developer
# machine; without it 100+ tests would have nothing to run. Its absence stops the session unless
# the person running it says so.
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WITHOUT_SHARED = "INDEXFLOW_TESTS_WITHOUT_SHARED"


def shared_opted_out() -> bool:
    """True only when ../shared/conformance is missing AND the opt-out variable is set to 1."""
    return not (SHARED / "conformance").is_dir() and os.environ.get(WITHOUT_SHARED) == "1"


def pytest_configure(config: pytest.Config) -> None:
    # every Prefect client here talks to a server the suite started; one made after the session's server
    # is gone (a log flush at exit) must fail, not start an ephemeral API that outlives the run holding
    # its output pipe (tests/mutants.py waited 20 minutes on one)
    os.environ["PREFECT_SERVER_EPHEMERAL_ENABLED"] = "false"
    if not (SHARED / "conformance").is_dir() and os.environ.get(WITHOUT_SHARED) != "1":
        raise pytest.UsageError(f"{SHARED / 'conformance'} is missing, so the opm golden cases cannot run: put the "
                                f"shared/ folder beside the checkout, or set {WITHOUT_SHARED}=1 to skip them knowingly")


@pytest.fixture(scope="session")
def local_registry() -> Iterator[object]:
    """A running plain-HTTP `docker-registry` on 127.0.0.1 (sandbox.registry.LocalRegistry)."""
    from sandbox.registry import LocalRegistry

    with LocalRegistry() as registry:
        yield registry


@pytest.fixture(scope="session")
def registry_client(local_registry) -> Iterator[object]:  # noqa: ANN001
    """A pooled RegistryClient that treats the local registry as insecure (plain HTTP)."""
    from indexflow.registry.client import RegistryClient

    with RegistryClient(insecure=(local_registry.host,)) as client:
        yield client


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The session's Prefect server (started, not waited for: `ready()` waits, so set-up can overlap its boot)."""
    from tests.prefect_server import start_server

    server = start_server(tmp_path_factory.mktemp("prefect-home"), tmp_path_factory.mktemp("prefect-logs"))
    try:
        yield server
    finally:
        server.service.stop()


@pytest.fixture(scope="session")
def prefect_session(prefect_server) -> Iterator[object]:  # noqa: ANN001 - tests.prefect_server.PrefectServer
    """Flows and clients in the test process use the session's server (heartbeats off), from any thread,
    as `prefect_test_harness` arranges for its own server; logs and events are flushed before it stops.

    Fixtures that point the process at another server (the kill matrix's) must request this first,
    so theirs nests inside it and is undone back to it."""
    import prefect.context
    from prefect.settings import PREFECT_API_URL, temporary_settings

    prefect_server.ready()
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url, "flows.heartbeat_frequency": None}):
        with prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()):
            yield prefect_server
            _drain_prefect_workers()


def _drain_prefect_workers() -> None:
    """Send what the log and event workers still hold (Prefect's own harness does this before stopping)."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        try:
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        except RuntimeError:
            pass
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())
