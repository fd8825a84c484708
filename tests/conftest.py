"""Session-wide fixtures shared by every suite: one real local registry and a client for it."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

# The registry caches (confirmed digests, labels, index.db files) persist under $INDEXFLOW_CACHE_DIR;
# a test session must neither read the user's cache nor leave entries in it.
if "INDEXFLOW_CACHE_DIR" not in os.environ:
    os.environ["INDEXFLOW_CACHE_DIR"] = _CACHE = tempfile.mkdtemp(prefix="indexflow-test-cache-")
    atexit.register(shutil.rmtree, _CACHE, True)


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
