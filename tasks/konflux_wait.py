"""The Konflux wait of merge.md A2 step 9: a polling sensor task, commit SHA in, built image out.

It finds the newest PipelineRun labelled with the commit, polls it every `interval` seconds, logs
each status change, and returns its IMAGE_URL; a failed, cancelled or timed-out run ends in IIB's
text (B §8). The whole wait, API calls included, is bounded by `timeout`: a hung cluster cannot
hold the flow past it (Prefect's own task timeout cannot interrupt a blocking call).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes_asyncio.client import CustomObjectsApi
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect_kubernetes.credentials import KubernetesCredentials

from indexflow import konflux
from indexflow.errors import PublishError

MISSING_CONFIG = ("Konflux configuration is required. Please set the Kubernetes credentials and the "
                  "Konflux namespace in the MergeSettings block.")


def _seconds(value: float) -> str:
    return f"{value:g}"


class _Watch:
    """What the sensor has seen so far: the run's name and the last status it logged."""

    def __init__(self, sha: str, log: Callable[[str], None]) -> None:
        self.sha, self.log = sha, log
        self.name: str | None = None
        self.last: tuple[str, str] | None = None

    def saw(self, reason: str, message: str) -> None:
        if (reason, message) != self.last:
            self.last = (reason, message)
            subject = f"Pipelinerun {self.name}" if self.name else f"Commit {self.sha}"
            self.log(f"{subject}: {reason or 'pending'}" + (f" ({message})" if message else ""))

    def timeout_error(self, timeout: float) -> PublishError:
        if self.name is None:
            return PublishError(f"No pipelineruns found for commit {self.sha} "
                                f"within {_seconds(timeout)} seconds")
        return PublishError(f"Timeout waiting for pipelinerun {self.name} to complete after "
                            f"{_seconds(timeout)} seconds")


async def _read(api: CustomObjectsApi, namespace: str, watch: _Watch, call_timeout: float) -> dict | None:
    """The run of the commit (found by label first, then by name); None while there is none."""
    if watch.name is None:
        pr = await konflux.find_pipelinerun(api, namespace, watch.sha, call_timeout)
        if pr is not None:
            watch.name = konflux.run_name(pr)
        return pr
    return await konflux.get_pipelinerun(api, namespace, watch.name, call_timeout)


async def _poll(api: CustomObjectsApi, namespace: str, watch: _Watch, interval: float, deadline: float,
                api_timeout: float) -> str:
    while True:
        call_timeout = max(0.1, min(api_timeout, deadline - time.monotonic()))
        try:
            pr = await _read(api, namespace, watch, call_timeout)
        except konflux.KonfluxAPIError as exc:
            if not exc.transient:
                raise
            watch.log(f"{exc}; asking again")  # a flaky cluster API is not a failed build
            await asyncio.sleep(interval)
            continue
        if pr is None:
            watch.saw("", f"No pipelineruns found for commit {watch.sha}")
            await asyncio.sleep(interval)
            continue
        result = konflux.outcome(pr)
        watch.saw(result.reason, result.message)
        if result.done:
            if not result.ok:
                raise PublishError(result.message)
            url = konflux.image_url(pr)
            watch.log(f"Pipelinerun {watch.name} built {url} (digest {konflux.image_digest(pr)})")
            return url
        await asyncio.sleep(interval)


async def wait_for_image(credentials: KubernetesCredentials | None, namespace: str, sha: str, interval: float,
                         timeout: float, log: Callable[[str], None], api_timeout: float = konflux.API_TIMEOUT) -> str:
    """IMAGE_URL of the PipelineRun of `sha`; raises PublishError on failure or after `timeout`.

    Transient API failures (5xx, 429, timeouts of one call, dropped connections) are logged and
    retried until `timeout`; anything else ends the wait at once."""
    if credentials is None or not namespace:
        raise PublishError(MISSING_CONFIG)
    watch = _Watch(sha, log)
    deadline = time.monotonic() + timeout
    async with credentials.get_client("custom_objects") as api:
        try:
            return await asyncio.wait_for(_poll(api, namespace, watch, interval, deadline, api_timeout), timeout)
        except asyncio.TimeoutError:
            raise watch.timeout_error(timeout) from None


def _run(coro: Coroutine[Any, Any, str]) -> str:
    """Run a coroutine to completion from sync code, whether or not this thread has a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@task(name="wait for Konflux build", cache_policy=NO_CACHE)
def wait_for_build(kubernetes: KubernetesCredentials | None, namespace: str, sha: str, interval: float,
                   timeout: float) -> str:
    """Sensor: poll the Konflux PipelineRun of commit `sha` until it ends; returns its IMAGE_URL."""
    logger = get_run_logger()
    return _run(wait_for_image(kubernetes, namespace, sha, interval, timeout, logger.info))
