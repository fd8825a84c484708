"""The client's connection pools: many threads at once are spread over several pools, and together they
never open more connections than `max_connections` (counted on the wire by sandbox.faultproxy)."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from indexflow.registry.client import RegistryClient
from indexflow.registry.refs import ImageRef
from sandbox.faultproxy import FaultProxy
from sandbox.images import build_image, tar_gz

THREADS = 48


def test_threads_share_one_connection_limit_across_pools(local_registry) -> None:  # noqa: ANN001
    with FaultProxy(local_registry.host) as proxy, \
            RegistryClient(insecure=(proxy.host,), max_connections=16, timeout=10.0) as client:
        ref = ImageRef.parse(f"{proxy.host}/p{uuid.uuid4().hex[:8]}/app:v1")
        build_image(client, ref, [tar_gz({"manifests/a.yaml": b"a"})], {"k": "v"})
        proxy.reset_stats()
        proxy.set_latency(0.2)  # every request holds its connection long enough for all threads to overlap
        barrier = threading.Barrier(THREADS)

        def one(_: int) -> bool:
            barrier.wait()
            return client.exists(ref)  # a tag: one HEAD each, never answered from memory

        with ThreadPoolExecutor(THREADS) as pool:
            assert all(pool.map(one, range(THREADS)))
        stats = proxy.stats()
    assert stats["by_method"]["HEAD"] == THREADS
    # 2 pools of 8 here; a pool that forgot the split would let the 48 threads open 32
    assert stats["connections"] <= 16
